package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// TestKamailioLayoutEvents follows one table through the life of its
// bindings as Kamailio's db_redis writes them, with keyspace events on:
// the baseline is a Full batch, every later step a small non-Full batch.
func TestKamailioLayoutEvents(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	tests := []struct {
		name  string
		table string // as in the keys modparam
		loc   *time.Location
	}{
		{"plain table, registrar in UTC", "location", time.UTC},
		{"version prefix, registrar in Berlin", "v2:location", berlin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := needRedis(t)
			setKeyspaceEvents(t, rdb, "Kghx", true)
			// A unique table name keeps this test's keys apart.
			table := uniqueName(t, tt.table)
			prefix := table + ":entry::"
			cleanPrefix(t, rdb, table)
			ctx := context.Background()
			exp := time.Now().Add(time.Hour).Truncate(time.Second)
			hset(t, rdb, prefix+"uloc-a", kamailioEntry{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1", expires: exp}.fields(tt.loc))
			// Mapping keys Kamailio also writes are never read.
			rdb.SAdd(ctx, table+":timer::0:0", prefix+"uloc-a")
			rdb.SAdd(ctx, table+"::index::timer", table+":timer::0:0")

			log, logs := newLogger(t)
			w := newWatcher(t, Config{Table: table, Location: tt.loc, Domain: "example.com"}, log)
			var rec recorder
			startRun(t, w, rec.sink())
			first := rec.waitFor(t, 0, "baseline", func(source.Batch) bool { return true })
			if !first.Full || !slices.Equal(batchKeys(first), []string{"uloc-a"}) {
				t.Fatalf("first batch = %+v, want Full with uloc-a", first)
			}
			if c := first.Contacts[0]; !c.Expires.Equal(exp) || c.AOR != "sip:alice@example.com" {
				t.Errorf("decoded %+v, want expires %v and the configured domain", c, exp)
			}
			eventually(t, "Up", func() bool { return w.Stats().Up })

			steps := []struct {
				name  string
				do    func(t *testing.T)
				check func(b source.Batch) bool
			}{
				{
					name: "new binding",
					do: func(t *testing.T) {
						hset(t, rdb, prefix+"uloc-b", kamailioEntry{ruid: "uloc-b", user: "bob", domain: "example.org", contact: "sip:bob@192.0.2.2", expires: exp}.fields(tt.loc))
					},
					check: func(b source.Batch) bool {
						return len(b.Contacts) == 1 && b.Contacts[0].Key == "uloc-b" && b.Contacts[0].AOR == "sip:bob@example.org"
					},
				},
				{
					name: "refresh in place",
					do: func(t *testing.T) {
						hset(t, rdb, prefix+"uloc-a", map[string]any{"cseq": "2", "expires": exp.Add(time.Hour).In(tt.loc).Format(kamailioTimeLayout)})
					},
					check: func(b source.Batch) bool {
						return len(b.Contacts) == 1 && b.Contacts[0].CSeq == 2 && b.Contacts[0].Expires.Equal(exp.Add(time.Hour))
					},
				},
				{
					name:  "un-REGISTER deletes the entry",
					do:    func(t *testing.T) { del(t, rdb, prefix+"uloc-b") },
					check: func(b source.Batch) bool { return slices.Equal(b.Deleted, []string{"uloc-b"}) && len(b.Contacts) == 0 },
				},
				{
					name: "Redis expires the entry (hash_expires)",
					do: func(t *testing.T) {
						if err := rdb.PExpire(ctx, prefix+"uloc-a", 20*time.Millisecond).Err(); err != nil {
							t.Fatal(err)
						}
					},
					check: func(b source.Batch) bool { return slices.Equal(b.Deleted, []string{"uloc-a"}) },
				},
			}
			for _, s := range steps {
				n := rec.count()
				s.do(t)
				b := rec.waitFor(t, n, s.name, func(b source.Batch) bool { return !b.Full && s.check(b) })
				if b.SeenAt.IsZero() {
					t.Errorf("%s: batch without SeenAt", s.name)
				}
			}
			for _, b := range rec.all()[1:] {
				if b.Full {
					t.Errorf("unexpected Full batch after the baseline: %+v", b)
				}
			}
			if n := logs.count("following keyspace notifications"); n != 1 {
				t.Errorf("events verdict logged %d times, want 1", n)
			}
			st := w.Stats()
			if !st.Up || st.Polls == 0 || st.LastFull.IsZero() || st.Errors != 0 || st.Skipped != 0 {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

// A burst of writes is read in a few pipelined batches, not one read per
// event.
func TestBurstCoalesced(t *testing.T) {
	rdb := needRedis(t)
	setKeyspaceEvents(t, rdb, "Kghx", true)
	table := uniqueName(t, "location")
	prefix := table + ":entry::"
	cleanPrefix(t, rdb, table)
	w := newWatcher(t, Config{Table: table, PollInterval: time.Hour}, nil)
	var rec recorder
	startRun(t, w, rec.sink())
	rec.waitFor(t, 0, "baseline", func(source.Batch) bool { return true })
	pollsBefore := w.Stats().Polls

	const n = 2000
	exp := time.Now().Add(time.Hour)
	pipe := rdb.Pipeline()
	for i := range n {
		ruid := fmt.Sprintf("uloc-%04d", i)
		pipe.HSet(context.Background(), prefix+ruid, kamailioEntry{ruid: ruid, user: fmt.Sprint("u", i), contact: "sip:u@192.0.2.9", expires: exp}.fields(time.UTC))
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "all bindings", func() bool { return len(rec.keys()) == n })
	reads := w.Stats().Polls - pollsBefore
	if reads > n/50 {
		t.Errorf("%d reads for %d writes, want them coalesced", reads, n)
	}
	t.Logf("%d writes read in %d batches", n, reads)
}

// Entries that cannot be decoded are skipped, counted every time they are
// read, logged once per key, and reported gone in change batches.
func TestBadEntries(t *testing.T) {
	rdb := needRedis(t)
	setKeyspaceEvents(t, rdb, "Kghx", true)
	table := uniqueName(t, "location")
	prefix := table + ":entry::"
	cleanPrefix(t, rdb, table)
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	good := kamailioEntry{ruid: "uloc-good", user: "alice", contact: "sip:alice@192.0.2.1", expires: exp}
	hset(t, rdb, prefix+"uloc-good", good.fields(time.UTC))
	hset(t, rdb, prefix+"uloc-date", map[string]any{"username": "bob", "contact": "sip:bob@h", "expires": "2026-02-30 10:00:00"})
	rdb.Set(ctx, prefix+"uloc-string", "not a hash", 0)

	log, logs := newLogger(t)
	w := newWatcher(t, Config{Table: table, Reconcile: 100 * time.Millisecond}, log)
	var rec recorder
	startRun(t, w, rec.sink())
	first := rec.waitFor(t, 0, "baseline", func(source.Batch) bool { return true })
	if !slices.Equal(batchKeys(first), []string{"uloc-good"}) {
		t.Fatalf("baseline keys %v", batchKeys(first))
	}
	// Several reconciles read the bad entries again without logging them
	// again.
	eventually(t, "three reconciles", func() bool {
		n := 0
		for _, b := range rec.all() {
			if b.Full {
				n++
			}
		}
		return n >= 3
	})
	if w.Stats().Skipped < 6 {
		t.Errorf("Skipped = %d, want both bad entries counted at every snapshot", w.Stats().Skipped)
	}
	for _, k := range []string{"uloc-date", "uloc-string"} {
		if n := logs.count("key=" + prefix + k); n != 1 {
			t.Errorf("%s logged %d times, want once", k, n)
		}
	}
	if w.Stats().Up != true || w.Stats().Errors != 0 {
		t.Errorf("bad entries counted as an outage: %+v", w.Stats())
	}

	// A good binding that turns bad is reported gone, and logged.
	n := rec.count()
	hset(t, rdb, prefix+"uloc-good", map[string]any{"contact": "javascript:alert(1)"})
	rec.waitFor(t, n, "bad change reported as a delete", func(b source.Batch) bool {
		return !b.Full && slices.Equal(b.Deleted, []string{"uloc-good"})
	})
	if logs.count("key="+prefix+"uloc-good") != 1 {
		t.Errorf("binding gone bad not logged once")
	}
}

// A sink that refuses a batch is offered a Full snapshot again; that is not
// a store outage.
func TestSinkErrorRetried(t *testing.T) {
	rdb := needRedis(t)
	setKeyspaceEvents(t, rdb, "Kghx", true)
	table := uniqueName(t, "location")
	prefix := table + ":entry::"
	cleanPrefix(t, rdb, table)
	exp := time.Now().Add(time.Hour)
	log, logs := newLogger(t)
	w := newWatcher(t, Config{Table: table}, log)
	var calls, fullAfterRefusal atomic.Int32
	var refused atomic.Bool
	startRun(t, w, fakeSink{apply: func(_ context.Context, b source.Batch) error {
		switch calls.Add(1) {
		case 1: // baseline
			return nil
		case 2: // the change
			refused.Store(true)
			return errors.New("bridge busy")
		}
		if refused.Load() && b.Full && len(b.Contacts) == 1 {
			fullAfterRefusal.Add(1)
		}
		return nil
	}})
	eventually(t, "baseline", func() bool { return calls.Load() >= 1 })
	hset(t, rdb, prefix+"uloc-a", kamailioEntry{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1", expires: exp}.fields(time.UTC))
	eventually(t, "Full batch after the refusal", func() bool { return fullAfterRefusal.Load() > 0 })
	if logs.count("sink rejected") != 1 {
		t.Errorf("refusal logged %d times, want once", logs.count("sink rejected"))
	}
	if logs.count("unreachable") != 0 || w.Stats().Errors != 0 {
		t.Errorf("sink refusal reported as a store outage")
	}
}

// TestGenericLayout runs the documented generic layout end to end.
func TestGenericLayout(t *testing.T) {
	rdb := needRedis(t)
	setKeyspaceEvents(t, rdb, "Kghx", true)
	prefix := uniqueName(t, "reg:contact") + ":"
	cleanPrefix(t, rdb, prefix)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	hset(t, rdb, prefix+"b1", map[string]any{
		"aor": "sip:alice@example.com", "uri": "sip:alice@192.0.2.1:5060", "expires": exp.Unix(), "callid": "c1", "cseq": 1,
	})
	w := newWatcher(t, Config{Layout: LayoutGeneric, Prefix: prefix}, nil)
	var rec recorder
	startRun(t, w, rec.sink())
	first := rec.waitFor(t, 0, "baseline", func(source.Batch) bool { return true })
	want := source.Contact{Key: "b1", AOR: "sip:alice@example.com", URI: "sip:alice@192.0.2.1:5060", Expires: exp.UTC(), Q: -1, CallID: "c1", CSeq: 1}
	if !first.Full || len(first.Contacts) != 1 || first.Contacts[0] != want {
		t.Fatalf("baseline = %+v, want %+v", first, want)
	}
	n := rec.count()
	hset(t, rdb, prefix+"b2", map[string]any{"aor": "sip:bob@example.com", "uri": "sip:bob@192.0.2.2", "expires": 0, "admin": "1"})
	b := rec.waitFor(t, n, "new binding", func(b source.Batch) bool { return !b.Full && len(b.Contacts) == 1 })
	if c := b.Contacts[0]; c.Key != "b2" || !c.Permanent() || !c.Administrative {
		t.Errorf("got %+v, want permanent administrative b2", c)
	}
	n = rec.count()
	// A registrar may let Redis expire its bindings.
	if err := rdb.Expire(context.Background(), prefix+"b1", time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, n, "expired key", func(b source.Batch) bool { return slices.Contains(b.Deleted, "b1") })
}
