package main

// Lanes: the few sockets (UDP) or connections (TCP, TLS, WS, WSS) that carry every
// subscription. Subscription i lives on lane i mod len(lanes): its SUBSCRIBEs
// leave from that socket, its Contact names it, so its NOTIFYs come back to
// it and one reader goroutine per lane sees everything about it.

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
)

// socketBuffer is the kernel buffer asked for per socket: a burst of NOTIFYs
// must not overflow while the reader is busy (net.core.rmem_max caps it).
const socketBuffer = 4 << 20

// maxStreamMessage bounds one message read from a TCP connection.
const maxStreamMessage = 1 << 20

type lane struct {
	id     int
	local  string // host:port written in Via and Contact
	udp    *net.UDPConn
	stream net.Conn // TCP, or TLS over it, or WebSocket over either (ws.go)
	proto  string   // UDP, TCP, TLS, WS or WSS: Via and Contact
	server netip.AddrPort

	// subsMu guards this lane's subscribers (r.subs[i] for i%len(r.lanes) ==
	// id) and the tallies and samples below.
	subsMu  sync.Mutex
	tally   tally
	samples []sample
	perSec  []uint32
	firsts  []uint32 // µs from SUBSCRIBE to the first NOTIFY

	sendErrors atomic.Uint64
	heard      atomic.Int64 // when (ns since t0) a message last arrived; 0 never

	// Owned by the lane's reader goroutine.
	from netip.AddrPort // source of the message being handled (UDP)
	m    message
	doc  reginfo
	out  []byte
	tag  []byte
}

// openLanes opens n sockets (UDP) or connections (TCP, TLS, WS, WSS)
// towards server.
func openLanes(network string, server netip.AddrPort, n int) ([]*lane, error) {
	lanes := make([]*lane, 0, n)
	fail := func(err error) ([]*lane, error) {
		closeLanes(lanes)
		return nil, err
	}
	for i := range n {
		l := &lane{id: i, server: server, proto: "UDP", out: make([]byte, 0, 1024)}
		switch network {
		case "udp":
			ip, err := localIPFor(server)
			if err != nil {
				return fail(err)
			}
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
			if err != nil {
				return fail(fmt.Errorf("opening UDP socket: %w", err))
			}
			_ = c.SetReadBuffer(socketBuffer)
			_ = c.SetWriteBuffer(socketBuffer)
			l.udp = c
			l.local = c.LocalAddr().String()
		case "tcp", "tls", "ws", "wss":
			c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(server))
			if err != nil {
				return fail(fmt.Errorf("connecting to %s: %w", server, err))
			}
			_ = c.SetReadBuffer(socketBuffer)
			_ = c.SetWriteBuffer(socketBuffer)
			l.stream, l.proto = c, "TCP"
			l.local = c.LocalAddr().String()
			if network == "tls" || network == "wss" {
				// A load tool on loopback: regbridge's certificate is
				// not checked (--spawn makes a self-signed one).
				tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, ServerName: server.Addr().String()})
				if err := tc.Handshake(); err != nil {
					c.Close()
					return fail(fmt.Errorf("TLS handshake with %s: %w", server, err))
				}
				l.stream, l.proto = tc, "TLS"
			}
			if network == "ws" || network == "wss" {
				s, err := dialWS(l.stream, network, server)
				if err != nil {
					l.stream.Close()
					return fail(err)
				}
				l.stream, l.proto = s, strings.ToUpper(network)
			}
		}
		lanes = append(lanes, l)
	}
	return lanes, nil
}

// localIPFor returns the local address that routes to server (a UDP
// "connect" sends nothing).
func localIPFor(server netip.AddrPort) (netip.Addr, error) {
	if server.Addr().IsLoopback() {
		return server.Addr(), nil
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(server))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("finding a local address for %s: %w", server, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

func closeLanes(lanes []*lane) {
	for _, l := range lanes {
		if l.udp != nil {
			l.udp.Close()
		}
		if l.stream != nil {
			l.stream.Close()
		}
	}
}

// send writes a request to the server.
func (l *lane) send(b []byte) {
	var err error
	if l.udp != nil {
		_, err = l.udp.WriteToUDPAddrPort(b, l.server)
	} else {
		_, err = l.stream.Write(b) // one Write is not interleaved with another
	}
	if err != nil {
		l.sendErrors.Add(1)
	}
}

// reply answers the message being handled, where it came from (UDP:
// its source address, as rport asks; TCP: the same connection).
func (l *lane) reply(b []byte) {
	var err error
	if l.udp != nil {
		_, err = l.udp.WriteToUDPAddrPort(b, l.from)
	} else {
		_, err = l.stream.Write(b)
	}
	if err != nil {
		l.sendErrors.Add(1)
	}
}

// answer replies to request m (reader goroutine only).
func (l *lane) answer(m *message, code int, reason string) {
	l.out = appendResponse(l.out[:0], m, code, reason)
	l.reply(l.out)
}

// read handles everything arriving on l until the socket is closed.
func (r *runner) read(l *lane) {
	if l.udp != nil {
		buf := make([]byte, 65536)
		for {
			n, from, err := l.udp.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // e.g. ICMP port unreachable reported on the socket
			}
			l.from = from
			r.handle(l, buf[:n], r.since())
		}
	}
	r.readStream(l)
}

// readStream cuts messages out of a TCP byte stream by Content-Length
// (mandatory on streams, RFC 3261 18.3).
func (r *runner) readStream(l *lane) {
	buf := make([]byte, 256<<10)
	start, end := 0, 0
	for {
		for {
			// CRLF keep-alives (RFC 5626 3.5.1) between messages.
			for end-start >= 2 && buf[start] == '\r' && buf[start+1] == '\n' {
				start += 2
			}
			data := buf[start:end]
			hend := headerEnd(data)
			if hend < 0 {
				break
			}
			clen, ok := frameLength(data[:hend])
			if !ok || hend+clen > maxStreamMessage {
				l.subsMu.Lock()
				l.tally.BadMessages++
				l.subsMu.Unlock()
				l.stream.Close()
				return
			}
			if len(data) < hend+clen {
				break
			}
			r.handle(l, data[:hend+clen], r.since())
			start += hend + clen
		}
		// Keep the unread tail at the front of the buffer; grow it only
		// for a message larger than the buffer.
		copy(buf, buf[start:end])
		end -= start
		start = 0
		if end == len(buf) {
			if len(buf) > maxStreamMessage {
				l.stream.Close()
				return
			}
			buf = append(buf, make([]byte, len(buf))...)
		}
		n, err := l.stream.Read(buf[end:])
		if err != nil {
			return
		}
		end += n
	}
}

// frameLength returns the Content-Length of a header section (0 when
// absent, which on a stream only a bodiless message may do).
func frameLength(hdr []byte) (int, bool) {
	for line := range bytes.SplitSeq(hdr, crlf) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || headerName(bytes.TrimSpace(name)) != hContentLength {
			continue
		}
		n, ok := atoi(bytes.TrimSpace(value), maxStreamMessage)
		return int(n), ok
	}
	return 0, true
}
