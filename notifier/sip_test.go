package notifier

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/render"
	"github.com/regbridge/regbridge/notifier/render/xmlcheck"
	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

func init() { sip.SetDefaultLogger(testLog()) }

// testLog is quiet unless REGBRIDGE_TEST_LOG is set.
func testLog() *slog.Logger {
	if os.Getenv("REGBRIDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// harness is a notifier on loopback fed by a real bridge.
type harness struct {
	br   *bridge.Bridge
	n    *Notifier
	stop func(t *testing.T) // cancels Run and waits for it
}

// anySubscription returns one live subscription (tests with exactly one).
func (n *Notifier) anySubscription() *subscription {
	n.subsMu.RLock()
	defer n.subsMu.RUnlock()
	for _, s := range n.subs {
		return s
	}
	return nil
}

func newHarness(t *testing.T, cfg Config, contacts ...source.Contact) *harness {
	t.Helper()
	return newHarnessWith(t, cfg, harnessOpts{}, contacts...)
}

// harnessOpts adjust a harness's notifier; the zero value is newHarness.
type harnessOpts struct {
	// wrap, unless nil, stands between the notifier and the bridge (a fake
	// with function fields).
	wrap func(Registrations) Registrations
	// setup, unless nil, is called on the notifier before it runs (to
	// give it a shared store, say).
	setup func(*Notifier)
}

// newHarnessWith is newHarness with o applied.
func newHarnessWith(t *testing.T, cfg Config, o harnessOpts, contacts ...source.Contact) *harness {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = ListenAddrs{{"udp", "127.0.0.1:0"}, {"tcp", "127.0.0.1:0"}}
	}
	if cfg.Drain == 0 {
		// Short: peers close before the harness stops (t.Cleanup order),
		// so final NOTIFYs to them go unanswered and would wait it out.
		cfg.Drain = 300 * time.Millisecond
	}
	br := bridge.New(testLog())
	var regs Registrations = br
	if o.wrap != nil {
		regs = o.wrap(br)
	}
	n, err := New(cfg, regs, testLog())
	if err != nil {
		t.Fatal(err)
	}
	br.Subscribe(n)
	if err := br.Apply(t.Context(), source.Batch{Full: true, Contacts: contacts}); err != nil {
		t.Fatal(err)
	}
	if o.setup != nil {
		o.setup(n)
	}
	if err := n.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	// The bridge's expiry clock, so that bindings lapse (E.32).
	clockCtx, stopClock := context.WithCancel(context.Background())
	clock := make(chan struct{})
	go func() { defer close(clock); br.Run(clockCtx) }()
	var once sync.Once
	stop := func(t *testing.T) {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("notifier Run: %v", err)
			}
			stopClock()
			<-clock
		})
	}
	t.Cleanup(func() { stop(t) })
	return &harness{br: br, n: n, stop: stop}
}

func (h *harness) addr(network string) string {
	for _, b := range h.n.Addrs() {
		if b.Network == network {
			return b.Addr
		}
	}
	panic("no " + network + " listener")
}

// next returns the peer's next NOTIFY after validating its body against the
// RFC schema of its Content-Type with xmllint (docs/design.md#invariants,
// invariant 2).
func next(t *testing.T, p *siptest.Peer) siptest.Notify {
	t.Helper()
	n := p.Next()
	validateNotify(t, n)
	return n
}

// validateNotify validates a NOTIFY's body, if any, against its schema.
func validateNotify(t *testing.T, n siptest.Notify) {
	t.Helper()
	body := n.Req.Body()
	if len(body) == 0 {
		return
	}
	ct := n.Req.ContentType()
	switch {
	case ct == nil:
		t.Errorf("NOTIFY with a body and no Content-Type")
	case ct.Value() == render.ContentTypeReginfo:
		xmlcheck.Validate(t, xmlcheck.Reginfo, body)
	case ct.Value() == render.ContentTypePIDF:
		xmlcheck.Validate(t, xmlcheck.PIDF, body)
	case ct.Value() == render.ContentTypeWatcherinfo:
		xmlcheck.Validate(t, xmlcheck.Watcherinfo, body)
	default:
		t.Errorf("NOTIFY Content-Type %q", ct.Value())
	}
}

// rawClient sends single requests with a plain sipgo client, for methods
// siptest.Peer does not speak.
type rawClient struct {
	c       *sipgo.Client
	network string
}

