package kamailio

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/internal/conformance"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// slow is a poll and reconcile interval no test waits for: a change that
// arrives proves the path under test (CDC, or the incremental read after
// a fingerprint poll) carried it.
const slow = time.Hour

// cdcHarness is dbHarness with change capture installed and polling off:
// mode is sqlwatch.CDCTrigger unless set.
type cdcHarness struct {
	dbHarness
	mode string
}

func (h *cdcHarness) NewSource(t *testing.T) source.Source {
	h.n++
	table := fmt.Sprintf("location_%d", h.n)
	h.srv.createTable(t, h.db, table, h.epoch)
	h.w = kamWriter{db: h.db, srv: h.srv, table: table, loc: mustLoad(t, registrarTZ), epoch: h.epoch}
	h.proxy = sourcetest.NewProxy(t, h.db.Endpoint.Addr)
	log, _ := newLogger(t)
	w, err := h.srv.newWatcher(DBConfig{
		Endpoint: h.db.Via(h.proxy.Addr()), Table: table, Domain: conformance.Domain, TZ: registrarTZ,
		PollInterval: slow, ReconcileInterval: slow, MaxBackoff: 200 * time.Millisecond, CDC: cmp.Or(h.mode, sqlwatch.CDCTrigger),
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	install(t, w, true)
	if h.mode == sqlwatch.CDCLogical {
		// Runs after the suite stopped the watcher: no slot outlives the
		// subtest (each pins WAL on the shared server).
		t.Cleanup(func() { install(t, w, false) })
	}
	return w
}

// install runs what `regbridge cdc install|uninstall` runs.
func install(t testing.TB, w *sqlwatch.Watcher, on bool) {
	t.Helper()
	stmts, err := w.CaptureSQL(on)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.ExecCapture(context.Background(), stmts); err != nil {
		t.Fatalf("cdc install=%v: %v", on, err)
	}
}

func TestConformanceCDC(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			conformance.Run(t, &cdcHarness{dbHarness: dbHarness{srv: srv, db: srv.open(t)}})
		})
	}
}

// cdcFixture is one table with a watcher running on it.
type cdcFixture struct {
	db    *sqltest.DB
	w     *sqlwatch.Watcher
	kw    kamWriter
	rec   *recorder
	log   *logBuffer
	proxy *sourcetest.Proxy // nil unless newCDCFixtureVia was asked for one
}

func newCDCFixture(t *testing.T, srv server, cfg DBConfig, installed bool) *cdcFixture {
	return newCDCFixtureVia(t, srv, cfg, installed, false)
}

// newCDCFixtureVia is newCDCFixture with the watcher reaching the server
// through a sourcetest.Proxy (f.proxy) when proxied.
func newCDCFixtureVia(t *testing.T, srv server, cfg DBConfig, installed, proxied bool) *cdcFixture {
	db := srv.open(t)
	srv.createTable(t, db, "location", false)
	log, lb := newLogger(t)
	cfg.Endpoint, cfg.Domain, cfg.TZ = db.Endpoint, conformance.Domain, registrarTZ
	var proxy *sourcetest.Proxy
	if proxied {
		proxy = sourcetest.NewProxy(t, db.Endpoint.Addr)
		cfg.Endpoint = db.Via(proxy.Addr())
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = slow
	}
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = slow
	}
	cfg.MaxBackoff = 200 * time.Millisecond
	w, err := srv.newWatcher(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if installed {
		install(t, w, true)
	}
	f := &cdcFixture{db: db, w: w, rec: &recorder{}, log: lb, proxy: proxy,
		kw: kamWriter{db: db, srv: srv, table: "location", loc: mustLoad(t, registrarTZ)}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, f.rec.sink()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	f.rec.WaitFor(t, 0, "first Full batch", func(b source.Batch) bool { return b.Full })
	return f
}

func bindingN(i int) kamBinding {
	return kamBinding{ruid: fmt.Sprintf("uloc-cdc-%d", i), user: fmt.Sprintf("u%d", i), contact: fmt.Sprintf("sip:u%d@192.0.2.1", i),
		callid: "c", ua: "ua", expires: time.Now().Add(time.Hour).Truncate(time.Second), cseq: 1}
}

// hasKey reports whether b is a non-Full batch carrying key (as a
// contact, or deleted when del).
func hasKey(key string, del bool) func(source.Batch) bool {
	return func(b source.Batch) bool {
		if b.Full {
			return false
		}
		if del {
			return slices.Contains(b.Deleted, key)
		}
		_, ok := byKey(b)[key]
		return ok
	}
}

func TestCDCChangesWithoutPolling(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			f := newCDCFixture(t, srv, DBConfig{CDC: sqlwatch.CDCTrigger}, true)
			b := bindingN(1)
			n := f.rec.Count()
			start := time.Now()
			f.kw.insert(t, b)
			f.rec.WaitFor(t, n, "insert as a non-Full batch", hasKey(b.ruid, false))
			t.Logf("insert seen after %v", time.Since(start))
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("insert took %v with polling at %v: not carried by CDC", d, slow)
			}
			b.cseq = 2
			n = f.rec.Count()
			f.kw.update(t, b)
			got := f.rec.WaitFor(t, n, "update", hasKey(b.ruid, false))
			if c := byKey(got)[b.ruid]; c.CSeq != 2 {
				t.Errorf("CSeq after update = %d, want 2", c.CSeq)
			}
			n = f.rec.Count()
			f.kw.delete(t, b.ruid)
			f.rec.WaitFor(t, n, "delete", hasKey(b.ruid, true))
			if m := f.w.Stats().Mode; m != source.ModeTrigger {
				t.Errorf("Stats().Mode = %q, want %q", m, source.ModeTrigger)
			}
			for _, b := range f.rec.All()[1:] {
				if b.Full {
					t.Errorf("unexpected Full batch after the first: %d contacts", len(b.Contacts))
				}
			}
		})
	}
}

