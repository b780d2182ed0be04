package notifier

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/regbridge/regbridge/notifier/siptest"
)

// clientFrame is a frame as a WebSocket client sends it: masked, with a
// random key (RFC 6455 5.3).
func clientFrame(op ws.OpCode, fin bool, payload string) []byte {
	return ws.MustCompileFrame(ws.MaskFrame(ws.NewFrame(op, fin, []byte(payload))))
}

// upgradeRequest is a client's opening handshake (RFC 6455 4.1, RFC 7118).
const upgradeRequest = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: sip\r\n\r\n"

// ourResponse is a 200 OK to transaction tx of txs.
func ourResponse(txs *udpTxs, tx *udpTx) string {
	return fmt.Sprintf("SIP/2.0 200 OK\r\nVia: SIP/2.0/WS 127.0.0.1:5060;branch=%s%x\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n", txs.prefix, tx.id)
}

// TestWSConnFraming: the upgrade request reaches sipgo's upgrader on its
// own; then sipgo reads the client's frames byte for byte, minus our
// responses (whole or fragmented, around a ping), pings and pongs; a
// fragmented message of someone else's arrives joined into one frame, a
// binary one as text; pings are answered with their payload.
func TestWSConnFraming(t *testing.T) {
	sc, peer, txs := connPairOf(t, "WS")
	tx1, tx2 := txs.begin(), txs.begin()
	defer txs.end(tx1)
	defer txs.end(tx2)
	subscribe := "SUBSCRIBE sip:a@x SIP/2.0\r\nVia: SIP/2.0/WS h.invalid;branch=z9hG4bKs1\r\nContent-Length: 0\r\n\r\n"
	foreign := "SIP/2.0 200 OK\r\nVia: SIP/2.0/WS 10.0.0.1;branch=z9hG4bKother\r\nContent-Length: 0\r\n\r\n"
	ours1, ours2 := ourResponse(txs, tx1), ourResponse(txs, tx2)
	binary := "OPTIONS sip:a@x SIP/2.0\r\nVia: SIP/2.0/WS h.invalid;branch=z9hG4bKo1\r\nContent-Length: 0\r\n\r\n"
	closing := clientFrame(ws.OpClose, true, "\x03\xe8")
	var stream, want []byte
	add := func(frame []byte, kept bool) {
		stream = append(stream, frame...)
		if kept {
			want = append(want, frame...)
		}
	}
	add(clientFrame(ws.OpText, true, subscribe), true)
	add(clientFrame(ws.OpPing, true, "ping-1"), false)
	add(clientFrame(ws.OpText, false, ours1[:10]), false)
	add(clientFrame(ws.OpPing, true, "ping-2"), false)
	add(clientFrame(ws.OpContinuation, false, ours1[10:40]), false)
	add(clientFrame(ws.OpContinuation, true, ours1[40:]), false)
	add(clientFrame(ws.OpBinary, false, foreign[:20]), false)
	add(clientFrame(ws.OpContinuation, true, foreign[20:]), false)
	want = appendWSHeader(want, ws.OpText, len(foreign), true)
	want = append(want, foreign...)
	bin := clientFrame(ws.OpBinary, true, binary)
	add(bin, false)
	want = append(want, 0x80|byte(ws.OpText))
	want = append(want, bin[1:]...)
	add(clientFrame(ws.OpPong, true, "pong"), false)
	add(clientFrame(ws.OpText, true, ours2), false)
	add(clientFrame(ws.OpText, true, "\r\n\r\n"), true)
	add(closing, true)
	all := upgradeRequest + string(stream)
	go func() {
		for i := 0; i < len(all); i += 7 { // cut mid-header
			peer.Write([]byte(all[i:min(i+7, len(all))]))
			time.Sleep(200 * time.Microsecond)
		}
	}()
	first := make([]byte, 4096)
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, err := sc.Read(first)
	if err != nil || string(first[:k]) != upgradeRequest {
		t.Fatalf("first read %q, %v: want the upgrade request alone", first[:k], err)
	}
	expectRead(t, sc, string(want), 16)
	expect200(t, tx1)
	expect200(t, tx2)
	peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, payload := range []string{"ping-1", "ping-2"} {
		f, err := ws.ReadFrame(peer)
		if err != nil {
			t.Fatal(err)
		}
		if f.Header.OpCode != ws.OpPong || f.Header.Masked || string(f.Payload) != payload {
			t.Errorf("answer to a ping: %+v %q, want an unmasked pong %q", f.Header, f.Payload, payload)
		}
	}
}

