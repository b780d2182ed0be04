package main

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/asterisk"
	"github.com/regbridge/regbridge/source/kamailio"
	"github.com/regbridge/regbridge/source/opensips"
	redissrc "github.com/regbridge/regbridge/source/redis"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// supportedSources lists the REGBRIDGE_SOURCE schemes, for error messages.
var supportedSources = []string{"kamailio+sqlite", "kamailio+mysql", "kamailio+postgres",
	"opensips+sqlite", "opensips+mysql", "opensips+postgres", redissrc.SchemeKamailio, redissrc.SchemeRedis,
	asterisk.SchemeAstDB, asterisk.SchemeMySQL, asterisk.SchemePostgres}

// sourceURL is a parsed REGBRIDGE_SOURCE.
type sourceURL struct {
	scheme string
	path   string // file path for SQLite sources
	query  url.Values
}

// parseSourceURL parses a store URL. SQLite paths come in two forms:
// kamailio+sqlite:///abs/path.db (absolute) and kamailio+sqlite:rel/path.db
// (relative to the working directory).
func parseSourceURL(raw string) (*sourceURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	s := &sourceURL{scheme: strings.ToLower(u.Scheme), query: u.Query()}
	switch s.scheme {
	case "kamailio+sqlite", "opensips+sqlite":
		switch {
		case u.Opaque != "":
			s.path = u.Opaque
		case u.Host != "":
			s.path = u.Host + u.Path // kamailio+sqlite://rel.db: relative too
		default:
			s.path = u.Path
		}
		if s.path == "" {
			return nil, fmt.Errorf("%q names no file (%s:///abs/path.db or %s:rel/path.db)", raw, s.scheme, s.scheme)
		}
		known := []string{"table", "create"}
		if s.scheme == "opensips+sqlite" {
			known = []string{"table", "tz"}
		}
		for k := range s.query {
			if !slices.Contains(known, k) {
				return nil, fmt.Errorf("unknown parameter %q for %s (%s)", k, s.scheme, strings.Join(known, ", "))
			}
		}
		if err := checkTZ(s.query); err != nil {
			return nil, err
		}
		if v := s.query.Get("create"); v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				return nil, fmt.Errorf("create=%q is not a boolean", v)
			}
		}
	case "kamailio+mysql", "kamailio+postgres", "opensips+mysql", "opensips+postgres":
		// Errors never repeat the URL (it may hold a password).
		if _, _, err := dbEndpoint(u); err != nil {
			return nil, err
		}
	case redissrc.SchemeKamailio, redissrc.SchemeRedis:
		// The whole URL is the adapter's (host, credentials, db, layout);
		// its errors never repeat the URL, which may hold a password.
		if _, err := redissrc.ParseURL(raw); err != nil {
			return nil, err
		}
	case asterisk.SchemeAstDB:
		if _, err := asterisk.ParseAstDBURL(raw); err != nil {
			return nil, err
		}
	case asterisk.SchemeMySQL, asterisk.SchemePostgres:
		// Errors never repeat the URL (it may hold a password).
		if _, err := asterisk.ParseRealtimeURL(raw); err != nil {
			return nil, err
		}
	case "":
		return nil, fmt.Errorf("%q has no scheme; supported: %s", raw, strings.Join(supportedSources, ", "))
	default:
		return nil, fmt.Errorf("unsupported scheme %q; supported: %s", u.Scheme, strings.Join(supportedSources, ", "))
	}
	return s, nil
}