func newRawClient(t *testing.T, network string) *rawClient {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("raw-client"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	c, err := sipgo.NewClient(ua, sipgo.WithClientLogger(siptest.Quiet))
	if err != nil {
		t.Fatal(err)
	}
	return &rawClient{c: c, network: network}
}

func (c *rawClient) do(t *testing.T, req *sip.Request, addr string) *sip.Response {
	t.Helper()
	req.SetDestination(addr)
	req.SetTransport(strings.ToUpper(c.network))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res, err := c.c.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", req.Method, err)
	}
	return res
}

var tAlice = source.Contact{Key: "uloc-1", AOR: "sip:alice@example.com", URI: "sip:alice@192.0.2.10:5060",
	Expires: time.Now().Add(time.Hour), Q: -1, CallID: "c1", CSeq: 1}

func TestSubscribeLifecycle(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			h := newHarness(t, Config{}, tAlice)
			p := siptest.New(t, network, h.addr(network))

			res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Accept", "application/reginfo+xml"))
			if res.StatusCode != 200 {
				t.Fatalf("SUBSCRIBE: %d %s", res.StatusCode, res.Reason)
			}
			if p.ToTag == "" || res.Contact() == nil || res.GetHeader("Expires") == nil {
				t.Fatalf("200 lacks To tag, Contact or Expires:\n%s", res)
			}
			if got := res.GetHeader("Expires").Value(); got != "3761" {
				t.Errorf("Expires %s, want the RFC 3680 default 3761", got)
			}

			n0 := next(t, p)
			p.Check(n0, 0, "full", "active;expires=")
			if len(n0.Doc.Registrations) != 1 || len(n0.Doc.Registrations[0].Contacts) != 1 ||
				n0.Doc.Registrations[0].State != "active" || n0.Doc.Registrations[0].Contacts[0].Event != "registered" {
				t.Fatalf("full state: %s", n0.Req.Body())
			}
			regID := n0.Doc.Registrations[0].ID

			// A second contact registers: a partial document with it alone.
			bob := tAlice
			bob.Key, bob.URI, bob.CallID = "uloc-2", "sip:alice@192.0.2.11:5060", "c2"
			h.br.Apply(t.Context(), source.Batch{Full: true, Contacts: []source.Contact{tAlice, bob}})
			n1 := next(t, p)
			p.Check(n1, 1, "partial", "active;expires=")
			c := n1.Doc.Registrations[0].Contacts
			if len(c) != 1 || c[0].URI != bob.URI || c[0].Event != "registered" || c[0].State != "active" || n1.Doc.Registrations[0].ID != regID {
				t.Fatalf("partial: %s", n1.Req.Body())
			}

			// Both leave: one partial with two unregistered contacts, registration terminated.
			h.br.Apply(t.Context(), source.Batch{Full: true})
			n2 := next(t, p)
			p.Check(n2, 2, "partial", "active;expires=")
			r := n2.Doc.Registrations[0]
			if r.State != "terminated" || len(r.Contacts) != 2 || r.Contacts[0].Event != "unregistered" || r.Contacts[1].State != "terminated" {
				t.Fatalf("terminating partial: %s", n2.Req.Body())
			}

			// A refresh: 200 and a full document, version continuing.
			res = p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "600"))
			if res.StatusCode != 200 || res.GetHeader("Expires").Value() != "600" {
				t.Fatalf("refresh: %s", res)
			}
			n3 := next(t, p)
			p.Check(n3, 3, "full", "active;expires=")
			if r := n3.Doc.Registrations[0]; r.State != "init" || len(r.Contacts) != 0 {
				t.Fatalf("full state of an AOR without contacts must be init: %s", n3.Req.Body())
			}
			if e := siptest.ExpiresParam(n3.SubscriptionState); e > 600 || e < 590 {
				t.Errorf("Subscription-State %q, want expires near 600", n3.SubscriptionState)
			}

			// Unsubscribe: 200 Expires 0, a final full NOTIFY, then silence.
			res = p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "0"))
			if res.StatusCode != 200 || res.GetHeader("Expires").Value() != "0" {
				t.Fatalf("unsubscribe: %s", res)
			}
			n4 := next(t, p)
			p.Check(n4, 4, "full", "terminated;reason=timeout")
			h.br.Apply(t.Context(), source.Batch{Full: true, Contacts: []source.Contact{tAlice}})
			p.None(300 * time.Millisecond)
			siptest.Eventually(t, func() bool { return h.n.Count() == 0 }, "subscription removed")

			// The dialog is gone: a refresh gets 481.
			if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 481 {
				t.Fatalf("refresh after unsubscribe: %d, want 481", res.StatusCode)
			}
		})
	}
}
