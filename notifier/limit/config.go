package limit

import (
	"errors"
	"fmt"
)

// Defaults, each with its reason. A rate of 0 or a cap of 0 disables
// that limit.
const (
	// DefaultSourceRate and DefaultSourceBurst: a phone subscribes once
	// and refreshes hourly; a few per second with a burst of 20 covers a
	// NAT of many phones rebooting together and stops a single flooder.
	// Operators' own proxies are exempt (open or trusted networks).
	DefaultSourceRate  = 5.0
	DefaultSourceBurst = 20
	// DefaultIdentityRate and DefaultIdentityBurst: one user's devices
	// (a handful) subscribing after a restart; guessing passwords under
	// someone's name is slowed too. Configured watchers are exempt.
	DefaultIdentityRate  = 2.0
	DefaultIdentityBurst = 10
	// DefaultTotalRate and DefaultTotalBurst protect the process and the
	// credential store: each SUBSCRIBE may cost a store lookup and a full
	// NOTIFY.
	DefaultTotalRate  = 5000.0
	DefaultTotalBurst = 10000
	// DefaultSourceSubscriptions: many users behind one NAT or SBC.
	DefaultSourceSubscriptions = 200
	// DefaultIdentitySubscriptions: a user watching its own AOR from each
	// of its devices, with room for refresh overlaps.
	DefaultIdentitySubscriptions = 50
	// DefaultAORSubscriptions: the AOR's own devices plus a P-CSCF and a
	// few application servers; also bounds the NOTIFY fan-out of one AOR.
	DefaultAORSubscriptions = 20
	// DefaultTotalSubscriptions bounds all subscription state (each a few
	// KB: dialog, last state sent, pending changes).
	DefaultTotalSubscriptions = 100000
	// DefaultTracked is the size of each rate table (sources, identities):
	// about 100 bytes an entry.
	DefaultTracked = 65536

	minTracked = 16
	maxTracked = 10_000_000
)

// Config is the limiter's configuration (environment names without the
// REGBRIDGE_ prefix, read by cmd/regbridge).
type Config struct {
	SourceRate            float64 `env:"LIMIT_SOURCE_RATE, default=5" desc:"SUBSCRIBEs per second from one source address (IPv6: one /64); 0: no limit; open and trusted networks are exempt"`
	SourceBurst           int     `env:"LIMIT_SOURCE_BURST, default=20" desc:"SUBSCRIBEs one source may send at once before REGBRIDGE_LIMIT_SOURCE_RATE applies"`
	IdentityRate          float64 `env:"LIMIT_IDENTITY_RATE, default=2" desc:"SUBSCRIBEs per second under one authenticated identity; 0: no limit; configured watchers are exempt"`
	IdentityBurst         int     `env:"LIMIT_IDENTITY_BURST, default=10" desc:"SUBSCRIBEs one identity may send at once before REGBRIDGE_LIMIT_IDENTITY_RATE applies"`
	TotalRate             float64 `env:"LIMIT_TOTAL_RATE, default=5000" desc:"SUBSCRIBEs per second from everyone together; 0: no limit"`
	TotalBurst            int     `env:"LIMIT_TOTAL_BURST, default=10000" desc:"SUBSCRIBEs accepted at once before REGBRIDGE_LIMIT_TOTAL_RATE applies"`
	SourceSubscriptions   int     `env:"LIMIT_SOURCE_SUBSCRIPTIONS, default=200" desc:"concurrent subscriptions from one source address (IPv6: one /64); 0: no limit; open and trusted networks are exempt"`
	IdentitySubscriptions int     `env:"LIMIT_IDENTITY_SUBSCRIPTIONS, default=50" desc:"concurrent subscriptions of one authenticated identity; 0: no limit; configured watchers are exempt"`
	AORSubscriptions      int     `env:"LIMIT_AOR_SUBSCRIPTIONS, default=20" desc:"concurrent subscriptions to one AOR from unprivileged watchers; 0: no limit"`
	TotalSubscriptions    int     `env:"LIMIT_TOTAL_SUBSCRIPTIONS, default=100000" desc:"concurrent subscriptions in total; beyond it SUBSCRIBE gets 503; 0: no limit"`
	Tracked               int     `env:"LIMIT_TRACKED, default=65536" desc:"sources and identities whose rates are tracked individually (bounded memory; beyond it new ones share one bucket)"`
}

// DefaultConfig returns the defaults, for callers that do not read the
// environment (tests, tools).
func DefaultConfig() Config {
	return Config{
		SourceRate: DefaultSourceRate, SourceBurst: DefaultSourceBurst,
		IdentityRate: DefaultIdentityRate, IdentityBurst: DefaultIdentityBurst,
		TotalRate: DefaultTotalRate, TotalBurst: DefaultTotalBurst,
		SourceSubscriptions: DefaultSourceSubscriptions, IdentitySubscriptions: DefaultIdentitySubscriptions,
		AORSubscriptions: DefaultAORSubscriptions, TotalSubscriptions: DefaultTotalSubscriptions,
		Tracked: DefaultTracked,
	}
}

// Validate rejects nonsense, naming the variable.
func (c *Config) Validate() error {
	var errs []error
	rate := func(name string, r float64, burst int) {
		if r < 0 || r != r {
			errs = append(errs, fmt.Errorf("REGBRIDGE_LIMIT_%s_RATE: %v is negative", name, r))
		}
		if r > 0 && burst < 1 {
			errs = append(errs, fmt.Errorf("REGBRIDGE_LIMIT_%s_BURST: %d must be at least 1 when REGBRIDGE_LIMIT_%s_RATE is set", name, burst, name))
		}
	}
	rate("SOURCE", c.SourceRate, c.SourceBurst)
	rate("IDENTITY", c.IdentityRate, c.IdentityBurst)
	rate("TOTAL", c.TotalRate, c.TotalBurst)
	for _, cp := range []struct {
		name string
		v    int
	}{
		{"SOURCE_SUBSCRIPTIONS", c.SourceSubscriptions}, {"IDENTITY_SUBSCRIPTIONS", c.IdentitySubscriptions},
		{"AOR_SUBSCRIPTIONS", c.AORSubscriptions}, {"TOTAL_SUBSCRIPTIONS", c.TotalSubscriptions},
	} {
		if cp.v < 0 {
			errs = append(errs, fmt.Errorf("REGBRIDGE_LIMIT_%s: %d is negative", cp.name, cp.v))
		}
	}
	if c.Tracked < minTracked || c.Tracked > maxTracked {
		errs = append(errs, fmt.Errorf("REGBRIDGE_LIMIT_TRACKED: %d is outside %d..%d", c.Tracked, minTracked, maxTracked))
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.Join(errs...)
}
