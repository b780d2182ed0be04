package kamailio

import (
	"context"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/internal/conformance"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// TestConformanceLogical runs the suite over PostgreSQL logical
// replication (cdc=logical), polling and reconcile an hour apart: every
// change the suite sees came through the replication stream.
func TestConformanceLogical(t *testing.T) {
	srv := servers[1]
	conformance.Run(t, &cdcHarness{dbHarness: dbHarness{srv: srv, db: srv.open(t)}, mode: sqlwatch.CDCLogical})
}

// keyedRec is the sink of the logical tests: a real bridge (a KeyedSink,
// as in production, so a resumed stream need not read the table) that
// records the batches and the bridge's events.
type keyedRec struct {
	br *bridge.Bridge

	mu      sync.Mutex
	batches []keyedBatch
	events  []string // "event uri"
}

type keyedBatch struct {
	full     bool
	contacts []source.Contact
	deleted  []string
}

func (k *keyedRec) record(b source.Batch) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.batches = append(k.batches, keyedBatch{b.Full, slices.Clone(b.Contacts), slices.Clone(b.Deleted)})
}

func (k *keyedRec) Apply(ctx context.Context, b source.Batch) error {
	k.record(b)
	return k.br.Apply(ctx, b)
}

func (k *keyedRec) ApplyFull(ctx context.Context, b source.Batch, same iter.Seq[string]) error {
	k.record(b)
	return k.br.ApplyFull(ctx, b, same)
}

func (k *keyedRec) Publish(c bridge.Change) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, cv := range c.Contacts {
		k.events = append(k.events, string(cv.Event)+" "+cv.URI)
	}
}

func (k *keyedRec) counts() (batches, events int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.batches), len(k.events)
}

func (k *keyedRec) since(batches, events int) ([]keyedBatch, []string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.batches[batches:]), slices.Clone(k.events[events:])
}

// logicalFixture is a location table with cdc=logical installed and a
// watcher (not yet running) feeding a keyedRec.
type logicalFixture struct {
	db    *sqltest.DB
	w     *sqlwatch.Watcher
	kw    kamWriter
	sink  *keyedRec
	log   *logBuffer
	proxy *sourcetest.Proxy
	slot  string
	stop  func()
}

func newLogicalFixture(t *testing.T, proxied bool) *logicalFixture {
	srv := servers[1]
	db := srv.open(t)
	srv.createTable(t, db, "location", false)
	log, lb := newLogger(t)
	f := &logicalFixture{db: db, log: lb, slot: "regbridge_test_" + strings.TrimPrefix(db.Name(), "regbridge_test_"),
		kw: kamWriter{db: db, srv: srv, table: "location", loc: mustLoad(t, registrarTZ)}}
	ep := db.Endpoint
	if proxied {
		f.proxy = sourcetest.NewProxy(t, db.Endpoint.Addr)
		ep = db.Via(f.proxy.Addr())
	}
	w, err := NewPostgres(DBConfig{Endpoint: ep, Domain: conformance.Domain, TZ: registrarTZ, PollInterval: slow, ReconcileInterval: slow,
		MaxBackoff: 200 * time.Millisecond, CDC: sqlwatch.CDCLogical, Slot: f.slot}, log)
	if err != nil {
		t.Fatal(err)
	}
	f.w = w
	install(t, w, true)
	f.sink = &keyedRec{br: bridge.New(slog.New(slog.DiscardHandler))}
	f.sink.br.Subscribe(f.sink)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.sink.br.Run(ctx) }()
	t.Cleanup(func() {
		if f.stop != nil {
			f.stop()
		}
		cancel()
		<-done
		install(t, w, false)
		if n := f.slots(t); n != 0 {
			t.Errorf("%d replication slots left after uninstall", n)
		}
	})
	return f
}

// start runs the watcher until stop, which checks Run returned nil.
func (f *logicalFixture) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.w.Run(ctx, f.sink) }()
	f.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		f.stop = nil
	}
}

// begin inserts rows, starts the watcher and waits for its first Full
// batch.
func (f *logicalFixture) begin(t *testing.T, rows ...kamBinding) {
	t.Helper()
	for _, r := range rows {
		f.kw.insert(t, r)
	}
	f.start(t)
	f.waitBatch(t, 0, "first Full batch", func(x keyedBatch) bool { return x.full })
}

// finish inserts last, waits until it arrived (the stream carries
// changes again) and things are quiet, and checks that the bridge's
// events since the first ne are want plus last's registration.
func (f *logicalFixture) finish(t *testing.T, nb, ne int, what string, last kamBinding, want ...string) {
	t.Helper()
	f.kw.insert(t, last)
	f.waitBatch(t, nb, "insert "+what, hasContact(last.ruid))
	f.quiet(t)
	_, events := f.sink.since(nb, ne)
	sameEvents(t, what, events, append(want, "registered "+uri(last)))
}

