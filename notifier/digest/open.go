package digest

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	_ "modernc.org/sqlite" // registers "sqlite"
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
//
// with <schema> kamailio, opensips or asterisk, and for the SQL forms the
// optional parameters table=NAME and use_domain=false.
func parseSource(raw string) (sourceSpec, error) {
	var s sourceSpec
	u, err := url.Parse(raw)
	if err != nil {
		return s, fmt.Errorf("not a URL (%s)", redactSource(raw))
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme == "file" {
		s.dsn = filePath(u)
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
			return s, fmt.Errorf("%w %q; want off, file://, or kamailio|opensips|asterisk + sqlite|mysql", errUnsupported, u.Scheme)
		}
		return s, fmt.Errorf("%w: schema %q (kamailio, opensips, asterisk)", errUnsupported, schema)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return s, fmt.Errorf("bad query parameters: %w", err)
	}
	s.table = q.Get("table")
	if s.table != "" && !validIdent(s.table) {
		return s, fmt.Errorf("table=%q is not an identifier", s.table)
	}
	if v := q.Get("use_domain"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return s, fmt.Errorf("use_domain=%q is not a boolean", v)
		}
		s.ignore = !b
	}
	q.Del("table")
	q.Del("use_domain")
	switch store {
	case "sqlite":
		path := filePath(u)
		if path == "" || len(q) > 0 {
			return s, fmt.Errorf("%s names no file or has unknown parameters (%s+sqlite:///abs/path.db?table=...&use_domain=...)", scheme, schema)
		}
		s.driver, s.dsn = "sqlite", sqliteDSN(path)
	case "mysql", "mariadb":
		s.driver = "mysql"
		if s.dsn, err = mysqlDSN(u, q); err != nil {
			return s, err
		}
	case "postgres", "postgresql":
		// pgx's database/sql driver (pgx/v5/stdlib) needs
		// github.com/jackc/puddle/v2, which go.sum does not hold yet; SQL
		// already speaks $n placeholders (SQLConfig.Dollar) for the day it
		// does.
		return s, fmt.Errorf("%w: store %q is not built in yet (sqlite, mysql)", errUnsupported, store)
	default:
		return s, fmt.Errorf("%w: store %q (sqlite, mysql)", errUnsupported, store)
	}
	return s, nil
}

func filePath(u *url.URL) string {
	switch {
	case u.Opaque != "":
		return u.Opaque
	case u.Host != "":
		return u.Host + u.Path // scheme://rel.db: relative too
	}
	return u.Path
}

// sqliteDSN opens the file read-only: regbridge never writes the
// registrar's database, and a read-only connection cannot.
func sqliteDSN(path string) string {
	p := filepath.ToSlash(filepath.Clean(path))
	var b strings.Builder
	b.WriteString("file:")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '%', '?', '#':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString("?mode=ro&_pragma=busy_timeout(1000)")
	return b.String()
}

// mysqlDSN turns mysql://user:pass@host:port/db?socket=...&tls=... into
// go-sql-driver's DSN.
func mysqlDSN(u *url.URL, q url.Values) (string, error) {
	c := mysql.NewConfig()
	c.User = u.User.Username()
	c.Passwd, _ = u.User.Password()
	c.DBName = strings.TrimPrefix(u.Path, "/")
	c.Timeout, c.ReadTimeout = 5*time.Second, 5*time.Second
	if sock := q.Get("socket"); sock != "" {
		c.Net, c.Addr = "unix", sock
	} else {
		host, port := u.Hostname(), u.Port()
		if host == "" {
			return "", fmt.Errorf("mysql URL names no host (or ?socket=)")
		}
		if port == "" {
			port = "3306"
		}
		c.Net, c.Addr = "tcp", net.JoinHostPort(host, port)
	}
	if v := q.Get("tls"); v != "" {
		c.TLSConfig = v
	}
	q.Del("socket")
	q.Del("tls")
	if len(q) > 0 || c.DBName == "" {
		return "", fmt.Errorf("mysql URL needs a database name and takes only table, use_domain, socket and tls parameters")
	}
	return c.FormatDSN(), nil
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
