package notifier

import (
	"bytes"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// challenger makes a peer demand digest credentials on every NOTIFY, as
// a handset or SBC that authenticates incoming requests does, and checks
// them itself.
type challenger struct {
	code               int // 401 or 407
	user, password     string
	chal               digest.Challenge
	mu                 sync.Mutex
	accepted, rejected int
}

func (c *challenger) answer(_ int, req *sip.Request) (int, []sip.Header) {
	chalName, credName := "WWW-Authenticate", "Authorization"
	if c.code == 407 {
		chalName, credName = "Proxy-Authenticate", "Proxy-Authorization"
	}
	challenge := []sip.Header{sip.NewHeader(chalName, c.chal.String())}
	h := req.GetHeader(credName)
	if h == nil {
		return c.code, challenge
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return 400, nil
	}
	want, err := digest.Digest(&c.chal, digest.Options{Method: "NOTIFY", URI: req.Recipient.String(),
		Username: c.user, Password: c.password, Cnonce: cred.Cnonce, Count: cred.Nc,
		GetBody: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(req.Body())), nil }})
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil || cred.Username != c.user || cred.URI != req.Recipient.String() || cred.Response != want.Response {
		c.rejected++
		return c.code, challenge
	}
	c.accepted++
	return 200, nil
}

// TestNotifyChallenge: a NOTIFY challenged with 401 or 407 is sent again
// with credentials, in the same dialog with the next CSeq and the same
// document (RFC 3261 22.2, 22.3; docs/sip.md#subscribe-and-notify). Without
// credentials, or with wrong ones, the challenge is a failure that keeps
// the subscription (RFC 5057) and makes the next document full state.
func TestNotifyChallenge(t *testing.T) {
	tests := []struct {
		name       string
		code       int
		qop        []string
		user, pass string // configured; "" for none
		accepted   bool
	}{
		{"401 qop=auth", 401, []string{"auth"}, "regbridge", "s3cret", true},
		{"401 without qop", 401, nil, "regbridge", "s3cret", true},
		{"407 qop=auth-int", 407, []string{"auth-int"}, "regbridge", "s3cret", true},
		{"wrong password", 401, []string{"auth"}, "regbridge", "wrong", false},
		{"no credentials", 401, []string{"auth"}, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{NotifyAuthUser: tt.user, NotifyAuthPassword: Secret(tt.pass)}, tAlice)
			p := siptest.New(t, "udp", h.addr("udp"))
			c := &challenger{code: tt.code, user: "regbridge", password: "s3cret",
				chal: digest.Challenge{Realm: "watcher.example.com", Nonce: "n0nce-" + tt.name, Algorithm: "MD5", QOP: tt.qop}}
			p.AnswerWith(c.answer)
			p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))

			first := next(t, p)
			p.Check(first, 0, "full", "active")
			if tt.user == "" {
				p.None(200 * time.Millisecond) // nobody to answer the challenge
			} else {
				retry := next(t, p)
				p.Check(retry, 0, "full", "active") // the same document, version 0
				if got, want := retry.Req.CSeq().SeqNo, first.Req.CSeq().SeqNo+1; got != want {
					t.Errorf("retry CSeq %d, want %d", got, want)
				}
				if string(retry.Req.Body()) != string(first.Req.Body()) {
					t.Errorf("retry body differs:\n%s\n---\n%s", first.Req.Body(), retry.Req.Body())
				}
				p.None(200 * time.Millisecond) // answered once, not in a loop
			}
			c.mu.Lock()
			accepted := c.accepted
			c.mu.Unlock()
			if (accepted == 1) != tt.accepted {
				t.Fatalf("credentials accepted %d times, want %v", accepted, tt.accepted)
			}
			if h.n.Count() != 1 {
				t.Fatalf("a challenge removed the subscription")
			}
			// The next change: partial after success, full after failure.
			p.AnswerWith(func(int, *sip.Request) (int, []sip.Header) { return 200, nil })
			h.br.Apply(t.Context(), source.Batch{Deleted: []string{tAlice.Key}})
			state := "full"
			if tt.accepted {
				state = "partial"
			}
			p.Check(next(t, p), 1, state, "active")
		})
	}
}
