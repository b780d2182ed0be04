package digest

import (
	"context"
	"encoding/hex"
	"strings"
)

// Credentials is the one read the authenticator needs from a credential
// store.
type Credentials interface {
	// HA1 returns H(username:realm:password) for alg as lower-case hex
	// (RFC 7616 3.4.2), computed from a stored password or read as a
	// stored HA1. ok is false when the store knows no usable secret for
	// (user, realm, alg); err is for a store that could not answer.
	HA1(ctx context.Context, user, realm string, alg Algorithm) (ha1 string, ok bool, err error)
}

// CredentialsFunc adapts a function to Credentials.
type CredentialsFunc func(ctx context.Context, user, realm string, alg Algorithm) (string, bool, error)

// HA1 calls f.
func (f CredentialsFunc) HA1(ctx context.Context, user, realm string, alg Algorithm) (string, bool, error) {
	return f(ctx, user, realm, alg)
}

// HA1 computes H(user:realm:password) with alg, for stores that keep
// passwords and for tests.
func HA1(alg Algorithm, user, realm, password string) string {
	return hexHash(alg, user, ":", realm, ":", password)
}

// hexHash hashes the concatenation of parts with alg and returns lower
// hex.
func hexHash(alg Algorithm, parts ...string) string {
	h := alg.newHash()
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// normalizeHA1 checks that s is a hex HA1 of alg's length and returns it
// in lower case; ok is false for anything else (an empty column, a
// truncated value, an HA1 of another algorithm).
func normalizeHA1(alg Algorithm, s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len(s) != alg.hexLen() {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", false
		}
	}
	return strings.ToLower(s), true
}
