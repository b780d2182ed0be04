package digest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Table definitions as the registrars ship them (Kamailio 5.x
// utils/kamctl, OpenSIPS 3.x scripts, Asterisk contrib/ast-db-manage),
// reduced to the columns that matter plus their neighbours.
const (
	kamailioDDL = `CREATE TABLE subscriber (
    id INTEGER PRIMARY KEY NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT '' NOT NULL,
    password VARCHAR(64) DEFAULT '' NOT NULL,
    ha1 VARCHAR(128) DEFAULT '' NOT NULL,
    ha1b VARCHAR(128) DEFAULT '' NOT NULL,
    CONSTRAINT subscriber_account_idx UNIQUE (username, domain))`
	opensipsDDL = `CREATE TABLE subscriber (
    id INTEGER PRIMARY KEY NOT NULL,
    username CHAR(64) DEFAULT '' NOT NULL,
    domain CHAR(64) DEFAULT '' NOT NULL,
    password CHAR(25) DEFAULT '' NOT NULL,
    ha1 CHAR(64) DEFAULT '' NOT NULL,
    ha1_sha256 CHAR(64) DEFAULT '' NOT NULL,
    ha1_sha512t256 CHAR(64) DEFAULT '' NOT NULL,
    CONSTRAINT account_idx UNIQUE (username, domain))`
	asteriskDDL = `CREATE TABLE ps_auths (
    id VARCHAR(40) NOT NULL PRIMARY KEY,
    auth_type VARCHAR(16) DEFAULT NULL,
    nonce_lifetime INTEGER DEFAULT NULL,
    md5_cred VARCHAR(40) DEFAULT NULL,
    password VARCHAR(80) DEFAULT NULL,
    realm VARCHAR(40) DEFAULT NULL,
    username VARCHAR(40) DEFAULT NULL)`
)

// lookup is one HA1 question and its expected answer.
type lookup struct {
	name        string
	user, realm string
	alg         Algorithm
	want        string // "" with ok false
}

func (l lookup) ok() bool { return l.want != "" }

var (
	kamailioRows = []string{
		insertSubscriber(1, "alice", "example.com", "alice-pw", true, true),
		insertSubscriber(2, "bob", "example.com", "", true, true), // HA1 only, as with kamctl's STORE_PLAINTEXT_PW=0
		insertSubscriber(3, "alice", "other.com", "other-pw", false, false),
		insertSubscriber(4, "o'brien", "example.com", "q-pw", false, false),
	}
	kamailioLookups = []lookup{
		{"MD5 from the ha1 column", "alice", "example.com", MD5, HA1(MD5, "alice", "example.com", "alice-pw")},
		{"SHA-256 from the password", "alice", "example.com", SHA256, HA1(SHA256, "alice", "example.com", "alice-pw")},
		{"username with domain reads ha1b", "alice@example.com", "example.com", MD5, HA1(MD5, "alice@example.com", "example.com", "alice-pw")},
		{"HA1-only row answers MD5", "bob", "example.com", MD5, HA1(MD5, "bob", "example.com", "bob-pw")},
		{"HA1-only row cannot answer SHA-256", "bob", "example.com", SHA256, ""},
		{"same username in another domain", "alice", "other.com", MD5, HA1(MD5, "alice", "other.com", "other-pw")},
		{"SQL-special characters are data", "o'brien", "example.com", MD5, HA1(MD5, "o'brien", "example.com", "q-pw")},
		{"injection attempt finds nothing", "x' OR '1'='1", "example.com", MD5, ""},
		{"unknown user", "mallory", "example.com", MD5, ""},
		{"username differing in case is another user", "ALICE", "example.com", MD5, ""},
		{"username with trailing blank is another user", "alice ", "example.com", MD5, ""},
		{"unknown domain", "alice", "example.org", MD5, ""},
	}
	opensipsRows = []string{
		`INSERT INTO subscriber (id, username, domain, password, ha1, ha1_sha256) VALUES (1, 'alice', 'example.com', '', '` +
			HA1(MD5, "alice", "example.com", "pw") + `', '` + HA1(SHA256, "alice", "example.com", "pw") + `')`,
	}
	opensipsLookups = []lookup{
		{"MD5 from ha1", "alice", "example.com", MD5, HA1(MD5, "alice", "example.com", "pw")},
		{"SHA-256 from ha1_sha256", "alice", "example.com", SHA256, HA1(SHA256, "alice", "example.com", "pw")},
	}
	asteriskRows = []string{
		`INSERT INTO ps_auths (id, auth_type, username, password, realm) VALUES ('alice', 'userpass', 'alice', 'a-pw', NULL)`,
		`INSERT INTO ps_auths (id, auth_type, username, md5_cred, realm) VALUES ('bob', 'md5', 'bob', '` + HA1(MD5, "bob", "example.com", "b-pw") + `', 'example.com')`,
		`INSERT INTO ps_auths (id, auth_type, username, password, realm) VALUES ('dave1', 'userpass', 'dave', 'd1', '')`,
		`INSERT INTO ps_auths (id, auth_type, username, password, realm) VALUES ('dave2', 'userpass', 'dave', 'd2', NULL)`,
		`INSERT INTO ps_auths (id, auth_type, username, password, realm) VALUES ('erin', 'userpass', 'erin', 'e', 'other.com')`,
		`INSERT INTO ps_auths (id, auth_type, username, password, realm) VALUES ('frank-any', 'userpass', 'frank', 'f-any', NULL)`,
		`INSERT INTO ps_auths (id, auth_type, username, password, realm) VALUES ('frank', 'userpass', 'frank', 'f-exact', 'example.com')`,
	}
	asteriskLookups = []lookup{
		{"userpass with default realm", "alice", "example.com", SHA256, HA1(SHA256, "alice", "example.com", "a-pw")},
		{"md5 auth answers MD5", "bob", "example.com", MD5, HA1(MD5, "bob", "example.com", "b-pw")},
		{"md5 auth cannot answer SHA-256", "bob", "example.com", SHA256, ""},
		{"two default-realm rows are ambiguous", "dave", "example.com", MD5, ""},
		{"another realm only", "erin", "example.com", MD5, ""},
		{"username differing in case", "Alice", "example.com", MD5, ""},
		{"exact realm wins over default", "frank", "example.com", MD5, HA1(MD5, "frank", "example.com", "f-exact")},
	}
)

func insertSubscriber(id int, user, domain, password string, ha1, ha1b bool) string {
	pw := map[string]string{"alice": "alice-pw", "bob": "bob-pw"}[user]
	if pw == "" {
		pw = password
	}
	var h1, h1b string
	if ha1 {
		h1 = HA1(MD5, user, domain, pw)
	}
	if ha1b {
		h1b = HA1(MD5, user+"@"+domain, domain, pw)
	}
	q := func(s string) string { return "'" + sqlEscape(s) + "'" }
	return fmt.Sprintf("INSERT INTO subscriber (id, username, domain, password, ha1, ha1b) VALUES (%d, %s, %s, %s, %s, %s)",
		id, q(user), q(domain), q(password), q(h1), q(h1b))
}

func sqlEscape(s string) string {
	out := ""
	for _, c := range s {
		if c == '\'' {
			out += "''"
			continue
		}
		out += string(c)
	}
	return out
}

func runLookups(t *testing.T, creds Credentials, lookups []lookup) {
	t.Helper()
	for _, l := range lookups {
		t.Run(l.name, func(t *testing.T) {
			got, ok, err := creds.HA1(t.Context(), l.user, l.realm, l.alg)
			if err != nil {
				t.Fatal(err)
			}
			if ok != l.ok() || got != l.want {
				t.Errorf("HA1(%q, %q, %s) = %q, %v; want %q, %v", l.user, l.realm, l.alg, got, ok, l.want, l.ok())
			}
		})
	}
}

// sqliteStore writes a registrar database file and returns its path.
func sqliteStore(t *testing.T, ddl string, rows []string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "registrar.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range append([]string{ddl}, rows...) {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return path
}

func openSource(t *testing.T, src string) Credentials {
	t.Helper()
	creds, closeFn, err := Open(t.Context(), Source(src), testLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeFn() })
	return creds
}

