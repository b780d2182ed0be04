package sqlwatch

import (
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/regbridge/regbridge/source"
)

var rowsAB = [][3]string{{"a", "sip:a@x", "2000000000"}, {"b", "sip:b@x", "2000000000"}}

// Polls ask the fingerprint only; a snapshot follows a change, or the
// reconcile interval, and nothing else.
func TestPollSnapshotsOnChangeAndReconcile(t *testing.T) {
	tests := []struct {
		name      string
		reconcile time.Duration
		// snapshots after 10 quiet seconds, then after a change
		quiet, changed int
	}{
		{"reconcile every 3s", 3 * time.Second, 1 + 3, 1 + 3 + 1},
		{"never reconcile", Never, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := &fakeStore{}
				store.set(rowsAB...)
				w, _ := newTestWatcher(t, Config{PollInterval: 100 * time.Millisecond, ReconcileInterval: tt.reconcile}, store, &testLayout{})
				var sink batchLog
				stop := run(t, w, &sink)
				defer stop()
				synctest.Wait()
				b := sink.all()
				if len(b) != 1 || !b[0].Full || !slices.Equal(keysOf(b[0]), []string{"a", "b"}) || b[0].SeenAt.IsZero() {
					t.Fatalf("first batches = %+v", b)
				}
				st := w.Stats()
				if !st.Up || st.Polls != 2 || st.LastFull.IsZero() {
					t.Errorf("Stats = %+v, want Up, 2 polls (fingerprint, snapshot), LastFull", st)
				}

				time.Sleep(10*time.Second + 50*time.Millisecond)
				synctest.Wait()
				if got := store.snapshotCount(); got != tt.quiet {
					t.Errorf("snapshots after 10 quiet seconds = %d, want %d", got, tt.quiet)
				}
				store.set(rowsAB[:1]...)
				time.Sleep(100 * time.Millisecond)
				synctest.Wait()
				if got := store.snapshotCount(); got != tt.changed {
					t.Errorf("snapshots after a change = %d, want %d", got, tt.changed)
				}
				b = sink.all()
				if last := b[len(b)-1]; !slices.Equal(keysOf(last), []string{"a"}) {
					t.Errorf("last batch keys = %v, want [a]", keysOf(last))
				}
			})
		})
	}
}

// An outage is logged once each way, retried with capped exponential
// backoff, reported in Stats, and ends with a Full batch.
func TestOutageBackoffAndRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		store.set(rowsAB...)
		w, logs := newTestWatcher(t, Config{PollInterval: 100 * time.Millisecond, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}, store, &testLayout{})
		var sink batchLog
		stop := run(t, w, &sink)
		defer stop()
		synctest.Wait()

		store.setFail(errors.New("connection refused"))
		time.Sleep(10 * time.Second)
		synctest.Wait()
		st := w.Stats()
		if st.Up || st.Errors < 5 {
			t.Errorf("Stats during outage = %+v, want !Up and several errors", st)
		}
		if n := logs.count("table unreadable"); n != 1 {
			t.Errorf("outage logged %d times at warn, want once", n)
		}
		// Retries (opens after the first) wait 100ms, 200ms, ... capped at 1s.
		opens := store.openTimes()
		var gaps []time.Duration
		for i := 2; i < len(opens); i++ {
			gaps = append(gaps, opens[i].Sub(opens[i-1]))
		}
		want := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
		if len(gaps) < len(want) || !slices.Equal(gaps[:len(want)], want) {
			t.Errorf("retry gaps = %v, want them to start %v", gaps, want)
		}

		n := len(sink.all())
		store.set(rowsAB[:1]...) // changed during the outage
		store.setFail(nil)
		time.Sleep(time.Second)
		synctest.Wait()
		b := sink.all()
		if len(b) != n+1 || !b[n].Full || !slices.Equal(keysOf(b[n]), []string{"a"}) {
			t.Fatalf("after recovery got %d new batches %+v, want one Full batch [a]", len(b)-n, b[n:])
		}
		if !w.Stats().Up || logs.count("table readable again") != 1 {
			t.Errorf("recovery: Up=%v, recovery log lines %d", w.Stats().Up, logs.count("table readable again"))
		}
	})
}

// ErrReopen (a replaced SQLite file) reopens at once, without an outage.
func TestReopenIsNotAnOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		store.set(rowsAB...)
		w, logs := newTestWatcher(t, Config{PollInterval: 100 * time.Millisecond}, store, &testLayout{})
		var sink batchLog
		stop := run(t, w, &sink)
		defer stop()
		synctest.Wait()
		store.mu.Lock()
		store.reopen = 1
		store.mu.Unlock()
		time.Sleep(150 * time.Millisecond)
		synctest.Wait()
		if got := len(store.openTimes()); got != 2 {
			t.Errorf("opens = %d, want 2", got)
		}
		if b := sink.all(); len(b) != 2 || !b[1].Full {
			t.Errorf("batches = %d, want a second Full one after reopening", len(b))
		}
		if w.Stats().Errors != 0 || logs.count("unreadable") != 0 || logs.count("reopening store") != 1 {
			t.Errorf("reopen counted or logged as an outage: %+v", w.Stats())
		}
	})
}

