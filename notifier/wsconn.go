package notifier

import (
	"bytes"
	"encoding/binary"
	"math"
	"sync"

	"github.com/gobwas/ws"
)

// A WebSocket connection (RFC 6455) carries SIP messages one to a
// message (RFC 7118), so the stream a streamConn reads and writes for
// sipgo's WS and WSS transports is frames, after an HTTP upgrade:
//
//   - Read passes the client's upgrade request on by itself (gobwas/ws's
//     upgrader, which sipgo runs, reads through a buffer and must not get
//     frames with it), then goes frame by frame: a message whose payload
//     is one of our responses is handed to the transaction table, every
//     other frame goes on to sipgo byte for byte. Two repairs on the way
//     make up for what sipgo v1.7's frame reader lacks: a fragmented
//     message is joined into one frame (it drops continuation frames),
//     and pings are answered here and pongs dropped (it neither answers
//     nor skips their payload, which would corrupt its stream). A binary
//     message goes on as text, which is the only kind sipgo reads.
//   - Our NOTIFYs go out as one unmasked text frame each (RFC 7118),
//     through the same queue as sipgo's writes. sipgo writes a frame's
//     header and its payload in two writes, so its writes are gathered
//     into whole frames before they join the queue: a NOTIFY never lands
//     between the two.

// wsState is the framing state of a WS or WSS connection.
type wsState struct {
	// Read side, owned by the reader like streamConn's buffer.
	upgraded bool   // the upgrade request has been passed on
	frag     bool   // inside a fragmented message
	msg      []byte // a fragmented message's payload so far, unmasked
	out      []byte // a joined message, framed, waiting for sipgo

	// Write side: sipgo's bytes until they make whole frames.
	smu      sync.Mutex
	answered bool // the upgrade response has gone out: writes are frames
	crlfs    int  // how much of "\r\n\r\n" ends what the response wrote so far
	staged   []byte
}

// wsFrame is a frame header as read from a buffer.
type wsFrame struct {
	fin    bool
	rsv    byte
	op     ws.OpCode
	masked bool
	mask   [4]byte
	hlen   int // header bytes
	length int // payload bytes
}

// parseWSFrame reads the frame header at the start of b; ok is false
// when b does not hold all of it yet. A length beyond math.MaxInt32 is
// read as math.MaxInt32 (the reader refuses anything beyond
// streamMaxFrame).
func parseWSFrame(b []byte) (f wsFrame, ok bool) {
	if len(b) < 2 {
		return f, false
	}
	f.fin = b[0]&0x80 != 0
	f.rsv = (b[0] >> 4) & 7
	f.op = ws.OpCode(b[0] & 0x0f)
	f.masked = b[1]&0x80 != 0
	n := int(b[1] & 0x7f)
	f.hlen = 2
	switch n {
	case 126:
		if len(b) < 4 {
			return f, false
		}
		n = int(binary.BigEndian.Uint16(b[2:]))
		f.hlen = 4
	case 127:
		if len(b) < 10 {
			return f, false
		}
		l := binary.BigEndian.Uint64(b[2:])
		n = math.MaxInt32
		if l < math.MaxInt32 {
			n = int(l)
		}
		f.hlen = 10
	}
	f.length = n
	if f.masked {
		if len(b) < f.hlen+4 {
			return f, false
		}
		copy(f.mask[:], b[f.hlen:])
		f.hlen += 4
	}
	return f, true
}

