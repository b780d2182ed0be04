package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"sync"

	"github.com/gobwas/ws"
)

// wsStream is a WebSocket connection (RFC 6455) as a SIP client uses it
// (RFC 7118): Write sends one message as one masked text frame, Read
// returns the payloads of the data frames received back to back, which
// the lane's stream reader then cuts by Content-Length as on TCP (every
// message regbridge sends carries one). Pings are answered; a close frame
// ends the stream.
type wsStream struct {
	net.Conn
	br *bufio.Reader

	// Read side, the lane's reader goroutine only.
	hdr  ws.Header // of the data frame being read
	left int64     // its payload bytes not read yet
	ctl  [125]byte // a control frame's payload

	wmu sync.Mutex
	out bytes.Buffer
}

// dialWS runs the WebSocket opening handshake (subprotocol "sip") on conn,
// a TCP or TLS connection to server.
func dialWS(conn net.Conn, network string, server netip.AddrPort) (*wsStream, error) {
	u := &url.URL{Scheme: network, Host: server.String(), Path: "/"}
	ahead, _, err := ws.Dialer{Protocols: []string{"sip"}}.Upgrade(conn, u)
	if err != nil {
		return nil, fmt.Errorf("WebSocket handshake with %s: %w", server, err)
	}
	var r io.Reader = conn
	if ahead != nil { // frames that came with the handshake's response
		r = io.MultiReader(ahead, conn)
	}
	return &wsStream{Conn: conn, br: bufio.NewReaderSize(r, 64<<10)}, nil
}

// Read returns data frame payload bytes.
func (s *wsStream) Read(b []byte) (int, error) {
	for s.left == 0 {
		h, err := ws.ReadHeader(s.br)
		if err != nil {
			return 0, err
		}
		if !h.OpCode.IsControl() {
			s.hdr, s.left = h, h.Length
			continue
		}
		if h.Length > int64(len(s.ctl)) {
			return 0, fmt.Errorf("control frame of %d bytes", h.Length)
		}
		p := s.ctl[:h.Length]
		if _, err := io.ReadFull(s.br, p); err != nil {
			return 0, err
		}
		switch h.OpCode {
		case ws.OpClose:
			return 0, io.EOF
		case ws.OpPing:
			if h.Masked {
				ws.Cipher(p, h.Mask, 0)
			}
			if err := s.writeFrame(ws.OpPong, p); err != nil {
				return 0, err
			}
		}
	}
	if int64(len(b)) > s.left {
		b = b[:s.left]
	}
	n, err := s.br.Read(b)
	if s.hdr.Masked {
		ws.Cipher(b[:n], s.hdr.Mask, int(s.hdr.Length-s.left))
	}
	s.left -= int64(n)
	return n, err
}

// Write sends b, one SIP message, in a text frame of its own.
func (s *wsStream) Write(b []byte) (int, error) {
	if err := s.writeFrame(ws.OpText, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// writeFrame sends one masked frame, header and payload in one write.
func (s *wsStream) writeFrame(op ws.OpCode, p []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	h := ws.Header{Fin: true, OpCode: op, Masked: true, Length: int64(len(p))}
	binary.LittleEndian.PutUint32(h.Mask[:], rand.Uint32())
	s.out.Reset()
	if err := ws.WriteHeader(&s.out, h); err != nil {
		return err
	}
	start := s.out.Len()
	s.out.Write(p)
	ws.Cipher(s.out.Bytes()[start:], h.Mask, 0)
	_, err := s.Conn.Write(s.out.Bytes())
	return err
}