// A layout that cannot read the column types makes the store unusable
// (an outage naming the reason), not a crash.
func TestBindErrorIsOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		w, logs := newTestWatcher(t, Config{}, store, &testLayout{bindErr: errors.New("column exp has type TEXT")})
		stop := run(t, w, &batchLog{})
		defer stop()
		time.Sleep(time.Second)
		synctest.Wait()
		if w.Stats().Up || logs.count(`level=WARN msg="table unreadable, retrying" err="table t: column exp has type TEXT"`) != 1 {
			t.Errorf("bind error not reported as an outage once")
		}
	})
}

// A failing sink is offered the snapshot again at the next poll, without a
// store change and without counting as an outage.
func TestSinkErrorReoffered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		store.set(rowsAB...)
		w, logs := newTestWatcher(t, Config{PollInterval: 100 * time.Millisecond, ReconcileInterval: Never}, store, &testLayout{})
		sink := &batchLog{fail: 3}
		stop := run(t, w, sink)
		defer stop()
		time.Sleep(time.Second)
		synctest.Wait()
		if b := sink.all(); len(b) != 1 || len(b[0].Contacts) != 2 {
			t.Errorf("accepted batches = %+v, want exactly one after the failures", b)
		}
		if logs.count("sink rejected") != 1 || logs.count("sink accepts batches again") != 1 || w.Stats().Errors != 0 {
			t.Errorf("want one rejection and one recovery log line and no store error")
		}
	})
}

// Bad rows and duplicate keys are skipped and counted at every snapshot,
// logged once while they stay, again if they come back.
func TestBadRowsSkippedLoggedOnce(t *testing.T) {
	store := &fakeStore{}
	w, logs := newTestWatcher(t, Config{}, store, &testLayout{})
	read := func(rows ...[3]string) []string {
		store.set(rows...)
		got, err := w.Snapshot(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return keysOf(source.Batch{Contacts: got})
	}
	bad := [3]string{"bad", "mailto:x", "1"}
	dup := [3]string{"a", "sip:other@x", "1"}
	if got := read(rowsAB[0], bad, dup, rowsAB[1]); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("first read = %v", got)
	}
	if got := read(rowsAB[0], bad, dup, rowsAB[1]); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("second read = %v", got)
	}
	if s := w.Stats().Skipped; s != 4 {
		t.Errorf("Skipped = %d, want 4 (two rows, two snapshots)", s)
	}
	if logs.count("skipping bad row") != 2 || logs.count(`key="k=bad"`) != 1 || logs.count("duplicate key") != 1 {
		t.Errorf("want one log line per bad row")
	}
	read(rowsAB...)
	read(rowsAB[0], bad)
	if n := logs.count(`key="k=bad"`); n != 2 {
		t.Errorf("bad row that came back logged %d times in total, want 2", n)
	}
}

