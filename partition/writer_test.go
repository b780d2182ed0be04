package partition_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/partition"
	"github.com/regbridge/regbridge/source"
)

// localRedis is the local ordinary Redis and a prefix of the test's own,
// its keys deleted afterwards.
func localRedis(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}})
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		if os.Getenv("CI") != "" {
			t.Fatalf("Redis at 127.0.0.1:6379: %v", err)
		}
		t.Skipf("no Redis at 127.0.0.1:6379 (Debian: redis-server): %v", err)
	}
	prefix := fmt.Sprintf("rbtest:partition:%s:%d", t.Name(), time.Now().UnixNano())
	t.Cleanup(func() {
		keys, _ := rdb.Keys(ctx, "{"+prefix+":*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
		rdb.Close()
	})
	return rdb, prefix
}

var exp = time.Now().Add(time.Hour).UTC().Truncate(time.Second)

func bind(key, user string, cseq uint32) source.Contact {
	return source.Contact{Key: key, AOR: "sip:" + user + "@Example.com", URI: "sip:" + user + "@10.0.0.1:5060",
		Expires: exp, Q: -1, CallID: "c-" + key, CSeq: cseq}
}

// readerRun is one reading instance: its bridge, fed by the test as a
// source would, recorded into the streams by a Persister.
type readerRun struct {
	b      *bridge.Bridge
	w      *partition.StreamWriter
	cancel context.CancelFunc
	done   chan struct{}
}

func startReaderRun(t *testing.T, s *partition.Streams, m *partition.Map, epoch int64) *readerRun {
	t.Helper()
	ctx := context.Background()
	r, base, err := s.OpenReader(ctx, epoch)
	if err != nil {
		t.Fatal(err)
	}
	b := bridge.New(quiet)
	w, restore, err := partition.NewStreamWriter(m, r, base, partition.BridgeView(b, m))
	if err != nil {
		t.Fatal(err)
	}
	if len(restore) > 0 {
		b.Restore(restore)
	}
	p := bridge.NewPersister(b, w, quiet)
	b.Subscribe(p)
	rctx, cancel := context.WithCancel(ctx)
	rr := &readerRun{b: b, w: w, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(rr.done); p.Run(rctx) }()
	return rr
}

func (rr *readerRun) stop() { rr.cancel(); <-rr.done }

// TestStreamWriter: the reading instance's bridge records its contacts
// into the partitions' streams; a new reader restores them, diffs its
// first snapshot and appends only what changed meanwhile; the old one is
// fenced.
func TestStreamWriter(t *testing.T) {
	rdb, prefix := localRedis(t)
	ctx := context.Background()
	m, _ := partition.NewMap(prefix, 16)
	s := partition.NewStreams(rdb, m, 0)
	cs := newConsumer(t, s, 16)
	drain := func(want int, what string) {
		t.Helper()
		got := 0
		eventually(t, 5*time.Second, func() bool { got += cs.poll(ctx); return got >= want }, what)
		time.Sleep(150 * time.Millisecond) // three Persister rounds: nothing more may come
		if got += cs.poll(ctx); got != want {
			t.Errorf("%s: %d stream entries, want %d", what, got, want)
		}
	}

	r1 := startReaderRun(t, s, m, 1)
	var snap []source.Contact
	for i := range 40 {
		snap = append(snap, bind(fmt.Sprintf("k%d", i), fmt.Sprintf("u%d", i), 1))
	}
	if err := r1.b.Apply(ctx, source.Batch{Full: true, Contacts: snap}); err != nil {
		t.Fatal(err)
	}
	drain(40, "the first reader's baseline")
	snap[3] = bind("k3", "u3", 2)
	if err := r1.b.Apply(ctx, source.Batch{Contacts: []source.Contact{snap[3]}, Deleted: []string{"k7"}}); err != nil {
		t.Fatal(err)
	}
	drain(2, "a refresh and a removal")
	r1.stop()

	// While no reader runs, the store changes: k8 is gone, k40 is new.
	snap = append(snap[:7], snap[9:]...)
	snap = append(snap, bind("k8x", "u8", 1), bind("k40", "u40", 1))
	r2 := startReaderRun(t, s, m, 2)
	defer r2.stop()
	if err := r2.b.Apply(ctx, source.Batch{Full: true, Contacts: snap}); err != nil {
		t.Fatal(err)
	}
	drain(3, "the second reader's first snapshot (k8 gone, k8x and k40 new)")
	for p, view := range cs.view {
		for k, js := range view {
			var c source.Contact
			if err := json.Unmarshal([]byte(js), &c); err != nil || c.Key != k {
				t.Fatalf("partition %d: %q holds %q (%v)", p, k, js, err)
			}
			if m.Of(bridge.CanonicalAOR(c.AOR)) != p {
				t.Errorf("%s is in partition %d, not its AOR's", k, p)
			}
		}
	}
	n := 0
	for _, v := range cs.view {
		n += len(v)
	}
	if n != len(snap) {
		t.Errorf("the streams hold %d contacts, the store %d", n, len(snap))
	}
	if err := r1.w.WriteContacts(ctx, []source.Contact{bind("late", "u1", 9)}, nil); !errors.Is(err, partition.ErrFenced) {
		t.Errorf("the first reader's late write: %v, want ErrFenced", err)
	}
}

// TestStreamWriterChunks: a large write (a first snapshot of a big store)
// is appended in pipelines of a bounded size, not one pipeline of every
// change, which would run past the client's read timeout and leave every
// partition to a Sync; every change is recorded once.
func TestStreamWriterChunks(t *testing.T) {
	rdb, prefix := localRedis(t)
	ctx := context.Background()
	m, _ := partition.NewMap(prefix, 16)
	s := partition.NewStreams(rdb, m, 0)
	r, base, err := s.OpenReader(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	w, _, err := partition.NewStreamWriter(m, r, base, func(int) map[string]string { return nil })
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	ups := make([]source.Contact, n)
	for i := range ups {
		ups[i] = bind(fmt.Sprintf("k%d", i), fmt.Sprintf("u%d", i), 1)
	}
	counter := &trips{}
	rdb.AddHook(counter)
	if err := w.WriteContacts(ctx, ups, nil); err != nil {
		t.Fatal(err)
	}
	if got := counter.n.Load(); got != 3 {
		t.Errorf("%d changes appended in %d round trips, want 3 (2,000 at most each)", n, got)
	}
	ps := make([]int, 16)
	for p := range ps {
		ps[p] = p
	}
	b, err := s.Baselines(ctx, ps)
	if err != nil {
		t.Fatal(err)
	}
	var held, seq int64
	for _, bl := range b {
		held += int64(len(bl.State))
		seq += bl.Seq
	}
	if held != n || seq != n {
		t.Errorf("the partitions hold %d contacts after %d appends, want %d of each", held, seq, n)
	}
}
