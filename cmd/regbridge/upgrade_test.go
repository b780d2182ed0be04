package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source/kamailio"
)

// TestUpgradeToPartitions: a regbridge with the single-tag layout records
// alice's contacts and holds a subscription; it is stopped, one contact
// is refreshed and one registered, and it starts again with
// REGBRIDGE_PARTITIONS. The subscriber hears those two changes, once
// each, and nothing about the unchanged contacts; a second start is
// silent too, and a later change is announced once.
func TestUpgradeToPartitions(t *testing.T) {
	state, rdb, prefix := redisState(t)
	t.Cleanup(func() { // the partitions' keys: {prefix:p.k}...
		ctx := context.Background()
		if keys, _ := rdb.Keys(ctx, "{"+prefix+":*").Result(); len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
	single := map[string]string{"REGBRIDGE_STATE": state, "REGBRIDGE_STATE_LEASE": "1s"}
	parts := map[string]string{"REGBRIDGE_STATE": state, "REGBRIDGE_STATE_LEASE": "1s", "REGBRIDGE_PARTITIONS": "16"}
	path := filepath.Join(t.TempDir(), "location.db")
	ctx := context.Background()

	first := startServer(t, path, single)
	const kept = 5
	for i := range kept {
		first.insert(t, "k"+string(rune('0'+i)), "alice", "sip:alice@192.0.2."+string(rune('1'+i)), time.Now().Add(time.Hour), "c"+string(rune('0'+i)), 1)
	}
	p := siptest.New(t, "udp", first.sip)
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	version := uint32(0)
	for seen := 0; seen < kept; version++ {
		n := p.Next()
		if n.Doc.Version != version {
			t.Fatalf("version %d, want %d", n.Doc.Version, version)
		}
		seen += len(n.Doc.Registrations[0].Contacts)
	}
	siptest.Eventually(t, func() bool { return rdb.HLen(ctx, "{"+prefix+"}contacts").Val() == kept }, "the contacts recorded in the single-tag layout")
	if code := first.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	p.None(300 * time.Millisecond)

	// During the switch: one contact refreshed, one registered.
	first.exec(t, `UPDATE location SET cseq = 2, expires = ? WHERE ruid = 'k2'`, kamailio.TimeToJulian(time.Now().Add(2*time.Hour)))
	first.insert(t, "new", "alice", "sip:alice@192.0.2.99", time.Now().Add(time.Hour), "cn", 1)

	second := startServer(t, path, parts)
	announcedOnce(t, p, &version, map[string]string{"sip:alice@192.0.2.3": "refreshed", "sip:alice@192.0.2.99": "registered"})
	p.None(time.Second) // nothing more
	if n := rdb.Exists(ctx, "{"+prefix+"}contacts").Val(); n != 0 {
		t.Errorf("the single-tag contacts record is still there once the partitions are seeded")
	}
	if code := second.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	third := startServer(t, path, parts)
	p.None(2 * time.Second) // the lease (1s) is taken and the store read within
	third.insert(t, "late", "alice", "sip:alice@192.0.2.100", time.Now().Add(time.Hour), "cl", 1)
	announcedOnce(t, p, &version, map[string]string{"sip:alice@192.0.2.100": "registered"})
	p.None(time.Second)
	if code := third.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	// A lone instance restarted in partitioned mode announces what changed
	// while it was down, as the single-tag layout does: its follower takes
	// the recorded state before its reader appends the difference.
	third.exec(t, `DELETE FROM location WHERE ruid = 'late'`)
	fourth := startServer(t, path, parts)
	announcedOnce(t, p, &version, map[string]string{"sip:alice@192.0.2.100": "unregistered"})
	p.None(time.Second)
	if code := fourth.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}
