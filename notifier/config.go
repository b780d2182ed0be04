package notifier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Defaults, each with its reason.
const (
	// DefaultExpires is the reg package's default subscription duration
	// when SUBSCRIBE has no Expires (RFC 3680 4.4: slightly longer than the
	// 3600 s default registration, so refreshes do not couple).
	DefaultExpires = 3761 * time.Second
	// DefaultMinExpires is the shortest duration accepted; shorter requests
	// get 423 (RFC 6665 4.2.1.1). 60 s keeps refresh traffic sane.
	DefaultMinExpires = 60 * time.Second
	// DefaultMaxExpires caps granted durations (a day): a subscriber that
	// vanished without unsubscribing is forgotten within that time.
	DefaultMaxExpires = 86400 * time.Second
	// DefaultMaxInFlight bounds concurrent NOTIFY transactions across all
	// subscriptions; each waits up to Timer F (32 s) for a dead subscriber,
	// so the bound must be well above the number of dead ones expected.
	DefaultMaxInFlight = 4096
	// DefaultDrain bounds the time spent sending final NOTIFYs at shutdown.
	DefaultDrain = 5 * time.Second
)

// Config is the notifier's configuration (environment names without the
// REGBRIDGE_ prefix, read by cmd/regbridge).
type Config struct {
	Listen      ListenAddrs   `env:"SIP_LISTEN, default=udp://127.0.0.1:5065,tcp://127.0.0.1:5065" desc:"SIP listeners, comma-separated udp://host:port and tcp://host:port"`
	MinExpires  time.Duration `env:"SUBSCRIBE_MIN_EXPIRES, default=60s" desc:"shortest subscription accepted; shorter requests get 423 Interval Too Brief"`
	MaxExpires  time.Duration `env:"SUBSCRIBE_MAX_EXPIRES, default=86400s" desc:"longest subscription granted; longer requests are shortened in the 200 OK"`
	MaxInFlight int           `env:"NOTIFY_MAX_IN_FLIGHT, default=4096" desc:"concurrent NOTIFY transactions across all subscriptions"`
	Drain       time.Duration `env:"SHUTDOWN_DRAIN, default=5s" desc:"time allowed at shutdown for final NOTIFYs (terminated;reason=deactivated)"`
}

// Validate rejects nonsense, naming the variable.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Listen) == 0 {
		errs = append(errs, errors.New("REGBRIDGE_SIP_LISTEN: at least one listener is required"))
	}
	if c.MinExpires < time.Second {
		errs = append(errs, fmt.Errorf("REGBRIDGE_SUBSCRIBE_MIN_EXPIRES: %v is below 1s", c.MinExpires))
	}
	if c.MaxExpires < c.MinExpires {
		errs = append(errs, fmt.Errorf("REGBRIDGE_SUBSCRIBE_MAX_EXPIRES: %v is below REGBRIDGE_SUBSCRIBE_MIN_EXPIRES %v", c.MaxExpires, c.MinExpires))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("REGBRIDGE_NOTIFY_MAX_IN_FLIGHT: %d must be at least 1", c.MaxInFlight))
	}
	if c.Drain < 0 {
		errs = append(errs, fmt.Errorf("REGBRIDGE_SHUTDOWN_DRAIN: %v is negative", c.Drain))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	if c.MinExpires == 0 {
		c.MinExpires = DefaultMinExpires
	}
	if c.MaxExpires == 0 {
		c.MaxExpires = DefaultMaxExpires
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
}

// ListenAddr is one SIP listener: a transport and a host:port.
type ListenAddr struct {
	Network string // "udp" or "tcp"
	Addr    string // host:port
}

func (l ListenAddr) String() string { return l.Network + "://" + l.Addr }

// ListenAddrs is the parsed REGBRIDGE_SIP_LISTEN list.
type ListenAddrs []ListenAddr

// EnvDecode parses "udp://host:port,tcp://host:port".
func (ls *ListenAddrs) EnvDecode(ctx context.Context, val string) error {
	out, err := ParseListen(val)
	if err != nil {
		return err
	}
	*ls = out
	return nil
}

// ParseListen parses a comma-separated listener list.
func ParseListen(val string) (ListenAddrs, error) {
	var out ListenAddrs
	for part := range strings.SplitSeq(val, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		network, addr, ok := strings.Cut(part, "://")
		if !ok {
			return nil, fmt.Errorf("%q: want udp://host:port or tcp://host:port", part)
		}
		switch network {
		case "udp", "tcp":
		case "tls", "ws", "wss":
			return nil, fmt.Errorf("%q: transport %s is not supported yet (udp, tcp)", part, network)
		default:
			return nil, fmt.Errorf("%q: unknown transport %q (udp, tcp)", part, network)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", part, err)
		}
		if host == "" {
			return nil, fmt.Errorf("%q: host is required (0.0.0.0 or [::] to listen on every address)", part)
		}
		out = append(out, ListenAddr{Network: network, Addr: net.JoinHostPort(host, port)})
	}
	return out, nil
}
