package main

// The subscriber side's SIP, reduced to what regload does: build SUBSCRIBE
// requests, read responses and NOTIFYs (start line, the handful of headers
// it needs, the body), and answer a NOTIFY with 200 OK by copying its Via,
// From, To, Call-ID and CSeq lines verbatim (RFC 3261 8.2.6.2). It works on
// views into the received datagram and allocates nothing per message:
// sipgo's parser costs several times more per NOTIFY (BenchmarkParse in
// sip_test.go), which on a 2-core machine would be taken from the server
// being measured. Tests check it against sipgo's parser.

import (
	"bytes"
	"errors"
	"strconv"

	"github.com/regbridge/regbridge/source"
)

// maxVias bounds the Via lines kept for the 200 OK; a NOTIFY from regbridge
// has one, a proxy chain a few.
const maxVias = 8

// message is one SIP message read by parse: slices point into the datagram
// and are valid until the buffer is reused.
type message struct {
	request bool
	method  []byte // request method
	status  int    // response status code

	callID  []byte
	fromTag []byte
	toTag   []byte
	cseq    uint32
	cseqM   []byte // CSeq method
	contact []byte // URI of the first Contact (no angle brackets)
	subs    []byte // Subscription-State value
	body    []byte

	// Raw header lines (name and value as received, no CRLF) that a
	// response copies.
	vias                          [maxVias][]byte
	nvia                          int
	fromLine, toLine, idLine, csq []byte
}

var (
	errNoHeaderEnd = errors.New("no blank line after the headers")
	errStartLine   = errors.New("bad start line")
	errHeader      = errors.New("bad header")
	errLength      = errors.New("Content-Length larger than the message")
	errMissing     = errors.New("missing Via, From, To, Call-ID or CSeq")
)

var crlf = []byte("\r\n")

// headerEnd returns the index just past the blank line ending the header
// section, or -1.
func headerEnd(data []byte) int {
	i := bytes.Index(data, []byte("\r\n\r\n"))
	if i < 0 {
		return -1
	}
	return i + 4
}

// parse reads one complete message (a whole UDP datagram, or one message cut
// from a TCP stream by frame) into m.
func parse(data []byte, m *message) error {
	*m = message{}
	end := headerEnd(data)
	if end < 0 {
		return errNoHeaderEnd
	}
	line, rest, _ := bytes.Cut(data[:end-2], crlf)
	if err := m.startLine(line); err != nil {
		return err
	}
	clen := -1
	for len(rest) > 0 {
		// One header with its continuation lines (RFC 3261 7.3.1).
		n := 0
		for {
			i := bytes.Index(rest[n:], crlf)
			if i < 0 {
				return errHeader
			}
			n += i + 2
			if n >= len(rest) || (rest[n] != ' ' && rest[n] != '\t') {
				break
			}
		}
		raw := rest[:n-2]
		rest = rest[n:]
		name, value, ok := bytes.Cut(raw, []byte(":"))
		if !ok {
			return errHeader
		}
		name, value = bytes.TrimSpace(name), bytes.TrimSpace(value)
		switch headerName(name) {
		case hVia:
			if m.nvia < maxVias {
				m.vias[m.nvia] = raw
				m.nvia++
			}
		case hFrom:
			m.fromLine, m.fromTag = raw, tagParam(value)
		case hTo:
			m.toLine, m.toTag = raw, tagParam(value)
		case hCallID:
			m.idLine, m.callID = raw, value
		case hCSeq:
			num, method, _ := bytes.Cut(value, []byte(" "))
			n, ok := atoi(num, 1<<32-1)
			if !ok {
				return errHeader
			}
			m.csq, m.cseq, m.cseqM = raw, uint32(n), bytes.TrimSpace(method)
		case hContentLength:
			n, ok := atoi(value, 1<<24)
			if !ok {
				return errHeader
			}
			clen = int(n)
		case hContact:
			if m.contact == nil {
				m.contact = contactURI(value)
			}
		case hSubscriptionState:
			m.subs = value
		}
	}
	body := data[end:]
	if clen >= 0 {
		if clen > len(body) {
			return errLength
		}
		body = body[:clen]
	}
	m.body = body
	if m.nvia == 0 || m.fromLine == nil || m.toLine == nil || m.idLine == nil || m.csq == nil {
		return errMissing
	}
	return nil
}

