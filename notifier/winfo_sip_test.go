package notifier

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/render"
	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/substore"
)

// Identities in the winfo tests are asserted by a trusted proxy (loopback
// in TRUSTED_NETWORKS), so that each peer is whoever it says: the owner
// alice, the configured watcher as@example.com, and the stranger bob.
var winfoGuards = map[string]string{
	"OPEN_NETWORKS": "none", "TRUSTED_NETWORKS": "127.0.0.1",
	"WATCHERS": "sip:as@example.com",
}

func asserted(user string) sip.Header {
	return siptest.Header("P-Asserted-Identity", "<sip:"+user+"@example.com>")
}

// nextWinfo returns the peer's next NOTIFY, validated against
// watcherinfo.xsd, after checking its headers and document version.
func nextWinfo(t *testing.T, p *siptest.Peer, event string, version uint32, state, subsPrefix string) siptest.Watcherinfo {
	t.Helper()
	n := next(t, p)
	if ct := n.Req.ContentType(); ct == nil || ct.Value() != render.ContentTypeWatcherinfo {
		t.Fatalf("Content-Type %v, want %s", ct, render.ContentTypeWatcherinfo)
	}
	if ev := n.Req.GetHeader("Event"); ev == nil || ev.Value() != event {
		t.Errorf("Event %v, want %s", ev, event)
	}
	if !strings.HasPrefix(n.SubscriptionState, subsPrefix) {
		t.Errorf("Subscription-State %q, want prefix %q", n.SubscriptionState, subsPrefix)
	}
	w := n.Winfo
	if w.Version != version || w.State != state {
		t.Fatalf("watcherinfo version=%d state=%s, want %d %s:\n%s", w.Version, w.State, version, state, n.Req.Body())
	}
	if len(w.Lists) != 1 || w.Lists[0].Resource != "sip:alice@example.com" {
		t.Fatalf("want one watcher-list for alice:\n%s", n.Req.Body())
	}
	return w
}