func TestSQLiteStores(t *testing.T) {
	t.Run("kamailio", func(t *testing.T) {
		path := sqliteStore(t, kamailioDDL, kamailioRows)
		runLookups(t, openSource(t, "kamailio+sqlite://"+path), kamailioLookups)
	})
	t.Run("kamailio use_domain=false", func(t *testing.T) {
		path := sqliteStore(t, kamailioDDL, kamailioRows)
		runLookups(t, openSource(t, "kamailio+sqlite://"+path+"?use_domain=false"), []lookup{
			{"alice has rows in two domains: refused", "alice", "example.com", MD5, ""},
			{"bob has one row", "bob", "anything.example", MD5, HA1(MD5, "bob", "example.com", "bob-pw")},
		})
	})
	t.Run("opensips", func(t *testing.T) {
		path := sqliteStore(t, opensipsDDL, opensipsRows)
		runLookups(t, openSource(t, "opensips+sqlite://"+path), opensipsLookups)
	})
	t.Run("asterisk", func(t *testing.T) {
		path := sqliteStore(t, asteriskDDL, asteriskRows)
		runLookups(t, openSource(t, "asterisk+sqlite://"+path), asteriskLookups)
	})
	t.Run("wrong schema fails at open", func(t *testing.T) {
		path := sqliteStore(t, kamailioDDL, nil)
		if _, _, err := Open(t.Context(), Source("opensips+sqlite://"+path), testLog()); err == nil {
			t.Errorf("OpenSIPS schema accepted a Kamailio table (no ha1_sha256)")
		}
	})
	t.Run("read-only", func(t *testing.T) {
		path := sqliteStore(t, kamailioDDL, nil)
		spec, err := parseSource("kamailio+sqlite://" + path)
		if err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open(spec.driver, spec.dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec(`DELETE FROM subscriber`); err == nil {
			t.Errorf("write through the credentials DSN succeeded")
		}
	})
}

// mysqlAdmin connects to the local MariaDB (REGBRIDGE_TEST_MYSQL, a
// mysql://user:pass@host:port/ URL), or skips (fails when CI is set).
func mysqlAdmin(t *testing.T) (*sql.DB, *url.URL) {
	t.Helper()
	raw := os.Getenv("REGBRIDGE_TEST_MYSQL")
	if raw == "" {
		raw = "mysql://root@127.0.0.1:3306/"
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("REGBRIDGE_TEST_MYSQL: %v", err)
	}
	c := mysql.NewConfig()
	c.User = u.User.Username()
	c.Passwd, _ = u.User.Password()
	c.Net, c.Addr, c.Timeout = "tcp", u.Host, 2*time.Second
	db, err := sql.Open("mysql", c.FormatDSN())
	if err == nil {
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		msg := fmt.Sprintf("MariaDB at %s is not reachable (%v); set REGBRIDGE_TEST_MYSQL=mysql://user:pass@host:port/", u.Redacted(), err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { db.Close() })
	return db, u
}

// mysqlStore creates a database of its own holding ddl and rows, dropped
// when the test ends, and returns the source URL for schema.
func mysqlStore(t *testing.T, schema, ddl string, rows []string) string {
	admin, u := mysqlAdmin(t)
	var b [4]byte
	rand.Read(b[:])
	name := "regbridge_auth_" + hex.EncodeToString(b[:])
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP DATABASE " + name) })
	c := mysql.NewConfig()
	c.User = u.User.Username()
	c.Passwd, _ = u.User.Password()
	c.Net, c.Addr, c.DBName = "tcp", u.Host, name
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, stmt := range append([]string{ddl}, rows...) {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	src := *u
	src.Scheme, src.Path = schema+"+mysql", "/"+name
	return src.String()
}

func TestMariaDBStores(t *testing.T) {
	mysqlAdmin(t) // skip early when MariaDB is not there
	t.Run("kamailio", func(t *testing.T) {
		runLookups(t, openSource(t, mysqlStore(t, "kamailio", kamailioDDL, kamailioRows)), kamailioLookups)
	})
	t.Run("opensips", func(t *testing.T) {
		runLookups(t, openSource(t, mysqlStore(t, "opensips", opensipsDDL, opensipsRows)), opensipsLookups)
	})
	t.Run("asterisk", func(t *testing.T) {
		ddl := `CREATE TABLE ps_auths (
    id VARCHAR(40) NOT NULL PRIMARY KEY,
    auth_type ENUM('md5','userpass','google_oauth') DEFAULT NULL,
    nonce_lifetime INTEGER DEFAULT NULL,
    md5_cred VARCHAR(40) DEFAULT NULL,
    password VARCHAR(80) DEFAULT NULL,
    realm VARCHAR(40) DEFAULT NULL,
    username VARCHAR(40) DEFAULT NULL)`
		runLookups(t, openSource(t, mysqlStore(t, "asterisk", ddl, asteriskRows)), asteriskLookups)
	})
	t.Run("store outage is an error, not an unknown user", func(t *testing.T) {
		src := mysqlStore(t, "kamailio", kamailioDDL, kamailioRows)
		creds, closeFn, err := Open(t.Context(), Source(src), testLog())
		if err != nil {
			t.Fatal(err)
		}
		closeFn() // the pool is gone: every lookup fails
		if _, ok, err := creds.HA1(t.Context(), "alice", "example.com", MD5); err == nil || ok {
			t.Errorf("lookup on a closed store = ok %v, err %v; want an error", ok, err)
		}
	})
}

func TestParseSource(t *testing.T) {
	tests := []struct {
		src    string
		driver string
		dsn    string
		schema Schema
		err    bool
	}{
		{src: "file:///etc/regbridge/credentials", dsn: "/etc/regbridge/credentials"},
		{src: "file:rel/creds", dsn: "rel/creds"},
		{src: "kamailio+sqlite:///var/lib/kamailio/kamailio.db", driver: "sqlite", schema: Kamailio,
			dsn: "file:/var/lib/kamailio/kamailio.db?mode=ro&_pragma=busy_timeout(1000)"},
		{src: "kamailio+mysql://kam:p%40ss@db.example.com/kamailio", driver: "mysql", schema: Kamailio,
			dsn: "kam:p@ss@tcp(db.example.com:3306)/kamailio?readTimeout=5s&timeout=5s"},
		{src: "asterisk+mysql://ast@localhost/asterisk?socket=/run/mysqld/mysqld.sock&table=auths", driver: "mysql", schema: Asterisk,
			dsn: "ast@unix(/run/mysqld/mysqld.sock)/asterisk?readTimeout=5s&timeout=5s"},
		{src: "kamailio+mysql://kam@db/kamailio?tls=true", driver: "mysql", schema: Kamailio,
			dsn: "kam@tcp(db:3306)/kamailio?readTimeout=5s&timeout=5s&tls=true"},
		{src: "opensips+postgres://os:pw@db.example.com/opensips?sslmode=require&table=sub", driver: "pgx", schema: OpenSIPS,
			dsn: "postgres://os:pw@db.example.com:5432/opensips?connect_timeout=10&sslmode=require"},
		{src: "kamailio+postgres://kam@db/kamailio?tls=true", err: true}, // a MySQL parameter
		{src: "kamailio+postgres://kam@db", err: true},                   // no database
		{src: "kamailio+mysql://kam@db/", err: true},                     // no database
		{src: "kamailio+mysql://kam@db/k?charset=latin1", err: true},     // unknown parameter
		{src: "kamailio+sqlite:///x.db?table=sub;drop", err: true},
		{src: "kamailio+sqlite:///x.db?use_domain=maybe", err: true},
		{src: "freeswitch+sqlite:///x.db", err: true},
		{src: "kamailio+oracle://x", err: true},
		{src: "file://", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			s, err := parseSource(tt.src)
			if tt.err {
				if err == nil {
					t.Fatalf("parsed as %+v, want an error", s)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.driver != tt.driver || s.dsn != tt.dsn || s.schema != tt.schema {
				t.Errorf("got driver %q dsn %q schema %q; want %q %q %q", s.driver, s.dsn, s.schema, tt.driver, tt.dsn, tt.schema)
			}
		})
	}
}
