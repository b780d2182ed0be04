package policy

import (
	"net/netip"
	"strings"

	"github.com/regbridge/regbridge/bridge"
)

// Verdict is what the notifier does with a SUBSCRIBE.
type Verdict int

// Verdicts, in the notifier's terms.
const (
	// Deny: answer 403 (Forbidden).
	Deny Verdict = iota
	// Allow: go on to the remaining checks and 200 (OK).
	Allow
	// Challenge: authenticate (401 with WWW-Authenticate), then decide
	// again with the identity.
	Challenge
	// PoliteBlock: answer 200 and send neutral state (a full document
	// with registration state "init" and no contacts), never the AOR's
	// real state (RFC 6665 4.2.1.3, 6.2).
	PoliteBlock
)

func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case Challenge:
		return "challenge"
	case PoliteBlock:
		return "polite_block"
	}
	return "deny"
}

// Rule names the rule that decided, for logs and counters.
type Rule string

// Rules.
const (
	RuleOpenNetwork  Rule = "open_network"  // Allow: source in the open networks
	RuleSelf         Rule = "self"          // Allow: identity is the AOR
	RuleWatcher      Rule = "watcher"       // Allow: configured watcher, AOR in its domains
	RuleNoIdentity   Rule = "no_identity"   // Challenge, or Deny without authentication
	RuleNotPermitted Rule = "not_permitted" // Deny or PoliteBlock: identity known, no rule allows
	RuleBadTarget    Rule = "bad_target"    // Deny: the AOR is not a sip/sips user@host URI
)

// Input is what a decision depends on.
type Input struct {
	// Identity is the authenticated identity (digest), "" without one.
	Identity string
	// AssertedIdentity is the P-Asserted-Identity URI (see
	// AssertedIdentity), believed only from trusted networks.
	AssertedIdentity string
	// Source is the address the request came from (the last hop).
	Source netip.Addr
	// AOR is the watched resource: the SUBSCRIBE's Request-URI.
	AOR string
	// CanChallenge says whether digest authentication is configured.
	CanChallenge bool
}

// Decision is the outcome of Decide.
type Decision struct {
	Verdict Verdict
	Rule    Rule
	// Identity is the canonical identity the decision is about (digest,
	// or asserted from a trusted network), "" when none.
	Identity string
	// Privileged marks requests the operator vouched for (open network,
	// configured watcher): per-source and per-identity limits are not
	// meant for them.
	Privileged bool
}

// Policy holds a validated configuration, canonicalized once.
type Policy struct {
	cfg      Config
	watchers map[string]bool
	domains  map[string]bool
}

// New builds a policy.
func New(cfg Config) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Policy{cfg: cfg, watchers: make(map[string]bool), domains: make(map[string]bool)}
	for _, w := range cfg.Watchers {
		p.watchers[canonicalIdentity(w)] = true
	}
	for _, d := range cfg.WatcherDomains {
		p.domains[strings.ToLower(d)] = true
	}
	return p, nil
}

// Decide applies the rules to in, first match wins.
func (p *Policy) Decide(in Input) Decision {
	target := canonicalIdentity(in.AOR)
	if target == "" {
		return Decision{Verdict: Deny, Rule: RuleBadTarget}
	}
	id := canonicalIdentity(in.Identity)
	if id == "" && in.AssertedIdentity != "" && p.cfg.TrustedNetworks.Contains(in.Source) {
		id = canonicalIdentity(in.AssertedIdentity)
	}
	switch {
	case p.cfg.OpenNetworks.Contains(in.Source):
		return Decision{Verdict: Allow, Rule: RuleOpenNetwork, Identity: id, Privileged: true}
	case id == "" && in.CanChallenge:
		return Decision{Verdict: Challenge, Rule: RuleNoIdentity}
	case id == "":
		return Decision{Verdict: Deny, Rule: RuleNoIdentity}
	case id == target:
		return Decision{Verdict: Allow, Rule: RuleSelf, Identity: id}
	case p.watchers[id] && (len(p.domains) == 0 || p.domains[domainOf(target)]):
		return Decision{Verdict: Allow, Rule: RuleWatcher, Identity: id, Privileged: true}
	case p.cfg.PoliteBlocking:
		return Decision{Verdict: PoliteBlock, Rule: RuleNotPermitted, Identity: id}
	}
	return Decision{Verdict: Deny, Rule: RuleNotPermitted, Identity: id}
}

// Privileged reports whether src is vouched for before any identity is
// known (open or trusted networks): per-source limits are not meant for
// the operator's own proxies.
func (p *Policy) Privileged(src netip.Addr) bool {
	return p.cfg.OpenNetworks.Contains(src) || p.cfg.TrustedNetworks.Contains(src)
}

// canonicalIdentity reduces a SIP URI to the form identities and AORs are
// compared in: bridge.CanonicalAOR (scheme and host in lower case, no
// parameters or headers), sips: read as sip: (one user, whichever
// transport security it asked for), and "" for anything that is not a
// sip/sips user@host URI.
func canonicalIdentity(uri string) string {
	c := bridge.CanonicalAOR(uri)
	rest, ok := strings.CutPrefix(c, "sip:")
	if !ok {
		rest, ok = strings.CutPrefix(c, "sips:")
		if !ok {
			return ""
		}
	}
	at := strings.LastIndexByte(rest, '@')
	if at <= 0 || !validDomain(rest[at+1:]) || strings.ContainsAny(rest[:at], "<>\" \t\r\n") {
		return ""
	}
	return "sip:" + rest
}

// domainOf returns the host of a canonical identity (without port).
func domainOf(canonical string) string {
	host := canonical[strings.LastIndexByte(canonical, '@')+1:]
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			return host[:i+1]
		}
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		return host[:i]
	}
	return host
}
