package sqlwatch_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// These tests drive the watcher's change capture (cdc=trigger,
// cdc=logical) and incremental reads directly on the real servers, with a
// layout of their own: no registrar's table is involved.

// regLayout reads reg (k, uri, exp, m): a key, a contact URI, an epoch
// expiry and a modification time the writer sets on every write.
type regLayout struct{}

func (regLayout) Table() sqlwatch.Table {
	return sqlwatch.Table{Name: "reg", Columns: []string{"k", "uri", "exp", "m"}, Key: 0,
		Watch: []string{"k", "uri", "exp", "m"}, LogKey: []int{0}, Modified: "m"}
}

func (regLayout) Bind([]string) error { return nil }

func (regLayout) Decode(row []sqlwatch.Value, c *source.Contact) error {
	sec, ok := row[2].Int64()
	if len(row[0].Bytes) == 0 || !source.ValidURI(row[1].Bytes) || !ok {
		return errors.New("bad row")
	}
	c.Key, c.URI, c.AOR = row[0].String(""), row[1].String(""), "sip:reg@example.com"
	c.Expires = time.Unix(sec, 0)
	return nil
}

// captureServers are the servers the tests run on, with reg's DDL.
var captureServers = []struct {
	name string
	open func(testing.TB) *sqltest.DB
	ddl  string
}{
	{sqlwatch.DriverMySQL, sqltest.MySQL, "CREATE TABLE reg (id INT AUTO_INCREMENT PRIMARY KEY, k VARCHAR(64) NOT NULL UNIQUE, uri VARCHAR(255) NOT NULL, exp BIGINT NOT NULL, m DATETIME NOT NULL)"},
	{sqlwatch.DriverPostgres, sqltest.Postgres, "CREATE TABLE reg (id SERIAL PRIMARY KEY, k VARCHAR(64) NOT NULL UNIQUE, uri VARCHAR(255) NOT NULL, exp BIGINT NOT NULL, m TIMESTAMP WITHOUT TIME ZONE NOT NULL)"},
}

func contactOf(b source.Batch, key string) (source.Contact, bool) {
	i := slices.IndexFunc(b.Contacts, func(c source.Contact) bool { return c.Key == key })
	if i < 0 {
		return source.Contact{}, false
	}
	return b.Contacts[i], true
}

func has(key string) func(source.Batch) bool {
	return func(b source.Batch) bool { _, ok := contactOf(b, key); return ok }
}

func deletes(key string) func(source.Batch) bool {
	return func(b source.Batch) bool { return !b.Full && slices.Contains(b.Deleted, key) }
}

// captureFixture is one server database with reg, a watcher on it and
// what it sent.
type captureFixture struct {
	db  *sqltest.DB
	w   *sqlwatch.Watcher
	rec *sourcetest.Recorder
}

func newCaptureFixture(t *testing.T, open func(testing.TB) *sqltest.DB, ddl string, cfg sqlwatch.ServerConfig) *captureFixture {
	t.Helper()
	f := &captureFixture{db: open(t), rec: &sourcetest.Recorder{}}
	f.db.Exec(t, ddl)
	cfg.Driver, cfg.Endpoint = f.db.Driver, f.db.Endpoint
	d, err := cfg.Dialect()
	if err != nil {
		t.Fatal(err)
	}
	wc := cfg.Watch()
	wc.MaxBackoff = 200 * time.Millisecond
	if f.w, err = sqlwatch.New(wc, d, regLayout{}, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	return f
}

// run starts the watcher until the test ends and waits for its first
// Full batch.
func (f *captureFixture) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.w.Run(ctx, f.rec) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v after cancel, want nil", err)
		}
	})
	f.rec.WaitFor(t, 0, "first Full batch", func(b source.Batch) bool { return b.Full })
}

func (f *captureFixture) write(t *testing.T, key, uri string, modified time.Time) {
	t.Helper()
	m := modified.UTC().Format(time.DateTime)
	if n := f.db.Exec(t, "UPDATE reg SET uri = ?, exp = ?, m = ? WHERE k = ?", uri, int64(2e9), m, key); n == 0 {
		f.db.Exec(t, "INSERT INTO reg (k, uri, exp, m) VALUES (?, ?, ?, ?)", key, uri, int64(2e9), m)
	}
}

