package opensips

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// registrarTZ is the zone the tests' "OpenSIPS" runs in (last_modified).
const registrarTZ = "Europe/Berlin"

// execer runs one statement with '?' placeholders.
type execer interface {
	Exec(t testing.TB, query string, args ...any) int64
}

// sqliteDB is a read-write connection to a test file, standing in for
// OpenSIPS's db_sqlite (one connection, kept open).
type sqliteDB struct{ db *sql.DB }

func (s sqliteDB) Exec(t testing.TB, query string, args ...any) int64 {
	t.Helper()
	res, err := s.db.Exec(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	n, _ := res.RowsAffected()
	return n
}

func openSQLite(t testing.TB, path string) sqliteDB {
	t.Helper()
	db, err := sql.Open(sqlwatch.SQLiteDriver, sqlwatch.FileDSN(path, "rwc")+"&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	t.Cleanup(func() { db.Close() })
	return sqliteDB{db}
}

// createTable runs OpenSIPS's DDL (Schema) for backend.
func createTable(t testing.TB, db execer, backend, table string) {
	t.Helper()
	stmts, err := Schema(backend, table)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range stmts {
		db.Exec(t, stmt)
	}
}

// contactID packs ids the way OpenSIPS does (hash slot, record label,
// contact label) so keys are realistic 64-bit values.
func contactID(n int) int64 { return int64(n%4096)<<46 | int64(n)<<14 | int64(n%16384) }

// osWriter writes the location table as OpenSIPS usrloc does: contact_id
// given explicitly, expires as an epoch, last_modified as local time text.
type osWriter struct {
	db    execer
	table string
	loc   *time.Location
}

type osBinding struct {
	id                        int64
	user, contact, callid, ua string
	domain                    any // NULL when nil
	expires                   time.Time
	cseq                      uint32
}

func epoch(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func (w osWriter) now() string { return time.Now().In(w.loc).Format(time.DateTime) }

func (w osWriter) insert(t testing.TB, b osBinding) {
	t.Helper()
	w.db.Exec(t, fmt.Sprintf(`INSERT INTO %s (contact_id, username, domain, contact, received, path, expires, q, callid, cseq,
		last_modified, flags, cflags, user_agent, socket, methods, sip_instance, kv_store, attr)
		VALUES (?, ?, ?, ?, NULL, NULL, ?, 1, ?, ?, ?, 0, NULL, ?, 'udp:127.0.0.1:5060', 8191, NULL, NULL, NULL)`, w.table),
		b.id, b.user, b.domain, b.contact, epoch(b.expires), b.callid, int64(b.cseq), w.now(), b.ua)
}

// update is a refresh: UPDATE ... WHERE contact_id (the contact URI is
// not rewritten).
func (w osWriter) update(t testing.TB, b osBinding) {
	t.Helper()
	n := w.db.Exec(t, fmt.Sprintf(`UPDATE %s SET expires = ?, q = 1, cseq = ?, flags = 0, cflags = NULL, user_agent = ?,
		received = NULL, path = NULL, socket = 'udp:127.0.0.1:5060', methods = 8191, last_modified = ?, kv_store = NULL,
		attr = NULL, callid = ? WHERE contact_id = ?`, w.table),
		epoch(b.expires), int64(b.cseq), b.ua, w.now(), b.callid, b.id)
	if n != 1 {
		t.Fatalf("update %d: %d rows", b.id, n)
	}
}

func (w osWriter) delete(t testing.TB, id int64) {
	t.Helper()
	w.db.Exec(t, fmt.Sprintf("DELETE FROM %s WHERE contact_id = ?", w.table), id)
}

// store is one backend prepared for a test.
type store struct {
	backend string // "mysql", "postgres" or "sqlite": the DDL file's prefix
	db      execer
	addr    string // server address; empty for SQLite
	path    string // SQLite file; empty for servers
	// newSource makes a watcher of table; addr overrides the server
	// address (a proxy in front of it).
	newSource func(t *testing.T, table, addr string) snapshotSource
}

// snapshotSource is what both watcher types offer.
type snapshotSource interface {
	source.Source
	Snapshot(ctx context.Context) ([]source.Contact, error)
	Stats() source.Stats
}

// backends lists the stores this package supports, for table-driven tests.
var backends = []struct {
	name string
	open func(t *testing.T) *store
}{
	{"mysql", func(t *testing.T) *store {
		db := sqltest.MySQL(t)
		return &store{backend: "mysql", db: db, addr: db.Endpoint.Addr, newSource: serverSource(db, NewMySQL)}
	}},
	{"postgres", func(t *testing.T) *store {
		db := sqltest.Postgres(t)
		return &store{backend: "postgres", db: db, addr: db.Endpoint.Addr, newSource: serverSource(db, NewPostgres)}
	}},
	{"sqlite", func(t *testing.T) *store {
		path := filepath.Join(t.TempDir(), "opensips.db")
		db := openSQLite(t, path)
		db.Exec(t, "PRAGMA journal_mode=WAL")
		return &store{backend: "sqlite", db: db, path: path, newSource: func(t *testing.T, table, _ string) snapshotSource {
			log, _ := newLogger(t)
			w, err := NewSQLite(SQLiteConfig{Path: path, Table: table, Domain: "example.com", TZ: registrarTZ,
				PollInterval: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, log)
			if err != nil {
				t.Fatal(err)
			}
			return w
		}}
	}},
}

func serverSource(db *sqltest.DB, newW func(DBConfig, *slog.Logger) (*sqlwatch.Watcher, error)) func(*testing.T, string, string) snapshotSource {
	return func(t *testing.T, table, addr string) snapshotSource {
		if addr == "" {
			addr = db.Endpoint.Addr
		}
		log, _ := newLogger(t)
		w, err := newW(DBConfig{Endpoint: db.Via(addr), Table: table, Domain: "example.com", TZ: registrarTZ,
			PollInterval: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}, log)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}