// TestWSConnWrites: sipgo's upgrade response goes out as written, then
// its frames (header and payload in two writes) and NOTIFYs written at
// once from many goroutines all arrive as whole frames, none inside
// another; a NOTIFY is one unmasked text frame.
func TestWSConnWrites(t *testing.T) {
	sc, peer, _ := connPairOf(t, "WS")
	const response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	for i := 0; i < len(response); i += 10 {
		if _, err := sc.Write([]byte(response[i:min(i+10, len(response))])); err != nil {
			t.Fatal(err)
		}
	}
	const writers, each = 8, 200
	wait := writeFromMany(t, writers, each, func(w int, msg []byte) error {
		if w == 0 { // as sipgo writes: ws.WriteFrame, header then payload
			return ws.WriteFrame(sc, ws.NewTextFrame(msg))
		}
		return sc.write(msg)
	})
	r := bufio.NewReader(peer)
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	head := make([]byte, len(response))
	if _, err := io.ReadFull(r, head); err != nil || string(head) != response {
		t.Fatalf("upgrade response %q, %v", head, err)
	}
	for seen := 0; seen < writers*each; seen++ {
		f, err := ws.ReadFrame(r)
		if err != nil {
			t.Fatalf("after %d frames: %v", seen, err)
		}
		p := f.Payload
		if !f.Header.Fin || f.Header.Masked || f.Header.OpCode != ws.OpText ||
			len(p) < 2 || p[0] != '<' || bytes.IndexByte(p, '>') != len(p)-1 {
			t.Fatalf("frame %d: %+v %q", seen, f.Header, p[:min(40, len(p))])
		}
	}
	wait()
}

