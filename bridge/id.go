package bridge

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
)

// CanonicalAOR returns the form of an address-of-record under which the
// bridge keys registrations: URI parameters and headers dropped, scheme and
// host lower-cased (RFC 3261 10.3 step 5 and 19.1.4: the user part is case
// sensitive, the host is not). Two AORs that differ only in those respects
// share one registration.
func CanonicalAOR(aor string) string {
	s := strings.TrimSpace(aor)
	if i := strings.IndexAny(s, ";?"); i >= 0 {
		s = s[:i]
	}
	colon := strings.IndexByte(s, ':')
	if colon < 0 {
		return s
	}
	scheme, rest := s[:colon], s[colon+1:]
	user, host := "", rest
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		user, host = rest[:at+1], rest[at+1:]
	}
	lscheme, lhost := strings.ToLower(scheme), strings.ToLower(host)
	if lscheme == scheme && lhost == host {
		return s // already canonical: no allocation
	}
	return lscheme + ":" + user + lhost
}

// RegistrationID returns the reginfo registration id of an AOR, the one
// the bridge uses in every Registration and Change.
func RegistrationID(aor string) string { return registrationID(CanonicalAOR(aor)) }

// registrationID derives the reginfo registration id from the canonical
// AOR: stable across restarts and instances, distinct for distinct AORs.
func registrationID(canonical string) string {
	return hashID('r', canonical, "", "")
}

// contactID derives the reginfo contact id from the AOR, the store's key
// and the contact URI: stable across restarts, and different when a
// binding's URI changes in place (RFC 3680 5.1: ids MUST differ for URIs
// that differ).
func contactID(canonical, key, uri string) string {
	return hashID('c', canonical, key, uri)
}

func hashID(prefix byte, a, b, c string) string {
	// FNV-1a 64 of a, 0, b, 0, c, inline: derived on every change and
	// read (the bridge does not store ids), so it must not allocate
	// beyond its result.
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i, s := range [...]string{a, b, c} {
		if i > 0 {
			h = (h ^ 0) * prime
		}
		for j := 0; j < len(s); j++ {
			h = (h ^ uint64(s[j])) * prime
		}
	}
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], h)
	var out [17]byte
	out[0] = prefix
	hex.Encode(out[1:], sum[:])
	return string(out[:])
}

// WithScheme returns aor with "sip:" prepended when it has no sip:, sips:
// or tel: scheme: the AOR an operator means by alice@example.com.
func WithScheme(aor string) string {
	s := strings.TrimSpace(aor)
	if i := strings.IndexByte(s, ':'); i > 0 {
		switch strings.ToLower(s[:i]) {
		case "sip", "sips", "tel":
			return s
		}
	}
	return "sip:" + s
}