// TestCDCReconcileVerifies: changes the feed never reported (written
// while the triggers were away) are found by the periodic reconcile,
// which verifies the table beside the feed: they arrive as non-Full
// batches, and the feed keeps working.
func TestCDCReconcileVerifies(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			f := newCDCFixture(t, srv, DBConfig{CDC: sqlwatch.CDCTrigger, ReconcileInterval: 300 * time.Millisecond}, true)
			kept, changed, gone := bindingN(1), bindingN(2), bindingN(3)
			for _, b := range []kamBinding{kept, changed, gone} {
				n := f.rec.Count()
				f.kw.insert(t, b)
				f.rec.WaitFor(t, n, "insert through the feed", hasKey(b.ruid, false))
			}

			// Behind the feed's back: the triggers dropped, three writes,
			// the triggers back.
			dropTriggers(t, f.w)
			added := bindingN(4)
			changed.cseq = 7
			n := f.rec.Count()
			f.kw.insert(t, added)
			f.kw.update(t, changed)
			f.kw.delete(t, gone.ruid)
			install(t, f.w, true)

			f.rec.WaitFor(t, n, "unreported insert", hasKey(added.ruid, false))
			f.rec.WaitFor(t, n, "unreported delete", hasKey(gone.ruid, true))
			got := f.rec.WaitFor(t, n, "unreported update", hasKey(changed.ruid, false))
			if c := byKey(got)[changed.ruid]; c.CSeq != 7 {
				t.Errorf("CSeq after the unreported update = %d, want 7", c.CSeq)
			}

			// The feed still carries changes, and reconciles go on
			// without finding anything more.
			n = f.rec.Count()
			kept.cseq = 2
			f.kw.update(t, kept)
			f.rec.WaitFor(t, n, "update through the feed", hasKey(kept.ruid, false))
			time.Sleep(time.Second) // three more reconciles
			for i, b := range f.rec.All() {
				if i > 0 && b.Full {
					t.Errorf("batch %d is Full: the reconcile read the table in full", i)
				}
				if i > n && (slices.Contains(b.Deleted, gone.ruid) || byKey(b)[added.ruid].Key != "") {
					t.Errorf("batch %d repeats a change the reconcile already delivered", i)
				}
			}
		})
	}
}

// TestCDCReconcileFallsBack: when the verifying reconcile cannot open its
// connection (the server refuses new ones), the watcher reads the table
// in full on its own connection, as before verification existed, and
// says so; once connections are accepted again, reconciles verify.
func TestCDCReconcileFallsBack(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			f := newCDCFixtureVia(t, srv, DBConfig{CDC: sqlwatch.CDCTrigger, ReconcileInterval: 300 * time.Millisecond}, true, true)
			b := bindingN(1)
			n := f.rec.Count()
			f.kw.insert(t, b)
			f.rec.WaitFor(t, n, "insert through the feed", hasKey(b.ruid, false))

			f.proxy.RefuseNew(true)
			n = f.rec.Count()
			got := f.rec.WaitFor(t, n, "a Full batch from the fallback", func(b source.Batch) bool { return b.Full })
			if _, ok := byKey(got)[b.ruid]; !ok {
				t.Errorf("fallback Full batch lacks %s", b.ruid)
			}
			if f.log.count("reconcile scan failed") == 0 {
				t.Errorf("no log line for the failed scan:\n%s", f.log)
			}

			f.proxy.RefuseNew(false)
			accepted := f.proxy.Accepted()
			time.Sleep(time.Second) // reconciles verify again
			if f.proxy.Accepted() == accepted {
				t.Fatal("no reconcile connection after connections were accepted again")
			}
			n = f.rec.Count()
			time.Sleep(time.Second)
			for i, b := range f.rec.All()[n:] {
				if b.Full {
					t.Errorf("batch %d after the refusal is Full: the reconcile did not verify", n+i)
				}
			}
		})
	}
}

