package notifier

import (
	"net/netip"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/siptest"
)

// TestBasicEventWatchersMatch: a watcher is named by a User-Agent
// substring (any case) or by its source network.
func TestBasicEventWatchersMatch(t *testing.T) {
	var w BasicEventWatchers
	l := envconfig.MapLookuper(map[string]string{
		"BASIC_EVENTS_USER_AGENTS": " Kamailio , ,acme-SBC",
		"BASIC_EVENTS_NETWORKS":    "10.1.0.0/16, 192.0.2.7",
	})
	if err := envconfig.ProcessWith(t.Context(), &envconfig.Config{Target: &w, Lookuper: l}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, ua, src string
		want          bool
	}{
		{"kamailio's default User-Agent", "kamailio (5.6.3 (x86_64/linux))", "198.51.100.1", true},
		{"other case", "ACME-sbc/2.1", "198.51.100.1", true},
		{"network", "softphone", "10.1.2.3", true},
		{"single address", "", "192.0.2.7", true},
		{"IPv4-mapped source", "", "::ffff:10.1.9.9", true},
		{"neither", "softphone", "10.2.0.1", false},
		{"no User-Agent, other network", "", "198.51.100.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := w.match(tt.ua, netip.MustParseAddr(tt.src)); got != tt.want {
				t.Errorf("match(%q, %s) = %v, want %v", tt.ua, tt.src, got, tt.want)
			}
		})
	}
	var none BasicEventWatchers
	if none.match("kamailio", netip.MustParseAddr("127.0.0.1")) {
		t.Error("unset: matched")
	}
	var fresh BasicEventWatchers
	bad := envconfig.MapLookuper(map[string]string{"BASIC_EVENTS_NETWORKS": "10.0.0.0/33"})
	if err := envconfig.ProcessWith(t.Context(), &envconfig.Config{Target: &fresh, Lookuper: bad}); err == nil {
		t.Error("10.0.0.0/33 accepted")
	}
}

// TestBasicEventsPerWatcher: over real SIP, the watcher whose SUBSCRIBE
// names a configured User-Agent gets basic events, another watcher of the
// same AOR the RFC 3680 ones, and the full state is the same for both.
func TestBasicEventsPerWatcher(t *testing.T) {
	cfg := Config{BasicEvents: BasicEventWatchers{UserAgents: UserAgents{"kamailio"}}}
	h := newHarness(t, cfg, tAlice)
	basic := siptest.New(t, "udp", h.addr("udp"))
	basic.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("User-Agent", "kamailio (5.6.3 (x86_64/linux))"))
	other := siptest.New(t, "udp", h.addr("udp"))
	other.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("User-Agent", "softphone/1.0"))
	var id string
	for _, p := range []*siptest.Peer{basic, other} {
		n := next(t, p)
		p.Check(n, 0, "full", "active")
		if c := onlyContact(t, n); c.Event != "registered" {
			t.Fatalf("full state: %s", n.Req.Body())
		} else {
			id = c.ID
		}
	}
	act(t, h, id, bridge.EventProbation, 60)
	for _, tc := range []struct {
		p                 *siptest.Peer
		event, retryAfter string
	}{{basic, "unregistered", ""}, {other, "probation", "60"}} {
		n := next(t, tc.p)
		tc.p.Check(n, 1, "partial", "active")
		if c := onlyContact(t, n); c.State != "terminated" || c.Event != tc.event || c.Expires != "0" || c.RetryAfter != tc.retryAfter {
			t.Errorf("want terminated %s expires=0 retry-after=%q:\n%s", tc.event, tc.retryAfter, n.Req.Body())
		}
	}
}

// onlyContact is the one contact of a NOTIFY's one registration.
func onlyContact(t *testing.T, n siptest.Notify) siptest.Contact {
	t.Helper()
	if len(n.Doc.Registrations) != 1 || len(n.Doc.Registrations[0].Contacts) != 1 {
		t.Fatalf("want one registration with one contact:\n%s", n.Req.Body())
	}
	return n.Doc.Registrations[0].Contacts[0]
}
