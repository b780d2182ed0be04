package digest

import (
	"errors"
	"strconv"
	"strings"
)

// Limits on what a stranger's Authorization header may cost to read.
const (
	// maxHeaderLen bounds one Authorization value; real ones are a few
	// hundred bytes.
	maxHeaderLen = 4096
	// maxParams bounds the auth-params of one header.
	maxParams = 32
)

var (
	errNotDigest  = errors.New("not a Digest credential")
	errMalformed  = errors.New("malformed auth-param list")
	errDuplicate  = errors.New("auth-param given twice")
	errTooLong    = errors.New("Authorization header too long")
	errMissing    = errors.New("username, realm, nonce, uri and response are required")
	errBadNC      = errors.New("nc is not 8 hex digits")
	errBadQOP     = errors.New("qop=auth needs cnonce and nc")
	errBadUserLen = errors.New("username too long")
)

// credentials is one parsed Digest Authorization value (RFC 3261 25.1
// dig-resp, RFC 7616 3.4). Values are unquoted; names are matched
// case-insensitively.
type credentials struct {
	username, realm, nonce, uri, response string
	algorithm, cnonce, qop, opaque        string
	nc                                    uint32
	hasNC                                 bool
	userhash                              bool
}

// parseCredentials reads `Digest name=value, name="quoted", ...`. It is
// stricter than RFC 3261 asks of a parser in two ways that close doors to
// confusion: a parameter given twice is an error (which one would count?),
// and quoted strings may not hold control characters.
func parseCredentials(v string) (credentials, error) {
	var c credentials
	if len(v) > maxHeaderLen {
		return c, errTooLong
	}
	v = strings.TrimLeft(v, " \t")
	scheme, rest := v, ""
	if i := strings.IndexAny(v, " \t"); i >= 0 {
		scheme, rest = v[:i], v[i:]
	}
	if !strings.EqualFold(scheme, "Digest") {
		return c, errNotDigest
	}
	var seen uint32 // bit per known parameter
	n := 0
	p := rest
	for {
		p = skipSpace(p)
		for len(p) > 0 && p[0] == ',' { // empty list elements are allowed
			p = skipSpace(p[1:])
		}
		if p == "" {
			break
		}
		if n++; n > maxParams {
			return c, errMalformed
		}
		name, after := cutToken(p)
		if name == "" {
			return c, errMalformed
		}
		after = skipSpace(after)
		if after == "" || after[0] != '=' {
			return c, errMalformed
		}
		after = skipSpace(after[1:])
		var val string
		var quoted bool
		var err error
		if after != "" && after[0] == '"' {
			val, after, err = cutQuoted(after)
			quoted = true
		} else {
			val, after = cutToken(after)
			if val == "" {
				err = errMalformed
			}
		}
		if err != nil {
			return c, err
		}
		if bit, dst := c.field(strings.ToLower(name)); dst != nil {
			if seen&bit != 0 {
				return c, errDuplicate
			}
			seen |= bit
			*dst = val
		} else if strings.EqualFold(name, "nc") {
			if c.hasNC || quoted {
				return c, errBadNC
			}
			nc, err := parseNC(val)
			if err != nil {
				return c, err
			}
			c.nc, c.hasNC = nc, true
		} else if strings.EqualFold(name, "userhash") {
			c.userhash = strings.EqualFold(val, "true")
		}
		p = skipSpace(after)
		if p != "" && p[0] != ',' {
			return c, errMalformed
		}
	}
	if c.username == "" || c.realm == "" || c.nonce == "" || c.uri == "" || c.response == "" {
		return c, errMissing
	}
	if len(c.username) > 256 {
		return c, errBadUserLen
	}
	if c.qop != "" && (c.cnonce == "" || !c.hasNC) {
		return c, errBadQOP
	}
	return c, nil
}

// field maps a lower-case parameter name to its bit and destination.
func (c *credentials) field(name string) (uint32, *string) {
	switch name {
	case "username":
		return 1 << 0, &c.username
	case "realm":
		return 1 << 1, &c.realm
	case "nonce":
		return 1 << 2, &c.nonce
	case "uri":
		return 1 << 3, &c.uri
	case "response":
		return 1 << 4, &c.response
	case "algorithm":
		return 1 << 5, &c.algorithm
	case "cnonce":
		return 1 << 6, &c.cnonce
	case "qop":
		return 1 << 7, &c.qop
	case "opaque":
		return 1 << 8, &c.opaque
	}
	return 0, nil
}

// parseNC reads nc-value = 8LHEX (RFC 7616 3.4); 0 is not a count.
func parseNC(s string) (uint32, error) {
	if len(s) != 8 {
		return 0, errBadNC
	}
	n, err := strconv.ParseUint(s, 16, 32)
	if err != nil || n == 0 {
		return 0, errBadNC
	}
	return uint32(n), nil
}

func skipSpace(s string) string { return strings.TrimLeft(s, " \t\r\n") }

// cutToken splits a leading RFC 3261 token (plus '/' ':' '@' and the other
// characters UAs leave unquoted in uri and algorithm values) off s.
func cutToken(s string) (tok, rest string) {
	i := 0
	for i < len(s) && tokenChar(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func tokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~/:@;?&$[]", c) >= 0
}

// cutQuoted reads a quoted-string at the start of s, undoing \-escapes.
// Control characters other than tab are refused, as is a missing close.
func cutQuoted(s string) (val, rest string, err error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), s[i+1:], nil
		case c == '\\':
			if i+1 >= len(s) || (s[i+1] < 0x20 && s[i+1] != '\t') || s[i+1] == 0x7f {
				return "", "", errMalformed
			}
			i++
			b.WriteByte(s[i])
		case (c < 0x20 && c != '\t') || c == 0x7f:
			return "", "", errMalformed
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errMalformed
}
