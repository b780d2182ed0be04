package notifier

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"
)

// NOTIFYs over a TCP, TLS, WS or WSS connection a subscriber opened run
// the same lean client transactions as over UDP (udptx.go), instead of
// sipgo's, which cost 2.5 times the CPU of a UDP NOTIFY in a fan-out
// (BenchmarkNotifyTransaction compares the two on every transport):
//
//   - The accepted connection is wrapped (streamConn) before sipgo sees
//     it (before its WebSocket upgrade, for WS and WSS). Its reader cuts
//     the byte stream into messages by Content-Length (RFC 3261 18.3), or
//     into WebSocket frames (wsconn.go), and takes the responses whose
//     top Via branch carries our prefix for the transaction table; every
//     other byte (requests from the peer: SUBSCRIBE refreshes, OPTIONS,
//     CRLF keep-alives) goes on to sipgo's reader unchanged.
//   - A reliable transport needs no retransmission (RFC 3261 17.1.2.2):
//     the transaction has Timer F only, and ends as soon as the connection
//     closes.
//   - Writes to a connection are batched: a NOTIFY queued while another
//     goroutine is writing to the same connection goes out with the next
//     write, so a fan-out of many NOTIFYs over one connection (a proxy
//     carrying many watchers) costs one system call per batch, not one
//     per NOTIFY. sipgo's own writes (responses to SUBSCRIBE) take the
//     same queue, so messages never interleave; over WebSocket each
//     NOTIFY is a text frame of its own (RFC 7118) and sipgo's frames
//     join the queue whole.
//   - The NOTIFY's Via names the connection's transport: TCP, TLS, WS or
//     WSS (RFC 7118).
//
// Only a NOTIFY towards the connection its SUBSCRIBE came on takes this
// path; one to a Record-Route hop goes through sipgo's client (notify.go).
// Once a TCP or TLS connection is gone, sipgo's client carries the NOTIFY
// to the Contact over a new one; a WebSocket client has no reachable
// Contact (RFC 7118 5.2), and its NOTIFY fails, as it always did.

// flow is where a lean NOTIFY transaction writes: a UDP socket towards an
// address, or a subscriber's connection.
type flow interface {
	// write sends one request's bytes.
	write(b []byte) error
	// proto is the Via transport: UDP, TCP, TLS, WS or WSS.
	proto() string
	// reliable reports a transport that retransmits by itself: the
	// transaction then has no Timer E.
	reliable() bool
	// gone is closed when the flow can no longer carry a response (nil
	// for one that cannot tell).
	gone() <-chan struct{}
	String() string
}

// udpFlow is a UDP listener towards one address.
type udpFlow struct {
	sock *udpSocket
	dst  netip.AddrPort
}

func (f udpFlow) write(b []byte) error {
	if _, err := f.sock.WriteToUDPAddrPort(b, f.dst); err != nil {
		return fmt.Errorf("sending NOTIFY to %s: %w", f.dst, err)
	}
	return nil
}

func (udpFlow) proto() string           { return "UDP" }
func (udpFlow) reliable() bool          { return false }
func (udpFlow) gone() <-chan struct{}   { return nil }
func (f udpFlow) String() string        { return f.dst.String() }
func (f udpFlow) localAddr() string     { return f.sock.local.String() }
func (c *streamConn) localAddr() string { return c.LocalAddr().String() }

// errConnectionLost ends a transaction whose connection closed before
// the response came.
var errConnectionLost = errors.New("connection closed before the response")

// streamConns are the connections subscribers opened to our TCP, TLS, WS
// and WSS listeners, by transport and remote address (sipgo's source
// address of the requests read from them).
type streamConns struct {
	mu sync.Mutex
	m  map[string]*streamConn
}

func streamKey(proto, remote string) string { return proto + " " + remote }

// get returns the open connection of proto from remote, or nil.
func (s *streamConns) get(proto, remote string) *streamConn {
	s.mu.Lock()
	c := s.m[streamKey(proto, remote)]
	s.mu.Unlock()
	return c
}

func (s *streamConns) add(c *streamConn) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[string]*streamConn)
	}
	s.m[c.key] = c
	s.mu.Unlock()
}

func (s *streamConns) remove(c *streamConn) {
	s.mu.Lock()
	if s.m[c.key] == c {
		delete(s.m, c.key)
	}
	s.mu.Unlock()
}