// TestWinfo walks the watcher information conformance vectors 62-66 over
// real sockets, on UDP and TCP: the owner's reg.winfo subscription gets the current watchers
// as full state (62), a new reg watcher as a partial document with the
// watcher active (63), its unsubscription as terminated with event
// timeout and the same id (64); a stranger's reg.winfo SUBSCRIBE is
// refused as its reg SUBSCRIBE is (65), and a watcher refused by policy
// never appears (66). A refresh brings full state again, without the
// ended watcher. Every document validates against watcherinfo.xsd.
func TestWinfo(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			h := newHarness(t, Config{Presence: true, Winfo: true}, tAlice)
			h.n.SetGuards(guardsFromEnv(t, winfoGuards))
			addr := h.addr(network)

			// A configured watcher already watches alice.
			as := siptest.New(t, network, addr)
			as.FromUser = "as"
			if res := as.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), asserted("as")); res.StatusCode != 200 {
				t.Fatalf("watcher's reg SUBSCRIBE: %d %s", res.StatusCode, res.Reason)
			}
			as.Next()

			// (65) A stranger is refused reg.winfo exactly as reg.
			bob := siptest.New(t, network, addr)
			for _, event := range []string{"reg", "reg.winfo"} {
				bob.CallID, bob.FromTag = "bob-"+event, "bt-"+event
				if res := bob.Subscribe("sip:alice@example.com", siptest.Header("Event", event), asserted("bob")); res.StatusCode != 403 {
					t.Fatalf("stranger's %s SUBSCRIBE: %d, want 403", event, res.StatusCode)
				}
			}

			// A configured (privileged) watcher may subscribe to reg.winfo.
			asw := siptest.New(t, network, addr)
			if res := asw.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg.winfo"), asserted("as")); res.StatusCode != 200 {
				t.Fatalf("configured watcher's reg.winfo SUBSCRIBE: %d", res.StatusCode)
			}
			nextWinfo(t, asw, "reg.winfo", 0, "full", "active")

			// (62) The owner subscribes: full state with the one watcher.
			owner := siptest.New(t, network, addr)
			owner.FromUser = "alice"
			res := owner.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg.winfo"),
				siptest.Header("Accept", render.ContentTypeWatcherinfo), asserted("alice"))
			if res.StatusCode != 200 || res.GetHeader("Expires").Value() != "3600" {
				t.Fatalf("owner's reg.winfo SUBSCRIBE: %s", res)
			}
			if ae := res.GetHeader("Allow-Events"); ae == nil || ae.Value() != "reg, presence, reg.winfo, presence.winfo" {
				t.Errorf("Allow-Events %v", ae)
			}
			w := nextWinfo(t, owner, "reg.winfo", 0, "full", "active;expires=")
			l := w.Lists[0]
			if l.Package != "reg" || len(l.Watchers) != 1 {
				t.Fatalf("full state: package %q with %d watchers, want reg with 1", l.Package, len(l.Watchers))
			}
			if x := l.Watchers[0]; x.URI != "sip:as@example.com" || x.Status != "active" || x.Event != "subscribe" || x.Expiration == "" {
				t.Fatalf("existing watcher: %+v", x)
			}
			asID := l.Watchers[0].ID

			// (66) A stranger's reg SUBSCRIBE refused by policy: no NOTIFY.
			bob.CallID, bob.FromTag = "bob-again", "bt-again"
			if res := bob.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), asserted("bob")); res.StatusCode != 403 {
				t.Fatalf("stranger's reg SUBSCRIBE: %d, want 403", res.StatusCode)
			}
			owner.None(300 * time.Millisecond)

			// (63) A new watcher, with a display name that needs escaping.
			phone := siptest.New(t, network, addr)
			phone.FromUser, phone.FromName = "alice", "Alice's <phone> & é"
			if res := phone.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), asserted("alice")); res.StatusCode != 200 {
				t.Fatalf("second watcher: %d", res.StatusCode)
			}
			phone.Next()
			w = nextWinfo(t, owner, "reg.winfo", 1, "partial", "active;expires=")
			if ws := w.Lists[0].Watchers; len(ws) != 1 || ws[0].Status != "active" || ws[0].Event != "subscribe" ||
				ws[0].URI != "sip:alice@example.com" || ws[0].DisplayName != phone.FromName || ws[0].ID == asID {
				t.Fatalf("new watcher: %+v", ws)
			}
			phoneID := w.Lists[0].Watchers[0].ID

			// A presence watcher is listed by presence.winfo, not here.
			pres := siptest.New(t, network, addr)
			pres.FromUser = "as"
			if res := pres.Subscribe("sip:alice@example.com", siptest.Header("Event", "presence"), asserted("as")); res.StatusCode != 200 {
				t.Fatalf("presence watcher: %d", res.StatusCode)
			}
			pres.Next()
			owner.None(300 * time.Millisecond)

			// (64) It unsubscribes: terminated, event timeout, same id.
			phone.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "0"))
			phone.Next()
			w = nextWinfo(t, owner, "reg.winfo", 2, "partial", "active;expires=")
			if ws := w.Lists[0].Watchers; len(ws) != 1 || ws[0].ID != phoneID || ws[0].Status != "terminated" ||
				ws[0].Event != "timeout" || ws[0].Expiration != "" {
				t.Fatalf("ended watcher: %+v", ws)
			}

			// A refresh: full state, the ended watcher gone, ids stable.
			owner.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg.winfo"))
			w = nextWinfo(t, owner, "reg.winfo", 3, "full", "active;expires=")
			if ws := w.Lists[0].Watchers; len(ws) != 1 || ws[0].ID != asID || ws[0].Status != "active" {
				t.Fatalf("full state after refresh: %+v", ws)
			}

			// presence.winfo lists the presence watcher only.
			pw := siptest.New(t, network, addr)
			pw.FromUser = "alice"
			if res := pw.Subscribe("sip:alice@example.com", siptest.Header("Event", "presence.winfo"), asserted("alice")); res.StatusCode != 200 {
				t.Fatalf("presence.winfo: %d", res.StatusCode)
			}
			w = nextWinfo(t, pw, "presence.winfo", 0, "full", "active")
			if l := w.Lists[0]; l.Package != "presence" || len(l.Watchers) != 1 || l.Watchers[0].URI != "sip:as@example.com" {
				t.Fatalf("presence watchers: %+v", l)
			}

			// The owner unsubscribes: a final full document.
			owner.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg.winfo"), siptest.Header("Expires", "0"))
			nextWinfo(t, owner, "reg.winfo", 4, "full", "terminated;reason=timeout")
		})
	}
}

