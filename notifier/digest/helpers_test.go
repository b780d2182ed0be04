package digest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

func init() { sip.SetDefaultLogger(testLog()) }

// testLog is quiet unless REGBRIDGE_TEST_LOG is set.
func testLog() *slog.Logger {
	if os.Getenv("REGBRIDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// users is a fake store: passwords by user@realm, and an error to return.
type users struct {
	passwords map[string]string
	err       error
}

func (u users) HA1(ctx context.Context, user, realm string, alg Algorithm) (string, bool, error) {
	if u.err != nil {
		return "", false, u.err
	}
	p, ok := u.passwords[user+"@"+realm]
	if !ok {
		return "", false, nil
	}
	return HA1(alg, user, realm, p), true, nil
}

var errStoreDown = errors.New("store down")

// testUsers holds alice and bob in example.com, and carol whose username
// carries its domain.
var testUsers = users{passwords: map[string]string{
	"alice@example.com":             "alice-secret",
	"alice@example.org":             "alice-secret",
	"bob@example.com":               "b0b:with:colons",
	"carol@example.net@example.com": "carol-secret",
	"al;ice@example.com":            "x",
}}

func newAuth(t testing.TB, cfg Config, creds Credentials, c *clock) *Authenticator {
	t.Helper()
	if c == nil {
		c = newClock()
	}
	a, err := New(cfg, creds, testLog(), WithClock(c.Now))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// subscribe parses a SUBSCRIBE as it would arrive on the wire, From the
// given URI, for the given AOR, with extra header lines.
func subscribe(t testing.TB, aor, from string, extra ...string) *sip.Request {
	t.Helper()
	raw := "SUBSCRIBE " + aor + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-" + fmt.Sprint(time.Now().UnixNano()) + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <" + from + ">;tag=ft1\r\n" +
		"To: <" + aor + ">\r\n" +
		"Call-ID: c1@192.0.2.10\r\n" +
		"CSeq: 1 SUBSCRIBE\r\n" +
		"Contact: <sip:watcher@192.0.2.10:5060>\r\n" +
		"Event: reg\r\n"
	for _, h := range extra {
		raw += h + "\r\n"
	}
	raw += "Content-Length: 0\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parsing test SUBSCRIBE: %v", err)
	}
	return msg.(*sip.Request)
}

// withAuth returns a copy of req carrying an Authorization header.
func withAuth(req *sip.Request, value string) *sip.Request {
	r := req.Clone()
	r.RemoveHeader("Authorization")
	r.AppendHeader(sip.NewHeader("Authorization", value))
	return r
}

// challengeFor returns the challenge of alg in a 401.
func challengeFor(t testing.TB, res *sip.Response, alg Algorithm) *digest.Challenge {
	t.Helper()
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		ch, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatalf("our own challenge does not parse: %v", err)
		}
		if strings.EqualFold(ch.Algorithm, string(alg)) {
			return ch
		}
	}
	t.Fatalf("no %s challenge in %d response", alg, res.StatusCode)
	return nil
}

// answer computes credentials with icholy/digest's client side, as a UA
// would: an independent implementation checks ours.
func answer(t testing.TB, ch *digest.Challenge, req *sip.Request, user, password string, nc int) string {
	t.Helper()
	cred, err := digest.Digest(ch, digest.Options{
		Method: string(req.Method), URI: req.Recipient.Addr(),
		Username: user, Password: password, Count: nc, Cnonce: "0a4f113b",
	})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}
