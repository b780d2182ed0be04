package sqlwatch

import (
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// ReadParamNames are the URL parameters of a SQL server source that tune
// how it is read, for every registrar's table: cdc=trigger (change capture
// by the triggers `regbridge cdc install` adds), changelog_poll (how often
// the MySQL changelog is read; default 20ms), reconcile (the safety-net
// reconcile interval; default 30s) and incremental=false (a full read for
// every change the change check shows, instead of the changed rows).
var ReadParamNames = []string{"cdc", "changelog_poll", "reconcile", "incremental"}

// ReadParams are those parameters, parsed; zero values keep the defaults.
type ReadParams struct {
	CDC               string
	ChangelogPoll     time.Duration
	ReconcileInterval time.Duration
	FullReads         bool
}

// ParseReadParams reads ReadParamNames from a source URL's parameters.
// Its errors name the parameter, never the URL (which may hold a
// password).
func ParseReadParams(own url.Values) (ReadParams, error) {
	var p ReadParams
	if v := own.Get("cdc"); v != "" && v != CDCTrigger {
		return p, fmt.Errorf("cdc=%q: the only mode is cdc=%s", v, CDCTrigger)
	}
	p.CDC = own.Get("cdc")
	for _, d := range []struct {
		name string
		dst  *time.Duration
	}{{"changelog_poll", &p.ChangelogPoll}, {"reconcile", &p.ReconcileInterval}} {
		if v := own.Get(d.name); v != "" {
			dur, err := time.ParseDuration(v)
			if err != nil || dur <= 0 {
				return p, fmt.Errorf("%s=%q is not a positive duration (such as 20ms)", d.name, v)
			}
			*d.dst = dur
		}
	}
	if v := own.Get("incremental"); v != "" {
		inc, err := strconv.ParseBool(v)
		if err != nil {
			return p, fmt.Errorf("incremental=%q is not a boolean", v)
		}
		p.FullReads = !inc
	}
	return p, nil
}

// Apply sets the parameters given on c.
func (p ReadParams) Apply(c *Config) {
	if p.CDC != "" {
		c.CDC = p.CDC
	}
	if p.ChangelogPoll != 0 {
		c.ChangelogPoll = p.ChangelogPoll
	}
	if p.ReconcileInterval != 0 {
		c.ReconcileInterval = p.ReconcileInterval
	}
	c.FullReads = c.FullReads || p.FullReads
}