// TestWinfoPoliteBlocking: with polite blocking a stranger's reg
// subscription gets 200 and neutral state, but it is refused by policy
// all the same and never appears as a watcher (vector 66); a stranger's
// reg.winfo subscription likewise learns nothing: an empty list, and no
// NOTIFY when watchers come.
func TestWinfoPoliteBlocking(t *testing.T) {
	h := newHarness(t, Config{Winfo: true}, tAlice)
	h.n.SetGuards(guardsFromEnv(t, merge(winfoGuards, map[string]string{"POLITE_BLOCKING": "true"})))
	addr := h.addr("udp")
	owner := siptest.New(t, "udp", addr)
	if res := owner.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg.winfo"), asserted("alice")); res.StatusCode != 200 {
		t.Fatalf("owner: %d", res.StatusCode)
	}
	nextWinfo(t, owner, "reg.winfo", 0, "full", "active")
	spy := siptest.New(t, "udp", addr)
	if res := spy.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg.winfo"), asserted("bob")); res.StatusCode != 200 {
		t.Fatalf("politely blocked winfo: %d", res.StatusCode)
	}
	if w := nextWinfo(t, spy, "reg.winfo", 0, "full", "active"); len(w.Lists[0].Watchers) != 0 {
		t.Fatalf("politely blocked winfo subscriber sees watchers: %+v", w)
	}
	bob := siptest.New(t, "udp", addr)
	if res := bob.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), asserted("bob")); res.StatusCode != 200 {
		t.Fatalf("politely blocked reg: %d", res.StatusCode)
	}
	bob.Next()
	owner.None(300 * time.Millisecond)
	as := siptest.New(t, "udp", addr)
	if res := as.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), asserted("as")); res.StatusCode != 200 {
		t.Fatalf("watcher: %d", res.StatusCode)
	}
	as.Next()
	if w := nextWinfo(t, owner, "reg.winfo", 1, "partial", "active"); len(w.Lists[0].Watchers) != 1 || w.Lists[0].Watchers[0].URI != "sip:as@example.com" {
		t.Fatalf("owner sees: %+v", w)
	}
	spy.None(300 * time.Millisecond)
}

// TestWinfoWatcherGone: a reg subscription removed because its NOTIFY
// failed (481: the subscriber is gone) ends as a watcher with timeout.
func TestWinfoWatcherGone(t *testing.T) {
	h := newHarness(t, Config{Winfo: true}, tAlice)
	addr := h.addr("udp")
	owner := siptest.New(t, "udp", addr)
	owner.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg.winfo"))
	nextWinfo(t, owner, "reg.winfo", 0, "full", "active")

	gone := siptest.New(t, "udp", addr)
	gone.Answer(func(i int) int { return map[bool]int{true: 200, false: 481}[i == 0] })
	gone.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
	gone.Next()
	nextWinfo(t, owner, "reg.winfo", 1, "partial", "active")
	apply(t, h, fresh(tAlice)) // a change: its NOTIFY gets 481
	gone.Next()
	w := nextWinfo(t, owner, "reg.winfo", 2, "partial", "active")
	if x := w.Lists[0].Watchers; len(x) != 1 || x[0].Status != "terminated" || x[0].Event != "timeout" {
		t.Fatalf("watcher whose NOTIFY failed: %+v", x)
	}
}