// Killing the feed's connection must not lose a change: the feed reads
// the changelog from its position on a new connection (or, after an
// error, the watcher reads the table in full).
func TestCDCReconnectPostgres(t *testing.T) {
	srv := servers[1]
	f := newCDCFixture(t, srv, DBConfig{CDC: sqlwatch.CDCTrigger}, true)
	if got := f.db.Exec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE '%"+sqlwatch.Changelog+"%'"); got < 1 {
		t.Fatalf("terminated %d feed sessions, want at least 1", got)
	}
	for i := 7; i < 9; i++ {
		b := bindingN(i)
		n := f.rec.Count()
		f.kw.insert(t, b)
		f.rec.WaitFor(t, n, "insert after the feed's connection was killed", func(x source.Batch) bool { _, ok := byKey(x)[b.ruid]; return ok })
	}
}

func TestCDCChangelogPruned(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			f := newCDCFixture(t, srv, DBConfig{CDC: sqlwatch.CDCTrigger, ChangelogRetention: 100 * time.Millisecond}, true)
			for i := range 5 {
				f.kw.insert(t, bindingN(i))
			}
			f.rec.WaitFor(t, 1, "last insert", func(b source.Batch) bool { _, ok := byKey(b)[bindingN(4).ruid]; return ok })
			eventually(t, "changelog pruned", func() bool {
				return f.count(t, "SELECT COUNT(*) FROM "+sqlwatch.Changelog) == 0
			})
		})
	}
}

// A truncated changelog (seq restarting) is a gap: a Full batch follows.
func TestCDCChangelogGap(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			f := newCDCFixture(t, srv, DBConfig{CDC: sqlwatch.CDCTrigger}, true)
			for i := range 3 {
				f.kw.insert(t, bindingN(i))
			}
			f.rec.WaitFor(t, 1, "inserts", func(b source.Batch) bool { _, ok := byKey(b)[bindingN(2).ruid]; return ok })
			n := f.rec.Count()
			f.db.Exec(t, "TRUNCATE TABLE "+sqlwatch.Changelog)
			f.rec.WaitFor(t, n, "Full batch after the gap", func(b source.Batch) bool { return b.Full && len(b.Contacts) == 3 })
		})
	}
}

func (f *cdcFixture) count(t *testing.T, q string) int {
	t.Helper()
	var n int
	if err := f.db.QueryRow(q, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Without the triggers the watcher says so, naming the command, and polls.
func TestCDCNotInstalledFallsBack(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			f := newCDCFixture(t, srv, DBConfig{CDC: sqlwatch.CDCTrigger, PollInterval: 20 * time.Millisecond}, false)
			if !strings.Contains(f.log.String(), "regbridge cdc install") {
				t.Errorf("no warning naming `regbridge cdc install`:\n%s", f.log.String())
			}
			b := bindingN(1)
			n := f.rec.Count()
			f.kw.insert(t, b)
			f.rec.WaitFor(t, n, "insert by polling", func(x source.Batch) bool { _, ok := byKey(x)[b.ruid]; return ok })
			if m := f.w.Stats().Mode; m != source.ModePoll {
				t.Errorf("Stats().Mode = %q, want %q", m, source.ModePoll)
			}
		})
	}
}

// Uninstall leaves the table's triggers exactly as before install.
func TestCDCUninstallRestores(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			db := srv.open(t)
			srv.createTable(t, db, "location", false)
			w, err := srv.newWatcher(DBConfig{Endpoint: db.Endpoint, CDC: sqlwatch.CDCTrigger}, nil)
			if err != nil {
				t.Fatal(err)
			}
			triggers := func() []string {
				var out []string
				q := "SELECT trigger_name, event_manipulation, action_statement FROM information_schema.triggers WHERE event_object_table = 'location' AND trigger_schema = " +
					map[string]string{"mysql": "DATABASE()", "postgres": "current_schema()"}[srv.name] + " ORDER BY 1, 2"
				db.Query(t, q, func(cols []string) { out = append(out, strings.Join(cols, "|")) })
				return out
			}
			db.Exec(t, "CREATE TRIGGER keep_me BEFORE INSERT ON location FOR EACH ROW "+
				map[string]string{"mysql": "SET NEW.flags = NEW.flags", "postgres": "EXECUTE FUNCTION suppress_redundant_updates_trigger()"}[srv.name])
			before := triggers()
			install(t, w, true)
			install(t, w, true) // idempotent
			if got := triggers(); len(got) != len(before)+3 {
				t.Errorf("after install: %d trigger rows, want %d", len(got), len(before)+3)
			}
			install(t, w, false)
			install(t, w, false)
			if got := triggers(); !slices.Equal(got, before) {
				t.Errorf("after uninstall:\n%q\nwant\n%q", got, before)
			}
			if srv.name == "postgres" {
				var left string
				if err := db.QueryRow("SELECT concat_ws(',', to_regclass('"+sqlwatch.Changelog+"'), to_regproc('regbridge_cdc_location'))", &left); err != nil || left != "" {
					t.Errorf("left after uninstall: %q, %v", left, err)
				}
			}
		})
	}
}
