package kamailio

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// t0 is a fixed registration time for rows made by tests.
var t0 = time.Date(2026, 11, 22, 10, 30, 15, 0, time.UTC)

// fakeSink is a Sink built from a function.
type fakeSink struct {
	apply func(ctx context.Context, b source.Batch) error
}

func (f fakeSink) Apply(ctx context.Context, b source.Batch) error { return f.apply(ctx, b) }

// recorder keeps the batches the watcher sends (sourcetest.Recorder);
// sink is it as the watcher's Sink.
type recorder struct{ sourcetest.Recorder }

func (r *recorder) sink() source.Sink { return &r.Recorder }

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// byKey indexes a batch's contacts.
func byKey(b source.Batch) map[string]source.Contact {
	m := make(map[string]source.Contact, len(b.Contacts))
	for _, c := range b.Contacts {
		m[c.Key] = c
	}
	return m
}

func keys(b source.Batch) []string {
	return slices.Sorted(maps.Keys(byKey(b)))
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

func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

func newLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	h := slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", lb.String())
		}
	})
	return slog.New(h), lb
}

// newDBFile makes a database file with Kamailio's schema, in WAL mode
// unless journal says otherwise ("delete" for Kamailio's default).
func newDBFile(t *testing.T, journal string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kamailio.db")
	created, err := createDatabase(t.Context(), path, DefaultTable)
	if err != nil || !created {
		t.Fatalf("createDatabase: created=%v err=%v", created, err)
	}
	if journal != "wal" {
		db := openWriter(t, path)
		var mode string
		if err := db.QueryRow("PRAGMA journal_mode=" + journal).Scan(&mode); err != nil || mode != journal {
			t.Fatalf("journal_mode=%s: got %q, %v", journal, mode, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// openWriter opens path read-write the way Kamailio's db_sqlite does (one
// connection), with a busy timeout so that tests do not flake on our reads
// in rollback-journal mode.
func openWriter(t *testing.T, path string) *sql.DB { return openWriterTB(t, path) }

func openWriterTB(t testing.TB, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open(sqlwatch.SQLiteDriver, sqlwatch.FileDSN(path, "rwc")+"&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// kamRow is a binding as usrloc writes it.
type kamRow struct {
	ruid, user, contact, callid string
	domain, instance, received  any // NULL when nil
	expires                     time.Time
	cseq                        int
	q                           float64
	regID                       int
}

func (r kamRow) withDefaults() kamRow {
	if r.callid == "" {
		r.callid = "call-" + r.ruid
	}
	if r.cseq == 0 {
		r.cseq = 1
	}
	if r.q == 0 {
		r.q = -1
	}
	if r.expires.IsZero() {
		r.expires = t0.Add(time.Hour)
	}
	return r
}

// insertRow writes r as usrloc's db_insert does: every non-NULL column,
// times as REAL Julian days.
func insertRow(t *testing.T, db *sql.DB, r kamRow) {
	t.Helper()
	r = r.withDefaults()
	_, err := db.Exec(`INSERT INTO location (ruid, username, domain, contact, received, path, expires, q, callid, cseq,
		last_modified, flags, cflags, user_agent, socket, methods, instance, reg_id, server_id, connection_id, keepalive, partition)
		VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, 0, 0, 'test-ua', 'udp:127.0.0.1:5060', 8191, ?, ?, 0, -1, 0, 0)`,
		r.ruid, r.user, r.domain, r.contact, r.received, TimeToJulian(r.expires), r.q, r.callid, r.cseq,
		TimeToJulian(t0), r.instance, r.regID)
	if err != nil {
		t.Fatalf("insert %s: %v", r.ruid, err)
	}
}

// refreshRow updates a binding in place as usrloc's db_update does.
func refreshRow(t *testing.T, db *sql.DB, ruid string, expires time.Time, cseq int) {
	t.Helper()
	res, err := db.Exec(`UPDATE location SET expires = ?, cseq = ?, last_modified = ? WHERE ruid = ?`,
		TimeToJulian(expires), cseq, TimeToJulian(time.Now()), ruid)
	if err != nil {
		t.Fatalf("refresh %s: %v", ruid, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("refresh %s: %d rows", ruid, n)
	}
}

func deleteRow(t *testing.T, db *sql.DB, ruid string) {
	t.Helper()
	if _, err := db.Exec(`DELETE FROM location WHERE ruid = ?`, ruid); err != nil {
		t.Fatalf("delete %s: %v", ruid, err)
	}
}

// startRun runs w in the background; the returned stop cancels it and
// checks that Run returned nil.
func startRun(t *testing.T, w *SQLite, sink source.Sink) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, sink) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil after cancel", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func newWatcher(t *testing.T, cfg SQLiteConfig, log *slog.Logger) *SQLite {
	t.Helper()
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 10 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 200 * time.Millisecond
	}
	w, err := NewSQLite(cfg, log)
	if err != nil {
		t.Fatalf("NewSQLite: %v", err)
	}
	return w
}

// readOnce runs one snapshot outside Run.
func readOnce(t testing.TB, w *SQLite) []source.Contact {
	t.Helper()
	got, err := w.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// rawRow is one location row as a driver may return it, in column order.
type rawRow [numCols]any

// decodeRow decodes r as the SQLite watcher does.
func decodeRow(r *rawRow, domain string, c *source.Contact) error {
	return decodeRowAs(r, domain, nil, nil, c)
}

// decodeRowAs decodes r with a server layout when types is set (column
// type names as a server reports them), else as SQLite.
func decodeRowAs(r *rawRow, domain string, loc *time.Location, types []string, c *source.Contact) error {
	row := make([]sqlwatch.Value, numCols)
	for i := range r {
		if err := row[i].Scan(r[i]); err != nil {
			return err
		}
	}
	if loc == nil {
		loc = time.UTC
	}
	l := newLayout(DefaultTable, domain, loc, types != nil)
	if err := l.Bind(types); err != nil {
		return err
	}
	return l.Decode(row, c)
}

// storedTime decodes a db_sqlite time value as the SQLite watcher does.
func storedTime(v any) (time.Time, bool) {
	var x sqlwatch.Value
	if err := x.Scan(v); err != nil {
		return time.Time{}, false
	}
	return decodeTime(&x, timeSQLite, time.UTC)
}

func describe(c source.Contact) string { return fmt.Sprintf("%+v", c) }

func mustExec(t *testing.T, db *sql.DB, query string) {
	t.Helper()
	if _, err := db.Exec(query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
