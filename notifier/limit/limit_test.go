package limit

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/sethvargo/go-envconfig"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

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

func newLimiter(t testing.TB, mod func(*Config)) (*Limiter, *clock) {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	l, err := New(cfg, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	return l, clk
}

var (
	src1 = netip.MustParseAddr("192.0.2.1")
	src2 = netip.MustParseAddr("192.0.2.2")
)

func TestRates(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, l *Limiter, clk *clock)
	}{
		{"source: burst, then 503 with the wait, then refill", func(t *testing.T, l *Limiter, clk *clock) {
			for i := range DefaultSourceBurst {
				if v := l.AllowRequest(src1, false); !v.OK() {
					t.Fatalf("request %d refused: %+v", i, v)
				}
			}
			v := l.AllowRequest(src1, false)
			if v.Reason != SourceRate || v.Code != 503 || v.RetryAfter != time.Second/DefaultSourceRate {
				t.Fatalf("over the burst: %+v", v)
			}
			if !l.AllowRequest(src2, false).OK() {
				t.Errorf("another source paid for the first")
			}
			clk.Advance(v.RetryAfter)
			if !l.AllowRequest(src1, false).OK() {
				t.Errorf("refused after waiting Retry-After")
			}
			if l.AllowRequest(src1, false).OK() {
				t.Errorf("a second token appeared from nothing")
			}
		}},
		{"source: privileged sources skip it", func(t *testing.T, l *Limiter, clk *clock) {
			for i := range 10 * DefaultSourceBurst {
				if v := l.AllowRequest(src1, true); !v.OK() {
					t.Fatalf("privileged request %d refused: %+v", i, v)
				}
			}
		}},
		{"source: IPv6 counts by /64", func(t *testing.T, l *Limiter, clk *clock) {
			for i := range DefaultSourceBurst {
				a := netip.MustParseAddr(fmt.Sprintf("2001:db8:1:1::%x", i+1))
				if !l.AllowRequest(a, false).OK() {
					t.Fatalf("request %d refused", i)
				}
			}
			if v := l.AllowRequest(netip.MustParseAddr("2001:db8:1:1:ffff::1"), false); v.Reason != SourceRate {
				t.Errorf("a fresh address in the same /64 got a fresh bucket: %+v", v)
			}
			if !l.AllowRequest(netip.MustParseAddr("2001:db8:1:2::1"), false).OK() {
				t.Errorf("another /64 was refused")
			}
			if !l.AllowRequest(netip.MustParseAddr("::ffff:192.0.2.77"), false).OK() {
				t.Errorf("IPv4-mapped address refused")
			}
		}},
		{"total: everyone together", func(t *testing.T, l *Limiter, clk *clock) {
			for i := range 4 {
				if !l.AllowRequest(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), true).OK() {
					t.Fatalf("request %d refused", i)
				}
			}
			if v := l.AllowRequest(src1, true); v.Reason != TotalRate {
				t.Errorf("fifth request: %+v, want total_rate", v)
			}
		}},
		{"identity: per identity, watchers exempt", func(t *testing.T, l *Limiter, clk *clock) {
			for range DefaultIdentityBurst {
				l.AllowIdentity("sip:alice@example.com", false)
			}
			if v := l.AllowIdentity("sip:alice@example.com", false); v.Reason != IdentityRate {
				t.Errorf("over the burst: %+v", v)
			}
			if !l.AllowIdentity("sip:bob@example.com", false).OK() {
				t.Errorf("bob paid for alice")
			}
			if !l.AllowIdentity("sip:alice@example.com", true).OK() {
				t.Errorf("privileged identity limited")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, clk := newLimiter(t, func(c *Config) {
				if strings.HasPrefix(tt.name, "total") {
					c.TotalRate, c.TotalBurst = 1, 4
				}
			})
			tt.run(t, l, clk)
		})
	}
}