// The log of bad rows is bounded.
func TestBadRowLogCapped(t *testing.T) {
	store := &fakeStore{}
	var rows [][3]string
	for i := range maxLoggedBadRows + 10 {
		rows = append(rows, [3]string{"bad" + itoa(i), "mailto:x", "1"})
	}
	store.set(rows...)
	w, logs := newTestWatcher(t, Config{}, store, &testLayout{})
	for range 2 {
		if _, err := w.Snapshot(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if n := logs.count("skipping bad row"); n != maxLoggedBadRows {
		t.Errorf("logged %d bad rows, want the cap %d", n, maxLoggedBadRows)
	}
	if n := logs.count("too many bad rows"); n != 1 {
		t.Errorf("cap warning logged %d times, want once", n)
	}
	if len(w.snap.badLogged) > maxLoggedBadRows {
		t.Errorf("dedup set holds %d keys, cap is %d", len(w.snap.badLogged), maxLoggedBadRows)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// A KeyedSink gets the whole table once, then Full batches of the changed
// rows alone with every key named; after it rejects a batch, the whole
// table again.
func TestKeyedSinkGetsChangedRows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		store.set(rowsAB...)
		w, _ := newTestWatcher(t, Config{PollInterval: 100 * time.Millisecond, ReconcileInterval: Never}, store, &testLayout{})
		var sink keyedLog
		stop := run(t, w, &sink)
		defer stop()
		step := func(rows ...[3]string) {
			store.set(rows...)
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		synctest.Wait()
		steps := []struct {
			name     string
			rows     [][3]string
			keyed    bool     // delivered through ApplyFull
			contacts []string // keys of Contacts
			same     []string // keys ApplyFull named
		}{
			{"first batch is complete", rowsAB, false, []string{"a", "b"}, nil},
			{"changed row alone", [][3]string{rowsAB[0], {"b", "sip:b2@x", "2000000000"}}, true, []string{"b"}, []string{"a", "b"}},
			{"delete", [][3]string{rowsAB[0]}, true, nil, []string{"a"}},
			{"insert", [][3]string{rowsAB[0], {"c", "sip:c@x", "2000000000"}}, true, []string{"c"}, []string{"a", "c"}},
			{"rejected: offered again in full", [][3]string{rowsAB[0], {"c", "sip:c@x", "2000000001"}}, false, []string{"a", "c"}, nil},
			{"then changes again", [][3]string{{"c", "sip:c@x", "2000000001"}}, true, nil, []string{"c"}},
		}
		for i, st := range steps {
			if i > 0 {
				if strings.HasPrefix(st.name, "rejected") {
					sink.mu.Lock()
					sink.failKeyed = 1
					sink.mu.Unlock()
				}
				step(st.rows...)
				if sink.keyedFailing() {
					time.Sleep(100 * time.Millisecond) // the rejection, then the retry
					synctest.Wait()
				}
			}
			b := sink.all()
			if len(b) == 0 {
				t.Fatalf("%s: no batch", st.name)
			}
			last := b[len(b)-1]
			sink.mu.Lock()
			same, keyed := sink.same[len(b)-1], sink.keyed[len(b)-1]
			sink.mu.Unlock()
			if !last.Full || keyed != st.keyed || !slices.Equal(keysOf(last), st.contacts) || !slices.Equal(same, st.same) {
				t.Errorf("%s: got Full=%v keyed=%v contacts %v same %v; want keyed=%v contacts %v same %v",
					st.name, last.Full, keyed, keysOf(last), same, st.keyed, st.contacts, st.same)
			}
		}
		if b := sink.all(); b[1].Contacts[0].URI != "sip:b2@x" {
			t.Errorf("changed row decoded as %+v", b[1].Contacts[0])
		}
	})
}

// With a KeyedSink in sync, an unchanged row is hashed, not decoded: a
// steady-state read allocates nothing per row.
func TestSteadyReadDoesNotAllocate(t *testing.T) {
	store := &fakeStore{}
	var many [][3]string
	for i := range 1000 {
		many = append(many, [3]string{"k" + itoa(i), "sip:u" + itoa(i) + "@x", "2000000000"})
	}
	store.set(many...)
	w, _ := newTestWatcher(t, Config{}, store, &testLayout{})
	s, err := store.Open(t.Context(), &w.table)
	if err != nil {
		t.Fatal(err)
	}
	w.keyed = &keyedLog{}
	if err := w.read(t.Context(), s); err != nil || !w.complete || len(w.snap.full) != 1000 {
		t.Fatalf("first read: complete=%v, %d contacts, %v", w.complete, len(w.snap.full), err)
	}
	w.snap.synced = true // as after delivering it
	allocs := testing.AllocsPerRun(5, func() {
		if err := w.read(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		if w.complete || len(w.snap.changed) != 0 || len(w.snap.rows) != 1000 {
			t.Fatalf("steady read: complete=%v, %d changed, %d rows", w.complete, len(w.snap.changed), len(w.snap.rows))
		}
		w.snap.synced = true
	})
	if perRow := allocs / 1000; perRow > 0.01 {
		t.Errorf("steady-state snapshot allocates %.3f times per row, want about 0", perRow)
	}
}

func TestRunTwiceRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &fakeStore{}
		w, _ := newTestWatcher(t, Config{}, store, &testLayout{})
		stop := run(t, w, &batchLog{})
		defer stop()
		synctest.Wait()
		if err := w.Run(t.Context(), &batchLog{}); err == nil {
			t.Errorf("second Run succeeded")
		}
		if _, err := w.Snapshot(t.Context()); err == nil {
			t.Errorf("Snapshot during Run succeeded")
		}
	})
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero means defaults", Config{}, true},
		{"never reconcile", Config{ReconcileInterval: Never}, true},
		{"busy loop", Config{PollInterval: time.Microsecond}, false},
		{"negative reconcile", Config{ReconcileInterval: -time.Second}, false},
		{"max below min backoff", Config{MinBackoff: time.Second, MaxBackoff: time.Millisecond}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && (tt.cfg.PollInterval == 0 || tt.cfg.QueryTimeout == 0 || tt.cfg.MaxBackoff == 0) {
				t.Errorf("defaults not applied: %+v", tt.cfg)
			}
		})
	}
}

func TestTableValidate(t *testing.T) {
	tests := []struct {
		name string
		t    Table
		ok   bool
	}{
		{"good", Table{Name: "location", Columns: []string{"ruid"}, Watch: []string{"ruid"}}, true},
		{"quote in name", Table{Name: `loc"x`, Columns: []string{"ruid"}}, false},
		{"dot in name", Table{Name: "main.location", Columns: []string{"ruid"}}, false},
		{"bad column", Table{Name: "location", Columns: []string{"ru id"}}, false},
		{"key out of range", Table{Name: "location", Columns: []string{"ruid"}, Key: 1}, false},
		{"log key out of range", Table{Name: "location", Columns: []string{"ruid"}, LogKey: []int{3}}, false},
	}
	for _, tt := range tests {
		if err := tt.t.validate(); (err == nil) != tt.ok {
			t.Errorf("%s: validate = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