func (m *message) startLine(line []byte) error {
	if rest, ok := bytes.CutPrefix(line, []byte("SIP/2.0 ")); ok {
		if len(rest) < 3 || (len(rest) > 3 && rest[3] != ' ') {
			return errStartLine
		}
		code, ok := atoi(rest[:3], 699)
		if !ok || code < 100 {
			return errStartLine
		}
		m.status = int(code)
		return nil
	}
	method, rest, ok := bytes.Cut(line, []byte(" "))
	if !ok || len(method) == 0 || !bytes.HasSuffix(rest, []byte(" SIP/2.0")) {
		return errStartLine
	}
	m.request, m.method = true, method
	return nil
}

// atoi reads a decimal number of at most max, without allocating.
func atoi(b []byte, max uint64) (uint64, bool) {
	n, ok := source.ParseUint(b)
	if !ok || n > max {
		return 0, false
	}
	return n, true
}

type header uint8

const (
	hOther header = iota
	hVia
	hFrom
	hTo
	hCallID
	hCSeq
	hContentLength
	hContact
	hSubscriptionState
)

// headerName classifies a header name, long or compact form, in any case.
func headerName(name []byte) header {
	if len(name) == 1 {
		switch name[0] | 0x20 {
		case 'v':
			return hVia
		case 'f':
			return hFrom
		case 't':
			return hTo
		case 'i':
			return hCallID
		case 'l':
			return hContentLength
		case 'm':
			return hContact
		}
		return hOther
	}
	switch {
	case bytes.EqualFold(name, []byte("Via")):
		return hVia
	case bytes.EqualFold(name, []byte("From")):
		return hFrom
	case bytes.EqualFold(name, []byte("To")):
		return hTo
	case bytes.EqualFold(name, []byte("Call-ID")):
		return hCallID
	case bytes.EqualFold(name, []byte("CSeq")):
		return hCSeq
	case bytes.EqualFold(name, []byte("Content-Length")):
		return hContentLength
	case bytes.EqualFold(name, []byte("Contact")):
		return hContact
	case bytes.EqualFold(name, []byte("Subscription-State")):
		return hSubscriptionState
	}
	return hOther
}

// tagParam returns the tag parameter of a From or To value. Parameters
// after an addr-spec without angle brackets are header parameters
// (RFC 3261 20.10), so the search starts after '>' when there is one.
func tagParam(v []byte) []byte {
	if i := bytes.LastIndexByte(v, '>'); i >= 0 {
		v = v[i+1:]
	}
	for {
		i := bytes.IndexByte(v, ';')
		if i < 0 {
			return nil
		}
		v = v[i+1:]
		p := bytes.TrimLeft(v, " \t")
		if len(p) >= 4 && bytes.EqualFold(p[:3], []byte("tag")) {
			q := bytes.TrimLeft(p[3:], " \t")
			if len(q) > 0 && q[0] == '=' {
				q = bytes.TrimLeft(q[1:], " \t")
				if j := bytes.IndexAny(q, "; \t"); j >= 0 {
					q = q[:j]
				}
				return q
			}
		}
	}
}

// contactURI returns the URI of a Contact value: inside the angle brackets,
// or up to the first ';' of a bare addr-spec.
func contactURI(v []byte) []byte {
	if i := bytes.IndexByte(v, '<'); i >= 0 {
		if j := bytes.IndexByte(v[i:], '>'); j > 0 {
			return v[i+1 : i+j]
		}
		return nil
	}
	if i := bytes.IndexAny(v, ";,"); i >= 0 {
		v = v[:i]
	}
	return bytes.TrimSpace(v)
}

// appendResponse appends the response with code and reason to the request
// m: its Via, From, To, Call-ID and CSeq lines copied as they came, and no
// body. regload only answers in-dialog NOTIFYs, whose To already carries
// the tag a response needs.
func appendResponse(dst []byte, m *message, code int, reason string) []byte {
	dst = append(dst, "SIP/2.0 "...)
	dst = strconv.AppendInt(dst, int64(code), 10)
	dst = append(dst, ' ')
	dst = append(dst, reason...)
	dst = append(dst, "\r\n"...)
	for _, v := range m.vias[:m.nvia] {
		dst = append(append(dst, v...), "\r\n"...)
	}
	for _, h := range [...][]byte{m.fromLine, m.toLine, m.idLine, m.csq} {
		dst = append(append(dst, h...), "\r\n"...)
	}
	return append(dst, "Content-Length: 0\r\n\r\n"...)
}