// TestSourceCycling: an attacker sending from ever new addresses meets a
// table of fixed size, and once it is full of busy buckets the newcomers
// share the overflow bucket instead of each getting a full one.
func TestSourceCycling(t *testing.T) {
	const tracked = 1000
	l, clk := newLimiter(t, func(c *Config) { c.Tracked, c.TotalRate = tracked, 0 })
	accepted := 0
	for i := range 200_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if l.AllowRequest(a, false).OK() {
			accepted++
		}
	}
	if n := l.sources.len(); n > tracked {
		t.Fatalf("rate table holds %d entries, cap %d", n, tracked)
	}
	// tracked sources each spent one token; everyone after them shared
	// one bucket of DefaultSourceBurst.
	if want := tracked + DefaultSourceBurst; accepted != want {
		t.Errorf("accepted %d of 200000 cycling requests, want %d", accepted, want)
	}
	// Once the tracked buckets are idle (full again) they are dropped to
	// make room: a new source gets a bucket of its own.
	clk.Advance(time.Duration(DefaultSourceBurst/DefaultSourceRate) * time.Second)
	for i := range DefaultSourceBurst {
		if !l.AllowRequest(netip.MustParseAddr("198.51.100.1"), false).OK() {
			t.Fatalf("new source after idle time refused at request %d", i)
		}
	}
	if n := l.sources.len(); n > tracked {
		t.Errorf("rate table holds %d entries, cap %d", n, tracked)
	}
}

func TestAcquire(t *testing.T) {
	alice, bob := "sip:alice@example.com", "sip:bob@example.com"
	tests := []struct {
		name string
		mod  func(*Config)
		hold []Keys // acquired first, all must succeed
		try  Keys
		want Reason // "" to succeed
	}{
		{name: "AOR cap", mod: func(c *Config) { c.AORSubscriptions = 2 },
			hold: []Keys{{Source: src1, AOR: alice}, {Source: src2, AOR: alice}},
			try:  Keys{Source: netip.MustParseAddr("192.0.2.3"), AOR: alice}, want: AORSubscriptions},
		{name: "AOR cap does not bind privileged watchers (fan-out)", mod: func(c *Config) { c.AORSubscriptions = 1 },
			hold: []Keys{{Source: src1, AOR: alice, Privileged: true}},
			try:  Keys{Source: src2, AOR: alice, Privileged: true}},
		{name: "privileged subscriptions still count against the AOR cap for strangers", mod: func(c *Config) { c.AORSubscriptions = 1 },
			hold: []Keys{{Source: src1, AOR: alice, Privileged: true}},
			try:  Keys{Source: src2, AOR: alice}, want: AORSubscriptions},
		{name: "source cap", mod: func(c *Config) { c.SourceSubscriptions = 2 },
			hold: []Keys{{Source: src1, AOR: alice}, {Source: src1, AOR: bob}},
			try:  Keys{Source: src1, AOR: "sip:carol@example.com"}, want: SourceSubscriptions},
		{name: "source cap does not bind privileged sources", mod: func(c *Config) { c.SourceSubscriptions = 1 },
			hold: []Keys{{Source: src1, AOR: alice, Privileged: true}},
			try:  Keys{Source: src1, AOR: bob, Privileged: true}},
		{name: "identity cap across sources", mod: func(c *Config) { c.IdentitySubscriptions = 2 },
			hold: []Keys{{Source: src1, Identity: alice, AOR: alice}, {Source: src2, Identity: alice, AOR: alice}},
			try:  Keys{Source: netip.MustParseAddr("192.0.2.3"), Identity: alice, AOR: alice}, want: IdentitySubscriptions},
		{name: "total cap is 503", mod: func(c *Config) { c.TotalSubscriptions = 2 },
			hold: []Keys{{Source: src1, AOR: alice, Privileged: true}, {Source: src2, AOR: bob, Privileged: true}},
			try:  Keys{Source: src1, AOR: "sip:carol@example.com", Privileged: true}, want: TotalSubscriptions},
		{name: "zero disables a cap", mod: func(c *Config) { c.AORSubscriptions = 0 },
			hold: []Keys{{Source: src1, AOR: alice}, {Source: src2, AOR: alice}},
			try:  Keys{Source: src1, AOR: alice}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, _ := newLimiter(t, tt.mod)
			var leases []*Lease
			for i, k := range tt.hold {
				s, v := l.Acquire(k)
				if !v.OK() {
					t.Fatalf("hold %d refused: %+v", i, v)
				}
				leases = append(leases, s)
			}
			s, v := l.Acquire(tt.try)
			if v.Reason != tt.want {
				t.Fatalf("Acquire = %+v, want reason %q", v, tt.want)
			}
			if tt.want != "" {
				if s != nil {
					t.Errorf("refusal came with a lease")
				}
				if (v.Code == 503) != (tt.want == TotalSubscriptions) || v.Code == 0 {
					t.Errorf("code %d for %s", v.Code, tt.want)
				}
				// Releasing one held lease makes room.
				leases[0].Release()
				leases[0].Release() // twice: no effect
				if s, v = l.Acquire(tt.try); !v.OK() {
					t.Errorf("after a release: %+v", v)
				}
			}
			leases = append(leases, s)
			for _, s := range leases {
				s.Release()
			}
			if l.Active() != 0 || len(l.byAOR)+len(l.bySource)+len(l.byIdentity) != 0 {
				t.Errorf("after releasing everything: active %d, maps %d/%d/%d", l.Active(), len(l.byAOR), len(l.bySource), len(l.byIdentity))
			}
		})
	}
}

