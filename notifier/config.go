package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	// DefaultPresenceExpires is the presence package's default duration
	// (RFC 3856 6.4).
	DefaultPresenceExpires = 3600 * time.Second
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
	// DefaultMaxTransactions bounds the UDP SUBSCRIBE transactions held
	// at once. Each answered one is kept for Timer J (32 s) to absorb
	// retransmissions, about 700 bytes, so the default bounds them to
	// about 45 MB and carries 2,000 SUBSCRIBEs/s (the load tool's rate)
	// sustained.
	DefaultMaxTransactions = 65536
	// DefaultDrain bounds the time spent sending final NOTIFYs at shutdown.
	DefaultDrain = 5 * time.Second
	// DefaultMinInterval is 0: a change is notified at once. RFC 3680 4.10
	// recommends at most one NOTIFY per 5 s, but regbridge's users (P-CSCFs,
	// SBCs) want a de-registration known within milliseconds; operators who
	// want the RFC's pace set 5s.
	DefaultMinInterval = 0
)

// Config is the notifier's configuration (environment names without the
// REGBRIDGE_ prefix, read by cmd/regbridge).
type Config struct {
	Listen          ListenAddrs   `env:"SIP_LISTEN, default=udp://127.0.0.1:5065,tcp://127.0.0.1:5065" desc:"SIP listeners, comma-separated udp://, tcp://, tls://, ws:// and wss://host:port"`
	MinExpires      time.Duration `env:"SUBSCRIBE_MIN_EXPIRES, default=60s" desc:"shortest subscription accepted; shorter requests get 423 Interval Too Brief"`
	MaxExpires      time.Duration `env:"SUBSCRIBE_MAX_EXPIRES, default=86400s" desc:"longest subscription granted; longer requests are shortened in the 200 OK"`
	MaxInFlight     int           `env:"NOTIFY_MAX_IN_FLIGHT, default=4096" desc:"concurrent NOTIFY transactions across all subscriptions"`
	MaxTransactions int           `env:"SUBSCRIBE_MAX_TRANSACTIONS, default=65536" desc:"UDP SUBSCRIBE transactions held at once (each about 700 bytes for 32 s, to absorb retransmissions); beyond it SUBSCRIBE gets 503 without a transaction"`
	Drain           time.Duration `env:"SHUTDOWN_DRAIN, default=5s" desc:"time allowed at shutdown for final NOTIFYs (terminated;reason=deactivated)"`
	// MinInterval is the shortest time between two NOTIFYs of one
	// subscription caused by changes; changes inside it are coalesced into
	// one document. NOTIFYs answering a SUBSCRIBE and final ones are never
	// delayed (RFC 6665 4.2.1.2).
	MinInterval time.Duration `env:"NOTIFY_MIN_INTERVAL, default=0s" desc:"shortest time between change NOTIFYs of one subscription; changes inside it are coalesced (0: notify at once; RFC 3680 4.10 recommends 5s)"`
	// Presence serves Event: presence (RFC 3856) derived from the
	// registrations: basic open while the AOR has an active contact.
	Presence bool `env:"PRESENCE, default=true" desc:"serve Event: presence with PIDF documents derived from registrations (false: 489 Bad Event)"`

	TLSCert     string `env:"TLS_CERT" desc:"PEM certificate chain for tls:// and wss:// listeners"`
	TLSKey      string `env:"TLS_KEY" desc:"PEM private key of REGBRIDGE_TLS_CERT"`
	TLSClientCA string `env:"TLS_CLIENT_CA" desc:"PEM CA certificates; when set, tls:// and wss:// clients must present a certificate they signed"`

	// NotifyAuthUser and NotifyAuthPassword answer a subscriber's digest
	// challenge (401/407) to a NOTIFY.
	NotifyAuthUser     string `env:"NOTIFY_AUTH_USER" desc:"digest username used when a subscriber challenges a NOTIFY with 401/407 (unset: challenges are not answered)"`
	NotifyAuthPassword Secret `env:"NOTIFY_AUTH_PASSWORD" desc:"digest password for REGBRIDGE_NOTIFY_AUTH_USER"`
}

// Secret is a configuration value that must never reach a log line.
type Secret string

// String hides the value from fmt.
func (Secret) String() string { return "[redacted]" }

// LogValue hides the value from slog.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

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
	if c.MaxTransactions < 1 {
		errs = append(errs, fmt.Errorf("REGBRIDGE_SUBSCRIBE_MAX_TRANSACTIONS: %d must be at least 1", c.MaxTransactions))
	}
	if c.Drain < 0 {
		errs = append(errs, fmt.Errorf("REGBRIDGE_SHUTDOWN_DRAIN: %v is negative", c.Drain))
	}
	if c.MinInterval < 0 {
		errs = append(errs, fmt.Errorf("REGBRIDGE_NOTIFY_MIN_INTERVAL: %v is negative", c.MinInterval))
	}
	if c.MinInterval > time.Hour {
		errs = append(errs, fmt.Errorf("REGBRIDGE_NOTIFY_MIN_INTERVAL: %v is above 1h; subscribers would miss every change for longer than a registration lasts", c.MinInterval))
	}
	var secure []string
	for _, l := range c.Listen {
		if l.Network == "tls" || l.Network == "wss" {
			secure = append(secure, l.String())
		}
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		errs = append(errs, errors.New("REGBRIDGE_TLS_CERT and REGBRIDGE_TLS_KEY: set both or neither"))
	case len(secure) > 0 && c.TLSCert == "":
		errs = append(errs, fmt.Errorf("REGBRIDGE_TLS_CERT and REGBRIDGE_TLS_KEY: required by REGBRIDGE_SIP_LISTEN %s", strings.Join(secure, ",")))
	}
	if c.TLSClientCA != "" && c.TLSCert == "" {
		errs = append(errs, errors.New("REGBRIDGE_TLS_CLIENT_CA: needs REGBRIDGE_TLS_CERT and REGBRIDGE_TLS_KEY"))
	}
	if (c.NotifyAuthUser == "") != (c.NotifyAuthPassword == "") {
		errs = append(errs, errors.New("REGBRIDGE_NOTIFY_AUTH_USER and REGBRIDGE_NOTIFY_AUTH_PASSWORD: set both or neither"))
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
	if c.MaxTransactions == 0 {
		c.MaxTransactions = DefaultMaxTransactions
	}
}

// ListenAddr is one SIP listener: a transport and a host:port.
type ListenAddr struct {
	Network string // "udp", "tcp", "tls", "ws" or "wss"
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
			return nil, fmt.Errorf("%q: want transport://host:port (udp, tcp, tls, ws, wss)", part)
		}
		switch network {
		case "udp", "tcp", "tls", "ws", "wss":
		default:
			return nil, fmt.Errorf("%q: unknown transport %q (udp, tcp, tls, ws, wss)", part, network)
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
