package notifier

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// headerValues returns the values of every header called name.
func headerValues(m sip.Message, name string) []string {
	var out []string
	for _, h := range m.GetHeaders(name) {
		out = append(out, h.Value())
	}
	return out
}

// TestSubscribeResponseHeaders: the 2xx to SUBSCRIBE has a To tag,
// Contact, Expires, the Record-Route copied in order, Allow, Allow-Events
// naming every enabled package and an empty Supported; it is a 200, never
// a 202 (RFC 3261 12.1.1, RFC 6665 4.2.1.1, 8.3.1).
func TestSubscribeResponseHeaders(t *testing.T) {
	tests := []struct {
		name        string
		presence    bool
		allowEvents string
	}{
		{"reg only", false, "reg"},
		{"with presence", true, "reg, presence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{Presence: tt.presence}, tAlice)
			p := siptest.New(t, "udp", h.addr("udp"))
			rr := []string{"<sip:" + p.Local() + ";lr>", "<sip:proxy2.invalid;lr;x=1>"}
			res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"),
				siptest.Header("Record-Route", rr[0]), siptest.Header("Record-Route", rr[1]))
			if res.StatusCode != 200 {
				t.Fatalf("status %d, want 200", res.StatusCode)
			}
			if tag, _ := res.To().Params.Get("tag"); tag == "" {
				t.Errorf("no To tag")
			}
			if res.Contact() == nil {
				t.Errorf("no Contact")
			}
			if got := headerValues(res, "Record-Route"); !slices.Equal(got, rr) {
				t.Errorf("Record-Route %q, want %q in order", got, rr)
			}
			want := map[string]string{"Expires": "3761", "Allow-Events": tt.allowEvents, "Allow": allow, "Supported": ""}
			for name, value := range want {
				if got := res.GetHeader(name); got == nil || got.Value() != value {
					t.Errorf("%s = %v, want %q", name, got, value)
				}
			}
			p.Check(next(t, p), 0, "full", "active")
		})
	}
}

// TestRouteSet: NOTIFYs follow the route set taken from the SUBSCRIBE's
// Record-Route (RFC 3261 12.1.1, 12.2.1.1): sent to the first route, with
// the Route headers in order. The subscriber's Contact is unreachable, so
// only a NOTIFY sent to the first route (the peer itself) arrives. A
// first route without ;lr is a strict router: it becomes the Request-URI
// and the remote target the last Route.
func TestRouteSet(t *testing.T) {
	tests := []struct {
		name       string
		rr         func(self string) []string
		requestURI func(self string) string
		routes     func(self string) []string
	}{
		{
			name: "loose",
			rr:   func(self string) []string { return []string{"<sip:" + self + ";lr>", "<sip:p2.example.com;lr;x=1>"} },
			requestURI: func(string) string {
				return "sip:watcher@127.0.0.1:9"
			},
			routes: func(self string) []string { return []string{"<sip:" + self + ";lr>", "<sip:p2.example.com;lr;x=1>"} },
		},
		{
			name: "strict first hop",
			rr: func(self string) []string {
				return []string{"<sip:" + self + ";transport=udp>", "<sip:p2.example.com;lr>"}
			},
			requestURI: func(self string) string { return "sip:" + self + ";transport=udp" },
			routes: func(self string) []string {
				return []string{"<sip:p2.example.com;lr>", "<sip:watcher@127.0.0.1:9>"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{}, tAlice)
			p := siptest.New(t, "udp", h.addr("udp"))
			self := p.Local()
			hdrs := []sip.Header{siptest.Header("Event", "reg"), siptest.Header("Contact", "<sip:watcher@127.0.0.1:9>")}
			for _, r := range tt.rr(self) {
				hdrs = append(hdrs, siptest.Header("Record-Route", r))
			}
			if res := p.Subscribe("sip:alice@example.com", hdrs...); res.StatusCode != 200 {
				t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
			}
			for version := range uint32(2) {
				n := next(t, p)
				if n.Doc.Version != version {
					t.Fatalf("version %d, want %d", n.Doc.Version, version)
				}
				if got, want := n.Req.Recipient.String(), tt.requestURI(self); got != want {
					t.Errorf("Request-URI %s, want %s", got, want)
				}
				if got, want := headerValues(n.Req, "Route"), tt.routes(self); !slices.Equal(got, want) {
					t.Errorf("Route %q, want %q", got, want)
				}
				if version == 0 {
					h.br.Apply(t.Context(), source.Batch{Deleted: []string{tAlice.Key}})
				}
			}
		})
	}
}

