package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/regbridge/regbridge/source"
)

// DefaultOpenNetworks lets loopback watch without authentication:
// regbridge's default SIP listener is loopback-only, so whoever reaches it
// already runs on the host, and a fresh install works with no
// configuration. An operator who listens on other addresses gets 403 for
// every other source until they configure authentication, trusted
// networks or watchers: exposing the listener never exposes the data.
const DefaultOpenNetworks = "127.0.0.0/8,::1/128"

// Config is the authorization policy's configuration (environment names
// without the REGBRIDGE_ prefix, read by cmd/regbridge).
type Config struct {
	Watchers       []string `env:"WATCHERS" desc:"identities allowed to watch any AOR of REGBRIDGE_WATCHER_DOMAINS, comma-separated SIP URIs (application servers, P-CSCFs)"`
	WatcherDomains []string `env:"WATCHER_DOMAINS" desc:"domains whose AORs REGBRIDGE_WATCHERS may watch, comma-separated (empty: every domain)"`
	// TrustedNetworks are the RFC 3325 trust domain: the proxies that
	// authenticate users themselves and assert who they are.
	TrustedNetworks Networks `env:"TRUSTED_NETWORKS" desc:"CIDRs whose P-Asserted-Identity is believed instead of a digest challenge (your P-CSCF, SBC or proxy), comma-separated (empty: none)"`
	OpenNetworks    Networks `env:"OPEN_NETWORKS, default=127.0.0.0/8,::1/128" desc:"CIDRs whose SUBSCRIBEs may watch any AOR without authentication, comma-separated (none: every source must prove an identity; set it to none when a proxy on this host relays outside SUBSCRIBEs)"`
	PoliteBlocking  bool     `env:"POLITE_BLOCKING, default=false" desc:"answer a refused SUBSCRIBE with 200 and neutral state (registration state init) instead of 403, so the refusal does not reveal the policy (RFC 6665 4.2.1.3)"`
}

// Validate rejects nonsense, naming the variable.
func (c *Config) Validate() error {
	var errs []error
	for _, w := range c.Watchers {
		if canonicalIdentity(w) == "" {
			errs = append(errs, fmt.Errorf("REGBRIDGE_WATCHERS: %q is not a sip: or sips: URI with user@host", w))
		}
	}
	for _, d := range c.WatcherDomains {
		if !validDomain(d) {
			errs = append(errs, fmt.Errorf("REGBRIDGE_WATCHER_DOMAINS: %q is not a domain name", d))
		}
	}
	if len(c.WatcherDomains) > 0 && len(c.Watchers) == 0 {
		errs = append(errs, errors.New("REGBRIDGE_WATCHER_DOMAINS: set without REGBRIDGE_WATCHERS"))
	}
	return errors.Join(errs...)
}

// AdmitsRemote reports whether any source beyond loopback can be admitted
// without digest authentication: an open network, or a trusted network
// whose proxies assert identities, reaches past the host. With neither, a
// SIP listener on other addresses refuses every remote watcher unless
// REGBRIDGE_AUTH lets them log in.
func (c *Config) AdmitsRemote() bool {
	return !c.OpenNetworks.LoopbackOnly() || !c.TrustedNetworks.LoopbackOnly()
}

// Networks is a list of address prefixes.
type Networks []netip.Prefix

// EnvDecode parses "10.0.0.0/8, 192.0.2.7, ::1/128"; a bare address is
// its own /32 or /128, "none" or "" is the empty list.
func (ns *Networks) EnvDecode(ctx context.Context, val string) error {
	out, err := ParseNetworks(val)
	if err != nil {
		return err
	}
	*ns = out
	return nil
}

// ParseNetworks parses a comma-separated prefix list.
func ParseNetworks(val string) (Networks, error) {
	out := Networks{}
	if strings.EqualFold(strings.TrimSpace(val), "none") {
		return out, nil
	}
	for part := range strings.SplitSeq(val, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, fmt.Errorf("%q is not an address or CIDR prefix", part)
			}
			a = a.Unmap()
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR prefix", part)
		}
		if p.Addr().Is4In6() {
			return nil, fmt.Errorf("%q: write IPv4 prefixes in dotted form", part)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Contains reports whether a falls in any of the prefixes. An IPv4
// address seen as IPv4-mapped IPv6 (a dual-stack socket) counts as IPv4.
func (ns Networks) Contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap()
	for _, p := range ns {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// loopback holds every loopback address; a prefix inside one of them
// reaches nothing beyond the host.
var loopback = [...]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// LoopbackOnly reports whether every address of the list is a loopback
// address (true for the empty list).
func (ns Networks) LoopbackOnly() bool {
	for _, p := range ns {
		inside := false
		for _, l := range loopback {
			inside = inside || (p.Bits() >= l.Bits() && l.Contains(p.Addr()))
		}
		if !inside {
			return false
		}
	}
	return true
}

// String formats the list as it is configured.
func (ns Networks) String() string {
	parts := make([]string, len(ns))
	for i, p := range ns {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

func validDomain(s string) bool { return source.ValidHost(s) }
