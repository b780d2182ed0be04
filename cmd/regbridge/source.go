package main

import (
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/kamailio"
)

// supportedSources lists the REGBRIDGE_SOURCE schemes, for error messages.
var supportedSources = []string{"kamailio+sqlite"}

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
	case "kamailio+sqlite":
		switch {
		case u.Opaque != "":
			s.path = u.Opaque
		case u.Host != "":
			s.path = u.Host + u.Path // kamailio+sqlite://rel.db: relative too
		default:
			s.path = u.Path
		}
		if s.path == "" {
			return nil, fmt.Errorf("%q names no file (kamailio+sqlite:///abs/path.db or kamailio+sqlite:rel/path.db)", raw)
		}
		for k := range s.query {
			switch k {
			case "table", "create":
			default:
				return nil, fmt.Errorf("unknown parameter %q for %s (table, create)", k, s.scheme)
			}
		}
		if v := s.query.Get("create"); v != "" {
			if _, err := strconv.ParseBool(v); err != nil {
				return nil, fmt.Errorf("create=%q is not a boolean", v)
			}
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
	}
	return nil, fmt.Errorf("REGBRIDGE_SOURCE: unsupported scheme %q", s.scheme)
}