// install runs `regbridge cdc install`'s SQL, and uninstall's when the
// test ends (after the watcher stopped).
func (f *captureFixture) install(t *testing.T) {
	t.Helper()
	stmts, err := f.w.CaptureSQL(true)
	if err == nil {
		err = f.w.ExecCapture(t.Context(), stmts)
	}
	if err != nil {
		t.Fatalf("cdc install: %v", err)
	}
	t.Cleanup(func() {
		stmts, err := f.w.CaptureSQL(false)
		if err == nil {
			err = f.w.ExecCapture(context.Background(), stmts)
		}
		if err != nil {
			t.Errorf("cdc uninstall: %v", err)
		}
	})
}

// checkFeed: with polling and reconcile an hour apart, every insert,
// update and delete must arrive through the feed, as a change batch.
func (f *captureFixture) checkFeed(t *testing.T, mode string) {
	t.Helper()
	f.write(t, "before", "sip:before@192.0.2.1", time.Now())
	f.run(t)
	if got := f.w.Stats().Mode; got != mode {
		t.Errorf("Stats().Mode = %q, want %q", got, mode)
	}
	n := f.rec.Count()
	f.write(t, "k1", "sip:k1@192.0.2.1", time.Now())
	if b := f.rec.WaitFor(t, n, "insert through the feed", has("k1")); b.Full {
		t.Errorf("insert arrived in a Full batch: the feed did not carry it")
	}
	n = f.rec.Count()
	f.write(t, "k1", "sip:k1@192.0.2.2", time.Now())
	b := f.rec.WaitFor(t, n, "update through the feed", has("k1"))
	if c, _ := contactOf(b, "k1"); b.Full || c.URI != "sip:k1@192.0.2.2" {
		t.Errorf("update batch: Full %v, contact %+v", b.Full, c)
	}
	n = f.rec.Count()
	f.db.Exec(t, "DELETE FROM reg WHERE k = 'k1'")
	f.rec.WaitFor(t, n, "delete through the feed", deletes("k1"))
}

func TestTriggerCapture(t *testing.T) {
	for _, srv := range captureServers {
		t.Run(srv.name, func(t *testing.T) {
			f := newCaptureFixture(t, srv.open, srv.ddl, sqlwatch.ServerConfig{PollInterval: time.Hour, ReconcileInterval: time.Hour,
				CDC: sqlwatch.CDCTrigger, ChangelogPoll: 20 * time.Millisecond})
			f.install(t)
			f.checkFeed(t, source.ModeTrigger)
		})
	}
}

// TestTriggerCaptureMissing: cdc=trigger without the triggers still reads
// the table (by polling) and says what to run.
func TestTriggerCaptureMissing(t *testing.T) {
	for _, srv := range captureServers {
		t.Run(srv.name, func(t *testing.T) {
			f := newCaptureFixture(t, srv.open, srv.ddl, sqlwatch.ServerConfig{PollInterval: 20 * time.Millisecond, ReconcileInterval: time.Hour,
				CDC: sqlwatch.CDCTrigger})
			f.run(t)
			n := f.rec.Count()
			f.write(t, "k1", "sip:k1@192.0.2.1", time.Now())
			f.rec.WaitFor(t, n, "insert seen by polling", has("k1"))
			if got := f.w.Stats().Mode; got != source.ModePoll {
				t.Errorf("Stats().Mode = %q without triggers, want %q", got, source.ModePoll)
			}
		})
	}
}

