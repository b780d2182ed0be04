package digest

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "modernc.org/sqlite"             // registers "sqlite"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// sourceSpec is a parsed REGBRIDGE_AUTH.
type sourceSpec struct {
	schema Schema // "" for a file
	driver string // sqlite, mysql, pgx
	dsn    string // driver DSN, or the file path
	table  string
	ignore bool // use_domain=false
}

// Source URL forms (REGBRIDGE_AUTH):
//
//	off
//	file:///etc/regbridge/credentials  (or file:relative/path)
//	<schema>+sqlite:///var/lib/kamailio/kamailio.db
//	<schema>+mysql://user:pass@host:3306/kamailio   (?socket=/run/mysqld/mysqld.sock, ?tls=true)
//	<schema>+postgres://user:pass@host:5432/kamailio (?sslmode=..., the other libpq TLS parameters)
//
// with <schema> kamailio, opensips or asterisk, and for the SQL forms the
// optional parameters table=NAME and use_domain=false. The URLs are read
// by the same code as the source URLs (source/sqlwatch), so a server
// takes the same driver parameters here as in REGBRIDGE_SOURCE.
func parseSource(raw string) (sourceSpec, error) {
	var s sourceSpec
	u, err := url.Parse(raw)
	if err != nil {
		return s, fmt.Errorf("not a URL (%s)", redactSource(raw))
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme == "file" {
		s.dsn = sqlwatch.FilePath(u)
		if s.dsn == "" {
			return s, fmt.Errorf("file URL names no file (file:///abs/path or file:rel/path)")
		}
		return s, nil
	}
	schema, store, ok := strings.Cut(scheme, "+")
	switch Schema(schema) {
	case Kamailio, OpenSIPS, Asterisk:
		s.schema = Schema(schema)
	default:
		if !ok {
			return s, fmt.Errorf("%w %q; want off, file://, or kamailio|opensips|asterisk + sqlite|mysql|postgres", errUnsupported, u.Scheme)
		}
		return s, fmt.Errorf("%w: schema %q (kamailio, opensips, asterisk)", errUnsupported, schema)
	}
	var q url.Values
	switch store {
	case "sqlite":
		var path string
		if path, q, err = sqlwatch.ParseFileURL(u, "table", "use_domain"); err != nil {
			return s, err
		}
		s.driver, s.dsn = "sqlite", sqlwatch.FileDSN(path, "ro")+"&_pragma=busy_timeout(1000)"
	case "mysql", "mariadb":
		s.driver = "mysql"
		if s.dsn, q, err = mysqlDSN(u); err != nil {
			return s, err
		}
	case "postgres", "postgresql":
		var ep sqlwatch.Endpoint
		if ep, q, err = sqlwatch.ParseURL(u, sqlwatch.DriverPostgres, "table", "use_domain"); err != nil {
			return s, err
		}
		s.driver, s.dsn = "pgx", ep.PostgresURL()
	default:
		return s, fmt.Errorf("%w: store %q (sqlite, mysql, postgres)", errUnsupported, store)
	}
	s.table = q.Get("table")
	if s.table != "" && !sqlwatch.ValidIdent(s.table) {
		return s, fmt.Errorf("table=%q is not an identifier", s.table)
	}
	if v := q.Get("use_domain"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return s, fmt.Errorf("use_domain=%q is not a boolean", v)
		}
		s.ignore = !b
	}
	return s, nil
}

// mysqlDSN turns mysql://user:pass@host:port/db?socket=...&tls=... into
// go-sql-driver's DSN, with short timeouts: a lookup answers a SUBSCRIBE.
func mysqlDSN(u *url.URL) (string, url.Values, error) {
	if u.Host == "" && u.Query().Get("socket") != "" {
		v := *u
		v.Host = "localhost" // the socket replaces it
		u = &v
	}
	ep, q, err := sqlwatch.ParseURL(u, sqlwatch.DriverMySQL, "table", "use_domain", "socket")
	if err != nil {
		return "", nil, err
	}
	c, err := ep.MySQLConfig()
	if err != nil {
		return "", nil, err
	}
	c.Timeout, c.ReadTimeout = 5*time.Second, 5*time.Second
	if sock := q.Get("socket"); sock != "" {
		c.Net, c.Addr = "unix", sock
	}
	return c.FormatDSN(), q, nil
}

// redactSource hides a password in a source URL.
func redactSource(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if strings.ContainsAny(raw, "@") {
			return "(unparsable URL)"
		}
		return raw
	}
	return u.Redacted()
}

// Open builds the credential store src names and checks that it can be
// read. close releases it. For Off it returns nil Credentials.
func Open(ctx context.Context, src Source, log *slog.Logger) (creds Credentials, close func() error, err error) {
	noop := func() error { return nil }
	if src == "" || src == Off {
		return nil, noop, nil
	}
	spec, err := parseSource(string(src))
	if err != nil {
		return nil, noop, fmt.Errorf("REGBRIDGE_AUTH: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "auth", "source", src)
	if spec.schema == "" {
		f, err := OpenFile(spec.dsn, log)
		if err != nil {
			return nil, noop, fmt.Errorf("REGBRIDGE_AUTH: %w", err)
		}
		return f, noop, nil
	}
	db, err := sql.Open(spec.driver, spec.dsn)
	if err != nil {
		return nil, noop, fmt.Errorf("REGBRIDGE_AUTH: opening %s: %w", spec.driver, err)
	}
	db.SetMaxOpenConns(4) // lookups are short; never crowd the registrar
	db.SetConnMaxIdleTime(time.Minute)
	s, err := NewSQL(db, SQLConfig{Schema: spec.schema, Table: spec.table, IgnoreDomain: spec.ignore, Dollar: spec.driver == "pgx"})
	if err == nil {
		err = s.Probe(ctx)
	}
	if err != nil {
		db.Close()
		return nil, noop, fmt.Errorf("REGBRIDGE_AUTH: %w", err)
	}
	return s, db.Close, nil
}
