package limit

import (
	"hash/maphash"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Reason names the limit a request ran into, for counters and logs.
type Reason string

// Reasons.
const (
	SourceRate            Reason = "source_rate"
	IdentityRate          Reason = "identity_rate"
	TotalRate             Reason = "total_rate"
	SourceSubscriptions   Reason = "source_subscriptions"
	IdentitySubscriptions Reason = "identity_subscriptions"
	AORSubscriptions      Reason = "aor_subscriptions"
	TotalSubscriptions    Reason = "total_subscriptions"
)

// fullRetryAfter is the Retry-After of a 503 sent because every
// subscription slot is taken: subscriptions last minutes to hours, so
// asking again within seconds would only add load.
const fullRetryAfter = 60 * time.Second

// Verdict is a limiter's answer. The zero Verdict allows.
type Verdict struct {
	Reason     Reason
	Code       int    // 503 or 403
	Phrase     string // reason phrase of the response
	RetryAfter time.Duration
}

// OK reports whether the request may go on.
func (v Verdict) OK() bool { return v.Reason == "" }

// Response builds the SIP response for a refusal: the code, and for 503
// a Retry-After in whole seconds, at least 1.
func (v Verdict) Response(req *sip.Request) *sip.Response {
	res := sip.NewResponseFromRequest(req, v.Code, v.Phrase, nil)
	if v.Code == 503 {
		secs := max(1, int(math.Ceil(v.RetryAfter.Seconds())))
		res.AppendHeader(sip.NewHeader("Retry-After", strconv.Itoa(secs)))
	}
	return res
}

func rateVerdict(r Reason, wait time.Duration) Verdict {
	return Verdict{Reason: r, Code: 503, Phrase: "Too Many Requests", RetryAfter: wait}
}

func capVerdict(r Reason) Verdict {
	return Verdict{Reason: r, Code: 403, Phrase: "Too Many Subscriptions"}
}

// Limiter applies the limits. Its methods are safe for concurrent use.
type Limiter struct {
	cfg  Config
	now  func() time.Time
	seed maphash.Seed

	// mu guards everything below.
	mu         sync.Mutex
	total      bucket
	sources    *bucketTable
	identities *bucketTable
	bySource   map[uint64]int
	byIdentity map[uint64]int
	byAOR      map[uint64]int
	active     int
}

// Option adjusts a Limiter.
type Option func(*Limiter)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(l *Limiter) { l.now = now } }

// New builds a limiter.
func New(cfg Config, opts ...Option) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	l := &Limiter{
		cfg: cfg, now: time.Now, seed: maphash.MakeSeed(),
		sources:    newBucketTable(cfg.SourceRate, cfg.SourceBurst, cfg.Tracked),
		identities: newBucketTable(cfg.IdentityRate, cfg.IdentityBurst, cfg.Tracked),
		bySource:   make(map[uint64]int), byIdentity: make(map[uint64]int), byAOR: make(map[uint64]int),
	}
	for _, o := range opts {
		o(l)
	}
	return l, nil
}

// AllowRequest counts one SUBSCRIBE from src against the source and total
// rates, before any authentication work. privileged sources (the
// operator's own: open and trusted networks) skip the per-source rate.
func (l *Limiter) AllowRequest(src netip.Addr, privileged bool) Verdict {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.SourceRate > 0 && !privileged {
		if ok, wait := l.sources.take(l.sourceKey(src), now); !ok {
			return rateVerdict(SourceRate, wait)
		}
	}
	if l.cfg.TotalRate > 0 {
		if ok, wait := l.total.take(now, l.cfg.TotalRate, l.cfg.TotalBurst); !ok {
			return rateVerdict(TotalRate, wait)
		}
	}
	return Verdict{}
}

// AllowIdentity counts one SUBSCRIBE under an authenticated identity.
// privileged identities (configured watchers) skip it.
func (l *Limiter) AllowIdentity(identity string, privileged bool) Verdict {
	if l.cfg.IdentityRate == 0 || privileged || identity == "" {
		return Verdict{}
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if ok, wait := l.identities.take(maphash.String(l.seed, identity), now); !ok {
		return rateVerdict(IdentityRate, wait)
	}
	return Verdict{}
}

// Keys says whose a new subscription is.
type Keys struct {
	Source   netip.Addr
	Identity string // "" when none (open network)
	AOR      string // canonical AOR
	// Privileged subscriptions (open and trusted networks, configured
	// watchers) are not held to the per-source, per-identity and per-AOR
	// caps.
	Privileged bool
}

// Lease is one subscription's place under the caps. Release it when the
// subscription ends, whatever ends it.
type Lease struct {
	l                   *Limiter
	src, identity, aor  uint64
	hasSrc, hasIdentity bool
	released            atomic.Bool
}

// Acquire takes a place for a new subscription, or says which cap is
// reached. Call it last, just before the 200 OK, and Release the lease if
// the subscription is not created after all.
func (l *Limiter) Acquire(k Keys) (*Lease, Verdict) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lease := &Lease{l: l, aor: maphash.String(l.seed, k.AOR)}
	if c := l.cfg.TotalSubscriptions; c > 0 && l.active >= c {
		return nil, Verdict{Reason: TotalSubscriptions, Code: 503, Phrase: "Subscription Capacity Reached", RetryAfter: fullRetryAfter}
	}
	// The operator's own sources and watchers may fan out to any number
	// of subscriptions per AOR; the cap protects against strangers.
	if c := l.cfg.AORSubscriptions; c > 0 && !k.Privileged && l.byAOR[lease.aor] >= c {
		return nil, capVerdict(AORSubscriptions)
	}
	if !k.Privileged {
		lease.src, lease.hasSrc = l.sourceKey(k.Source), true
		if c := l.cfg.SourceSubscriptions; c > 0 && l.bySource[lease.src] >= c {
			return nil, capVerdict(SourceSubscriptions)
		}
		if k.Identity != "" {
			lease.identity, lease.hasIdentity = maphash.String(l.seed, k.Identity), true
			if c := l.cfg.IdentitySubscriptions; c > 0 && l.byIdentity[lease.identity] >= c {
				return nil, capVerdict(IdentitySubscriptions)
			}
		}
	}
	l.active++
	l.byAOR[lease.aor]++
	if lease.hasSrc {
		l.bySource[lease.src]++
	}
	if lease.hasIdentity {
		l.byIdentity[lease.identity]++
	}
	return lease, Verdict{}
}

// Release gives the place back; calling it again does nothing.
func (s *Lease) Release() {
	if s == nil || !s.released.CompareAndSwap(false, true) {
		return
	}
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.active--
	dec(l.byAOR, s.aor)
	if s.hasSrc {
		dec(l.bySource, s.src)
	}
	if s.hasIdentity {
		dec(l.byIdentity, s.identity)
	}
}

// Active returns the number of subscriptions holding a lease.
func (l *Limiter) Active() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}

// dec decrements a count and drops it at zero, so the maps hold only
// keys with live subscriptions.
func dec(m map[uint64]int, k uint64) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}

// sourceKey groups addresses the way one party holds them: an IPv4
// address alone, an IPv6 address by its /64 (one customer network gets a
// /64 or more; counting single IPv6 addresses would let one host use 2^64
// of them).
func (l *Limiter) sourceKey(a netip.Addr) uint64 {
	a = a.Unmap()
	b := a.As16()
	n := 16
	if a.Is6() {
		n = 8
	}
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.Write(b[:n])
	return h.Sum64()
}
