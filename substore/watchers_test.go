package substore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// changeLog collects what a sink receives.
type changeLog struct {
	mu sync.Mutex
	cs []WatcherChange
}

func (l *changeLog) sink(c WatcherChange) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cs = append(l.cs, c)
}

func (l *changeLog) wait(t *testing.T, n int) []WatcherChange {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		if len(l.cs) >= n {
			out := append([]WatcherChange(nil), l.cs...)
			l.mu.Unlock()
			return out
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("want %d watcher changes, have %d", n, len(l.cs))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func watcher(id string) Watcher {
	return Watcher{ID: id, Package: "reg", AOR: "sip:alice@example.com", URI: "sip:w@example.com",
		DisplayName: "W \"x\"\n", Since: time.Now().Round(0), Expires: time.Now().Add(time.Hour).Round(0)}
}

func sameWatcher(a, b Watcher) bool {
	return a.ID == b.ID && a.Package == b.Package && a.AOR == b.AOR && a.URI == b.URI &&
		a.DisplayName == b.DisplayName && a.Since.Equal(b.Since) && a.Expires.Equal(b.Expires)
}

// watcherStore is what both implementations offer.
type watcherStore interface {
	AddWatcher(ctx context.Context, w Watcher) error
	RefreshWatcher(ctx context.Context, w Watcher) error
	EndWatcher(ctx context.Context, w Watcher, event string) error
	ListWatchers(ctx context.Context, aor string) ([]Watcher, uint64, error)
}

// checkWatcherContract runs one story through a store: a watcher added,
// refreshed, ended once (a second end is no change), and the list's
// sequence number covering exactly the changes made.
func checkWatcherContract(t *testing.T, st watcherStore, log *changeLog) {
	ctx := context.Background()
	w1, w2 := watcher("w1"), watcher("w2")
	w2.Package = "presence"
	for _, w := range []Watcher{w1, w2} {
		if err := st.AddWatcher(ctx, w); err != nil {
			t.Fatal(err)
		}
	}
	cs := log.wait(t, 2)
	if !sameWatcher(cs[0].Watcher, w1) || cs[0].Ended != "" || cs[1].Seq <= cs[0].Seq {
		t.Fatalf("changes %+v", cs)
	}
	list, seq, err := st.ListWatchers(ctx, w1.AOR)
	if err != nil || len(list) != 2 || seq != cs[1].Seq {
		t.Fatalf("list %+v at %d (%v), want both at %d", list, seq, err, cs[1].Seq)
	}
	w1.Expires = w1.Expires.Add(time.Hour)
	if err := st.RefreshWatcher(ctx, w1); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := st.EndWatcher(ctx, w1, "timeout"); err != nil {
			t.Fatal(err)
		}
	}
	cs = log.wait(t, 3)
	if end := cs[2]; end.Ended != "timeout" || end.Watcher.ID != "w1" || !end.Watcher.Expires.Equal(w1.Expires) {
		t.Fatalf("end %+v", end)
	}
	list, seq, _ = st.ListWatchers(ctx, w1.AOR)
	if len(list) != 1 || list[0].ID != "w2" || seq != cs[2].Seq {
		t.Fatalf("after the end: %+v at %d", list, seq)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(log.wait(t, 3)); n != 3 {
		t.Fatalf("%d changes, want 3: a watcher ends once", n)
	}
	if l, _, _ := st.ListWatchers(ctx, "sip:nobody@example.com"); len(l) != 0 {
		t.Fatalf("another AOR's list: %+v", l)
	}
}

func TestLocalWatchers(t *testing.T) {
	log := &changeLog{}
	checkWatcherContract(t, NewLocalWatchers(log.sink), log)
}

// TestRedisWatchers: changes recorded by instance a reach a follower on
// instance b, in order and once, and b reads a's list; a watcher whose
// instances all died is ended with timeout by the first list that finds
// it past its time.
func TestRedisWatchers(t *testing.T) {
	rdb, prefix := testRedis(t)
	a := newStore(rdb, prefix, "a", time.Second)
	b := newStore(rdb, prefix, "b", time.Second)
	log := &changeLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.FollowWatchers(ctx, log.sink) }()
	t.Cleanup(func() { cancel(); <-done })
	waitSubscribed(t, rdb, a.winfoChannel())

	checkWatcherContract(t, a, log)

	stale := watcher("w3")
	stale.Expires = time.Now().Add(-2 * grace)
	if err := a.AddWatcher(context.Background(), stale); err != nil {
		t.Fatal(err)
	}
	list, _, err := b.ListWatchers(context.Background(), stale.AOR)
	if err != nil || len(list) != 1 || list[0].ID != "w2" {
		t.Fatalf("list with a stale watcher: %+v (%v)", list, err)
	}
	if cs := log.wait(t, 5); cs[4].Watcher.ID != "w3" || cs[4].Ended != "timeout" {
		t.Fatalf("stale watcher's end: %+v", cs[4])
	}
}

// TestRedisWatchersResync: when the follower's connection is cut (here
// its own, by client id), go-redis subscribes again and the follower
// reports a Resync, since what was published meanwhile is lost.
func TestRedisWatchersResync(t *testing.T) {
	_, prefix := testRedis(t)
	name := fmt.Sprintf("rbtest-follow-%d", time.Now().UnixNano())
	rdb := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:6379"}, ClientName: name})
	defer rdb.Close()
	b := newStore(rdb, prefix, "b", time.Second)
	log := &changeLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.FollowWatchers(ctx, log.sink) }()
	defer func() { cancel(); <-done }()
	waitSubscribed(t, rdb, b.winfoChannel())

	clients, err := rdb.Do(context.Background(), "CLIENT", "LIST", "TYPE", "pubsub").Text()
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	for line := range strings.SplitSeq(clients, "\n") {
		if !strings.Contains(line, " name="+name+" ") {
			continue
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(line, "id="), " ")
		if err := rdb.Do(context.Background(), "CLIENT", "KILL", "ID", id).Err(); err != nil {
			t.Fatal(err)
		}
		killed++
	}
	if killed != 1 {
		t.Fatalf("found %d pubsub connections named %s", killed, name)
	}
	if cs := log.wait(t, 1); !cs[0].Resync {
		t.Fatalf("after a lost connection: %+v, want a Resync", cs[0])
	}
}

// waitSubscribed waits until channel has a subscriber.
func waitSubscribed(t *testing.T, rdb redis.UniversalClient, channel string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := rdb.PubSubNumSub(context.Background(), channel).Result()
		if err == nil && m[channel] > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nobody subscribed to %s", channel)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
