package digest

import (
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"github.com/sethvargo/go-envconfig"
)

// env is one case's authenticator, clock, unauthenticated SUBSCRIBE and
// the 401 it got.
type env struct {
	a     *Authenticator
	clk   *clock
	base  *sip.Request
	first *sip.Response
}

// signed returns base answered for alg with user/password and count nc.
func (e *env) signed(t *testing.T, alg Algorithm, user, password string, nc int) *sip.Request {
	return withAuth(e.base, answer(t, challengeFor(t, e.first, alg), e.base, user, password, nc))
}

// checkOK runs req and fails unless it is authenticated.
func (e *env) checkOK(t *testing.T, req *sip.Request) {
	t.Helper()
	if r, res := e.a.Check(t.Context(), req); res != nil {
		t.Fatalf("setup request got %d (%s: %v), want authenticated", res.StatusCode, r.Outcome, r.Err)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config // Realm defaults to example.com unless fromRealm
		fromRealm bool   // leave Realm empty: the From domain is the realm
		creds     Credentials
		from      string // From URI; default sip:alice@example.com
		req       func(t *testing.T, e *env) *sip.Request
		code      int // 0: authenticated
		outcome   Outcome
		stale     bool
		identity  string
	}{
		{name: "no Authorization is challenged with both algorithms (E.12)",
			req: func(t *testing.T, e *env) *sip.Request { return e.base }, code: 401, outcome: OutcomeChallenged},
		{name: "correct MD5 answer", identity: "sip:alice@example.com", outcome: OutcomeOK,
			req: func(t *testing.T, e *env) *sip.Request { return e.signed(t, MD5, "alice", "alice-secret", 1) }},
		{name: "correct SHA-256 answer", identity: "sip:alice@example.com", outcome: OutcomeOK,
			req: func(t *testing.T, e *env) *sip.Request { return e.signed(t, SHA256, "alice", "alice-secret", 1) }},
		{name: "password with colons", identity: "sip:bob@example.com", outcome: OutcomeOK, from: "sip:bob@example.com",
			req: func(t *testing.T, e *env) *sip.Request { return e.signed(t, SHA256, "bob", "b0b:with:colons", 1) }},
		{name: "username with its own domain proves that domain", identity: "sip:carol@example.net", outcome: OutcomeOK,
			req: func(t *testing.T, e *env) *sip.Request {
				return e.signed(t, MD5, "carol@example.net", "carol-secret", 1)
			}},
		{name: "upper-case hex response is accepted", identity: "sip:alice@example.com", outcome: OutcomeOK,
			req: func(t *testing.T, e *env) *sip.Request {
				ch := challengeFor(t, e.first, MD5)
				v := answer(t, ch, e.base, "alice", "alice-secret", 1)
				i := strings.Index(v, `response="`) + len(`response="`)
				return withAuth(e.base, v[:i]+strings.ToUpper(v[i:i+32])+v[i+32:])
			}},
		{name: "wrong password is forbidden", code: 403, outcome: OutcomeDenied,
			req: func(t *testing.T, e *env) *sip.Request { return e.signed(t, MD5, "alice", "guess", 1) }},
		{name: "unknown user is forbidden like a wrong password", code: 403, outcome: OutcomeDenied,
			req: func(t *testing.T, e *env) *sip.Request { return e.signed(t, SHA256, "mallory", "x", 1) }},
		{name: "username that is not a SIP user part is forbidden", code: 403, outcome: OutcomeDenied,
			req: func(t *testing.T, e *env) *sip.Request { return e.signed(t, MD5, "al;ice", "x", 1) }},
		{name: "replayed nonce-count gets a stale challenge", code: 401, outcome: OutcomeReplay, stale: true,
			req: func(t *testing.T, e *env) *sip.Request {
				r := e.signed(t, MD5, "alice", "alice-secret", 1)
				e.checkOK(t, r)
				return r
			}},
		{name: "next nonce-count on the same nonce", outcome: OutcomeOK, identity: "sip:alice@example.com",
			req: func(t *testing.T, e *env) *sip.Request {
				e.checkOK(t, e.signed(t, MD5, "alice", "alice-secret", 1))
				return e.signed(t, MD5, "alice", "alice-secret", 2)
			}},
		{name: "out-of-order count inside the window", outcome: OutcomeOK, identity: "sip:alice@example.com",
			req: func(t *testing.T, e *env) *sip.Request {
				e.checkOK(t, e.signed(t, SHA256, "alice", "alice-secret", 5))
				return e.signed(t, SHA256, "alice", "alice-secret", 3)
			}},
		{name: "count below the window is refused", code: 401, outcome: OutcomeReplay, stale: true,
			req: func(t *testing.T, e *env) *sip.Request {
				e.checkOK(t, e.signed(t, SHA256, "alice", "alice-secret", 100))
				return e.signed(t, SHA256, "alice", "alice-secret", 100-replayWindow)
			}},
		{name: "expired nonce with a correct answer gets stale=true", code: 401, outcome: OutcomeStale, stale: true,
			req: func(t *testing.T, e *env) *sip.Request {
				e.clk.Advance(DefaultNonceTTL + time.Second)
				return e.signed(t, MD5, "alice", "alice-secret", 1)
			}},
		{name: "expired nonce with a wrong answer is forbidden", code: 403, outcome: OutcomeDenied,
			req: func(t *testing.T, e *env) *sip.Request {
				e.clk.Advance(DefaultNonceTTL + time.Second)
				return e.signed(t, MD5, "alice", "nope", 1)
			}},
		{name: "credentials for another realm are not ours: challenge", code: 401, outcome: OutcomeChallenged,
			req: func(t *testing.T, e *env) *sip.Request {
				ch := *challengeFor(t, e.first, MD5)
				ch.Realm = "other.example"
				return withAuth(e.base, answer(t, &ch, e.base, "alice", "alice-secret", 1))
			}},
		{name: "nonce issued for another realm is not accepted", code: 401, outcome: OutcomeStale, stale: true, fromRealm: true,
			req: func(t *testing.T, e *env) *sip.Request {
				// Realm follows From: a nonce issued to example.com must
				// not serve a request claiming example.org.
				ch := *challengeFor(t, e.first, MD5)
				ch.Realm = "example.org"
				other := subscribe(t, "sip:alice@example.com", "sip:alice@example.org")
				return withAuth(other, answer(t, &ch, other, "alice", "alice-secret", 1))
			}},
		{name: "nonce signed by another key (a restart): stale, not accepted", code: 401, outcome: OutcomeStale, stale: true,
			req: func(t *testing.T, e *env) *sip.Request {
				other := newAuth(t, Config{Realm: "example.com"}, testUsers, e.clk)
				_, res := other.Check(t.Context(), e.base)
				return withAuth(e.base, answer(t, challengeFor(t, res, MD5), e.base, "alice", "alice-secret", 1))
			}},
		{name: "forged nonce with a wrong answer is forbidden", code: 403, outcome: OutcomeDenied,
			req: func(t *testing.T, e *env) *sip.Request {
				ch := *challengeFor(t, e.first, MD5)
				ch.Nonce = "forged"
				return withAuth(e.base, answer(t, &ch, e.base, "alice", "guess", 1))
			}},
		{name: "algorithm not offered", code: 401, outcome: OutcomeChallenged, cfg: Config{Realm: "example.com", Algorithms: Algorithms{SHA256}},
			req: func(t *testing.T, e *env) *sip.Request {
				ch := *challengeFor(t, e.first, SHA256)
				ch.Algorithm = "MD5"
				return withAuth(e.base, answer(t, &ch, e.base, "alice", "alice-secret", 1))
			}},
		{name: "answer without qop (RFC 2069) is challenged", code: 401, outcome: OutcomeChallenged,
			req: func(t *testing.T, e *env) *sip.Request {
				ch := *challengeFor(t, e.first, MD5)
				ch.QOP = nil
				return withAuth(e.base, answer(t, &ch, e.base, "alice", "alice-secret", 1))
			}},
		{name: "digest uri for another resource", code: 400, outcome: OutcomeMalformed,
			req: func(t *testing.T, e *env) *sip.Request {
				other := subscribe(t, "sip:bob@example.com", "sip:alice@example.com")
				v := answer(t, challengeFor(t, e.first, MD5), other, "alice", "alice-secret", 1)
				return withAuth(e.base, v)
			}},
		{name: "malformed Authorization", code: 400, outcome: OutcomeMalformed,
			req: func(t *testing.T, e *env) *sip.Request {
				return withAuth(e.base, `Digest username="alice", realm="example.com", nonce="x`)
			}},
		{name: "Basic credentials are ignored: challenge", code: 401, outcome: OutcomeChallenged,
			req: func(t *testing.T, e *env) *sip.Request { return withAuth(e.base, "Basic YWxpY2U6eA==") }},
		{name: "store failure is 503 with Retry-After", code: 503, outcome: OutcomeStoreError,
			creds: users{err: errStoreDown},
			req:   func(t *testing.T, e *env) *sip.Request { return e.signed(t, MD5, "alice", "alice-secret", 1) }},
		{name: "realm from the From domain when none is configured", fromRealm: true, outcome: OutcomeOK, identity: "sip:alice@example.com",
			from: "sip:alice@EXAMPLE.com",
			req:  func(t *testing.T, e *env) *sip.Request { return e.signed(t, SHA256, "alice", "alice-secret", 1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.Realm == "" && !tt.fromRealm {
				cfg.Realm = "example.com"
			}
			creds := tt.creds
			if creds == nil {
				creds = testUsers
			}
			e := &env{clk: newClock()}
			e.a = newAuth(t, cfg, creds, e.clk)
			from := tt.from
			if from == "" {
				from = "sip:alice@example.com"
			}
			e.base = subscribe(t, "sip:alice@example.com", from)
			var r Result
			r, e.first = e.a.Check(t.Context(), e.base)
			if e.first == nil || e.first.StatusCode != 401 {
				t.Fatalf("unauthenticated SUBSCRIBE: got %v, want 401", e.first)
			}
			if r.Outcome != OutcomeChallenged {
				t.Errorf("unauthenticated outcome %s", r.Outcome)
			}
			req := tt.req(t, e)
			r, res := e.a.Check(t.Context(), req)
			switch {
			case tt.code == 0 && res != nil:
				t.Fatalf("got %d %s (%s: %v), want authenticated", res.StatusCode, res.Reason, r.Outcome, r.Err)
			case tt.code != 0 && res == nil:
				t.Fatalf("authenticated as %s, want %d", r.Identity, tt.code)
			case tt.code != 0 && res.StatusCode != tt.code:
				t.Fatalf("got %d %s (%s: %v), want %d", res.StatusCode, res.Reason, r.Outcome, r.Err, tt.code)
			}
			if r.Outcome != tt.outcome {
				t.Errorf("outcome %s (%v), want %s", r.Outcome, r.Err, tt.outcome)
			}
			if r.Identity != tt.identity {
				t.Errorf("identity %q, want %q", r.Identity, tt.identity)
			}
			if res != nil {
				checkResponse(t, res, tt.stale, cfg)
			}
		})
	}
}

// checkResponse checks the headers every error response must carry.
func checkResponse(t *testing.T, res *sip.Response, stale bool, cfg Config) {
	t.Helper()
	hs := res.GetHeaders("WWW-Authenticate")
	if len(res.GetHeaders("Proxy-Authenticate")) > 0 {
		t.Errorf("Proxy-Authenticate in a notifier's response (RFC 6665 4.2.1.3)")
	}
	switch res.StatusCode {
	case 401:
		want := cfg.Algorithms
		if want == nil {
			want = Algorithms{SHA256, MD5}
		}
		if len(hs) != len(want) {
			t.Fatalf("%d WWW-Authenticate headers, want %d", len(hs), len(want))
		}
		for i, h := range hs {
			ch, err := digest.ParseChallenge(h.Value())
			if err != nil {
				t.Fatal(err)
			}
			if ch.Algorithm != string(want[i]) || !ch.SupportsQOP("auth") || ch.Stale != stale || ch.Realm == "" || ch.Nonce == "" {
				t.Errorf("challenge %d = %q; want algorithm %s, qop auth, stale %v", i, h.Value(), want[i], stale)
			}
		}
	case 503:
		if res.GetHeader("Retry-After") == nil {
			t.Errorf("503 without Retry-After")
		}
		fallthrough
	default:
		if len(hs) > 0 {
			t.Errorf("%d with WWW-Authenticate", res.StatusCode)
		}
	}
}

// TestChallengeDoesNotStore checks that challenging costs no memory: a
// flood of unauthenticated requests leaves the replay table empty.
func TestChallengeDoesNotStore(t *testing.T) {
	a := newAuth(t, Config{Realm: "example.com"}, testUsers, nil)
	req := subscribe(t, "sip:alice@example.com", "sip:alice@example.com")
	for range 1000 {
		if _, res := a.Check(t.Context(), req); res.StatusCode != 401 {
			t.Fatalf("got %d", res.StatusCode)
		}
	}
	if n := a.replay.len(); n != 0 {
		t.Errorf("replay table holds %d entries after challenges only", n)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for none
	}{
		{"defaults", Config{}, ""},
		{"file source", Config{Source: "file:///etc/regbridge/credentials"}, ""},
		{"kamailio mysql", Config{Source: "kamailio+mysql://kam:pw@127.0.0.1/kamailio"}, ""},
		{"unknown scheme", Config{Source: "ldap://x"}, "REGBRIDGE_AUTH:"},
		{"kamailio postgres", Config{Source: "kamailio+postgres://kam:pw@127.0.0.1/kamailio?sslmode=disable"}, ""},
		{"postgres without a database", Config{Source: "kamailio+postgres://kam:pw@127.0.0.1"}, "REGBRIDGE_AUTH:"},
		{"bad realm", Config{Realm: "a b"}, "REGBRIDGE_AUTH_REALM"},
		{"short ttl", Config{NonceTTL: time.Second}, "REGBRIDGE_AUTH_NONCE_TTL"},
		{"short key", Config{NonceKey: "short"}, "REGBRIDGE_AUTH_NONCE_KEY"},
		{"tiny replay table", Config{ReplayEntries: 10}, "REGBRIDGE_AUTH_REPLAY_ENTRIES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.setDefaults()
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want an error naming %s", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "pw@") {
				t.Errorf("error leaks the password: %v", err)
			}
		})
	}
}

