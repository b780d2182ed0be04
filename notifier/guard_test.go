package notifier

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	icholy "github.com/icholy/digest"
	"github.com/sethvargo/go-envconfig"

	"github.com/regbridge/regbridge/notifier/digest"
	"github.com/regbridge/regbridge/notifier/limit"
	"github.com/regbridge/regbridge/notifier/policy"
	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// guardsFromEnv builds the guards exactly as cmd does: from REGBRIDGE_*
// variables (here without the prefix) through go-envconfig.
func guardsFromEnv(t *testing.T, env map[string]string) Guards {
	t.Helper()
	var cfg struct {
		Auth   digest.Config
		Policy policy.Config
		Limit  limit.Config
	}
	if err := envconfig.ProcessWith(t.Context(), &envconfig.Config{Target: &cfg, Lookuper: envconfig.MapLookuper(env)}); err != nil {
		t.Fatal(err)
	}
	var g Guards
	var err error
	if cfg.Auth.Enabled() {
		creds, closeCreds, err := digest.Open(t.Context(), cfg.Auth.Source, testLog())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { closeCreds() })
		if g.Auth, err = digest.New(cfg.Auth, creds, testLog()); err != nil {
			t.Fatal(err)
		}
	}
	if g.Policy, err = policy.New(cfg.Policy); err != nil {
		t.Fatal(err)
	}
	if g.Limits, err = limit.New(cfg.Limit); err != nil {
		t.Fatal(err)
	}
	return g
}

func credentialsFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(path, []byte("alice:example.com:plain:alice-secret\nwatcher:example.com:plain:as-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func answerChallenge(t *testing.T, challenge, aor, user, password string) string {
	t.Helper()
	ch, err := icholy.ParseChallenge(challenge)
	if err != nil {
		t.Fatalf("WWW-Authenticate %q: %v", challenge, err)
	}
	cred, err := icholy.Digest(ch, icholy.Options{Method: "SUBSCRIBE", URI: aor, Username: user, Password: password, Count: 1, Cnonce: "c0ffee"})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}

var tBob = source.Contact{Key: "uloc-b", AOR: "sip:bob@example.com", URI: "sip:bob@192.0.2.20:5060",
	Expires: time.Now().Add(time.Hour), Q: -1, CallID: "cb", CSeq: 1}

// TestGuards drives the SUBSCRIBE admission (docs/security.md) over real sockets:
// digest challenge and answer (RFC 6665 4.2.1.3), another user's AOR
// (E.14), a configured watcher (E.15), polite blocking, and the limits.
func TestGuards(t *testing.T) {
	creds := credentialsFile(t)
	auth := map[string]string{"AUTH": "file://" + creds, "AUTH_REALM": "example.com", "OPEN_NETWORKS": "none"}

	t.Run("challenge, answer, self-subscription", func(t *testing.T) {
		h := newHarness(t, Config{}, tAlice)
		h.n.SetGuards(guardsFromEnv(t, auth))
		p := siptest.New(t, "udp", h.addr("udp"))
		res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
		if res.StatusCode != 401 || res.GetHeader("WWW-Authenticate") == nil {
			t.Fatalf("unauthenticated SUBSCRIBE: %d, want 401 with WWW-Authenticate (never 407)", res.StatusCode)
		}
		if h.n.Count() != 0 {
			t.Fatal("a challenged SUBSCRIBE created a subscription")
		}
		cred := answerChallenge(t, res.GetHeader("WWW-Authenticate").Value(), "sip:alice@example.com", "alice", "alice-secret")
		res = p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Authorization", cred))
		if res.StatusCode != 200 {
			t.Fatalf("authenticated SUBSCRIBE: %d %s", res.StatusCode, res.Reason)
		}
		n := p.Next()
		p.Check(n, 0, "full", "active")
		if len(n.Doc.Registrations[0].Contacts) != 1 {
			t.Fatalf("self-subscription sees its contacts: %s", n.Req.Body())
		}
	})

	t.Run("wrong password is 403", func(t *testing.T) {
		h := newHarness(t, Config{}, tAlice)
		h.n.SetGuards(guardsFromEnv(t, auth))
		p := siptest.New(t, "udp", h.addr("udp"))
		res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
		cred := answerChallenge(t, res.GetHeader("WWW-Authenticate").Value(), "sip:alice@example.com", "alice", "guess")
		if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Authorization", cred)); res.StatusCode != 403 {
			t.Fatalf("wrong password: %d, want 403", res.StatusCode)
		}
		p.None(200 * time.Millisecond)
	})

	for _, tt := range []struct {
		name   string
		env    map[string]string
		code   int
		expect func(t *testing.T, p *siptest.Peer, h *harness)
	}{
		{name: "another user's AOR is 403", env: auth, code: 403},
		{name: "configured watcher may watch any AOR of its domains",
			env:  merge(auth, map[string]string{"WATCHERS": "sip:alice@example.com", "WATCHER_DOMAINS": "example.com"}),
			code: 200,
			expect: func(t *testing.T, p *siptest.Peer, h *harness) {
				if n := p.Next(); len(n.Doc.Registrations[0].Contacts) != 1 {
					t.Fatalf("watcher sees bob's contact: %s", n.Req.Body())
				}
			}},
		{name: "polite blocking: 200 and nothing revealed",
			env:  merge(auth, map[string]string{"POLITE_BLOCKING": "true"}),
			code: 200,
			expect: func(t *testing.T, p *siptest.Peer, h *harness) {
				n := p.Next()
				p.Check(n, 0, "full", "active")
				if r := n.Doc.Registrations[0]; r.State != "init" || len(r.Contacts) != 0 {
					t.Fatalf("neutral state expected, got %s", n.Req.Body())
				}
				h.br.Apply(t.Context(), source.Batch{Full: true, Contacts: []source.Contact{tAlice}}) // bob leaves
				p.None(300 * time.Millisecond)
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{}, tAlice, tBob)
			h.n.SetGuards(guardsFromEnv(t, tt.env))
			p := siptest.New(t, "udp", h.addr("udp"))
			res := p.Subscribe("sip:bob@example.com", siptest.Header("Event", "reg"))
			cred := answerChallenge(t, res.GetHeader("WWW-Authenticate").Value(), "sip:bob@example.com", "alice", "alice-secret")
			res = p.Subscribe("sip:bob@example.com", siptest.Header("Event", "reg"), siptest.Header("Authorization", cred))
			if res.StatusCode != tt.code {
				t.Fatalf("alice watching bob: %d %s, want %d", res.StatusCode, res.Reason, tt.code)
			}
			if tt.expect != nil {
				tt.expect(t, p, h)
			} else {
				p.None(200 * time.Millisecond)
			}
		})
	}

	t.Run("per-AOR cap for strangers", func(t *testing.T) {
		h := newHarness(t, Config{}, tAlice)
		// Loopback is not privileged here (no open networks), but
		// TRUSTED_NETWORKS with a P-Asserted-Identity vouches for alice.
		h.n.SetGuards(guardsFromEnv(t, map[string]string{"OPEN_NETWORKS": "none", "TRUSTED_NETWORKS": "127.0.0.1",
			"LIMIT_AOR_SUBSCRIPTIONS": "1"}))
		pai := siptest.Header("P-Asserted-Identity", "<sip:alice@example.com>")
		first := siptest.New(t, "udp", h.addr("udp"))
		if res := first.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), pai); res.StatusCode != 200 {
			t.Fatalf("first: %d %s", res.StatusCode, res.Reason)
		}
		first.Next()
		second := siptest.New(t, "udp", h.addr("udp"))
		if res := second.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), pai); res.StatusCode != 403 {
			t.Fatalf("second subscription to one AOR over the cap: %d, want 403", res.StatusCode)
		}
		if h.n.Count() != 1 || h.n.Counters().Refused.Load() != 1 {
			t.Fatalf("subscriptions %d refused %d, want 1 and 1", h.n.Count(), h.n.Counters().Refused.Load())
		}
		// Unsubscribing frees the place under the cap.
		first.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "0"))
		siptest.Eventually(t, func() bool { return h.n.Count() == 0 }, "subscription removed")
		third := siptest.New(t, "udp", h.addr("udp"))
		if res := third.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), pai); res.StatusCode != 200 {
			t.Fatalf("after the first left: %d, want 200", res.StatusCode)
		}
	})

	t.Run("source rate is 503 with Retry-After, before any other work", func(t *testing.T) {
		h := newHarness(t, Config{}, tAlice)
		h.n.SetGuards(guardsFromEnv(t, map[string]string{"OPEN_NETWORKS": "none", "LIMIT_SOURCE_RATE": "0.001", "LIMIT_SOURCE_BURST": "2"}))
		p := siptest.New(t, "udp", h.addr("udp"))
		for i, want := range []int{403, 403, 503} {
			res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
			if res.StatusCode != want {
				t.Fatalf("SUBSCRIBE %d: %d, want %d", i, res.StatusCode, want)
			}
			if want == 503 && res.GetHeader("Retry-After") == nil {
				t.Fatalf("503 without Retry-After")
			}
		}
	})
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
