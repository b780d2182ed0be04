package main

// The contact store side: rows shaped as Kamailio's usrloc writes them, and
// the stores regload can drive, named by a URL in --store.

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/redis/go-redis/v9"
)

// row is one binding regload owns: AOR number a has exactly one, whose
// cseq carries the number of the last change written to it (0 before any).
type row struct {
	ruid, user, domain, contact, callid string
	cseq                                uint32
	expires, modified                   time.Time
}

// bindingLifetime is the expiry regload writes: far enough that no binding
// expires during a run (an expiry would be a second event per change).
const bindingLifetime = time.Hour

// newRow returns the initial row of AOR number a for run.
func newRow(run, domain string, a int, now time.Time) row {
	n := strconv.Itoa(a)
	return row{
		ruid:     "uloc-rl" + run + "-" + n,
		user:     aorUser(run, a),
		domain:   domain,
		contact:  "sip:" + aorUser(run, a) + "@192.0.2.1:5060",
		callid:   "regload-" + run + "-" + n,
		expires:  now.Add(bindingLifetime).Truncate(time.Second),
		modified: now.Truncate(time.Second),
	}
}

// aorUser is the user part of AOR number a.
func aorUser(run string, a int) string { return "rl" + run + "u" + strconv.Itoa(a) }

// store is a contact store regload writes to as a registrar would.
type store interface {
	// prepare creates the schema when it is missing and adds rows.
	prepare(ctx context.Context, rows []row) error
	// refresh writes re-REGISTERs of rows (new cseq, expires and
	// last_modified): one autocommitted statement for one row, as usrloc
	// does, one transaction for several. Writer w (0 to writers-1) uses
	// its own connection. It returns once the store acknowledged the
	// commit.
	refresh(ctx context.Context, w int, rows []row) error
	// cleanup removes rows.
	cleanup(ctx context.Context, rows []row) error
	close() error
}

// storeSpec is a parsed --store value.
type storeSpec struct {
	kind  string // sqlite, mysql, postgres, redis
	path  string // sqlite file
	dsn   string // driver DSN or URL
	table string
	host  string // network host, for the loopback check ("" for files)
	port  uint16 // TCP port of a store server (0: a file or a Unix socket)
}

// parseStore reads --store: sqlite:PATH, mysql://DSN (go-sql-driver form,
// user:pass@tcp(host:port)/db, or URL form user:pass@host:port/db),
// postgres://URL or redis://URL. regbridge's own source URLs
// (kamailio+sqlite:///path?table=..., kamailio+redis://host/0?tz=UTC, ...)
// are accepted as they are: the kamailio+ prefix goes, table= is honoured
// and the parameters only regbridge understands are dropped.
func parseStore(v, table string) (storeSpec, error) {
	s := storeSpec{table: table}
	scheme, rest, ok := strings.Cut(strings.TrimPrefix(v, "kamailio+"), ":")
	if !ok {
		return s, fmt.Errorf("--store %q: want sqlite:PATH, mysql://DSN, postgres://URL or redis://URL", v)
	}
	rest, rawQuery, _ := strings.Cut(rest, "?")
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return s, fmt.Errorf("--store %q: %w", v, err)
	}
	if s.table == "" {
		s.table = query.Get("table")
	}
	// keep returns the query without the parameters not in names.
	keep := func(names ...string) string {
		q := url.Values{}
		for _, n := range names {
			if vs, ok := query[n]; ok {
				q[n] = vs
			}
		}
		if len(q) == 0 {
			return ""
		}
		return "?" + q.Encode()
	}
	switch scheme {
	case "sqlite":
		s.kind = "sqlite"
		// sqlite:///abs/x.db and sqlite://x.db as regbridge reads them.
		s.path = strings.TrimPrefix(rest, "//")
		if s.path == "" {
			return s, fmt.Errorf("--store %q: no file", v)
		}
	case "mysql":
		s.kind = "mysql"
		cfg, err := mysqlConfig(strings.TrimPrefix(rest, "//"), query)
		if err != nil {
			return s, fmt.Errorf("--store: %w", err)
		}
		s.dsn = cfg.FormatDSN()
		if cfg.Net == "unix" {
			s.host = "localhost"
		} else {
			s.host, s.port = splitAddr(cfg.Addr, 3306)
		}
	case "postgres", "postgresql":
		s.kind = "postgres"
		s.dsn = "postgres:" + rest + keep("sslmode", "sslcert", "sslkey", "sslrootcert", "sslpassword",
			"connect_timeout", "application_name", "host", "port", "target_session_attrs", "options")
		u, err := url.Parse(s.dsn)
		if err != nil {
			return s, fmt.Errorf("--store: %w", err)
		}
		s.host, s.port = splitAddr(u.Host, 5432)
		if s.host == "" || strings.HasPrefix(u.Query().Get("host"), "/") {
			s.host, s.port = "localhost", 0 // a Unix socket
		}
	case "redis", "rediss":
		s.kind = "redis"
		s.dsn = scheme + ":" + rest + keep("protocol", "client_name")
		opt, err := redis.ParseURL(s.dsn)
		if err != nil {
			return s, fmt.Errorf("--store: %w", err)
		}
		s.host, s.port = splitAddr(opt.Addr, 6379)
	default:
		return s, fmt.Errorf("--store %q: unknown scheme %q (sqlite, mysql, postgres, redis)", v, scheme)
	}
	if s.table == "" {
		s.table = "location"
	}
	// db_redis table names may carry a version prefix (v2:location).
	name := s.table
	if s.kind == "redis" {
		_, name, _ = strings.Cut(name, ":")
		if name == "" {
			name = s.table
		}
	}
	if !validIdent(name) {
		return s, fmt.Errorf("--table %q: not a plain identifier", s.table)
	}
	return s, nil
}

// splitAddr splits host[:port], with def when the port is missing.
func splitAddr(addr string, def uint16) (string, uint16) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return strings.Trim(addr, "[]"), def
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return host, 0
	}
	return host, uint16(n)
}

// mysqlConfig reads a go-sql-driver DSN, or a URL-style
// user:pass@host:port/db as regbridge's sources take it.
func mysqlConfig(rest string, query url.Values) (*mysql.Config, error) {
	if strings.Contains(rest, "(") || strings.HasPrefix(rest, "/") {
		cfg, err := mysql.ParseDSN(rest)
		if err != nil {
			return nil, err
		}
		return cfg, nil
	}
	u, err := url.Parse("mysql://" + rest)
	if err != nil {
		return nil, err
	}
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	cfg.Addr = u.Host
	if u.Port() == "" {
		cfg.Addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	if t := query.Get("tls"); t != "" {
		cfg.TLSConfig = t
	}
	return cfg, nil
}

// validIdent accepts the table names Kamailio itself would use.
func validIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i, c := range s {
		letter := c == '_' || (c|0x20 >= 'a' && c|0x20 <= 'z')
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// openStore connects to the store named by s.
func openStore(ctx context.Context, s storeSpec, writers int, sqliteSync string) (store, error) {
	switch s.kind {
	case "redis":
		return openRedis(ctx, s, writers)
	default:
		return openSQL(ctx, s, writers, sqliteSync)
	}
}