// TestSubscribeChecks: requests regbridge must refuse before looking at the
// event package: a Require it does not support (420, RFC 3261 8.2.2.3) and a
// body it cannot process (415 with Accept, RFC 3261 8.2.3). A body marked
// optional is ignored.
func TestSubscribeChecks(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	tests := []struct {
		name   string
		body   string
		hdrs   []sip.Header
		code   int
		header string
		value  string
	}{
		{name: "Require", hdrs: []sip.Header{siptest.Header("Require", "eventlist, foo")}, code: 420, header: "Unsupported", value: "eventlist, foo"},
		{name: "filter body", body: "<filter-set/>", hdrs: []sip.Header{siptest.Header("Content-Type", "application/simple-filter+xml")}, code: 415, header: "Accept", value: ""},
		{name: "unknown body", body: "v=0\r\n", hdrs: []sip.Header{siptest.Header("Content-Type", "application/sdp")}, code: 415, header: "Accept", value: ""},
		{name: "optional body ignored", body: "<filter-set/>", hdrs: []sip.Header{siptest.Header("Content-Type", "application/simple-filter+xml"),
			siptest.Header("Content-Disposition", "filter;handling=optional")}, code: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := siptest.New(t, "udp", h.addr("udp"))
			before := h.n.Count()
			res := p.SubscribeWith("sip:alice@example.com", []byte(tt.body), append([]sip.Header{siptest.Header("Event", "reg")}, tt.hdrs...)...)
			if res.StatusCode != tt.code {
				t.Fatalf("status %d %s, want %d", res.StatusCode, res.Reason, tt.code)
			}
			if tt.header != "" {
				if got := res.GetHeader(tt.header); got == nil || got.Value() != tt.value {
					t.Fatalf("%s = %v, want %q", tt.header, got, tt.value)
				}
			}
			if tt.code != 200 {
				if h.n.Count() != before {
					t.Fatal("a refused SUBSCRIBE created a subscription")
				}
				p.None(100 * time.Millisecond)
				return
			}
			p.Check(next(t, p), 0, "full", "active")
		})
	}
}

// TestInDialogChecks: an in-dialog SUBSCRIBE with a CSeq not above the
// last one gets 500 (RFC 3261 12.2.2), one for another
// event package or id gets 403 (no dialog sharing, RFC 6665 4.5.2); the
// subscription goes on either way.
func TestInDialogChecks(t *testing.T) {
	h := newHarness(t, Config{Presence: true}, tAlice)
	p := siptest.New(t, "tcp", h.addr("tcp"))
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg;id=1"))
	p.Check(next(t, p), 0, "full", "active")
	tests := []struct {
		name  string
		event string
		cseq  uint32
		code  int
	}{
		{"refresh", "reg;id=1", 5, 200},
		{"CSeq repeated", "reg;id=1", 5, 500},
		{"CSeq lower", "reg;id=1", 3, 500},
		{"another id", "reg;id=2", 6, 403},
		{"no id", "reg", 7, 403},
		{"another package", "presence;id=1", 8, 403},
		{"other parameters do not count", "reg;id=1;foo=bar", 9, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.CSeq = tt.cseq
			res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", tt.event), siptest.Header("Expires", "600"))
			if res.StatusCode != tt.code {
				t.Fatalf("status %d %s, want %d", res.StatusCode, res.Reason, tt.code)
			}
		})
	}
	// The two accepted refreshes sent full state; the subscription lives.
	p.Check(next(t, p), 1, "full", "active")
	p.Check(next(t, p), 2, "full", "active")
	p.None(100 * time.Millisecond)
	if h.n.Count() != 1 {
		t.Fatalf("%d subscriptions, want 1", h.n.Count())
	}
}

// TestCancel: a CANCEL for a SUBSCRIBE transaction gets 200 with the same
// To tag and changes nothing; one matching no transaction gets 481 (RFC
// 6665 4.6, RFC 3261 9.2).
func TestCancel(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			h := newHarness(t, Config{}, tAlice)
			p := siptest.New(t, network, h.addr(network))
			if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
				t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
			}
			p.Check(next(t, p), 0, "full", "active")

			res := p.Cancel()
			if res.StatusCode != 200 {
				t.Fatalf("CANCEL: %d, want 200", res.StatusCode)
			}
			if tag, _ := res.To().Params.Get("tag"); tag != p.ToTag {
				t.Errorf("CANCEL response To tag %q, want the SUBSCRIBE's %q", tag, p.ToTag)
			}
			if res := p.CancelBranch(sip.GenerateBranch()); res.StatusCode != 481 {
				t.Errorf("CANCEL matching nothing: %d, want 481", res.StatusCode)
			}

			// The subscription is unchanged: changes are notified.
			h.br.Apply(t.Context(), source.Batch{Deleted: []string{tAlice.Key}})
			p.Check(next(t, p), 1, "partial", "active")
			if h.n.Count() != 1 {
				t.Fatalf("%d subscriptions after CANCEL, want 1", h.n.Count())
			}
		})
	}
}

// TestEventIDEchoed: with Event: reg;id=7 every NOTIFY, the final one
// too, carries Event: reg;id=7 (RFC 6665 4.5.2).
func TestEventIDEchoed(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	p := siptest.New(t, "udp", h.addr("udp"))
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg;id=7"))
	var got []siptest.Notify
	got = append(got, next(t, p))
	h.br.Apply(t.Context(), source.Batch{Deleted: []string{tAlice.Key}})
	got = append(got, next(t, p))
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg;id=7"), siptest.Header("Expires", "0"))
	got = append(got, next(t, p))
	for i, n := range got {
		p.Check(n, uint32(i), []string{"full", "partial", "full"}[i], []string{"active", "active", "terminated"}[i])
		if ev := n.Req.GetHeader("Event").Value(); ev != "reg;id=7" {
			t.Errorf("NOTIFY %d: Event %q, want reg;id=7", i, ev)
		}
	}
}