// slots counts the server's replication slots named f.slot.
func (f *logicalFixture) slots(t *testing.T) int {
	var n int
	if err := f.db.QueryRow("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '"+f.slot+"'", &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitBatches waits for a batch after the first n that satisfies ok.
func (f *logicalFixture) waitBatch(t *testing.T, n int, what string, ok func(keyedBatch) bool) keyedBatch {
	t.Helper()
	var got keyedBatch
	eventually(t, what, func() bool {
		bs, _ := f.sink.since(n, 0)
		for _, b := range bs {
			if ok(b) {
				got = b
				return true
			}
		}
		return false
	})
	return got
}

// quiet waits until the watcher has heard from the server three more
// times (keepalives), so that anything still on its way has arrived.
func (f *logicalFixture) quiet(t *testing.T) {
	t.Helper()
	p := f.w.Stats().Polls
	eventually(t, "three more keepalives", func() bool { return f.w.Stats().Polls >= p+3 })
}

func hasContact(key string) func(keyedBatch) bool {
	return func(b keyedBatch) bool {
		return slices.ContainsFunc(b.contacts, func(c source.Contact) bool { return c.Key == key })
	}
}

func uri(b kamBinding) string { return b.contact }

// sameEvents compares events as multisets: one batch's events come in
// no set order.
func sameEvents(t *testing.T, what string, got, want []string) {
	t.Helper()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s: events %q, want %q", what, got, want)
	}
}

// A transaction's changes reach the sink at its commit as one batch,
// with the last version of a row changed twice and nothing for a row
// inserted and deleted inside it.
func TestLogicalTransactionIsOneBatch(t *testing.T) {
	f := newLogicalFixture(t, false)
	a := bindingN(1)
	f.kw.insert(t, a)
	f.start(t)
	f.waitBatch(t, 0, "first Full batch", func(b keyedBatch) bool { return b.full })
	nb, ne := f.sink.counts()

	b, c, d := bindingN(2), bindingN(3), bindingN(4)
	f.db.Exec(t, "BEGIN")
	f.kw.insert(t, b)
	f.kw.insert(t, c)
	f.kw.insert(t, d)
	b.cseq = 5
	f.kw.update(t, b)
	f.kw.delete(t, d.ruid)
	f.kw.delete(t, a.ruid)
	f.db.Exec(t, "COMMIT")

	got := f.waitBatch(t, nb, "the transaction's batch", hasContact(b.ruid))
	f.quiet(t)
	batches, events := f.sink.since(nb, ne)
	if len(batches) != 1 || got.full {
		t.Fatalf("%d batches for one transaction (Full=%v), want one non-Full", len(batches), got.full)
	}
	var keys []string
	for _, x := range got.contacts {
		keys = append(keys, x.Key)
		if x.Key == b.ruid && x.CSeq != 5 {
			t.Errorf("%s CSeq %d, want the last version's 5", b.ruid, x.CSeq)
		}
	}
	slices.Sort(keys)
	if want := []string{b.ruid, c.ruid}; !slices.Equal(keys, want) {
		t.Errorf("batch contacts %q, want %q", keys, want)
	}
	slices.Sort(got.deleted)
	if want := []string{a.ruid, d.ruid}; !slices.Equal(got.deleted, []string{a.ruid}) && !slices.Equal(got.deleted, want) {
		t.Errorf("batch deletes %q, want %s (and at most %s)", got.deleted, a.ruid, d.ruid)
	}
	sameEvents(t, "transaction", events, []string{"registered " + uri(b), "registered " + uri(c), "unregistered " + uri(a)})
}

// Stopping the watcher and starting it again with the same sink resumes
// the stream where it was delivered: the changes made meanwhile become
// exactly their events, nothing is repeated, and the table is not read.
func TestLogicalRestartResumes(t *testing.T) {
	f := newLogicalFixture(t, false)
	a, b, c := bindingN(1), bindingN(2), bindingN(3)
	f.begin(t, a, b)
	f.kw.insert(t, c)
	a.cseq = 2
	f.kw.update(t, a)
	f.waitBatch(t, 1, "update of a", hasContact(a.ruid))
	f.stop()

	// While stopped: a delete, a refresh, a new binding, and a row
	// changed twice.
	f.kw.delete(t, b.ruid)
	c.cseq, c.expires = 7, c.expires.Add(time.Hour)
	f.kw.update(t, c)
	d := bindingN(4)
	f.kw.insert(t, d)
	d.cseq, d.expires = 3, d.expires.Add(time.Hour)
	f.kw.update(t, d)

	nb, ne := f.sink.counts()
	reads := f.log.count("reading the table in full")
	f.start(t)
	full := f.waitBatch(t, nb, "Full batch after the restart", func(x keyedBatch) bool { return x.full })
	f.finish(t, nb, ne, "after the restart", bindingN(5), "unregistered "+uri(b), "refreshed "+uri(c), "registered "+uri(d))

	if got := f.log.count("reading the table in full"); got != reads {
		t.Errorf("the restart read the table in full:\n%s", f.log)
	}
	if f.log.count("resuming replication") == 0 {
		t.Errorf("no resume logged:\n%s", f.log)
	}
	var keys []string
	for _, x := range full.contacts {
		keys = append(keys, x.Key)
	}
	slices.Sort(keys)
	if want := []string{c.ruid, d.ruid}; !slices.Equal(keys, want) {
		t.Errorf("Full batch after the restart carries %q, want only the changed %q", keys, want)
	}
}

// A slot dropped while the watcher was stopped (changes may be lost) is
// recreated, and the table read in full: the bridge still ends up with
// exactly the real differences.
func TestLogicalSlotDroppedWhileStopped(t *testing.T) {
	f := newLogicalFixture(t, false)
	a, b := bindingN(1), bindingN(2)
	f.begin(t, a, b)
	f.stop()

	eventually(t, "slot released by the stopped stream", func() bool {
		_, err := f.db.TryExec("SELECT pg_drop_replication_slot('" + f.slot + "')")
		return err == nil
	})
	f.kw.delete(t, a.ruid)
	b.cseq, b.expires = 9, b.expires.Add(time.Hour)
	f.kw.update(t, b)
	c := bindingN(3)
	f.kw.insert(t, c)

	nb, ne := f.sink.counts()
	f.start(t)
	f.waitBatch(t, nb, "Full batch of the new read", func(x keyedBatch) bool { return x.full })
	if f.log.count("replication slot is gone") != 1 {
		t.Errorf("the lost slot was not logged:\n%s", f.log)
	}
	if f.slots(t) != 1 {
		t.Errorf("the slot was not recreated")
	}
	f.finish(t, nb, ne, "after the new read", bindingN(4), "unregistered "+uri(a), "refreshed "+uri(b), "registered "+uri(c))
}

// A connection cut (through a proxy) is an outage; changes made during
// it arrive after it from the slot, as one Full batch built without
// reading the table, and become exactly their events.
func TestLogicalReconnect(t *testing.T) {
	f := newLogicalFixture(t, true)
	a, b := bindingN(1), bindingN(2)
	f.begin(t, a, b)
	reads := f.log.count("reading the table in full")

	f.proxy.Break()
	eventually(t, "Stats().Up false", func() bool { return !f.w.Stats().Up })
	f.kw.delete(t, a.ruid)
	c := bindingN(3)
	f.kw.insert(t, c)
	nb, ne := f.sink.counts()
	f.proxy.Restore()
	full := f.waitBatch(t, nb, "Full batch after the outage", func(x keyedBatch) bool { return x.full })
	eventually(t, "Stats().Up true", func() bool { return f.w.Stats().Up })
	if len(full.contacts) != 1 || full.contacts[0].Key != c.ruid {
		t.Errorf("Full batch after the outage carries %d contacts, want only %s", len(full.contacts), c.ruid)
	}
	f.finish(t, nb, ne, "after the outage", bindingN(4), "unregistered "+uri(a), "registered "+uri(c))
	if got := f.log.count("reading the table in full"); got != reads {
		t.Errorf("the reconnect read the table in full:\n%s", f.log)
	}
	if lag, ok := f.w.SlotLag(); !ok || lag.Slot != f.slot || lag.Bytes < 0 {
		t.Errorf("SlotLag() = %+v, %v; want the slot's lag", lag, ok)
	}
}

// install creates publication and slot (twice: idempotent) and the
// replica identity on Kamailio's ruid index; uninstall drops both even
// while a watcher streams from the slot, and the watcher then polls
// instead of making a slot again.
func TestLogicalInstallUninstall(t *testing.T) {
	f := newLogicalFixture(t, false)
	install(t, f.w, true)
	var pubs int
	var ident string
	if err := f.db.QueryRow("SELECT count(*) FROM pg_publication WHERE pubname = 'regbridge_location'", &pubs); err != nil {
		t.Fatal(err)
	}
	if err := f.db.QueryRow("SELECT relreplident::text FROM pg_class WHERE relname = 'location'", &ident); err != nil {
		t.Fatal(err)
	}
	if pubs != 1 || f.slots(t) != 1 || ident != "i" {
		t.Fatalf("after install: %d publications, %d slots, replica identity %q; want 1, 1, i (the ruid index)", pubs, f.slots(t), ident)
	}
	stmts, err := f.w.CaptureSQL(true)
	if err != nil || !strings.Contains(strings.Join(stmts, "\n"), "pg_create_logical_replication_slot('"+f.slot+"', 'pgoutput')") {
		t.Errorf("install SQL lacks the slot: %v\n%s", err, strings.Join(stmts, ";\n"))
	}

	f.begin(t)
	install(t, f.w, false)
	install(t, f.w, false)
	if n := f.slots(t); n != 0 {
		t.Fatalf("%d slots after uninstall with a watcher streaming", n)
	}
	eventually(t, "watcher falls back to polling", func() bool { return f.log.count("not usable; polling") > 0 })
	time.Sleep(time.Second) // long enough for a reconnect to recreate it, were that the bug
	if n := f.slots(t); n != 0 {
		t.Errorf("%d slots a second after uninstall: the watcher made one again", n)
	}
	if err := f.db.QueryRow("SELECT count(*) FROM pg_publication WHERE pubname = 'regbridge_location'", &pubs); err != nil || pubs != 0 {
		t.Errorf("%d publications after uninstall (%v)", pubs, err)
	}
}

// Two regbridges configured with one slot: the second finds it in use,
// streams from a temporary slot of its own, and both deliver every
// change; once both stop, only the installed slot is left on the server.
func TestLogicalSharedSlot(t *testing.T) {
	f := newLogicalFixture(t, false)
	a := bindingN(1)
	f.begin(t, a)
	w2, err := NewPostgres(DBConfig{Endpoint: f.db.Endpoint, Domain: conformance.Domain, TZ: registrarTZ, PollInterval: slow, ReconcileInterval: slow,
		MaxBackoff: 200 * time.Millisecond, CDC: sqlwatch.CDCLogical, Slot: f.slot}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := &logicalFixture{db: f.db, w: w2, log: f.log, slot: f.slot, sink: &keyedRec{br: bridge.New(slog.New(slog.DiscardHandler))}}
	g.sink.br.Subscribe(g.sink)
	g.start(t)
	defer func() {
		if g.stop != nil {
			g.stop()
		}
	}()
	g.waitBatch(t, 0, "second watcher's first Full batch", func(x keyedBatch) bool { return x.full && len(x.contacts) == 1 })
	if lag, ok := eventuallyLag(t, w2); !ok || !strings.HasPrefix(lag.Slot, f.slot+"_tmp_") {
		t.Errorf("second watcher reads slot %q, want a temporary one", lag.Slot)
	}
	b := bindingN(2)
	f.kw.insert(t, b)
	f.waitBatch(t, 1, "insert at the first watcher", hasContact(b.ruid))
	g.waitBatch(t, 1, "insert at the second watcher", hasContact(b.ruid))
	g.stop()
	f.stop()
	eventually(t, "temporary slot gone with its connection", func() bool {
		var n int
		if err := f.db.QueryRow("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()", &n); err != nil {
			t.Fatal(err)
		}
		return n == 1 && f.slots(t) == 1
	})
}

// eventuallyLag waits until w has measured its slot.
func eventuallyLag(t *testing.T, w *sqlwatch.Watcher) (sqlwatch.SlotLag, bool) {
	t.Helper()
	var lag sqlwatch.SlotLag
	var ok bool
	eventually(t, "slot lag measured", func() bool { lag, ok = w.SlotLag(); return ok })
	return lag, ok
}

// A backlog of many transactions while stopped, touching rows several
// times, is caught up into one Full batch with each row's last version:
// rows inserted and deleted meanwhile never show.
func TestLogicalCatchUpBacklog(t *testing.T) {
	f := newLogicalFixture(t, false)
	f.begin(t)
	f.stop()
	const n = 200
	for i := range n {
		b := bindingN(100 + i)
		f.kw.insert(t, b)
		b.cseq = 2
		f.kw.update(t, b)
		b.cseq = 3
		f.kw.update(t, b)
		if i%4 == 0 {
			f.kw.delete(t, b.ruid)
		}
	}
	nb, ne := f.sink.counts()
	f.start(t)
	full := f.waitBatch(t, nb, "Full batch after the backlog", func(x keyedBatch) bool { return x.full })
	var want []string
	for i := range n {
		if i%4 != 0 {
			want = append(want, "registered "+uri(bindingN(100+i)))
		}
	}
	if len(full.contacts) != len(want) {
		t.Errorf("Full batch carries %d contacts, want %d", len(full.contacts), len(want))
	}
	for _, c := range full.contacts {
		if c.CSeq != 3 {
			t.Errorf("%s has CSeq %d, want its last version's 3", c.Key, c.CSeq)
			break
		}
	}
	f.finish(t, nb, ne, "after the backlog", bindingN(1), want...)
	if f.log.count("reading the table in full") != 1 {
		t.Errorf("the catch-up read the table:\n%s", f.log)
	}
}