// streamListener wraps every connection it accepts in a streamConn.
type streamListener struct {
	net.Listener
	proto string
	txs   *udpTxs
	conns *streamConns
}

func (l *streamListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := newStreamConn(c, l.proto, l.txs, l.conns)
	l.conns.add(sc)
	return sc, nil
}

// streamReadSize is the read buffer of a connection; a message larger
// than it grows the buffer up to streamMaxFrame, beyond which the
// connection's bytes all go to sipgo unframed.
const (
	streamReadSize = 64 << 10
	streamMaxFrame = 1 << 20
)

// streamConn is an accepted TCP, TLS, WS or WSS connection as sipgo
// reads and writes it, minus the responses to our NOTIFY transactions.
type streamConn struct {
	net.Conn
	key   string
	tp    string // TCP, TLS, WS or WSS
	txs   *udpTxs
	conns *streamConns

	closeOnce sync.Once
	closed    chan struct{}

	// Read side, owned by sipgo's reader goroutine: buf[head:w] is ready
	// for it, buf[r:e] is read and not yet framed; pass bytes from r on go
	// to sipgo unframed (the rest of a message that is not ours).
	buf           []byte
	head, w, r, e int
	pass          int
	rerr          error

	// ws is the framing of a WS or WSS connection (wsconn.go), nil for
	// TCP and TLS.
	ws *wsState

	// Write side: pending is what waits for the writer in progress.
	wmu      sync.Mutex
	pending  []byte
	spare    []byte
	flushing bool
	werr     error
}

func newStreamConn(c net.Conn, proto string, txs *udpTxs, conns *streamConns) *streamConn {
	sc := &streamConn{
		Conn: c, key: streamKey(proto, c.RemoteAddr().String()), tp: proto,
		txs: txs, conns: conns, closed: make(chan struct{}),
	}
	if proto == "WS" || proto == "WSS" {
		sc.ws = &wsState{}
	}
	return sc
}

func (c *streamConn) proto() string         { return c.tp }
func (c *streamConn) reliable() bool        { return true }
func (c *streamConn) gone() <-chan struct{} { return c.closed }
func (c *streamConn) String() string        { return c.RemoteAddr().String() }

// Close closes the connection and fails the transactions waiting on it.
func (c *streamConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.conns.remove(c)
	})
	return c.Conn.Close()
}

// write sends one request: as it is, or over WebSocket in a text frame
// of its own (RFC 7118).
func (c *streamConn) write(b []byte) error {
	if c.ws == nil {
		return c.queue(nil, b)
	}
	var h [10]byte
	return c.queue(appendWSHeader(h[:0], ws.OpText, len(b), false), b)
}

// queue queues h and b and, unless another goroutine is writing already
// (which then writes them too, with whatever else is queued), writes the
// queue.
func (c *streamConn) queue(h, b []byte) error {
	c.wmu.Lock()
	if c.werr != nil {
		err := c.werr
		c.wmu.Unlock()
		return err
	}
	c.pending = append(c.pending, h...)
	c.pending = append(c.pending, b...)
	if c.flushing {
		c.wmu.Unlock()
		return nil
	}
	c.flushing = true
	for len(c.pending) > 0 && c.werr == nil {
		out := c.pending
		c.pending = c.spare[:0]
		c.wmu.Unlock()
		// A subscriber that takes no bytes for Timer F is gone: the
		// write fails, the connection closes, and its transactions end.
		err := c.Conn.SetWriteDeadline(time.Now().Add(sip.Timer_F))
		if err == nil {
			_, err = c.Conn.Write(out)
		}
		c.wmu.Lock()
		if cap(out) <= 4*streamReadSize {
			c.spare = out[:0]
		} else {
			c.spare = nil // a burst is over: give its array back
		}
		if err != nil {
			c.werr = fmt.Errorf("sending to %s: %w", c.RemoteAddr(), err)
			c.pending = nil
		}
	}
	c.flushing = false
	err := c.werr
	c.wmu.Unlock()
	if err != nil {
		_ = c.Close() // the reader ends, and sipgo forgets the connection
	}
	return err
}