func TestSourceRedacted(t *testing.T) {
	s := Source("kamailio+mysql://kam:topsecret@db.example.com/kamailio")
	for _, got := range []string{s.String(), s.LogValue().String()} {
		if strings.Contains(got, "topsecret") {
			t.Errorf("redacted source %q shows the password", got)
		}
	}
	if got := Secret("k").String(); got != "[redacted]" {
		t.Errorf("Secret.String() = %q", got)
	}
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c Config)
		err   string
	}{
		{name: "defaults: off", env: nil, check: func(t *testing.T, c Config) {
			if c.Enabled() || c.Source != Off || c.NonceTTL != DefaultNonceTTL || c.ReplayEntries != DefaultReplayEntries ||
				len(c.Algorithms) != 2 || c.Algorithms[0] != SHA256 || c.Algorithms[1] != MD5 || c.Realm != "" || c.NonceKey != "" {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "everything", env: map[string]string{
			"AUTH": "kamailio+sqlite:///var/lib/kamailio/kamailio.db", "AUTH_REALM": "example.com",
			"AUTH_ALGORITHMS": "md5", "AUTH_NONCE_TTL": "60s", "AUTH_NONCE_KEY": "0123456789abcdef0123",
		}, check: func(t *testing.T, c Config) {
			if !c.Enabled() || c.Realm != "example.com" || len(c.Algorithms) != 1 || c.Algorithms[0] != MD5 || c.NonceTTL != time.Minute {
				t.Errorf("config = %+v", c)
			}
		}},
		{name: "unknown algorithm", env: map[string]string{"AUTH_ALGORITHMS": "SHA-1"}, err: "SHA-1"},
		{name: "algorithm twice", env: map[string]string{"AUTH_ALGORITHMS": "MD5,md5"}, err: "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			err := envconfig.ProcessWith(t.Context(), &envconfig.Config{Target: &c, Lookuper: envconfig.MapLookuper(tt.env)})
			if err == nil {
				err = c.Validate()
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}