// TestWSNotifyRoundTrip runs over ws and wss against the notifier's own
// listeners, with a client that frames by hand: a SUBSCRIBE fragmented
// around a ping is answered (sipgo alone drops continuation frames, and
// loses its place at a ping's payload), the NOTIFY comes as one text
// frame with a WS or WSS Via of ours, and its 200 OK, fragmented around
// a ping, ends the transaction; a close frame closes the connection,
// which is then forgotten.
func TestWSNotifyRoundTrip(t *testing.T) {
	pki := siptest.NewPKI(t)
	h := newHarness(t, Config{Listen: allListeners, TLSCert: pki.CertFile, TLSKey: pki.KeyFile}, tAlice)
	for _, network := range []string{"ws", "wss"} {
		t.Run(network, func(t *testing.T) {
			d := ws.Dialer{Protocols: []string{"sip"}, TLSConfig: pki.ClientConfig(false)}
			conn, br, _, err := d.Dial(t.Context(), network+"://"+h.addr(network))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var r io.Reader = conn
			if br != nil {
				r = io.MultiReader(br, conn)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			send := func(frames ...[]byte) {
				t.Helper()
				for _, f := range frames {
					if _, err := conn.Write(f); err != nil {
						t.Fatal(err)
					}
				}
			}
			// read returns the next frame's opcode and payload.
			read := func() (ws.OpCode, string) {
				t.Helper()
				f, err := ws.ReadFrame(r)
				if err != nil {
					t.Fatal(err)
				}
				if f.Header.Masked || !f.Header.Fin {
					t.Fatalf("server frame %+v", f.Header)
				}
				return f.Header.OpCode, string(f.Payload)
			}
			callID := "wsrt-" + network
			subscribe := "SUBSCRIBE sip:alice@example.com SIP/2.0\r\n" +
				"Via: SIP/2.0/" + strings.ToUpper(network) + " df7jal23ls0d.invalid;branch=z9hG4bKwsrt" + network + "\r\n" +
				"Max-Forwards: 70\r\nTo: <sip:alice@example.com>\r\nFrom: <sip:watcher@example.com>;tag=wsrt\r\n" +
				"Call-ID: " + callID + "\r\nCSeq: 1 SUBSCRIBE\r\n" +
				"Contact: <sip:watcher@df7jal23ls0d.invalid;transport=ws>\r\nEvent: reg\r\nExpires: 600\r\n" +
				"Accept: application/reginfo+xml\r\nContent-Length: 0\r\n\r\n"
			send(clientFrame(ws.OpText, false, subscribe[:50]), clientFrame(ws.OpPing, true, "p1"),
				clientFrame(ws.OpContinuation, true, subscribe[50:]))
			var notify string
			answered, ponged := false, false
			for notify == "" || !answered || !ponged {
				switch op, msg := read(); {
				case op == ws.OpPong && msg == "p1":
					ponged = true
				case op == ws.OpText && strings.HasPrefix(msg, "SIP/2.0 200 "):
					answered = true
				case op == ws.OpText && strings.HasPrefix(msg, "NOTIFY "):
					notify = msg
				default:
					t.Fatalf("unexpected frame %v %q", op, msg)
				}
			}
			branch := topViaBranch([]byte(notify))
			wantVia := "Via: SIP/2.0/" + strings.ToUpper(network) + " "
			if !strings.Contains(notify, wantVia) || !bytes.HasPrefix(branch, []byte(h.n.udpTxs.prefix)) {
				t.Fatalf("NOTIFY without our %s Via:\n%s", wantVia, notify)
			}
			if h.n.udpTxs.running() != 1 {
				t.Fatalf("%d lean transactions running, want the NOTIFY's", h.n.udpTxs.running())
			}
			ok := append200(nil, []byte(notify))
			send(clientFrame(ws.OpText, false, string(ok[:30])), clientFrame(ws.OpPing, true, "p2"),
				clientFrame(ws.OpContinuation, true, string(ok[30:])))
			siptest.Eventually(t, func() bool { return h.n.udpTxs.running() == 0 }, "the 200 OK ends the NOTIFY transaction")
			if op, msg := read(); op != ws.OpPong || msg != "p2" {
				t.Fatalf("frame %v %q, want the pong to p2", op, msg)
			}
			key := strings.ToUpper(network)
			if h.n.conns.get(key, conn.LocalAddr().String()) == nil {
				t.Fatal("connection not registered")
			}
			send(clientFrame(ws.OpClose, true, "\x03\xe8"))
			if _, err := io.Copy(io.Discard, r); err != nil {
				t.Fatalf("after a close frame: %v, want the connection closed", err)
			}
			siptest.Eventually(t, func() bool { return h.n.conns.get(key, conn.LocalAddr().String()) == nil }, "closed connection forgotten")
		})
	}
}

// memConn is a connection whose peer's bytes are r, read at most chunk
// at a time, and whose writes are dropped: only what a streamConn calls.
type memConn struct {
	net.Conn // nil: the methods below are all a streamConn uses
	r        io.Reader
	chunk    int
}

func (m *memConn) Read(b []byte) (int, error)        { return m.r.Read(b[:min(len(b), m.chunk)]) }
func (m *memConn) Write(b []byte) (int, error)       { return len(b), nil }
func (m *memConn) SetWriteDeadline(time.Time) error  { return nil }
func (m *memConn) Close() error                      { return nil }
func (m *memConn) RemoteAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060} }
func (m *memConn) LocalAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080} }
func (m *memConn) SetReadDeadline(t time.Time) error { return nil }
func (m *memConn) SetDeadline(t time.Time) error     { return nil }

// FuzzWSConnRead: whatever a WebSocket client sends after its upgrade
// request, however the reads cut it, reading it ends (at the end of the
// input) without a panic, and what sipgo gets is never more than what
// came: frames are passed on, joined or taken out, never grown.
func FuzzWSConnRead(f *testing.F) {
	txs := newUDPTxs()
	ours := ourResponse(txs, &udpTx{id: 1})
	f.Add(clientFrame(ws.OpText, true, ours), uint8(7))
	f.Add(append(clientFrame(ws.OpText, false, ours[:9]), clientFrame(ws.OpContinuation, true, ours[9:])...), uint8(3))
	f.Add(append(clientFrame(ws.OpPing, true, "x"), clientFrame(ws.OpBinary, true, "SUBSCRIBE sip:a@x SIP/2.0\r\n\r\n")...), uint8(1))
	f.Add(clientFrame(ws.OpClose, true, "\x03\xe8"), uint8(200))
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4}, uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		in := upgradeRequest + string(data)
		c := &memConn{r: strings.NewReader(in), chunk: int(chunk) + 1}
		sc := newStreamConn(c, "WS", txs, &streamConns{})
		buf := make([]byte, 4096)
		got := 0
		for range 4 * len(in) {
			k, err := sc.Read(buf)
			got += k
			if err != nil {
				if got > len(in) {
					t.Fatalf("sipgo read %d bytes of %d sent", got, len(in))
				}
				return
			}
		}
		t.Fatal("reading never ended")
	})
}
