package substore

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Record is one subscription as stored: everything an instance needs to
// continue it (the dialog of RFC 3261 12 and RFC 6665 4.1.2.1, the
// package, the resource and the counters).
type Record struct {
	ID         string    `json:"-"` // dialog id (Call-ID, local tag, remote tag)
	CallID     string    `json:"call_id"`
	LocalTag   string    `json:"local_tag"`
	RemoteTag  string    `json:"remote_tag"`
	LocalURI   string    `json:"local_uri"`
	RemoteURI  string    `json:"remote_uri"`
	RemoteName string    `json:"remote_name,omitempty"`
	Target     string    `json:"target"`
	Routes     []string  `json:"routes,omitempty"`
	RemoteCSeq uint32    `json:"remote_cseq"`
	Transport  string    `json:"transport"`
	Source     string    `json:"source"`
	Symmetric  bool      `json:"symmetric,omitempty"`
	Contact    string    `json:"contact"`
	Package    string    `json:"package"`
	Event      string    `json:"event"`
	AOR        string    `json:"aor"`
	Expires    time.Time `json:"expires"`
	Neutral    bool      `json:"neutral,omitempty"`
	// BasicEvents: the watcher gets only basic contact events (decided
	// from its initial SUBSCRIBE, which a restarted instance no longer
	// has).
	BasicEvents bool `json:"basic_events,omitempty"`

	// Counters and owner live in their own hash fields, changed by the
	// fencing scripts only.
	LocalCSeq uint32 `json:"-"` // CSeq of the last NOTIFY sent
	Version   uint32 `json:"-"` // version of the next reginfo document
	Owner     string `json:"-"`
}

// Errors the stores return.
var (
	// ErrNotFound: no such subscription (ended, expired or never made).
	ErrNotFound = errors.New("substore: no such subscription")
	// ErrNotOwner: another instance owns the subscription now.
	ErrNotOwner = errors.New("substore: subscription owned by another instance")
)

// Defaults, each with its reason.
const (
	// DefaultLease is how long an instance's heartbeat lives without
	// renewal: the takeover time after a crash. 5 s rides out a GC pause
	// or a Redis failover, and is well inside a subscriber's patience.
	DefaultLease = 5 * time.Second
	// DefaultPrefix namespaces the keys; all of them share one hash tag
	// so the multi-key scripts work on Redis Cluster too.
	DefaultPrefix = "regbridge:"
)

// Config selects the subscription store (environment names without the
// REGBRIDGE_ prefix, read by cmd/regbridge).
type Config struct {
	State      string        `env:"STATE, default=memory" desc:"subscription store: memory, or redis://[user:pass@]host:port/db?prefix=regbridge: (also rediss://, and Sentinel/Cluster addresses go-redis's universal client accepts) to survive restarts and share subscriptions between instances"`
	InstanceID string        `env:"INSTANCE_ID" desc:"this instance's name in the shared store (default: hostname plus a random suffix)"`
	Lease      time.Duration `env:"STATE_LEASE, default=5s" desc:"heartbeat lifetime: peers take over a dead instance's subscriptions within about this time"`
}

// Validate rejects nonsense, naming the variable.
func (c *Config) Validate() error {
	if c.State != "" && c.State != "memory" {
		if _, _, err := ParseURL(c.State); err != nil {
			return fmt.Errorf("REGBRIDGE_STATE: %w", err)
		}
	}
	if c.Lease < 300*time.Millisecond {
		return fmt.Errorf("REGBRIDGE_STATE_LEASE: %v is below 300ms", c.Lease)
	}
	return nil
}

// Shared reports whether the configuration asks for the Redis store.
func (c *Config) Shared() bool { return c.State != "" && c.State != "memory" }

// ID returns the configured instance id, or hostname-<random>.
func (c *Config) ID() string {
	if c.InstanceID != "" {
		return c.InstanceID
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "regbridge"
	}
	return host + "-" + randomSuffix()
}

// ParseURL reads a redis:// or rediss:// state URL into universal client
// options and the key prefix (query parameter prefix, default
// DefaultPrefix). Several addresses (Cluster seeds, Sentinels) go in a
// comma-separated addr parameter; master_name selects Sentinel.
func ParseURL(raw string) (*redis.UniversalOptions, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", err
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, "", fmt.Errorf("scheme %q is not memory, redis or rediss", u.Scheme)
	}
	q := u.Query()
	prefix := DefaultPrefix
	if q.Has("prefix") {
		prefix = q.Get("prefix")
	}
	extra := q.Get("addr")
	master := q.Get("master_name")
	for _, k := range []string{"prefix", "addr", "master_name"} {
		q.Del(k)
	}
	u.RawQuery = q.Encode()
	opt, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, "", err
	}
	uo := &redis.UniversalOptions{
		Addrs:      []string{opt.Addr},
		DB:         opt.DB,
		Username:   opt.Username,
		Password:   opt.Password,
		TLSConfig:  opt.TLSConfig,
		MasterName: master,
	}
	if extra != "" {
		uo.Addrs = append(uo.Addrs, strings.Split(extra, ",")...)
	}
	return uo, prefix, nil
}
