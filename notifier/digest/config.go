package digest

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strings"
	"time"

	"github.com/regbridge/regbridge/source"
)

// Defaults, each with its reason.
const (
	// DefaultNonceTTL is how long a nonce may be answered: long enough for
	// a UA to answer a challenge and reuse the nonce for a quick retry,
	// short enough to bound what a captured nonce is worth. Kamailio's
	// auth module uses the same 300 s (nonce_expire).
	DefaultNonceTTL = 300 * time.Second
	// DefaultReplayEntries bounds the nonce-count table: about 100 bytes
	// an entry, so under 8 MB at the cap. An entry exists only for a nonce
	// that carried a correct answer, so strangers cannot fill it.
	DefaultReplayEntries = 65536

	minNonceTTL      = 10 * time.Second
	maxNonceTTL      = time.Hour
	minNonceKey      = 16
	minReplayEntries = 1024
	maxReplayEntries = 10_000_000
)

// Off is the REGBRIDGE_AUTH value that disables digest authentication.
const Off = "off"

// Config is the digest authenticator's configuration (environment names
// without the REGBRIDGE_ prefix, read by cmd/regbridge).
type Config struct {
	Source     Source        `env:"AUTH, default=off" desc:"credential source for digest authentication of SUBSCRIBE: off, file:///path, kamailio+sqlite:///path.db, kamailio+mysql://user:pass@host:3306/db, kamailio+postgres://user:pass@host:5432/db, opensips+mysql|postgres://..., asterisk+mysql|postgres://... (see docs/security.md)"`
	Realm      string        `env:"AUTH_REALM" desc:"digest realm and the domain of authenticated identities (sip:user@realm); empty: the From URI's domain of each request, as Kamailio's auth_check with $fd"`
	Algorithms Algorithms    `env:"AUTH_ALGORITHMS, default=SHA-256,MD5" desc:"digest algorithms offered, most preferred first (SHA-256, MD5); one WWW-Authenticate each"`
	NonceTTL   time.Duration `env:"AUTH_NONCE_TTL, default=300s" desc:"lifetime of a nonce; an expired nonce answered correctly gets 401 with stale=true"`
	// NonceKey signs nonces. Empty: a random key per process, so nonces
	// die with a restart (one extra 401 for clients) and instances do not
	// accept each other's nonces.
	NonceKey Secret `env:"AUTH_NONCE_KEY" desc:"HMAC key signing nonces, at least 16 bytes (empty: random per process; set the same key on instances that share subscribers)"`
	// ReplayEntries caps the nonce-count table.
	ReplayEntries int `env:"AUTH_REPLAY_ENTRIES, default=65536" desc:"nonces whose nonce-counts are remembered for replay protection (bounded memory, about 100 bytes each)"`
}

// Enabled reports whether digest authentication is configured.
func (c *Config) Enabled() bool { return c.Source != "" && c.Source != Off }

// Validate rejects nonsense, naming the variable.
func (c *Config) Validate() error {
	var errs []error
	if c.Enabled() {
		if _, err := parseSource(string(c.Source)); err != nil {
			errs = append(errs, fmt.Errorf("REGBRIDGE_AUTH: %w", err))
		}
	}
	if c.Realm != "" && !source.ValidHost(c.Realm) {
		errs = append(errs, fmt.Errorf("REGBRIDGE_AUTH_REALM: %q is not a domain name", c.Realm))
	}
	if len(c.Algorithms) == 0 {
		errs = append(errs, errors.New("REGBRIDGE_AUTH_ALGORITHMS: at least one of SHA-256, MD5"))
	}
	if c.NonceTTL < minNonceTTL || c.NonceTTL > maxNonceTTL {
		errs = append(errs, fmt.Errorf("REGBRIDGE_AUTH_NONCE_TTL: %v is outside %v..%v", c.NonceTTL, minNonceTTL, maxNonceTTL))
	}
	if c.NonceKey != "" && len(c.NonceKey) < minNonceKey {
		errs = append(errs, fmt.Errorf("REGBRIDGE_AUTH_NONCE_KEY: shorter than %d bytes", minNonceKey))
	}
	if c.ReplayEntries < minReplayEntries || c.ReplayEntries > maxReplayEntries {
		errs = append(errs, fmt.Errorf("REGBRIDGE_AUTH_REPLAY_ENTRIES: %d is outside %d..%d", c.ReplayEntries, minReplayEntries, maxReplayEntries))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	if c.Source == "" {
		c.Source = Off
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = Algorithms{SHA256, MD5}
	}
	if c.NonceTTL == 0 {
		c.NonceTTL = DefaultNonceTTL
	}
	if c.ReplayEntries == 0 {
		c.ReplayEntries = DefaultReplayEntries
	}
}

// Algorithm is a digest algorithm name as it appears on the wire.
type Algorithm string

// The algorithms regbridge verifies (RFC 7616 3.2, RFC 8760 2.1).
const (
	MD5    Algorithm = "MD5"
	SHA256 Algorithm = "SHA-256"
)

// ParseAlgorithm reads an algorithm parameter; an absent one means MD5
// (RFC 7616 3.3).
func ParseAlgorithm(s string) (Algorithm, bool) {
	switch {
	case s == "" || strings.EqualFold(s, string(MD5)):
		return MD5, true
	case strings.EqualFold(s, string(SHA256)):
		return SHA256, true
	}
	return "", false
}

// newHash returns the algorithm's hash function.
func (a Algorithm) newHash() hash.Hash {
	if a == SHA256 {
		return sha256.New()
	}
	return md5.New()
}

// hexLen is the length of the algorithm's hex digests.
func (a Algorithm) hexLen() int {
	if a == SHA256 {
		return 2 * sha256.Size
	}
	return 2 * md5.Size
}

// Algorithms is a preference-ordered algorithm list.
type Algorithms []Algorithm

// EnvDecode parses "SHA-256,MD5".
func (as *Algorithms) EnvDecode(ctx context.Context, val string) error {
	var out Algorithms
	for part := range strings.SplitSeq(val, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		a, ok := ParseAlgorithm(part)
		if !ok {
			return fmt.Errorf("unknown digest algorithm %q (SHA-256, MD5)", part)
		}
		for _, seen := range out {
			if seen == a {
				return fmt.Errorf("digest algorithm %s listed twice", a)
			}
		}
		out = append(out, a)
	}
	*as = out
	return nil
}

// Secret is a configuration value that must never reach a log line.
type Secret string

// String hides the value from fmt.
func (Secret) String() string { return "[redacted]" }

// LogValue hides the value from slog.
func (Secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// Source is a credential source URL (REGBRIDGE_AUTH). It may carry a
// database password, so fmt and slog see it redacted.
type Source string

// String returns the URL with any password replaced.
func (s Source) String() string { return redactSource(string(s)) }

// LogValue returns the URL with any password replaced.
func (s Source) LogValue() slog.Value { return slog.StringValue(s.String()) }
