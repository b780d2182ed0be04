package kamailio

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// TestOutage breaks the file under a running watcher, restores it, and
// checks that Run survives, logs the outage once each way, and sends a Full
// batch after recovery.
func TestOutage(t *testing.T) {
	type env struct {
		path string
		db   *sql.DB // read-write connection standing in for Kamailio
		tx   *sql.Conn
	}
	tests := []struct {
		name     string
		journal  string
		breakIt  func(t *testing.T, e *env)
		restore  func(t *testing.T, e *env)
		wantKeys []string
	}{
		{
			name: "renamed away and back", journal: "wal",
			breakIt: func(t *testing.T, e *env) { mustRename(t, e.path, e.path+".moved") },
			restore: func(t *testing.T, e *env) {
				// Kamailio kept writing to its open file meanwhile.
				insertRow(t, e.db, kamRow{ruid: "uloc-b", user: "bob", contact: "sip:bob@192.0.2.2"})
				mustRename(t, e.path+".moved", e.path)
			},
			wantKeys: []string{"uloc-a", "uloc-b"},
		},
		{
			name: "removed, then a new file", journal: "wal",
			breakIt: func(t *testing.T, e *env) {
				if err := e.db.Close(); err != nil {
					t.Fatal(err)
				}
				removeDB(t, e.path)
			},
			restore: func(t *testing.T, e *env) {
				if _, err := createDatabase(t.Context(), e.path, DefaultTable); err != nil {
					t.Fatal(err)
				}
				insertRow(t, openWriter(t, e.path), kamRow{ruid: "uloc-new", user: "carol", contact: "sip:carol@192.0.2.3"})
			},
			wantKeys: []string{"uloc-new"},
		},
		{
			name: "locked by a writer (rollback journal)", journal: "delete",
			breakIt: func(t *testing.T, e *env) {
				c, err := e.db.Conn(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				e.tx = c
				if _, err := c.ExecContext(t.Context(), "BEGIN EXCLUSIVE"); err != nil {
					t.Fatal(err)
				}
				if _, err := c.ExecContext(t.Context(), "DELETE FROM location"); err != nil {
					t.Fatal(err)
				}
			},
			restore: func(t *testing.T, e *env) {
				if _, err := e.tx.ExecContext(t.Context(), "COMMIT"); err != nil {
					t.Fatal(err)
				}
				e.tx.Close()
			},
			wantKeys: []string{},
		},
		{
			// A path that cannot be opened. Not through file permissions,
			// which do not stop root (CI runs as root): a directory stands
			// where the file was, which no user can open as a database.
			name: "unreadable", journal: "wal",
			breakIt: func(t *testing.T, e *env) {
				// Move the row from the -wal into the file we keep aside.
				mustExec(t, e.db, "PRAGMA wal_checkpoint(TRUNCATE)")
				if err := e.db.Close(); err != nil {
					t.Fatal(err)
				}
				mustRename(t, e.path, e.path+".aside")
				removeDB(t, e.path)
				if err := os.Mkdir(e.path, 0o755); err != nil {
					t.Fatal(err)
				}
			},
			restore: func(t *testing.T, e *env) {
				if err := os.Remove(e.path); err != nil {
					t.Fatal(err)
				}
				mustRename(t, e.path+".aside", e.path)
			},
			wantKeys: []string{"uloc-a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &env{path: newDBFile(t, tt.journal)}
			e.db = openWriter(t, e.path)
			insertRow(t, e.db, kamRow{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1"})
			log, logs := newLogger(t)
			w := newWatcher(t, SQLiteConfig{Path: e.path}, log)
			var rec recorder
			stop := startRun(t, w, rec.sink())
			rec.WaitFor(t, 0, "first batch", func(source.Batch) bool { return true })

			tt.breakIt(t, e)
			eventually(t, "outage noticed", func() bool { return logs.count("table unreadable") == 1 })
			_, n := rec.Last()
			tt.restore(t, e)
			b := rec.WaitFor(t, n, "Full batch after recovery", func(b source.Batch) bool {
				return b.Full && slices.Equal(keys(b), tt.wantKeys)
			})
			if b.SeenAt.IsZero() {
				t.Errorf("batch without SeenAt")
			}
			eventually(t, "recovery logged", func() bool { return logs.count("table readable again") == 1 })
			stop() // fails the test unless Run returns nil
			if n := logs.count("table unreadable"); n != 1 {
				t.Errorf("outage logged %d times at warn level, want once", n)
			}
		})
	}
}

// A file swapped for another one (a restored backup) is reopened without
// an outage.
func TestReplacedFileIsReopened(t *testing.T) {
	path := newDBFile(t, "wal")
	insertRow(t, openWriter(t, path), kamRow{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1"})
	backup := newDBFile(t, "wal")
	bdb := openWriter(t, backup)
	insertRow(t, bdb, kamRow{ruid: "uloc-z", user: "zoe", contact: "sip:zoe@192.0.2.9"})
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	log, logs := newLogger(t)
	w := newWatcher(t, SQLiteConfig{Path: path}, log)
	var rec recorder
	startRun(t, w, rec.sink())
	rec.WaitFor(t, 0, "first batch", func(source.Batch) bool { return true })
	_, n := rec.Last()
	// As an operator restoring a backup should: side files go too.
	for _, s := range []string{"-wal", "-shm"} {
		os.Remove(path + s)
	}
	mustRename(t, backup, path)
	rec.WaitFor(t, n, "batch from the new file", func(b source.Batch) bool {
		return slices.Equal(keys(b), []string{"uloc-z"})
	})
	if logs.count("replaced") != 1 || logs.count("unreadable") != 0 {
		t.Errorf("want one 'replaced' and no outage in the log")
	}
}

// A sink that fails is offered the snapshot again at the next poll; that is
// not a store outage.
func TestSinkErrorRetried(t *testing.T) {
	path := newDBFile(t, "wal")
	insertRow(t, openWriter(t, path), kamRow{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1"})
	log, logs := newLogger(t)
	w := newWatcher(t, SQLiteConfig{Path: path}, log)
	var calls, ok atomic.Int32
	startRun(t, w, fakeSink{apply: func(_ context.Context, b source.Batch) error {
		if calls.Add(1) <= 3 {
			return errors.New("bridge busy")
		}
		if len(b.Contacts) == 1 && b.Full {
			ok.Add(1)
		}
		return nil
	}})
	eventually(t, "a batch accepted after failures", func() bool { return ok.Load() > 0 })
	if logs.count("sink rejected") != 1 || logs.count("sink accepts batches again") != 1 {
		t.Errorf("want one rejection and one recovery log line")
	}
	if logs.count("unreadable") != 0 {
		t.Errorf("sink failure reported as a store outage")
	}
}

// TestReadOnlyWAL checks what DESIGN relies on: a mode=ro connection works
// on a WAL file with no side files yet, sees commits of another process,
// and cannot write.
func TestReadOnlyWAL(t *testing.T) {
	path := newDBFile(t, "wal")
	for _, s := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(path + s); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s exists before the test (err %v)", s, err)
		}
	}
	w := newWatcher(t, SQLiteConfig{Path: path}, nil)
	if got := readOnce(t, w); len(got) != 0 {
		t.Fatalf("got %d contacts from an empty table", len(got))
	}

	ro, err := sql.Open(sqlwatch.SQLiteDriver, w.dialect.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if _, err := ro.Exec("DELETE FROM location"); err == nil {
		t.Errorf("write through the read-only DSN succeeded")
	}

	for _, journal := range []string{"wal", "delete"} {
		t.Run("separate writer process, "+journal, func(t *testing.T) {
			path := newDBFile(t, journal)
			var rec recorder
			w := newWatcher(t, SQLiteConfig{Path: path}, nil)
			startRun(t, w, rec.sink())
			rec.WaitFor(t, 0, "first batch", func(source.Batch) bool { return true })
			const n = 40
			runWriterProcess(t, path, "insert", n)
			rec.WaitFor(t, 0, "all rows of the other process", func(b source.Batch) bool { return len(b.Contacts) == n })
			_, m := rec.Last()
			runWriterProcess(t, path, "delete", n)
			rec.WaitFor(t, m, "rows deleted by the other process", func(b source.Batch) bool { return len(b.Contacts) == 0 })
		})
	}
}

const writerEnv = "REGBRIDGE_TEST_SQLITE_WRITER"

// runWriterProcess re-runs this test binary as a separate writer process
// (TestWriterProcess), like Kamailio writing the file while we read it.
func runWriterProcess(t *testing.T, path, op string, n int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestWriterProcess$", "--", path, op, strconv.Itoa(n))
	cmd.Env = append(os.Environ(), writerEnv+"=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("writer process: %v\n%s", err, out)
	}
}

// TestWriterProcess is the body of runWriterProcess's child; it is skipped
// in a normal run.
func TestWriterProcess(t *testing.T) {
	if os.Getenv(writerEnv) != "1" {
		t.Skip("helper process for TestReadOnlyWAL")
	}
	args := flag.Args()
	if len(args) != 3 {
		t.Fatalf("args %q", args)
	}
	n, _ := strconv.Atoi(args[2])
	db := openWriter(t, args[0])
	for i := range n {
		ruid := fmt.Sprintf("uloc-proc-%d", i)
		switch args[1] {
		case "insert": // one transaction per row, as usrloc does
			insertRow(t, db, kamRow{ruid: ruid, user: fmt.Sprintf("u%d", i), contact: fmt.Sprintf("sip:u%d@192.0.2.7", i)})
		case "delete":
			deleteRow(t, db, ruid)
		}
	}
}

func mustRename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func removeDB(t *testing.T, path string) {
	t.Helper()
	for _, s := range []string{"", "-wal", "-shm", "-journal"} {
		if err := os.Remove(path + s); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
}