// needLogical skips (fails under CI) when the local PostgreSQL cannot
// decode its WAL.
func needLogical(t *testing.T) {
	t.Helper()
	var level string
	if err := captureServers[1].open(t).QueryRow("SHOW wal_level", &level); err != nil {
		t.Fatal(err)
	}
	if level != "logical" {
		msg := fmt.Sprintf("PostgreSQL at %s runs wal_level=%s; cdc=logical needs wal_level=logical", sqltest.PostgresAddr, level)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

func TestLogicalCapture(t *testing.T) {
	needLogical(t)
	srv := captureServers[1]
	f := newCaptureFixture(t, srv.open, srv.ddl, sqlwatch.ServerConfig{PollInterval: time.Hour, ReconcileInterval: time.Hour,
		CDC: sqlwatch.CDCLogical})
	f.install(t)
	f.checkFeed(t, source.ModeLogical)
}

// TestLogicalLagReadAside: the slot's lag is read beside the stream, so
// changes keep arriving while the server has not answered that query
// (here it waits for an advisory lock the test holds).
func TestLogicalLagReadAside(t *testing.T) {
	needLogical(t)
	const lock = 727274
	sqlwatch.SetSlotLagSQL(t, fmt.Sprintf(`SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, (pg_current_wal_lsn() - '0/0')::bigint
FROM pg_advisory_xact_lock_shared(%d), pg_replication_slots WHERE slot_name = $1`, lock))
	srv := captureServers[1]
	f := newCaptureFixture(t, srv.open, srv.ddl, sqlwatch.ServerConfig{PollInterval: time.Hour, ReconcileInterval: time.Hour,
		CDC: sqlwatch.CDCLogical})
	f.install(t)
	f.db.Exec(t, fmt.Sprintf("SELECT pg_advisory_lock(%d)", lock))
	f.run(t)
	sourcetest.Eventually(t, "the lag query waiting for the lock", func() bool {
		var n int
		err := f.db.QueryRow(fmt.Sprintf("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %d AND NOT granted", lock), &n)
		return err == nil && n == 1
	})
	n := f.rec.Count()
	f.write(t, "k1", "sip:k1@192.0.2.1", time.Now())
	if b := f.rec.WaitFor(t, n, "insert while the lag query waits", has("k1")); b.Full {
		t.Errorf("insert arrived in a Full batch: the stream did not carry it")
	}
	if lag, ok := f.w.SlotLag(); ok {
		t.Errorf("SlotLag() = %+v while its query waits, want none yet", lag)
	}
	f.db.Exec(t, fmt.Sprintf("SELECT pg_advisory_unlock(%d)", lock))
	sourcetest.Eventually(t, "the slot's lag after the lock", func() bool {
		_, ok := f.w.SlotLag()
		return ok
	})
}

// TestIncrementalReads: a poll that sees a change reads only the rows
// modified since the newest it knew and sends just those; a delete is
// found by the keys; an edit the modification time does not show makes
// a full read at once (reconcile is an hour away).
func TestIncrementalReads(t *testing.T) {
	for _, srv := range captureServers {
		t.Run(srv.name, func(t *testing.T) {
			f := newCaptureFixture(t, srv.open, srv.ddl, sqlwatch.ServerConfig{PollInterval: 20 * time.Millisecond, ReconcileInterval: time.Hour})
			for i := range 3 {
				f.write(t, fmt.Sprintf("k%d", i), fmt.Sprintf("sip:k%d@192.0.2.1", i), time.Now())
			}
			f.run(t)
			n := f.rec.Count()
			f.write(t, "k1", "sip:k1@192.0.2.2", time.Now())
			b := f.rec.WaitFor(t, n, "refresh", has("k1"))
			if b.Full || len(b.Contacts) != 1 {
				t.Errorf("refresh batch: Full %v, %d contacts; want a change batch of k1 alone", b.Full, len(b.Contacts))
			}
			n = f.rec.Count()
			f.db.Exec(t, "DELETE FROM reg WHERE k = 'k0'")
			f.rec.WaitFor(t, n, "delete", deletes("k0"))

			n = f.rec.Count()
			f.write(t, "k2", "sip:k2@192.0.2.9", time.Now().Add(-time.Hour)) // dated back
			b = f.rec.WaitFor(t, n, "full read after an old-dated write", func(b source.Batch) bool { return b.Full })
			if c, _ := contactOf(b, "k2"); c.URI != "sip:k2@192.0.2.9" {
				t.Errorf("after an old-dated write: k2 = %+v", c)
			}

			// incremental=false: every change is a full read.
			g := newCaptureFixture(t, srv.open, srv.ddl, sqlwatch.ServerConfig{PollInterval: 20 * time.Millisecond, ReconcileInterval: time.Hour, FullReads: true})
			g.write(t, "a", "sip:a@192.0.2.1", time.Now())
			g.run(t)
			n = g.rec.Count()
			g.write(t, "a", "sip:a@192.0.2.2", time.Now())
			if b := g.rec.WaitFor(t, n, "refresh without incremental reads", has("a")); !b.Full {
				t.Errorf("FullReads: refresh arrived in a change batch")
			}
		})
	}
}

// TestSQLiteHasNoCapture: an SQLite file has no change capture to
// install; the watcher says so instead of printing SQL.
func TestSQLiteHasNoCapture(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reg.db")
	d := sqlwatch.NewSQLite(path, "", nil)
	w, err := sqlwatch.New(sqlwatch.Config{CDC: sqlwatch.CDCTrigger, ReconcileInterval: sqlwatch.Never}, d, regLayout{}, nil)
	if err == nil {
		_, err = w.CaptureSQL(true)
	}
	if !errors.Is(err, sqlwatch.ErrNoCapture) {
		t.Errorf("CaptureSQL on SQLite = %v, want ErrNoCapture", err)
	}
}

// The PostgreSQL trigger must not make the registrar's transactions
// commit one at a time, as pg_notify did: its COMMIT takes a lock on the
// whole cluster's notification queue (an object lock on database 0, class
// pg_database, object 0; a session starting up briefly locks its own
// database's object, which is not it) until the commit is flushed. 8 connections commit 200
// upserts each with synchronous_commit on while another samples pg_locks
// (of this database's sessions: other tests share the server); that lock
// never shows, and each upsert is one changelog row.
func TestTriggerCaptureConcurrentCommits(t *testing.T) {
	srv := captureServers[1]
	f := newCaptureFixture(t, srv.open, srv.ddl, sqlwatch.ServerConfig{PollInterval: time.Hour, ReconcileInterval: time.Hour,
		CDC: sqlwatch.CDCTrigger, ChangelogPoll: 20 * time.Millisecond})
	f.install(t)
	f.run(t)
	var fn string
	if err := f.db.QueryRow("SELECT p.prosrc FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid WHERE g.tgrelid = 'reg'::regclass AND g.tgname = 'regbridge_cdc'", &fn); err != nil {
		t.Fatal(err)
	}
	if up := strings.ToUpper(fn); strings.Contains(up, "NOTIFY") {
		t.Errorf("the trigger function notifies:\n%s", fn)
	}
	url := fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", sqltest.PostgresAddr, f.db.Name())
	const conns, upserts = 8, 200
	ctx := t.Context()
	stop := make(chan struct{})
	type samples struct{ n, seen int }
	sampled := make(chan samples, 1)
	go func() { // the sampler
		var s samples
		defer func() { sampled <- s }()
		c, err := pgx.Connect(ctx, url)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(context.Background())
		for {
			select {
			case <-stop:
				return
			default:
			}
			var k int
			if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
  WHERE a.datname = current_database() AND l.locktype = 'object' AND l.database = 0
    AND l.classid = 'pg_database'::regclass AND l.objid = 0`).Scan(&k); err != nil {
				t.Error(err)
				return
			}
			s.n, s.seen = s.n+1, s.seen+k
		}
	}()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pgx.Connect(ctx, url)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close(context.Background())
			if _, err := c.Exec(ctx, "SET synchronous_commit = on"); err != nil {
				t.Error(err)
				return
			}
			for j := range upserts {
				if _, err := c.Exec(ctx, "INSERT INTO reg (k, uri, exp, m) VALUES ($1, $2, 2000000000, now()) ON CONFLICT (k) DO UPDATE SET uri = EXCLUDED.uri, m = EXCLUDED.m",
					fmt.Sprintf("c%d-%d", i, j%50), fmt.Sprintf("sip:c%d@192.0.2.%d", i, j%250+1)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	if s := <-sampled; s.seen != 0 || s.n == 0 {
		t.Errorf("notification queue lock seen %d times in %d samples of pg_locks, want 0 in at least 1", s.seen, s.n)
	}
	var rows int
	if err := f.db.QueryRow("SELECT count(*) FROM "+sqlwatch.Changelog+" WHERE tbl = 'reg'", &rows); err != nil || rows != conns*upserts {
		t.Errorf("changelog rows: %d (%v), want %d", rows, err, conns*upserts)
	}
	f.rec.WaitFor(t, 0, "the last upsert through the feed", has(fmt.Sprintf("c%d-%d", conns-1, 49)))
}
