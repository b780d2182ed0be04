package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/partition"
)

// dropPartitionKeys deletes the partitions' keys ({prefix:p.k}...) of a
// test's prefix at cleanup.
func dropPartitionKeys(t *testing.T, rdb redis.UniversalClient, prefix string) {
	t.Cleanup(func() {
		ctx := context.Background()
		if keys, _ := rdb.Keys(ctx, "{"+prefix+":*").Result(); len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
}

// TestPartitionsSubscribeAnywhere: two instances on an ordinary Redis
// (one shard), two partitions, one owned by each. Every request of a
// subscription to alice goes to the instance that does not own alice's
// partition, as a SIP load balancer may send it: the SUBSCRIBE, a
// refresh, a fetch and the unsubscribe are answered there, and the
// owner sends each NOTIFY they call for (RFC 6665 4.2: full state at
// once after a SUBSCRIBE or refresh, terminated after the unsubscribe
// and the fetch), with its own Contact, versions following on. A
// subscription the owner answers itself gets its NOTIFYs once.
func TestPartitionsSubscribeAnywhere(t *testing.T) {
	state, rdb, prefix := redisState(t)
	dropPartitionKeys(t, rdb, prefix)
	path := filepath.Join(t.TempDir(), "location.db")
	env := func(id string) map[string]string {
		return map[string]string{"REGBRIDGE_STATE": state, "REGBRIDGE_STATE_LEASE": "1s",
			"REGBRIDGE_PARTITIONS": "2", "REGBRIDGE_INSTANCE_ID": id}
	}
	servers := map[string]*server{"a": startServer(t, path, env("a")), "b": startServer(t, path, env("b"))}
	servers["a"].insert(t, "k1", "alice", "sip:alice@192.0.2.1", time.Now().Add(time.Hour), "c1", 1)

	// Which instance owns alice's partition, once each holds one.
	m, err := partition.NewMap(prefix, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	alice := m.Of(bridge.CanonicalAOR("sip:alice@example.com"))
	var owner string
	siptest.Eventually(t, func() bool {
		h0, ok0, _ := m.PartitionLease(0).Current(ctx, rdb)
		h1, ok1, _ := m.PartitionLease(1).Current(ctx, rdb)
		if !ok0 || !ok1 || h0.ID == h1.ID {
			return false
		}
		owner = map[int]string{0: h0.ID, 1: h1.ID}[alice]
		return true
	}, "each instance owning one partition")
	other := map[string]string{"a": "b", "b": "a"}[owner]
	own, answering := servers[owner], servers[other]
	fromOwner := func(n siptest.Notify) {
		t.Helper()
		if n.Source != own.sip {
			t.Errorf("NOTIFY from %s, want the owner %s", n.Source, own.sip)
		}
		if c := n.Req.Contact(); c == nil || c.Address.HostPort() != own.sip {
			t.Errorf("NOTIFY Contact %v, want the owner's %s", c, own.sip)
		}
	}

	p := siptest.New(t, "udp", answering.sip)
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE to the instance not owning the partition: %d", res.StatusCode)
	}
	n := p.Next()
	p.Check(n, 0, "full", "active")
	fromOwner(n)
	if got := len(n.Doc.Registrations[0].Contacts); got != 1 {
		t.Fatalf("first NOTIFY lists %d contacts, want 1:\n%s", got, n.Req.Body())
	}

	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("refresh: %d", res.StatusCode)
	}
	n = p.Next()
	p.Check(n, 1, "full", "active")
	fromOwner(n)

	answering.insert(t, "k2", "alice", "sip:alice@192.0.2.2", time.Now().Add(time.Hour), "c2", 1)
	n = p.Next()
	p.Check(n, 2, "partial", "active")
	fromOwner(n)

	fetch := siptest.New(t, "udp", answering.sip)
	if res := fetch.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "0")); res.StatusCode != 200 {
		t.Fatalf("fetch: %d", res.StatusCode)
	}
	n = fetch.Next()
	fetch.Check(n, 0, "full", "terminated")
	fromOwner(n)
	if got := len(n.Doc.Registrations[0].Contacts); got != 2 {
		t.Errorf("the fetch's NOTIFY lists %d contacts, want 2:\n%s", got, n.Req.Body())
	}
	fetch.None(500 * time.Millisecond)

	// A SUBSCRIBE the owner answers itself: one full NOTIFY, not a
	// second one when its own write comes back through the inbox.
	direct := siptest.New(t, "udp", own.sip)
	if res := direct.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE to the owner: %d", res.StatusCode)
	}
	direct.Check(direct.Next(), 0, "full", "active")
	if res := direct.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("refresh at the owner: %d", res.StatusCode)
	}
	direct.Check(direct.Next(), 1, "full", "active")
	direct.None(500 * time.Millisecond)
	if res := direct.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "0")); res.StatusCode != 200 {
		t.Fatalf("unsubscribe at the owner: %d", res.StatusCode)
	}
	direct.Check(direct.Next(), 2, "full", "terminated")
	direct.None(500 * time.Millisecond)

	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "0")); res.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d", res.StatusCode)
	}
	n = p.Next()
	p.Check(n, 3, "full", "terminated")
	fromOwner(n)
	p.None(500 * time.Millisecond)
	siptest.Eventually(t, func() bool {
		keys, _ := rdb.Keys(ctx, m.Key(alice, "sub:*")).Result()
		return len(keys) == 0
	}, "the ended subscriptions deleted")
}