// Write is sipgo's write: it takes the same queue as the NOTIFYs.
func (c *streamConn) Write(b []byte) (int, error) {
	var err error
	if c.ws != nil {
		err = c.writeWS(b)
	} else {
		err = c.queue(nil, b)
	}
	if err != nil {
		return 0, err
	}
	return len(b), nil
}

// Read returns the connection's bytes with the responses to our
// transactions taken out (and handed to them).
func (c *streamConn) Read(b []byte) (int, error) {
	if c.buf == nil {
		c.buf = make([]byte, streamReadSize)
	}
	for {
		if c.head < c.w {
			k := copy(b, c.buf[c.head:c.w])
			c.head += k
			return k, nil
		}
		if c.ws != nil && len(c.ws.out) > 0 {
			return c.ws.readOut(b), nil
		}
		if c.r < c.e {
			if c.ws != nil {
				c.frameWS()
			} else {
				c.frame()
			}
			if c.head < c.w || c.ws != nil && len(c.ws.out) > 0 {
				continue
			}
		}
		if c.rerr != nil {
			return 0, c.rerr
		}
		// Everything ready was read: move the unframed tail to the front.
		c.e = copy(c.buf, c.buf[c.r:c.e])
		c.head, c.w, c.r = 0, 0, 0
		if c.e == len(c.buf) {
			if len(c.buf) >= streamMaxFrame {
				c.pass = -1 // a message this large is left to sipgo whole
				continue
			}
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
		}
		k, err := c.Conn.Read(c.buf[c.e:])
		c.e += k
		c.rerr = err
	}
}

// frame moves what sipgo reads from buf[r:e] to buf[w:] and hands our
// complete responses to the transaction table, until it needs more bytes
// or a keep-alive has to be read on its own.
func (c *streamConn) frame() {
	for c.r < c.e {
		if c.pass != 0 {
			c.passOn()
			continue
		}
		data := c.buf[c.r:c.e]
		if data[0] == '\r' || data[0] == '\n' {
			// CRLF keep-alives between messages (RFC 5626 3.5.1): sipgo
			// answers a double CRLF read on its own with a pong.
			if c.w > c.head {
				return
			}
			k := 0
			for k < len(data) && k < 4 && (data[k] == '\r' || data[k] == '\n') {
				k++
			}
			c.keep(k)
			return
		}
		hend := bytes.Index(data, []byte("\r\n\r\n"))
		if hend < 0 {
			return // more to read (Read passes a header that never ends)
		}
		hend += 4
		clen, ok := frameContentLength(data[:hend])
		if !ok {
			c.pass = -1 // no framing to rely on: sipgo decides (it closes the connection)
			continue
		}
		if !c.txs.ours(data[:hend]) {
			c.pass = hend + clen
			continue
		}
		if len(data) < hend+clen {
			return
		}
		c.txs.consume(data[:hend+clen])
		c.r += hend + clen
	}
}

// passOn moves the bytes left to pass unframed (all of them, when pass
// is -1) that are read already to what sipgo reads.
func (c *streamConn) passOn() {
	k := c.e - c.r
	if c.pass > 0 {
		k = min(k, c.pass)
		c.pass -= k
	}
	c.keep(k)
}

// keep moves the next k unframed bytes to what sipgo reads.
func (c *streamConn) keep(k int) {
	if c.w != c.r { // else they are in place already
		copy(c.buf[c.w:], c.buf[c.r:c.r+k])
	}
	c.w += k
	c.r += k
}

// frameContentLength reads the Content-Length of a message header ("l" is
// its compact form); a stream message without one cannot be framed.
func frameContentLength(hdr []byte) (int, bool) {
	for len(hdr) > 0 {
		var line []byte
		line, hdr, _ = bytes.Cut(hdr, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		if !bytes.EqualFold(name, []byte("content-length")) && !bytes.EqualFold(name, []byte("l")) {
			continue
		}
		n, err := strconv.Atoi(string(bytes.TrimSpace(value)))
		if err != nil || n < 0 || n > streamMaxFrame {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// ours reports whether hdr is the header of a response to one of our
// transactions (by its top Via branch).
func (t *udpTxs) ours(hdr []byte) bool {
	return bytes.HasPrefix(hdr, []byte("SIP/2.0 ")) && bytes.HasPrefix(topViaBranch(hdr), []byte(t.prefix))
}