// TestNewSubscriptionStartsAtZero: after a subscription ends, a new one
// (a new dialog) starts its versions at 0 again (RFC 3680 5.1), while a
// refresh continues them.
func TestNewSubscriptionStartsAtZero(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	p := siptest.New(t, "udp", h.addr("udp"))
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
	p.Check(next(t, p), 0, "full", "active")
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "600"))
	p.Check(next(t, p), 1, "full", "active")
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "0"))
	p.Check(next(t, p), 2, "full", "terminated;reason=timeout")
	siptest.Eventually(t, func() bool { return h.n.Count() == 0 }, "subscription removed")

	p.CallID, p.FromTag, p.ToTag = "again-"+p.CallID, sip.GenerateTagN(10), ""
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("new SUBSCRIBE: %d", res.StatusCode)
	}
	p.Check(next(t, p), 0, "full", "active")
}

// TestOptions: OPTIONS lists what regbridge does (RFC 3261 11.2, RFC 6665
// 4.4.4).
func TestOptions(t *testing.T) {
	h := newHarness(t, Config{Presence: true}, tAlice)
	c := newRawClient(t, "udp")
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "127.0.0.1"})
	res := c.do(t, req, h.addr("udp"))
	want := map[string]string{"Allow": allow, "Allow-Events": "reg, presence", "Accept": "application/reginfo+xml, application/pidf+xml", "Supported": ""}
	if res.StatusCode != 200 {
		t.Fatalf("OPTIONS: %d", res.StatusCode)
	}
	for name, value := range want {
		if got := res.GetHeader(name); got == nil || got.Value() != value {
			t.Errorf("%s = %v, want %q", name, got, value)
		}
	}
	// A method regbridge does not handle: 405 with Allow.
	res = c.do(t, sip.NewRequest(sip.MESSAGE, sip.Uri{Scheme: "sip", Host: "127.0.0.1"}), h.addr("udp"))
	if res.StatusCode != 405 || res.GetHeader("Allow") == nil || !strings.Contains(res.GetHeader("Allow").Value(), "SUBSCRIBE") {
		t.Fatalf("MESSAGE: %s", res)
	}
}

// TestExpiresNegotiation: the granted duration is never longer than asked
// and 423 is allowed only for 0 < Expires < 3600 below the minimum (RFC
// 6665 3.1.1, 4.2.1.1).
func TestExpiresNegotiation(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
		event    string
		expires  string // "" : no Expires header
		code     int
		granted  string // Expires of the 200, or Min-Expires of the 423
	}{
		{"no Expires: reg default (E.1)", 0, 0, "reg", "", 200, "3761"},
		{"no Expires, maximum below the default", 0, time.Hour, "reg", "", 200, "3600"},
		{"no Expires: presence default", 0, 0, "presence", "", 200, "3600"},
		{"below a minimum (E.2)", time.Minute, 0, "reg", "30", 423, "60"},
		{"an hour with a higher minimum (E.3)", 2 * time.Hour, 0, "reg", "3600", 200, "3600"},
		{"just under an hour with a higher minimum", 2 * time.Hour, 0, "reg", "3599", 423, "7200"},
		{"above the maximum (E.4)", 0, time.Hour, "reg", "7200", 200, "3600"},
		{"fetch with a higher minimum (E.5)", 2 * time.Hour, 0, "reg", "0", 200, "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{MinExpires: tt.min, MaxExpires: tt.max, Presence: true}, tAlice)
			p := siptest.New(t, "udp", h.addr("udp"))
			hdrs := []sip.Header{siptest.Header("Event", tt.event)}
			if tt.expires != "" {
				hdrs = append(hdrs, siptest.Header("Expires", tt.expires))
			}
			res := p.Subscribe("sip:alice@example.com", hdrs...)
			if res.StatusCode != tt.code {
				t.Fatalf("status %d %s, want %d", res.StatusCode, res.Reason, tt.code)
			}
			header := "Expires"
			if tt.code == 423 {
				header = "Min-Expires"
			}
			if got := res.GetHeader(header); got == nil || got.Value() != tt.granted {
				t.Fatalf("%s = %v, want %s", header, got, tt.granted)
			}
			if tt.code != 200 {
				p.None(100 * time.Millisecond)
				return
			}
			n := next(t, p)
			want := "active;expires="
			if tt.granted == "0" {
				want = "terminated;reason=timeout"
			} else if e := siptest.ExpiresParam(n.SubscriptionState); e > mustAtoi(t, tt.granted) || e <= 0 {
				// (exact values: TestExpiresParam, on a fake clock)
				t.Errorf("Subscription-State %q, want 0 < expires <= %s", n.SubscriptionState, tt.granted)
			}
			if !strings.HasPrefix(n.SubscriptionState, want) {
				t.Errorf("Subscription-State %q, want %s", n.SubscriptionState, want)
			}
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
