package notifier

import (
	"context"
	"net/netip"
	"sync"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/digest"
	"github.com/regbridge/regbridge/notifier/limit"
	"github.com/regbridge/regbridge/notifier/policy"
)

// Guards decide who may subscribe, before any 200 OK (RFC 3680 4.6 and 7, RFC
// 6665 4.2.1.3; invariant 6, docs/design.md#invariants). A nil part is not
// checked: without Policy everyone may watch every AOR (tests and embedding).
type Guards struct {
	Auth   *digest.Authenticator // nil: no digest authentication
	Policy *policy.Policy
	Limits *limit.Limiter
}

// SetGuards installs the checks. It may be called at any time (a reload):
// SUBSCRIBEs already being handled finish under the checks they started
// with.
func (n *Notifier) SetGuards(g Guards) { n.guards.Store(&g) }

// guardsNow returns the checks in force.
func (n *Notifier) guardsNow() *Guards {
	if g := n.guards.Load(); g != nil {
		return g
	}
	return &Guards{}
}

// admission is what the guards decided for one initial SUBSCRIBE.
type admission struct {
	source     netip.Addr
	identity   string
	privileged bool
	// neutral marks a politely blocked subscription: it gets 200 and
	// documents that reveal nothing (registration state init, no
	// contacts), and no NOTIFY driven by changes, whose timing would leak
	// state (RFC 6665 4.2.1.3, 6.2).
	neutral bool
}

// admitRequest is what every SUBSCRIBE, refreshes included, passes before
// any other work and, over UDP, before a transaction is held for it: the
// notifier is not shutting down, and the per-request rate limits. It
// returns the response refusing req, counted, or nil.
func (n *Notifier) admitRequest(req *sip.Request) *sip.Response {
	if n.closed.Load() {
		n.obs.SubscribeAnswered(503)
		res := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", "5"))
		return res
	}
	g := n.guardsNow()
	if g.Limits == nil {
		return nil
	}
	src := policy.SourceAddr(req)
	privileged := g.Policy != nil && g.Policy.Privileged(src)
	if v := g.Limits.AllowRequest(src, privileged); !v.OK() {
		res := v.Response(req)
		n.counted(res.StatusCode, string(v.Reason))
		return res
	}
	return nil
}

// admitSubscriber authenticates and authorizes an initial SUBSCRIBE for
// aor. It answers (401, 403, 400, 503...) and returns false when the
// subscription must not be created.
func (n *Notifier) admitSubscriber(ctx context.Context, req *sip.Request, tx sip.ServerTransaction, src netip.Addr, aor string) (admission, bool) {
	adm := admission{source: src}
	g := n.guardsNow()
	p := g.Policy
	if p == nil {
		return adm, true
	}
	in := policy.Input{
		AssertedIdentity: policy.AssertedIdentity(req),
		Source:           src,
		AOR:              aor,
		CanChallenge:     g.Auth != nil,
	}
	d := p.Decide(in)
	if d.Verdict == policy.Challenge {
		r, res := g.Auth.Check(ctx, req)
		if res != nil {
			if r.Err != nil {
				n.log.Debug("SUBSCRIBE not authenticated", "aor", aor, "outcome", string(r.Outcome), "err", r.Err)
			}
			n.refuse(tx, req, res, "auth_"+string(r.Outcome))
			return adm, false
		}
		in.Identity = r.Identity
		d = p.Decide(in)
	}
	switch d.Verdict {
	case policy.Allow:
	case policy.PoliteBlock:
		adm.neutral = true
	default:
		n.log.Info("SUBSCRIBE refused by policy", "aor", aor, "subscriber", d.Identity, "source", src.String(), "rule", string(d.Rule))
		n.refuse(tx, req, sip.NewResponseFromRequest(req, 403, "Forbidden", nil), "policy_"+string(d.Rule))
		return adm, false
	}
	adm.identity, adm.privileged = d.Identity, d.Privileged
	if l := g.Limits; l != nil {
		if v := l.AllowIdentity(d.Identity, d.Privileged); !v.OK() {
			n.refuse(tx, req, v.Response(req), string(v.Reason))
			return adm, false
		}
	}
	return adm, true
}

// acquire takes the subscription's place under the concurrency caps, just
// before the 200 OK. It answers and returns false when a cap is reached.
func (n *Notifier) acquire(req *sip.Request, tx sip.ServerTransaction, adm admission, aor string) (*limit.Lease, bool) {
	l := n.guardsNow().Limits
	if l == nil {
		return nil, true
	}
	lease, v := l.Acquire(limit.Keys{Source: adm.source, Identity: adm.identity, AOR: bridge.CanonicalAOR(aor), Privileged: adm.privileged})
	if !v.OK() {
		n.refuse(tx, req, v.Response(req), string(v.Reason))
		return nil, false
	}
	return lease, true
}

// refuse counts a guard's response and sends it: counted first, so that
// whoever has seen the response sees it counted.
func (n *Notifier) refuse(tx sip.ServerTransaction, req *sip.Request, res *sip.Response, reason string) {
	n.counted(res.StatusCode, reason)
	_ = tx.Respond(res)
}

// counted counts a guard's refusal with status code.
func (n *Notifier) counted(code int, reason string) {
	n.obs.SubscribeAnswered(code)
	n.stats.countRefusal(reason)
}

// leases holds each live subscription's place under the caps, released
// when the subscription is removed, whatever removes it.
type leases struct {
	mu sync.Mutex
	m  map[string]*limit.Lease // by subscription id
}

func (ls *leases) hold(id string, l *limit.Lease) {
	if l == nil {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.m == nil {
		ls.m = make(map[string]*limit.Lease)
	}
	ls.m[id] = l
}

func (ls *leases) release(id string) {
	ls.mu.Lock()
	l := ls.m[id]
	delete(ls.m, id)
	ls.mu.Unlock()
	l.Release()
}

// lookupFor reads the state a full document of s shows: the AOR's real
// registration, or for a politely blocked subscription a registration
// with no contacts (state init), which reveals nothing.
func (n *Notifier) lookupFor(s *subscription) (bridge.Registration, uint64) {
	if _, neutral := n.neutral.Load(s.id); neutral {
		return bridge.Registration{AOR: s.aor, ID: s.regID, State: bridge.RegInit}, 0
	}
	return n.regs.Lookup(s.aor)
}
