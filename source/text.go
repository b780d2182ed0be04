package source

import (
	"math"
	"unicode/utf8"
)

// Text is the form store values arrive in: strings (Redis, JSON) or byte
// slices (SQL rows, read without copying).
type Text interface{ ~string | ~[]byte }

// Printable reports whether s is valid UTF-8 without whitespace or control
// characters. Keys, user names, domains and contact URIs end up in SIP
// URIs and XML, so every adapter rejects anything else.
func Printable[T Text](s T) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c <= ' ' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		// A conversion of at most 4 bytes stays on the stack.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			return false
		}
		i += size
	}
	return true
}

// ValidURI accepts what a registrar stores as a contact or AOR: a sip:,
// sips: or tel: URI (scheme case-insensitive) with something after the
// scheme, and Printable.
func ValidURI[T Text](s T) bool {
	i := 0
	for i < len(s) && s[i] != ':' {
		i++
	}
	if i == len(s) || i == len(s)-1 {
		return false
	}
	if !schemeIs(s[:i], "sip") && !schemeIs(s[:i], "sips") && !schemeIs(s[:i], "tel") {
		return false
	}
	return Printable(s)
}

func schemeIs[T Text](s T, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// AppendAOR appends the address-of-record built from a registrar's
// username and domain columns. With use_domain=1 the registrar splits the
// AOR at the first '@' into username and domain; with use_domain=0 (the
// default in Kamailio and OpenSIPS) username holds the whole AOR, normally
// only the user part, and domain is empty, so the configured fallback
// domain completes it. A username that already holds user@host is used as
// it is.
func AppendAOR[T Text](b []byte, user, dom T, fallback string) []byte {
	b = append(b, "sip:"...)
	b = append(b, user...)
	switch {
	case len(dom) > 0:
		b = append(b, '@')
		b = append(b, dom...)
	case fallback != "" && !hasAt(user):
		b = append(b, '@')
		b = append(b, fallback...)
	}
	return b
}

func hasAt[T Text](s T) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '@' {
			return true
		}
	}
	return false
}

// ValidHost reports whether s looks like a host name or an address
// literal (letters, digits, ".-_:[]", at most 253 bytes): what may stand
// in a realm or a URI's domain.
func ValidHost(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']':
		default:
			return false
		}
	}
	return true
}

// ParseUint reads an unsigned decimal of at most 20 digits without
// allocating, rejecting signs, other bytes and anything above 2^64-1.
func ParseUint[T Text](s T) (uint64, bool) {
	if len(s) == 0 || len(s) > 20 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