// appendWSHeader appends the header of a final frame of op carrying n
// bytes; masked sets the mask bit with an all-zero key (the payload
// stays as it is), which is what sipgo's server side insists on reading.
func appendWSHeader(dst []byte, op ws.OpCode, n int, masked bool) []byte {
	var m byte
	if masked {
		m = 0x80
	}
	dst = append(dst, 0x80|byte(op))
	switch {
	case n <= 125:
		dst = append(dst, m|byte(n))
	case n <= 0xffff:
		dst = append(dst, m|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, m|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if masked {
		dst = append(dst, 0, 0, 0, 0)
	}
	return dst
}

// wsRefused reports a frame sipgo's reader fails the connection on (or
// that no SIP client sends): it is left to sipgo, with everything after it.
func (s *wsState) wsRefused(f wsFrame) bool {
	switch {
	case !f.masked || f.rsv != 0 || f.length > streamMaxFrame:
		return true
	case f.op.IsControl():
		return !f.fin || f.length > 125 || f.op > ws.OpPong
	case f.op == ws.OpContinuation:
		return !s.frag
	default:
		return s.frag || (f.op != ws.OpText && f.op != ws.OpBinary)
	}
}

// frameWS is frame for a WebSocket connection: it moves what sipgo
// reads from buf[r:e] to buf[w:] (or, for a joined message, to ws.out)
// and hands our complete responses to the transaction table, until it
// needs more bytes.
func (c *streamConn) frameWS() {
	s := c.ws
	for c.r < c.e && len(s.out) == 0 {
		if c.pass != 0 {
			c.passOn()
			continue
		}
		data := c.buf[c.r:c.e]
		if !s.upgraded {
			end := bytes.Index(data, []byte("\r\n\r\n"))
			if end < 0 {
				return // more to read (Read passes a request that never ends)
			}
			c.keep(end + 4)
			s.upgraded = true
			return // the upgrade request is read on its own
		}
		f, ok := parseWSFrame(data)
		if !ok {
			return
		}
		if s.wsRefused(f) {
			s.frag, s.msg = false, nil
			c.pass = -1
			continue
		}
		total := f.hlen + f.length
		if !f.op.IsControl() && !s.frag && f.fin && !c.maybeOurs(data, f) {
			if f.op == ws.OpBinary {
				data[0] = 0x80 | byte(ws.OpText)
			}
			c.pass = total // not a response: it streams on to sipgo
			continue
		}
		if len(data) < total {
			return // Read grows the buffer up to streamMaxFrame
		}
		payload := data[f.hlen:total]
		switch {
		case f.op == ws.OpClose:
			c.keep(total) // sipgo closes the connection
		case f.op == ws.OpPing:
			ws.Cipher(payload, f.mask, 0)
			var h [2]byte
			_ = c.queue(appendWSHeader(h[:0], ws.OpPong, len(payload), false), payload)
			c.r += total
		case f.op == ws.OpPong:
			c.r += total
		case !s.frag && f.fin: // a whole message that may be ours
			ws.Cipher(payload, f.mask, 0)
			if c.txs.consume(payload) {
				c.r += total
				continue
			}
			ws.Cipher(payload, f.mask, 0) // as it came, for sipgo
			if f.op == ws.OpBinary {
				data[0] = 0x80 | byte(ws.OpText)
			}
			c.keep(total)
		default: // a fragment: joined in msg
			if len(s.msg)+f.length > streamMaxFrame {
				s.frag, s.msg = false, nil
				c.pass = -1 // too large to join: sipgo decides
				continue
			}
			ws.Cipher(payload, f.mask, 0)
			s.msg = append(s.msg, payload...)
			s.frag = !f.fin
			c.r += total
			if f.fin && !c.txs.consume(s.msg) {
				s.out = appendWSHeader(s.out[:0], ws.OpText, len(s.msg), true)
				s.out = append(s.out, s.msg...)
			}
			if f.fin {
				s.msg = s.msg[:0]
				if cap(s.msg) > streamReadSize {
					s.msg = nil // a rare large message: give its array back
				}
			}
		}
	}
}

// maybeOurs reports whether the unfragmented data frame f at the start of
// data may carry a response: its first payload bytes, once there, are
// "SIP/2.0 ". Requests and keep-alives are told apart without the rest.
func (c *streamConn) maybeOurs(data []byte, f wsFrame) bool {
	const status = "SIP/2.0 "
	if f.length < 12 {
		return false
	}
	if len(data) < f.hlen+len(status) {
		return true // not known yet
	}
	var head [len(status)]byte
	copy(head[:], data[f.hlen:])
	ws.Cipher(head[:], f.mask, 0)
	return string(head[:]) == status
}

// writeWS is sipgo's write on a WebSocket connection: the upgrade
// response as it is, then frames, each queued once whole.
func (c *streamConn) writeWS(b []byte) error {
	s := c.ws
	s.smu.Lock()
	defer s.smu.Unlock()
	if !s.answered {
		k := 0
		for k < len(b) && s.crlfs < 4 {
			if b[k] == "\r\n\r\n"[s.crlfs] {
				s.crlfs++
			} else if b[k] == '\r' {
				s.crlfs = 1
			} else {
				s.crlfs = 0
			}
			k++
		}
		if err := c.queue(nil, b[:k]); err != nil {
			return err
		}
		s.answered = s.crlfs == 4
		if b = b[k:]; len(b) == 0 {
			return nil
		}
	}
	if len(s.staged) == 0 {
		// Whole frames in one write: queued as they are.
		k := wholeFrames(b)
		if k > 0 {
			if err := c.queue(nil, b[:k]); err != nil {
				return err
			}
		}
		if b = b[k:]; len(b) == 0 {
			return nil
		}
	} else if f, ok := parseWSFrame(s.staged); ok && len(s.staged) == f.hlen && len(b) == f.length {
		// sipgo's usual pair: the header staged, now its payload.
		h := s.staged
		s.staged = s.staged[:0]
		return c.queue(h, b)
	}
	s.staged = append(s.staged, b...)
	if k := wholeFrames(s.staged); k > 0 {
		err := c.queue(nil, s.staged[:k])
		s.staged = s.staged[:copy(s.staged, s.staged[k:])]
		return err
	}
	return nil
}

// readOut reads the joined message waiting for sipgo.
func (s *wsState) readOut(b []byte) int {
	k := copy(b, s.out)
	s.out = s.out[k:]
	if len(s.out) == 0 {
		s.out = nil
	}
	return k
}

// wholeFrames is how many bytes at the start of b make whole frames.
func wholeFrames(b []byte) int {
	k := 0
	for {
		f, ok := parseWSFrame(b[k:])
		if !ok || len(b)-k < f.hlen+f.length {
			return k
		}
		k += f.hlen + f.length
	}
}