// TestWinfoSharedStore: two notifiers share one Redis, as two instances
// with REGBRIDGE_STATE=redis do. A reg.winfo subscriber at b sees the
// watchers at a (full state, then partial documents as they come and go),
// and, once a's watcher is gone, b's own; every document validates.
func TestWinfoSharedStore(t *testing.T) {
	rdb, prefix := siptest.Redis(t)
	shared := func(id string) func(*Notifier) {
		return func(n *Notifier) {
			st := substore.NewRedis(rdb, prefix, id, time.Second, testLog())
			n.SetStore(st, time.Second)
			n.SetWatcherStore(st)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- n.RunWatchers(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
		}
	}
	a := newHarnessWith(t, Config{Winfo: true, Presence: true}, harnessOpts{setup: shared("a")}, tAlice)
	b := newHarnessWith(t, Config{Winfo: true, Presence: true}, harnessOpts{setup: shared("b")}, tAlice)
	siptest.Eventually(t, func() bool {
		m, _ := rdb.PubSubNumSub(context.Background(), "{"+prefix+"}winfo").Result()
		return m["{"+prefix+"}winfo"] == 2
	}, "both notifiers following watcher changes")

	first := siptest.New(t, "udp", a.addr("udp"))
	first.FromUser = "first"
	first.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
	first.Next()

	owner := siptest.New(t, "tcp", b.addr("tcp"))
	if res := owner.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg.winfo")); res.StatusCode != 200 {
		t.Fatalf("reg.winfo at b: %d", res.StatusCode)
	}
	w := nextWinfo(t, owner, "reg.winfo", 0, "full", "active")
	if ws := w.Lists[0].Watchers; len(ws) != 1 || ws[0].URI != "sip:first@127.0.0.1" {
		t.Fatalf("b's full state: %+v", ws)
	}
	firstID := w.Lists[0].Watchers[0].ID

	second := siptest.New(t, "tcp", b.addr("tcp"))
	second.FromUser = "second"
	second.Subscribe("sip:alice@example.com", siptest.Header("Event", "presence"))
	second.Next()
	owner.None(300 * time.Millisecond) // a presence watcher: not for reg.winfo
	third := siptest.New(t, "udp", a.addr("udp"))
	third.FromUser = "third"
	third.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
	third.Next()
	w = nextWinfo(t, owner, "reg.winfo", 1, "partial", "active")
	if ws := w.Lists[0].Watchers; len(ws) != 1 || ws[0].URI != "sip:third@127.0.0.1" || ws[0].Status != "active" {
		t.Fatalf("a's new watcher at b: %+v", ws)
	}
	first.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "0"))
	first.Next()
	w = nextWinfo(t, owner, "reg.winfo", 2, "partial", "active")
	if ws := w.Lists[0].Watchers; len(ws) != 1 || ws[0].ID != firstID || ws[0].Status != "terminated" || ws[0].Event != "timeout" {
		t.Fatalf("a's watcher leaving, at b: %+v", ws)
	}
	list, err := b.n.Watchers(t.Context(), "sip:alice@example.com")
	if err != nil || len(list) != 2 {
		t.Fatalf("b lists %+v (%v), want third (reg) and second (presence)", list, err)
	}
}

// TestWinfoDigest: with digest authentication a reg.winfo SUBSCRIBE is
// challenged like a reg one (401, never 407), and the owner's answer
// admits it; another user's answer gets 403.
func TestWinfoDigest(t *testing.T) {
	h := newHarness(t, Config{Winfo: true}, tAlice)
	h.n.SetGuards(guardsFromEnv(t, map[string]string{"AUTH": "file://" + credentialsFile(t), "AUTH_REALM": "example.com", "OPEN_NETWORKS": "none"}))
	for _, tt := range []struct {
		user, password string
		code           int
	}{{"watcher", "as-secret", 403}, {"alice", "alice-secret", 200}} {
		p := siptest.New(t, "udp", h.addr("udp"))
		res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg.winfo"))
		if res.StatusCode != 401 || res.GetHeader("WWW-Authenticate") == nil {
			t.Fatalf("unauthenticated reg.winfo: %d, want 401 with a challenge", res.StatusCode)
		}
		cred := answerChallenge(t, res.GetHeader("WWW-Authenticate").Value(), "sip:alice@example.com", tt.user, tt.password)
		res = p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg.winfo"), siptest.Header("Authorization", cred))
		if res.StatusCode != tt.code {
			t.Fatalf("%s's reg.winfo: %d, want %d", tt.user, res.StatusCode, tt.code)
		}
		if tt.code == 200 {
			nextWinfo(t, p, "reg.winfo", 0, "full", "active")
		} else {
			p.None(200 * time.Millisecond)
		}
	}
}
