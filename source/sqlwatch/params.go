package sqlwatch

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ReadParamNames are the URL parameters of a SQL server source that tune
// how it is read, for every registrar's table: cdc=trigger (change capture
// by the triggers `regbridge cdc install` adds) or cdc=logical
// (PostgreSQL logical replication: a publication and a replication slot),
// changelog_poll (how often the changelog is read; default 20ms),
// reconcile (the safety-net reconcile interval; default 30s),
// incremental=false (a full read for every change the change check shows,
// instead of the changed rows), slot (the replication slot of
// cdc=logical; default regbridge_<database>_<table>), slot_lag_warn
// (the slot lag that is logged as a warning; default 1GiB) and
// reconcile_rate (rows per second of a paced reconcile beside a change
// feed, reconcile_rate.go; default one query) and poll_load (the largest
// share of time the change check may keep the database busy; default
// 10%, poll_load.go).
var ReadParamNames = []string{"cdc", "changelog_poll", "reconcile", "incremental", "slot", "slot_lag_warn", ReconcileRateParam, PollLoadParam}

// ReadParams are those parameters, parsed; zero values keep the defaults.
type ReadParams struct {
	CDC               string
	ChangelogPoll     time.Duration
	ReconcileInterval time.Duration
	FullReads         bool
	Slot              string
	SlotLagWarn       int64
	ReconcileRate     int
	PollLoad          float64
}

// ParseReadParams reads ReadParamNames from a source URL's parameters.
// Its errors name the parameter, never the URL (which may hold a
// password).
func ParseReadParams(own url.Values) (ReadParams, error) {
	var p ReadParams
	if v := own.Get("cdc"); v != "" && v != CDCTrigger && v != CDCLogical {
		return p, fmt.Errorf("cdc=%q: want cdc=%s or cdc=%s", v, CDCTrigger, CDCLogical)
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
	if own.Has("slot") {
		p.Slot = own.Get("slot")
		if !ValidSlot(p.Slot) {
			return p, fmt.Errorf("slot=%q is not a replication slot name (1 to 63 of a-z, 0-9, _)", p.Slot)
		}
	}
	if v := own.Get("slot_lag_warn"); v != "" {
		n, err := ParseSize(v)
		if err != nil || n <= 0 {
			return p, fmt.Errorf("slot_lag_warn=%q is not a positive size (such as 512MiB or 1GiB)", v)
		}
		p.SlotLagWarn = n
	}
	var err error
	if p.ReconcileRate, err = parseReconcileRate(own); err != nil {
		return p, err
	}
	if p.PollLoad, err = parsePollLoad(own); err != nil {
		return p, err
	}
	if (p.Slot != "" || p.SlotLagWarn != 0) && p.CDC != CDCLogical {
		return p, fmt.Errorf("slot and slot_lag_warn need cdc=%s", CDCLogical)
	}
	return p, nil
}

// ForDriver rejects parameters the driver cannot honour: cdc=logical is
// PostgreSQL's.
func (p ReadParams) ForDriver(driver string) error {
	if p.CDC == CDCLogical && driver != DriverPostgres {
		return fmt.Errorf("cdc=%s needs a PostgreSQL store (on MySQL/MariaDB use cdc=%s)", CDCLogical, CDCTrigger)
	}
	return nil
}

// ValidSlot reports whether s can name a replication slot (PostgreSQL
// allows lower-case letters, digits and underscores, at most 63 bytes).
func ValidSlot(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c == '_' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// ParseSize reads a byte count: a number with an optional unit B, kB/KB,
// MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024).
func ParseSize(s string) (int64, error) {
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(s[len(num):])
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: no number", s)
	}
	mult := map[string]int64{"": 1, "B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
		"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("size %q: unknown unit %q", s, unit)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}