// subscribeReq is what a SUBSCRIBE carries. The dialog's identifiers are
// derived from run and idx, so that a response or NOTIFY names its
// subscription in its Call-ID without a lookup table.
type subscribeReq struct {
	transport string // "UDP", "TCP", "TLS", "WS" or "WSS"
	local     string // our host:port (Via sent-by, Contact)
	run       string
	idx       int
	user      string // the AOR's user part
	domain    string
	target    string // in-dialog: the remote target (Request-URI)
	toTag     string // in-dialog: the notifier's tag
	cseq      uint32 // also names the branch: retransmissions keep it
	expires   int
}

// appendSubscribe appends a SUBSCRIBE for the reg event package (RFC 3680
// 4.1, RFC 6665 4.1.2): initial when r.toTag is empty, in-dialog otherwise.
func appendSubscribe(dst []byte, r *subscribeReq) []byte {
	dst = append(dst, "SUBSCRIBE "...)
	if r.target != "" {
		dst = append(dst, r.target...)
	} else {
		dst = appendAOR(dst, r.user, r.domain)
	}
	dst = append(dst, " SIP/2.0\r\nVia: SIP/2.0/"...)
	dst = append(dst, r.transport...)
	dst = append(dst, ' ')
	dst = append(dst, r.local...)
	dst = append(dst, ";branch=z9hG4bK"...)
	dst = append(dst, r.run...)
	dst = append(dst, '.')
	dst = strconv.AppendInt(dst, int64(r.idx), 36)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, uint64(r.cseq), 10)
	dst = append(dst, ";rport\r\nMax-Forwards: 70\r\nFrom: <sip:watcher"...)
	dst = strconv.AppendInt(dst, int64(r.idx), 10)
	dst = append(dst, '@')
	dst = append(dst, r.domain...)
	dst = append(dst, ">;tag="...)
	dst = appendTag(dst, r.run, r.idx)
	dst = append(dst, "\r\nTo: <"...)
	dst = appendAOR(dst, r.user, r.domain)
	dst = append(dst, '>')
	if r.toTag != "" {
		dst = append(dst, ";tag="...)
		dst = append(dst, r.toTag...)
	}
	dst = append(dst, "\r\nCall-ID: "...)
	dst = appendCallID(dst, r.run, r.idx)
	dst = append(dst, "\r\nCSeq: "...)
	dst = strconv.AppendUint(dst, uint64(r.cseq), 10)
	dst = append(dst, " SUBSCRIBE\r\nContact: <sip:watcher"...)
	dst = strconv.AppendInt(dst, int64(r.idx), 10)
	dst = append(dst, '@')
	dst = append(dst, r.local...)
	switch r.transport {
	case "TCP":
		dst = append(dst, ";transport=tcp"...)
	case "TLS":
		dst = append(dst, ";transport=tls"...)
	case "WS", "WSS":
		dst = append(dst, ";transport=ws"...) // RFC 7118: ws for both
	}
	dst = append(dst, ">\r\nEvent: reg\r\nAccept: application/reginfo+xml\r\nExpires: "...)
	dst = strconv.AppendInt(dst, int64(r.expires), 10)
	return append(dst, "\r\nUser-Agent: regload\r\nContent-Length: 0\r\n\r\n"...)
}

func appendAOR(dst []byte, user, domain string) []byte {
	dst = append(dst, "sip:"...)
	dst = append(dst, user...)
	dst = append(dst, '@')
	return append(dst, domain...)
}

// Dialog identifiers: Call-ID "rl<run>.<idx>@regload", From tag
// "rl<run>.<idx>".
func appendCallID(dst []byte, run string, idx int) []byte {
	dst = appendTag(dst, run, idx)
	return append(dst, "@regload"...)
}

func appendTag(dst []byte, run string, idx int) []byte {
	dst = append(dst, "rl"...)
	dst = append(dst, run...)
	dst = append(dst, '.')
	return strconv.AppendInt(dst, int64(idx), 10)
}

// dialogIndex returns the subscription index named by a Call-ID or From
// tag this run made, or -1.
func dialogIndex(v []byte, run string) int {
	rest, ok := bytes.CutPrefix(v, []byte("rl"))
	if !ok {
		return -1
	}
	rest, ok = bytes.CutPrefix(rest, []byte(run))
	if !ok || len(rest) < 2 || rest[0] != '.' {
		return -1
	}
	n := 0
	i := 1
	for ; i < len(rest) && rest[i] >= '0' && rest[i] <= '9'; i++ {
		n = n*10 + int(rest[i]-'0')
		if n > 1<<30 {
			return -1
		}
	}
	if i == 1 || (i < len(rest) && rest[i] != '@') {
		return -1
	}
	return n
}
