package policy

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
)

func mustNetworks(t *testing.T, s string) Networks {
	t.Helper()
	n, err := ParseNetworks(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDecide(t *testing.T) {
	base := Config{
		Watchers:        []string{"sip:as@apps.example.com", "sips:PCSCF@Example.com;transport=tls"},
		WatcherDomains:  []string{"example.com"},
		TrustedNetworks: mustNetworks(t, "10.0.0.0/8, 2001:db8::/32"),
		OpenNetworks:    mustNetworks(t, DefaultOpenNetworks),
	}
	polite := base
	polite.PoliteBlocking = true
	anyDomain := base
	anyDomain.WatcherDomains = nil
	closed := base
	closed.OpenNetworks = Networks{}

	outside := netip.MustParseAddr("192.0.2.1")
	proxy := netip.MustParseAddr("10.1.2.3")
	alice, bob := "sip:alice@example.com", "sip:bob@example.com"
	tests := []struct {
		name string
		cfg  Config
		in   Input
		want Decision
	}{
		// docs/security.md#who-may-watch-what
		{"E.12 unauthenticated, auth configured: challenge", base,
			Input{AOR: alice, Source: outside, CanChallenge: true},
			Decision{Verdict: Challenge, Rule: RuleNoIdentity}},
		{"E.13 alice watches her own AOR", base,
			Input{Identity: alice, AOR: alice, Source: outside, CanChallenge: true},
			Decision{Verdict: Allow, Rule: RuleSelf, Identity: alice}},
		{"E.14 alice watches bob: 403", base,
			Input{Identity: alice, AOR: bob, Source: outside, CanChallenge: true},
			Decision{Verdict: Deny, Rule: RuleNotPermitted, Identity: alice}},
		{"E.14 alice watches bob, polite blocking: 200 with neutral state", polite,
			Input{Identity: alice, AOR: bob, Source: outside, CanChallenge: true},
			Decision{Verdict: PoliteBlock, Rule: RuleNotPermitted, Identity: alice}},
		{"E.15 application server watches any AOR of its domains", base,
			Input{Identity: "sip:as@apps.example.com", AOR: bob, Source: outside},
			Decision{Verdict: Allow, Rule: RuleWatcher, Identity: "sip:as@apps.example.com", Privileged: true}},

		// Self-subscription and canonicalization.
		{"self: host case, URI parameters and port-less forms agree", base,
			Input{Identity: "sip:alice@EXAMPLE.COM", AOR: "SIP:alice@example.com;transport=tcp", Source: outside},
			Decision{Verdict: Allow, Rule: RuleSelf, Identity: alice}},
		{"self: sips identity is the same user", base,
			Input{Identity: "sips:alice@example.com", AOR: alice, Source: outside},
			Decision{Verdict: Allow, Rule: RuleSelf, Identity: alice}},
		{"self: user part is case-sensitive (RFC 3261 19.1.4)", base,
			Input{Identity: "sip:Alice@example.com", AOR: alice, Source: outside},
			Decision{Verdict: Deny, Rule: RuleNotPermitted, Identity: "sip:Alice@example.com"}},
		{"self: another port is another AOR", base,
			Input{Identity: alice, AOR: "sip:alice@example.com:5080", Source: outside},
			Decision{Verdict: Deny, Rule: RuleNotPermitted, Identity: alice}},

		// Watchers.
		{"watcher: AOR outside its domains", base,
			Input{Identity: "sip:as@apps.example.com", AOR: "sip:bob@other.example", Source: outside},
			Decision{Verdict: Deny, Rule: RuleNotPermitted, Identity: "sip:as@apps.example.com"}},
		{"watcher: no domains configured means every domain", anyDomain,
			Input{Identity: "sip:as@apps.example.com", AOR: "sip:bob@other.example", Source: outside},
			Decision{Verdict: Allow, Rule: RuleWatcher, Identity: "sip:as@apps.example.com", Privileged: true}},
		{"watcher: configured as sips with parameters, matched canonically", base,
			Input{Identity: "sip:PCSCF@example.com", AOR: "sip:bob@example.com:5060", Source: outside},
			Decision{Verdict: Allow, Rule: RuleWatcher, Identity: "sip:PCSCF@example.com", Privileged: true}},
		{"watcher: domain match ignores host case", base,
			Input{Identity: "sip:as@apps.example.com", AOR: "sip:bob@Example.COM", Source: outside},
			Decision{Verdict: Allow, Rule: RuleWatcher, Identity: "sip:as@apps.example.com", Privileged: true}},
		{"watcher: a similar identity is not the watcher", base,
			Input{Identity: "sip:as@apps.example.com.evil", AOR: bob, Source: outside},
			Decision{Verdict: Deny, Rule: RuleNotPermitted, Identity: "sip:as@apps.example.com.evil"}},

		// P-Asserted-Identity.
		{"PAI from a trusted network stands in for authentication", base,
			Input{AssertedIdentity: alice, AOR: alice, Source: proxy, CanChallenge: true},
			Decision{Verdict: Allow, Rule: RuleSelf, Identity: alice}},
		{"PAI from a trusted IPv6 network", base,
			Input{AssertedIdentity: "sip:as@apps.example.com", AOR: bob, Source: netip.MustParseAddr("2001:db8::5060")},
			Decision{Verdict: Allow, Rule: RuleWatcher, Identity: "sip:as@apps.example.com", Privileged: true}},
		{"PAI from a trusted network for someone else's AOR", base,
			Input{AssertedIdentity: alice, AOR: bob, Source: proxy},
			Decision{Verdict: Deny, Rule: RuleNotPermitted, Identity: alice}},
		{"PAI from an untrusted network is ignored: challenge", base,
			Input{AssertedIdentity: alice, AOR: alice, Source: outside, CanChallenge: true},
			Decision{Verdict: Challenge, Rule: RuleNoIdentity}},
		{"PAI from an untrusted network without auth: 403", base,
			Input{AssertedIdentity: alice, AOR: alice, Source: outside},
			Decision{Verdict: Deny, Rule: RuleNoIdentity}},
		{"trusted network without PAI is challenged", base,
			Input{AOR: alice, Source: proxy, CanChallenge: true},
			Decision{Verdict: Challenge, Rule: RuleNoIdentity}},
		{"digest identity wins over PAI", base,
			Input{Identity: bob, AssertedIdentity: alice, AOR: alice, Source: proxy},
			Decision{Verdict: Deny, Rule: RuleNotPermitted, Identity: bob}},
		{"unparsable PAI is no identity", base,
			Input{AssertedIdentity: "tel:+15551234", AOR: alice, Source: proxy, CanChallenge: true},
			Decision{Verdict: Challenge, Rule: RuleNoIdentity}},

		// Open networks (the default: loopback).
		{"loopback is open by default", base,
			Input{AOR: alice, Source: netip.MustParseAddr("127.0.0.1"), CanChallenge: true},
			Decision{Verdict: Allow, Rule: RuleOpenNetwork, Privileged: true}},
		{"IPv6 loopback is open by default", base,
			Input{AOR: alice, Source: netip.MustParseAddr("::1")},
			Decision{Verdict: Allow, Rule: RuleOpenNetwork, Privileged: true}},
		{"IPv4-mapped loopback counts as loopback", base,
			Input{AOR: alice, Source: netip.MustParseAddr("::ffff:127.0.0.1")},
			Decision{Verdict: Allow, Rule: RuleOpenNetwork, Privileged: true}},
		{"open network keeps the identity for the log", base,
			Input{Identity: bob, AOR: alice, Source: netip.MustParseAddr("127.0.0.1")},
			Decision{Verdict: Allow, Rule: RuleOpenNetwork, Identity: bob, Privileged: true}},
		{"open networks none: loopback must authenticate", closed,
			Input{AOR: alice, Source: netip.MustParseAddr("127.0.0.1"), CanChallenge: true},
			Decision{Verdict: Challenge, Rule: RuleNoIdentity}},
		{"outside source, auth off: 403", base,
			Input{AOR: alice, Source: outside},
			Decision{Verdict: Deny, Rule: RuleNoIdentity}},
		{"unknown source is not open", base,
			Input{AOR: alice, CanChallenge: true},
			Decision{Verdict: Challenge, Rule: RuleNoIdentity}},

		// Targets.
		{"tel: target", base, Input{AOR: "tel:+15551234", Source: netip.MustParseAddr("127.0.0.1")},
			Decision{Verdict: Deny, Rule: RuleBadTarget}},
		{"target without user", base, Input{AOR: "sip:example.com", Source: netip.MustParseAddr("127.0.0.1")},
			Decision{Verdict: Deny, Rule: RuleBadTarget}},
		{"empty target", base, Input{Source: netip.MustParseAddr("127.0.0.1")},
			Decision{Verdict: Deny, Rule: RuleBadTarget}},
		{"target with a blank in the host", base, Input{Identity: "sip:a@b c", AOR: "sip:a@b c", Source: outside},
			Decision{Verdict: Deny, Rule: RuleBadTarget}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Decide(tt.in); got != tt.want {
				t.Errorf("Decide = %+v (%s)\nwant     %+v (%s)", got, got.Verdict, tt.want, tt.want.Verdict)
			}
		})
	}
}

func TestPrivileged(t *testing.T) {
	p, err := New(Config{TrustedNetworks: mustNetworks(t, "10.0.0.0/8"), OpenNetworks: mustNetworks(t, DefaultOpenNetworks)})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"10.9.9.9": true, "127.0.0.2": true, "::1": true, "192.0.2.1": false} {
		if got := p.Privileged(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Privileged(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{name: "defaults: loopback open, nothing else", env: map[string]string{},
			check: func(t *testing.T, c Config) {
				if c.OpenNetworks.String() != "127.0.0.0/8,::1/128" || len(c.TrustedNetworks) != 0 || c.PoliteBlocking || len(c.Watchers) != 0 {
					t.Errorf("defaults = %+v", c)
				}
			}},
		{name: "open networks none", env: map[string]string{"OPEN_NETWORKS": "none"},
			check: func(t *testing.T, c Config) {
				if len(c.OpenNetworks) != 0 {
					t.Errorf("OpenNetworks = %v", c.OpenNetworks)
				}
			}},
		{name: "open networks set empty", env: map[string]string{"OPEN_NETWORKS": ""},
			check: func(t *testing.T, c Config) {
				if len(c.OpenNetworks) != 0 {
					t.Errorf("OpenNetworks = %v", c.OpenNetworks)
				}
			}},
		{name: "everything", env: map[string]string{
			"WATCHERS": "sip:as@example.com, sip:pcscf@ims.example.com", "WATCHER_DOMAINS": "example.com",
			"TRUSTED_NETWORKS": "10.0.0.0/8, 192.0.2.7", "POLITE_BLOCKING": "true"},
			check: func(t *testing.T, c Config) {
				if len(c.Watchers) != 2 || c.TrustedNetworks.String() != "10.0.0.0/8,192.0.2.7/32" || !c.PoliteBlocking {
					t.Errorf("config = %+v", c)
				}
			}},
		{name: "bad CIDR", env: map[string]string{"TRUSTED_NETWORKS": "10.0.0.0/33"}, wantErr: "10.0.0.0/33"},
		{name: "bad watcher", env: map[string]string{"WATCHERS": "as.example.com"}, wantErr: "REGBRIDGE_WATCHERS"},
		{name: "domains without watchers", env: map[string]string{"WATCHER_DOMAINS": "example.com"}, wantErr: "REGBRIDGE_WATCHER_DOMAINS"},
		{name: "bad domain", env: map[string]string{"WATCHERS": "sip:a@b.c", "WATCHER_DOMAINS": "exa mple.com"}, wantErr: "REGBRIDGE_WATCHER_DOMAINS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Config
			err := envconfig.ProcessWith(context.Background(), &envconfig.Config{Target: &c, Lookuper: envconfig.MapLookuper(tt.env)})
			if err == nil {
				err = c.Validate()
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tt.wantErr)
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

// TestAdmitsRemote: only an open or trusted network reaching past
// loopback lets a watcher on another host in without digest
// authentication.
func TestAdmitsRemote(t *testing.T) {
	tests := []struct {
		name, open, trusted string
		want                bool
	}{
		{"defaults", DefaultOpenNetworks, "", false},
		{"nothing open", "none", "", false},
		{"one loopback address", "127.0.0.1", "::1", false},
		{"a /7 reaches past 127/8", "126.0.0.0/7", "", true},
		{"IPv6 /127 holds ::0", "::/127", "", true},
		{"open LAN", "10.0.0.0/8", "", true},
		{"trusted proxy", DefaultOpenNetworks, "172.28.0.10", true},
		{"trusted on loopback only", "none", "127.0.0.2", false},
		{"open everything", "0.0.0.0/0", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{OpenNetworks: mustNetworks(t, tt.open), TrustedNetworks: mustNetworks(t, tt.trusted)}
			if got := c.AdmitsRemote(); got != tt.want {
				t.Errorf("AdmitsRemote() = %v, want %v", got, tt.want)
			}
		})
	}
}
