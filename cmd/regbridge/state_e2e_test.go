package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source/kamailio"
)

// redisState returns a REGBRIDGE_STATE URL on the local Redis with a key
// prefix of the test's own (deleted afterwards), and a client on it.
// Without Redis the test is skipped, or fails when CI is set.
func redisState(t *testing.T) (string, redis.UniversalClient, string) {
	t.Helper()
	rdb, prefix := siptest.Redis(t)
	return "redis://127.0.0.1:6379/0?prefix=" + prefix, rdb, prefix
}

// TestRestartContinues: with the Redis store a restarted regbridge keeps
// its subscriptions, continues their version sequence, and announces the
// changes made while it was down as what they were, once each, without
// a re-SUBSCRIBE and without an event storm.
func TestRestartContinues(t *testing.T) {
	state, _, _ := redisState(t)
	env := map[string]string{"REGBRIDGE_STATE": state, "REGBRIDGE_STATE_LEASE": "1s"}
	path := filepath.Join(t.TempDir(), "location.db")
	first := startServer(t, path, env)
	lapse := time.Now().Add(1500 * time.Millisecond)
	first.insert(t, "gone", "alice", "sip:alice@192.0.2.1", time.Now().Add(time.Hour), "c1", 1)
	first.insert(t, "lapsed", "alice", "sip:alice@192.0.2.2", lapse, "c2", 1)
	first.insert(t, "fresh", "alice", "sip:alice@192.0.2.3", time.Now().Add(time.Hour), "c3", 1)
	p := siptest.New(t, "udp", first.sip)
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	version := uint32(0)
	for seen := 0; seen < 3; version++ {
		n := p.Next()
		if n.Doc.Version != version {
			t.Fatalf("version %d, want %d", n.Doc.Version, version)
		}
		seen += len(n.Doc.Registrations[0].Contacts)
	}
	first.insert(t, "kept", "alice", "sip:alice@192.0.2.4", time.Now().Add(time.Hour), "c4", 1)
	n := p.Next()
	p.Check(n, version, "partial", "active")
	version++
	if code := first.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	p.None(300 * time.Millisecond) // no terminated;reason=deactivated: it persists

	// While regbridge is down: one un-registers, one lapses, one is new,
	// one refreshes.
	first.exec(t, `DELETE FROM location WHERE ruid = 'gone'`)
	first.insert(t, "new", "alice", "sip:alice@192.0.2.5", time.Now().Add(time.Hour), "c5", 1)
	first.exec(t, `UPDATE location SET cseq = 2, expires = ? WHERE ruid = 'fresh'`, kamailio.TimeToJulian(time.Now().Add(2*time.Hour)))
	time.Sleep(time.Until(lapse) + 100*time.Millisecond) // the lapse has to happen

	startServer(t, path, env)
	want := map[string]string{"sip:alice@192.0.2.1": "unregistered", "sip:alice@192.0.2.2": "expired",
		"sip:alice@192.0.2.5": "registered", "sip:alice@192.0.2.3": "refreshed"}
	announcedOnce(t, p, &version, want)
	p.None(700 * time.Millisecond) // nothing more: no storm, no full resend
}

// announcedOnce reads partial NOTIFYs from version on until each URI of
// want was announced with its event, once; a contact not in want fails.
func announcedOnce(t *testing.T, p *siptest.Peer, version *uint32, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for len(got) < len(want) {
		n := p.NextWithin(5 * time.Second)
		p.Check(n, *version, "partial", "active")
		*version++
		for _, c := range n.Doc.Registrations[0].Contacts {
			if _, ok := want[c.URI]; !ok {
				t.Fatalf("%s announced (%s), not expected:\n%s", c.URI, c.Event, n.Req.Body())
			}
			if _, dup := got[c.URI]; dup {
				t.Fatalf("%s announced twice:\n%s", c.URI, n.Req.Body())
			}
			got[c.URI] = c.Event
		}
	}
	for uri, ev := range want {
		if got[uri] != ev {
			t.Errorf("%s: %q, want %q (all: %v)", uri, got[uri], ev, got)
		}
	}
}
