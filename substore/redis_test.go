package substore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// testRedis connects to the local Redis and returns a key prefix of the
// test's own (siptest.Redis).
func testRedis(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	return siptest.Redis(t)
}

func newStore(rdb redis.UniversalClient, prefix, me string, lease time.Duration) *Redis {
	return NewRedis(rdb, prefix, me, lease, slog.New(slog.DiscardHandler))
}

func rec(id string) *Record {
	return &Record{ID: id, CallID: "c-" + id, LocalTag: "l", RemoteTag: "r", LocalURI: "sip:alice@example.com",
		RemoteURI: "sip:watcher@example.com", Target: "sip:watcher@127.0.0.1:5070", Routes: []string{"<sip:p1;lr>"},
		Transport: "UDP", Source: "127.0.0.1:5070", Package: "reg", Event: "reg", AOR: "sip:alice@example.com",
		Expires: time.Now().Add(time.Hour).Round(0), LocalCSeq: 7, Version: 0, RemoteCSeq: 1}
}

func TestSaveTakeDelete(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	a := newStore(rdb, prefix, "a", time.Second)
	r := rec("s1\x00x\x00y")
	if err := a.Save(ctx, r, true); err != nil {
		t.Fatal(err)
	}
	got, was, err := a.Take(ctx, r.ID)
	if err != nil || !was {
		t.Fatalf("Take: %v %v", was, err)
	}
	if got.Target != r.Target || got.Routes[0] != r.Routes[0] || got.LocalCSeq != 7 || got.Owner != "a" || !got.Expires.Equal(r.Expires) {
		t.Fatalf("round trip: %+v", got)
	}
	if err := a.Delete(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Take(ctx, r.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := a.Save(ctx, r, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing record: %v", err)
	}
}

func TestFencing(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	a := newStore(rdb, prefix, "a", time.Second)
	b := newStore(rdb, prefix, "b", time.Second)
	r := rec("s1")
	if err := a.Save(ctx, r, true); err != nil {
		t.Fatal(err)
	}
	for want := uint32(0); want < 3; want++ {
		cseq, ver, err := a.Advance(ctx, r.ID)
		if err != nil || ver != want || cseq != 8+want {
			t.Fatalf("advance %d: cseq %d version %d err %v", want, cseq, ver, err)
		}
	}
	// A refresh reaches b: ownership moves, the counters continue there.
	got, was, err := b.Take(ctx, r.ID)
	if err != nil || was || got.Version != 3 || got.LocalCSeq != 10 {
		t.Fatalf("take by b: %+v %v %v", got, was, err)
	}
	if _, _, err := a.Advance(ctx, r.ID); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("stale owner's advance: %v", err)
	}
	if err := a.Save(ctx, r, false); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("stale owner's save: %v", err)
	}
	a.Delete(ctx, r.ID) // a stale owner cannot delete either
	if cseq, ver, err := b.Advance(ctx, r.ID); err != nil || ver != 3 || cseq != 11 {
		t.Fatalf("b advance: %d %d %v", cseq, ver, err)
	}
	if n, _ := rdb.SCard(ctx, a.ownedKey("a")).Result(); n != 0 {
		t.Fatalf("a still lists %d subscriptions", n)
	}
}

func TestClaimDeadInstance(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	lease := 300 * time.Millisecond
	a := newStore(rdb, prefix, "a", lease)
	b := newStore(rdb, prefix, "b", lease)
	if err := a.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := a.Save(ctx, rec(fmt.Sprint("s", i)), true); err != nil {
			t.Fatal(err)
		}
	}
	b.Beat(ctx)
	if got, err := b.Claim(ctx, 100); err != nil || len(got) != 0 {
		t.Fatalf("claimed from a live instance: %d %v", len(got), err)
	}
	deadline := time.Now().Add(3 * time.Second)
	var got []*Record
	for len(got) < 5 && time.Now().Before(deadline) {
		batch, err := b.Claim(ctx, 2) // bounded batches
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) > 2 {
			t.Fatalf("batch of %d over the bound", len(batch))
		}
		got = append(got, batch...)
		time.Sleep(50 * time.Millisecond)
	}
	if len(got) != 5 {
		t.Fatalf("claimed %d of 5", len(got))
	}
	for _, r := range got {
		if r.Owner != "b" {
			t.Fatalf("owner %q", r.Owner)
		}
	}
	if _, _, err := a.Advance(ctx, "s0"); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("dead owner's advance after claim: %v", err)
	}
	if ok, _ := rdb.SIsMember(ctx, a.instancesKey(), "a").Result(); ok {
		t.Fatal("an emptied dead instance stays listed")
	}
}

func TestConcurrentClaimers(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	lease := 200 * time.Millisecond
	dead := newStore(rdb, prefix, "dead", lease)
	const subs = 300
	for i := range subs {
		if err := dead.Save(ctx, rec(fmt.Sprint("s", i)), true); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	owner := map[string]string{}
	var wg sync.WaitGroup
	for c := range 4 {
		st := newStore(rdb, prefix, fmt.Sprint("c", c), lease)
		st.Beat(ctx)
		wg.Go(func() {
			deadline := time.Now().Add(3 * time.Second)
			for time.Now().Before(deadline) {
				batch, err := st.Claim(ctx, 25)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, r := range batch {
					if prev, dup := owner[r.ID]; dup {
						t.Errorf("%s claimed by %s and %s", r.ID, prev, st.me)
					}
					owner[r.ID] = st.me
				}
				n := len(owner)
				mu.Unlock()
				if n == subs {
					return
				}
				st.Beat(ctx)
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if len(owner) != subs {
		t.Fatalf("claimed %d of %d", len(owner), subs)
	}
}

func TestRecoverAlone(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	old := newStore(rdb, prefix, "old", time.Second)
	old.Beat(ctx)
	old.Save(ctx, rec("s1"), true)
	old.Release(ctx) // graceful stop
	same := newStore(rdb, prefix, "new", time.Second)
	recs, alone, err := same.Recover(ctx)
	if err != nil || !alone || len(recs) != 1 || recs[0].Owner != "new" {
		t.Fatalf("recover: %d %v %v", len(recs), alone, err)
	}
	// With a live peer, a newcomer takes only its own.
	peer := newStore(rdb, prefix, "peer", time.Second)
	peer.Beat(ctx)
	third := newStore(rdb, prefix, "third", time.Second)
	if recs, alone, err := third.Recover(ctx); err != nil || alone || len(recs) != 0 {
		t.Fatalf("recover beside a peer: %d %v %v", len(recs), alone, err)
	}
}

func TestContacts(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	st := newStore(rdb, prefix, "a", time.Second)
	exp := time.Now().Add(time.Hour).Round(0)
	cs := []source.Contact{{Key: "k1", AOR: "sip:a@x", URI: "sip:a@1", Expires: exp, CSeq: 3}, {Key: "k2", AOR: "sip:b@x", URI: "sip:b@1"}}
	if err := st.WriteContacts(ctx, cs, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.WriteContacts(ctx, nil, []string{"k2"}); err != nil {
		t.Fatal(err)
	}
	got, err := st.LoadContacts(ctx)
	if err != nil || len(got) != 1 || got[0].Key != "k1" || !got[0].Expires.Equal(exp) || got[0].CSeq != 3 {
		t.Fatalf("load: %+v %v", got, err)
	}
}
