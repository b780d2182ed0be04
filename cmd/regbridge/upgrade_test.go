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
// REGBRIDGE_PARTITIONS. The subscription moves into its partition and
// continues, versions following on: its new owner sends a full document
// at once, and the two changes reach the subscriber once each or
// inside that document, nothing else; a second start sends a full
// document again (the partition is gained anew) and announces a later
// change once.
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

	active := []string{"sip:alice@192.0.2.1", "sip:alice@192.0.2.2", "sip:alice@192.0.2.3", "sip:alice@192.0.2.4", "sip:alice@192.0.2.5", "sip:alice@192.0.2.99"}
	second := startServer(t, path, parts)
	coveredOnce(t, p, &version, map[string]string{"sip:alice@192.0.2.3": "refreshed", "sip:alice@192.0.2.99": "registered"}, active)
	if keys := rdb.Keys(ctx, "{"+prefix+"}sub:*").Val(); len(keys) != 0 {
		t.Errorf("the single-tag subscription record is still there once moved")
	}
	if n := rdb.Exists(ctx, "{"+prefix+"}contacts").Val(); n != 0 {
		t.Errorf("the single-tag contacts record is still there once the partitions are seeded")
	}
	if code := second.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	third := startServer(t, path, parts)
	coveredOnce(t, p, &version, nil, active)
	third.insert(t, "late", "alice", "sip:alice@192.0.2.100", time.Now().Add(time.Hour), "cl", 1)
	announcedOnce(t, p, &version, map[string]string{"sip:alice@192.0.2.100": "registered"})
	p.None(time.Second)
	if code := third.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	// A lone instance restarted in partitioned mode announces what changed
	// while it was down, as the single-tag layout does: its owner takes
	// the recorded state before its reader appends the difference.
	third.exec(t, `DELETE FROM location WHERE ruid = 'late'`)
	fourth := startServer(t, path, parts)
	if coveredOnce(t, p, &version, map[string]string{"sip:alice@192.0.2.100": "unregistered"}, active) != 1 {
		t.Errorf("want one full document from the restarted owner")
	}
	p.None(time.Second)
	if code := fourth.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}

// coveredOnce reads NOTIFYs until the subscriber's view holds exactly the
// active contacts and nothing more comes for a second. Versions follow
// on; at least one document is full (a partition's owner continues the
// subscription with full state). Each change in want (contact URI -> its
// event) reaches the subscriber once, or inside a full document (the
// changes after a full one may still follow as partial ones, once);
// no partial document announces anything else. It returns how many
// full documents came.
func coveredOnce(t *testing.T, p *siptest.Peer, version *uint32, want map[string]string, active []string) int {
	t.Helper()
	view, announced, fulls := map[string]bool{}, map[string]bool{}, 0
	done := func() bool {
		if fulls == 0 || len(view) != len(active) {
			return false
		}
		for _, uri := range active {
			if !view[uri] {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(10 * time.Second)
	quietSince := time.Now()
	for time.Now().Before(deadline) {
		ns := p.Drain()
		if len(ns) == 0 {
			if done() && time.Since(quietSince) > time.Second {
				return fulls
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		quietSince = time.Now()
		for _, n := range ns {
			p.Check(n, *version, n.Doc.State, "active")
			*version++
			if n.Doc.State == "full" {
				fulls++
				clear(view)
				clear(announced)
			}
			for _, c := range n.Doc.Registrations[0].Contacts {
				if n.Doc.State == "partial" {
					if ev, ok := want[c.URI]; !ok || ev != c.Event {
						t.Fatalf("%s announced (%s), not expected:\n%s", c.URI, c.Event, n.Req.Body())
					}
					if announced[c.URI] {
						t.Fatalf("%s announced twice:\n%s", c.URI, n.Req.Body())
					}
					announced[c.URI] = true
				}
				view[c.URI] = c.State == "active"
				if !view[c.URI] {
					delete(view, c.URI)
				}
			}
		}
	}
	t.Fatalf("the subscriber's view %v after %d full documents, want exactly %v", view, fulls, active)
	return 0
}
