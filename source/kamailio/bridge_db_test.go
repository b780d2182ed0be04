package kamailio

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// The bridge takes the watcher's changed-rows-only Full batches.
var _ sqlwatch.KeyedSink = (*bridge.Bridge)(nil)

// eventLog is a bridge.Publisher that keeps "key event" lines.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) Publish(c bridge.Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range c.Contacts {
		l.events = append(l.events, v.Key+" "+string(v.Event))
	}
}

func (l *eventLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// bridgeSteps drives a table through the RFC 3680 transitions with a real
// bridge as the sink: after the complete first batch the watcher sends it
// only changed rows (sqlwatch.KeyedSink), and every event must still be
// classified as before, with nothing invented by the reconcile reads in
// between.
func bridgeSteps(t *testing.T, run func(source.Sink) (stop func()), w bindingWriter) {
	for i := range 3 {
		w.insert(t, bindingN(i))
	}
	br := bridge.New(slog.New(slog.DiscardHandler))
	var log eventLog
	br.Subscribe(&log)
	stop := run(br)
	defer stop()
	eventually(t, "baseline", br.Ready)

	b1 := bindingN(1)
	b1.cseq, b1.expires = 5, b1.expires.Add(time.Hour)
	w.update(t, b1)
	want := []string{b1.ruid + " refreshed"}
	eventually(t, "refresh", func() bool { return slices.Equal(log.all(), want) })

	b2 := bindingN(2)
	b2.expires = b2.expires.Add(-30 * time.Minute)
	w.update(t, b2)
	want = append(want, b2.ruid+" shortened")
	eventually(t, "shorten", func() bool { return slices.Equal(log.all(), want) })

	w.delete(t, bindingN(0).ruid)
	want = append(want, bindingN(0).ruid+" unregistered")
	eventually(t, "delete", func() bool { return slices.Equal(log.all(), want) })

	w.insert(t, bindingN(3))
	want = append(want, bindingN(3).ruid+" registered")
	eventually(t, "insert", func() bool { return slices.Equal(log.all(), want) })

	b1.ua = "new phone"
	w.update(t, b1) // same REGISTER, same expiry: no event, but the state moves on
	eventually(t, "user agent", func() bool {
		reg, _ := br.Lookup("sip:u1@" + "example.com")
		return len(reg.Contacts) == 1 && reg.Contacts[0].UserAgent == "new phone"
	})
	time.Sleep(300 * time.Millisecond) // several polls and reconcile reads
	if got := log.all(); !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
	if st := br.Stats(); st.AORs != 3 || st.Contacts != 3 {
		t.Errorf("bridge tracks %d AORs, %d contacts; want 3, 3", st.AORs, st.Contacts)
	}
}

// bindingWriter is how a test writes the location table.
type bindingWriter interface {
	insert(testing.TB, kamBinding)
	update(testing.TB, kamBinding)
	delete(testing.TB, string)
}

func TestBridgeThroughServers(t *testing.T) {
	for _, srv := range servers {
		for _, full := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/full_reads=%v", srv.name, full), func(t *testing.T) {
				db := srv.open(t)
				srv.createTable(t, db, "location", false)
				w, err := srv.newWatcher(DBConfig{Endpoint: db.Endpoint, Domain: "example.com", TZ: registrarTZ,
					PollInterval: 10 * time.Millisecond, ReconcileInterval: 100 * time.Millisecond, FullReads: full}, nil)
				if err != nil {
					t.Fatal(err)
				}
				run := func(sink source.Sink) func() {
					ctx, cancel := context.WithCancel(t.Context())
					done := make(chan error, 1)
					go func() { done <- w.Run(ctx, sink) }()
					return func() {
						cancel()
						if err := <-done; err != nil {
							t.Errorf("Run: %v", err)
						}
					}
				}
				bridgeSteps(t, run, kamWriter{db: db, srv: srv, table: "location", loc: mustLoad(t, registrarTZ)})
			})
		}
	}
}

// sqliteWriter writes as db_sqlite does.
type sqliteWriter struct{ path string }

func (s sqliteWriter) insert(t testing.TB, b kamBinding) {
	db := openWriterTB(t, s.path)
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO location (ruid, username, contact, expires, q, callid, cseq, last_modified, user_agent)
		VALUES (?, ?, ?, ?, -1, ?, ?, ?, ?)`, b.ruid, b.user, b.contact, TimeToJulian(b.expires), b.callid, b.cseq,
		TimeToJulian(time.Now()), b.ua); err != nil {
		t.Fatal(err)
	}
}

func (s sqliteWriter) update(t testing.TB, b kamBinding) {
	db := openWriterTB(t, s.path)
	defer db.Close()
	if _, err := db.Exec(`UPDATE location SET expires = ?, cseq = ?, callid = ?, user_agent = ?, last_modified = ? WHERE ruid = ?`,
		TimeToJulian(b.expires), b.cseq, b.callid, b.ua, TimeToJulian(time.Now()), b.ruid); err != nil {
		t.Fatal(err)
	}
}

func (s sqliteWriter) delete(t testing.TB, ruid string) {
	db := openWriterTB(t, s.path)
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM location WHERE ruid = ?`, ruid); err != nil {
		t.Fatal(err)
	}
}

func TestBridgeThroughSQLite(t *testing.T) {
	path := newDBFile(t, "wal")
	w := newWatcher(t, SQLiteConfig{Path: path, Domain: "example.com"}, nil)
	bridgeSteps(t, func(sink source.Sink) func() { return startRun(t, w, sink) }, sqliteWriter{path})
}