func TestAcquireConcurrent(t *testing.T) {
	l, _ := newLimiter(t, func(c *Config) { c.AORSubscriptions = 5 })
	var wg sync.WaitGroup
	var mu sync.Mutex
	maxSeen := 0
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				s, v := l.Acquire(Keys{Source: netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i)}), AOR: "sip:alice@example.com"})
				if v.OK() {
					mu.Lock()
					maxSeen = max(maxSeen, l.Active())
					mu.Unlock()
					s.Release()
				}
			}
		})
	}
	wg.Wait()
	if maxSeen > 5 || l.Active() != 0 {
		t.Errorf("max active %d (cap 5), active at the end %d", maxSeen, l.Active())
	}
}

func TestVerdictResponse(t *testing.T) {
	msg, err := sip.ParseMessage([]byte("SUBSCRIBE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1\r\n" +
		"From: <sip:a@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\nCall-ID: c\r\nCSeq: 1 SUBSCRIBE\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	tests := []struct {
		v          Verdict
		retryAfter string
	}{
		{rateVerdict(SourceRate, 200*time.Millisecond), "1"},
		{rateVerdict(SourceRate, 2500*time.Millisecond), "3"},
		{Verdict{Reason: TotalSubscriptions, Code: 503, Phrase: "x", RetryAfter: fullRetryAfter}, "60"},
		{capVerdict(AORSubscriptions), ""},
	}
	for _, tt := range tests {
		res := tt.v.Response(req)
		got := ""
		if h := res.GetHeader("Retry-After"); h != nil {
			got = h.Value()
		}
		if res.StatusCode != tt.v.Code || got != tt.retryAfter {
			t.Errorf("%s: %d Retry-After %q, want %d %q", tt.v.Reason, res.StatusCode, got, tt.v.Code, tt.retryAfter)
		}
	}
}

func TestConfig(t *testing.T) {
	var c Config
	if err := envconfig.ProcessWith(context.Background(), &envconfig.Config{Target: &c, Lookuper: envconfig.MapLookuper(nil)}); err != nil {
		t.Fatal(err)
	}
	if c != DefaultConfig() {
		t.Errorf("environment defaults %+v differ from DefaultConfig %+v", c, DefaultConfig())
	}
	bad := []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.SourceRate = -1 }, "REGBRIDGE_LIMIT_SOURCE_RATE"},
		{func(c *Config) { c.IdentityBurst = 0 }, "REGBRIDGE_LIMIT_IDENTITY_BURST"},
		{func(c *Config) { c.AORSubscriptions = -1 }, "REGBRIDGE_LIMIT_AOR_SUBSCRIPTIONS"},
		{func(c *Config) { c.Tracked = 1 }, "REGBRIDGE_LIMIT_TRACKED"},
	}
	for _, b := range bad {
		c := DefaultConfig()
		b.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Validate = %v, want one naming %s", err, b.want)
		}
	}
}