// newSource builds the adapter a validated configuration names: a plain
// switch on the scheme (no registry for a handful of adapters).
func newSource(cfg *config, log *slog.Logger) (source.Source, error) {
	s, err := parseSourceURL(cfg.Source)
	if err != nil {
		return nil, fmt.Errorf("REGBRIDGE_SOURCE: %w", err)
	}
	log = log.With("source", s.scheme)
	switch s.scheme {
	case "kamailio+sqlite":
		create, _ := strconv.ParseBool(s.query.Get("create"))
		return kamailio.NewSQLite(kamailio.SQLiteConfig{
			Path:         s.path,
			Table:        s.query.Get("table"),
			Domain:       cfg.Domain,
			Create:       create,
			PollInterval: cfg.PollInterval,
		}, log)
	case "opensips+sqlite":
		return opensips.NewSQLite(opensips.SQLiteConfig{
			Path:         s.path,
			Table:        s.query.Get("table"),
			Domain:       cfg.Domain,
			TZ:           s.query.Get("tz"),
			PollInterval: cfg.PollInterval,
		}, log)
	case "kamailio+mysql", "kamailio+postgres":
		u, _ := url.Parse(cfg.Source) // parsed above
		ep, own, err := dbEndpoint(u)
		if err != nil {
			return nil, fmt.Errorf("REGBRIDGE_SOURCE: %w", err)
		}
		kc := kamailio.DBConfig{Endpoint: ep, Table: own.Get("table"), Domain: cfg.Domain, TZ: own.Get("tz"), PollInterval: cfg.PollInterval}
		rp := readParams(own)
		kc.CDC, kc.ChangelogPoll, kc.ReconcileInterval, kc.FullReads, kc.Slot, kc.SlotLagWarn = rp.CDC, rp.ChangelogPoll, rp.ReconcileInterval, rp.FullReads, rp.Slot, rp.SlotLagWarn
		kc.ReconcileRate = rp.ReconcileRate
		if s.scheme == "kamailio+mysql" {
			return kamailio.NewMySQL(kc, log)
		}
		return kamailio.NewPostgres(kc, log)
	case "opensips+mysql", "opensips+postgres":
		u, _ := url.Parse(cfg.Source) // parsed above
		ep, own, err := dbEndpoint(u)
		if err != nil {
			return nil, fmt.Errorf("REGBRIDGE_SOURCE: %w", err)
		}
		oc := opensips.DBConfig{Endpoint: ep, Table: own.Get("table"), Domain: cfg.Domain, TZ: own.Get("tz"), PollInterval: cfg.PollInterval}
		rp := readParams(own)
		oc.CDC, oc.ChangelogPoll, oc.ReconcileInterval, oc.FullReads, oc.Slot, oc.SlotLagWarn = rp.CDC, rp.ChangelogPoll, rp.ReconcileInterval, rp.FullReads, rp.Slot, rp.SlotLagWarn
		oc.ReconcileRate = rp.ReconcileRate
		if s.scheme == "opensips+mysql" {
			return opensips.NewMySQL(oc, log)
		}
		return opensips.NewPostgres(oc, log)
	case redissrc.SchemeKamailio, redissrc.SchemeRedis:
		rc, err := redissrc.ParseURL(cfg.Source)
		if err != nil {
			return nil, fmt.Errorf("REGBRIDGE_SOURCE: %w", err)
		}
		rc.Domain, rc.PollInterval = cfg.Domain, cfg.PollInterval
		return redissrc.New(rc, log)
	case asterisk.SchemeAstDB:
		ac, err := asterisk.ParseAstDBURL(cfg.Source)
		if err != nil {
			return nil, fmt.Errorf("REGBRIDGE_SOURCE: %w", err)
		}
		ac.Domain, ac.Watch.PollInterval = cfg.Domain, cfg.PollInterval
		return asterisk.NewAstDB(ac, log)
	case asterisk.SchemeMySQL, asterisk.SchemePostgres:
		ac, err := asterisk.ParseRealtimeURL(cfg.Source)
		if err != nil {
			return nil, fmt.Errorf("REGBRIDGE_SOURCE: %w", err)
		}
		ac.Domain, ac.Watch.PollInterval = cfg.Domain, cfg.PollInterval
		return asterisk.NewRealtime(ac, log)
	}
	return nil, fmt.Errorf("REGBRIDGE_SOURCE: unsupported scheme %q", s.scheme)
}

// dbEndpoint reads a kamailio+mysql, kamailio+postgres, opensips+mysql or
// opensips+postgres URL: the server, plus the table and tz parameters
// (the registrar's time zone, an IANA name; default UTC) and the read
// parameters (readParams).
func dbEndpoint(u *url.URL) (sqlwatch.Endpoint, url.Values, error) {
	driver := sqlwatch.DriverPostgres
	if strings.HasSuffix(strings.ToLower(u.Scheme), "+mysql") {
		driver = sqlwatch.DriverMySQL
	}
	ep, own, err := sqlwatch.ParseURL(u, driver, append([]string{"table", "tz"}, sqlwatch.ReadParamNames...)...)
	if err != nil {
		return ep, nil, err
	}
	if err := checkTZ(own); err != nil {
		return ep, nil, err
	}
	if p, err := sqlwatch.ParseReadParams(own); err != nil {
		return ep, nil, err
	} else if err := p.ForDriver(driver); err != nil {
		return ep, nil, err
	}
	return ep, own, nil
}

// readParams are how a SQL server source reads (sqlwatch.ReadParamNames,
// validated by dbEndpoint).
func readParams(own url.Values) sqlwatch.ReadParams {
	p, _ := sqlwatch.ParseReadParams(own)
	return p
}

// checkTZ rejects a tz parameter that names no IANA time zone.
func checkTZ(q url.Values) error {
	if tz := q.Get("tz"); tz != "" {
		if _, err := time.LoadLocation(tz); err != nil {
			return fmt.Errorf("tz=%q is not an IANA time zone name (such as Europe/Berlin)", tz)
		}
	}
	return nil
}
