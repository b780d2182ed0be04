package main

// Reading the parts of an application/reginfo+xml document (RFC 3680
// section 5) that the load tool checks: the document's version and state,
// each registration's aor, and each contact's state, event and cseq. The
// cseq attribute carries the change number regload wrote into the store, so
// it tells which change a NOTIFY reports. A byte scanner, not encoding/xml:
// it runs once per NOTIFY on the machine being measured. Tests check it
// against encoding/xml.

import (
	"bytes"
	"errors"
)

// maxContacts bounds the contacts kept per document; regload's AORs have one.
const maxContacts = 8

// reginfo is what scanReginfo read; slices point into the body.
type reginfo struct {
	version  uint32
	full     bool
	aor      []byte // aor of the first registration
	nreg     int
	contacts [maxContacts]contactInfo
	ncontact int
}

// contactInfo is one <contact> element's attributes.
type contactInfo struct {
	state, event []byte
	cseq         int64 // -1 when absent
}

var errReginfo = errors.New("not a reginfo document")

// scanReginfo reads body into d.
func scanReginfo(body []byte, d *reginfo) error {
	*d = reginfo{}
	seenRoot := false
	for i := 0; ; {
		name, attrs, next, ok := startTag(body, i)
		if !ok {
			break
		}
		i = next
		switch string(name) {
		case "reginfo":
			v, ok := atoi(attr(attrs, "version"), 1<<32-1)
			if !ok {
				return errReginfo
			}
			d.version = uint32(v)
			switch string(attr(attrs, "state")) {
			case "full":
				d.full = true
			case "partial":
			default:
				return errReginfo
			}
			seenRoot = true
		case "registration":
			if d.nreg == 0 {
				d.aor = attr(attrs, "aor")
			}
			d.nreg++
		case "contact":
			if d.ncontact == maxContacts {
				continue
			}
			c := &d.contacts[d.ncontact]
			c.state, c.event, c.cseq = attr(attrs, "state"), attr(attrs, "event"), -1
			if v := attr(attrs, "cseq"); v != nil {
				n, ok := atoi(v, 1<<32-1)
				if !ok {
					return errReginfo
				}
				c.cseq = int64(n)
			}
			d.ncontact++
		}
	}
	if !seenRoot {
		return errReginfo
	}
	return nil
}

// startTag finds the next element start tag at or after i and returns its
// name, its attribute text and the index after it. Comments, processing
// instructions and end tags are skipped; attribute values are read with
// their quotes, so a '>' inside one does not end the tag.
func startTag(b []byte, i int) (name, attrs []byte, next int, ok bool) {
	for {
		j := bytes.IndexByte(b[i:], '<')
		if j < 0 {
			return nil, nil, 0, false
		}
		i += j + 1
		if i >= len(b) {
			return nil, nil, 0, false
		}
		if c := b[i]; c == '/' || c == '?' || c == '!' {
			continue
		}
		k := i
		for k < len(b) && !isSpace(b[k]) && b[k] != '>' && b[k] != '/' {
			k++
		}
		name = b[i:k]
		// Drop a namespace prefix: gr:pub-gruu is not a reginfo element.
		if c := bytes.IndexByte(name, ':'); c >= 0 {
			name = nil
		}
		start := k
		var quote byte
		for ; k < len(b); k++ {
			c := b[k]
			switch {
			case quote != 0:
				if c == quote {
					quote = 0
				}
			case c == '"' || c == '\'':
				quote = c
			case c == '>':
				return name, b[start:k], k + 1, true
			}
		}
		return nil, nil, 0, false
	}
}

// attr returns the value of attribute name in a start tag's attribute text
// (without quotes, entities not decoded), or nil.
func attr(attrs []byte, name string) []byte {
	for i := 0; i < len(attrs); {
		for i < len(attrs) && (isSpace(attrs[i]) || attrs[i] == '/') {
			i++
		}
		eq := bytes.IndexByte(attrs[i:], '=')
		if eq < 0 {
			return nil
		}
		n := bytes.TrimSpace(attrs[i : i+eq])
		i += eq + 1
		for i < len(attrs) && isSpace(attrs[i]) {
			i++
		}
		if i >= len(attrs) || (attrs[i] != '"' && attrs[i] != '\'') {
			return nil
		}
		q := attrs[i]
		end := bytes.IndexByte(attrs[i+1:], q)
		if end < 0 {
			return nil
		}
		v := attrs[i+1 : i+1+end]
		i += end + 2
		if string(n) == name {
			return v
		}
	}
	return nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
