package render

import "unicode/utf8"

// Escaping shared by the reginfo and PIDF renderers. Every string that
// reaches these functions may come straight from a contact store, so the
// output has to stay well-formed XML 1.0 whatever the input holds:
//
//   - the markup characters are replaced by entity references;
//   - characters XML 1.0 does not allow at all (C0 controls other than tab,
//     LF and CR, U+FFFE, U+FFFF) and bytes that are not UTF-8 (lone or
//     encoded surrogates included) become U+FFFD, one per invalid byte, the
//     way `for range` over a Go string reports them;
//   - CR is written as a character reference everywhere, because parsers
//     turn a literal CR (or CRLF) into LF in text; in attributes tab and LF
//     are written as references too, because attribute-value normalisation
//     would turn them into spaces.
//
// The escapers append to dst and copy unchanged runs in one piece, so they
// do not allocate when dst has room.

// replacement is U+FFFD REPLACEMENT CHARACTER in UTF-8.
const replacement = "\uFFFD"

// textEscapes and attrEscapes give the replacement for each ASCII byte, or
// "" when the byte is copied as is.
var textEscapes = [utf8.RuneSelf]string{
	0x00: replacement, 0x01: replacement, 0x02: replacement, 0x03: replacement,
	0x04: replacement, 0x05: replacement, 0x06: replacement, 0x07: replacement,
	0x08: replacement, 0x0B: replacement, 0x0C: replacement, 0x0E: replacement,
	0x0F: replacement, 0x10: replacement, 0x11: replacement, 0x12: replacement,
	0x13: replacement, 0x14: replacement, 0x15: replacement, 0x16: replacement,
	0x17: replacement, 0x18: replacement, 0x19: replacement, 0x1A: replacement,
	0x1B: replacement, 0x1C: replacement, 0x1D: replacement, 0x1E: replacement,
	0x1F: replacement,
	'\r': "&#xD;",
	'&':  "&amp;",
	'<':  "&lt;",
	// '>' is only dangerous after "]]", but escaping it always is simpler
	// than tracking that and keeps "]]>" out of character data.
	'>': "&gt;",
}

var attrEscapes = func() [utf8.RuneSelf]string {
	e := textEscapes
	e['\t'] = "&#x9;"
	e['\n'] = "&#xA;"
	e['"'] = "&quot;"
	// Not needed inside the double quotes this package writes, but cheap
	// insurance should a value ever be copied into a single-quoted one.
	e['\''] = "&apos;"
	return e
}()

// appendText appends s to dst escaped as XML character data.
func appendText(dst []byte, s string) []byte {
	return appendEscaped(dst, s, &textEscapes)
}

// appendAttr appends s to dst escaped for use inside a double-quoted
// attribute value.
func appendAttr(dst []byte, s string) []byte {
	return appendEscaped(dst, s, &attrEscapes)
}

func appendEscaped(dst []byte, s string, esc *[utf8.RuneSelf]string) []byte {
	start := 0 // first byte of s not yet copied to dst
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if r := esc[c]; r != "" {
				dst = append(dst, s[start:i]...)
				dst = append(dst, r...)
				start = i + 1
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r == 0xFFFE || r == 0xFFFF {
			dst = append(dst, s[start:i]...)
			dst = append(dst, replacement...)
			start = i + size
		}
		i += size
	}
	return append(dst, s[start:]...)
}
