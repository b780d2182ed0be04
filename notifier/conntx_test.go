package notifier

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/gobwas/ws"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// TestConnTxOnSubscriberConnection: over TCP, TLS, WS and WSS a NOTIFY on
// the subscriber's connection carries our Via (its transport, our branch
// prefix); the 200 OK is taken by the lean transaction, not by sipgo (the
// subscription goes on, and no transaction is left running), and a
// SUBSCRIBE on the same connection still reaches the handler.
func TestConnTxOnSubscriberConnection(t *testing.T) {
	pki := siptest.NewPKI(t)
	h := newHarness(t, Config{Listen: allListeners, TLSCert: pki.CertFile, TLSKey: pki.KeyFile}, tAlice)
	for _, network := range []string{"tcp", "tls", "ws", "wss"} {
		t.Run(network, func(t *testing.T) {
			p := siptest.New(t, network, h.addr(network), siptest.WithTLS(pki.ClientConfig(false)))
			if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
				t.Fatalf("SUBSCRIBE: %d %s", res.StatusCode, res.Reason)
			}
			n := next(t, p)
			p.Check(n, 0, "full", "active;expires=")
			v := n.Req.Via()
			if want := strings.ToUpper(network); v == nil || v.Transport != want || !strings.HasPrefix(v.Params.GetOr("branch", ""), h.n.udpTxs.prefix) {
				t.Fatalf("NOTIFY Via %v, want %s with branch prefix %s", v, want, h.n.udpTxs.prefix)
			}
			c2 := tAlice
			c2.Key, c2.URI, c2.CallID = "uloc-ctx-"+network, "sip:alice@192.0.2.30", "ctx-"+network
			h.br.Apply(t.Context(), source.Batch{Contacts: []source.Contact{c2}})
			p.Check(next(t, p), 1, "partial", "active;expires=")
			res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "0"))
			if res.StatusCode != 200 {
				t.Fatalf("unsubscribe: %d", res.StatusCode)
			}
			p.Check(next(t, p), 2, "full", "terminated;reason=timeout")
			siptest.Eventually(t, func() bool { return h.n.udpTxs.running() == 0 }, "every NOTIFY transaction ended by its 200")
		})
	}
}

// loopbackTCP is both ends of a TCP connection on 127.0.0.1: the
// accepted one and the dialling one.
func loopbackTCP(tb testing.TB) (accepted, dialled net.Conn) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	dialled, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	accepted, err = ln.Accept()
	if err != nil {
		tb.Fatal(err)
	}
	return accepted, dialled
}

// connPair is a streamConn over one end of a loopback TCP connection and
// the other end, as the peer.
func connPair(t *testing.T) (*streamConn, net.Conn, *udpTxs) {
	t.Helper()
	return connPairOf(t, "TCP")
}

// connPairOf is connPair with the streamConn's transport proto (TCP, or
// WS for one that frames).
func connPairOf(t *testing.T, proto string) (*streamConn, net.Conn, *udpTxs) {
	t.Helper()
	c, peer := loopbackTCP(t)
	txs := newUDPTxs()
	conns := &streamConns{}
	sc := newStreamConn(c, proto, txs, conns)
	conns.add(sc)
	t.Cleanup(func() { sc.Close(); peer.Close() })
	return sc, peer, txs
}

// TestStreamConnFraming: what the peer sends reaches sipgo's reader byte
// for byte, minus the responses to our transactions, however TCP cuts
// the stream; a double CRLF keep-alive is read on its own.
func TestStreamConnFraming(t *testing.T) {
	sc, peer, txs := connPair(t)
	tx := txs.begin()
	defer txs.end(tx)
	subscribe := "SUBSCRIBE sip:a@x SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKs1\r\nContent-Length: 5\r\n\r\nhello"
	foreign := "SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKother\r\nl: 0\r\n\r\n"
	ours := fmt.Sprintf("SIP/2.0 200 OK\r\nv: SIP/2.0/TCP 127.0.0.1:5060;branch=%s%x\r\nContent-Length: 0\r\n\r\n", txs.prefix, tx.id)
	stream := "\r\n\r\n" + subscribe + ours + foreign
	go func() {
		for i := 0; i < len(stream); i += 7 { // cut mid-line
			peer.Write([]byte(stream[i:min(i+7, len(stream))]))
			time.Sleep(time.Millisecond)
		}
	}()
	first := make([]byte, 100)
	k, err := sc.Read(first)
	if err != nil || string(first[:k]) != "\r\n" && string(first[:k]) != "\r\n\r\n" {
		t.Fatalf("first read %q, %v: want the keep-alive alone", first[:k], err)
	}
	want := strings.TrimPrefix(stream[k:], "\r\n")
	want = strings.Replace(want, ours, "", 1)
	expectRead(t, sc, want, 16)
	expect200(t, tx)
}

// expect200 waits for the 200 OK of transaction tx.
func expect200(t *testing.T, tx *udpTx) {
	t.Helper()
	select {
	case res := <-tx.res:
		if res.StatusCode != 200 {
			t.Errorf("transaction got %d", res.StatusCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("our 200 OK never reached the transaction")
	}
}

// TestStreamConnUnframed: a message without Content-Length cannot be
// framed; from there on every byte goes to sipgo as read, responses of
// ours included, and sipgo decides (it refuses such a message, RFC 3261
// 7.5, and closes the connection, which ends our transactions on it).
func TestStreamConnUnframed(t *testing.T) {
	sc, peer, txs := connPair(t)
	tx := txs.begin()
	defer txs.end(tx)
	bare := "OPTIONS sip:a@x SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1;branch=z9hG4bKo1\r\n\r\n"
	ours := fmt.Sprintf("SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 127.0.0.1;branch=%s%x\r\nContent-Length: 0\r\n\r\n", txs.prefix, tx.id)
	if _, err := peer.Write([]byte(bare + ours)); err != nil {
		t.Fatal(err)
	}
	expectRead(t, sc, bare+ours, 64)
}

// expectRead reads from sc, chunk bytes at a time, what sipgo would read,
// and checks it is want.
func expectRead(t *testing.T, sc net.Conn, want string, chunk int) {
	t.Helper()
	got := make([]byte, 0, len(want))
	buf := make([]byte, chunk)
	sc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(got) < len(want) {
		k, err := sc.Read(buf)
		got = append(got, buf[:k]...)
		if err != nil {
			t.Fatalf("read: %v after %q", err, got)
		}
	}
	if string(got) != want {
		t.Errorf("sipgo read %q, want %q", got, want)
	}
}

// TestStreamConnBatchedWrites: NOTIFYs written at once from many
// goroutines all arrive whole, none interleaved with another.
func TestStreamConnBatchedWrites(t *testing.T) {
	sc, peer, _ := connPair(t)
	const writers, each = 16, 200
	wait := writeFromMany(t, writers, each, func(_ int, msg []byte) error { return sc.write(msg) })
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(peer)
		done <- b
	}()
	wait()
	sc.Close()
	got := <-done
	seen := 0
	for len(got) > 0 {
		end := bytes.IndexByte(got, '>')
		if got[0] != '<' || end < 0 {
			t.Fatalf("interleaved at %q", got[:min(40, len(got))])
		}
		seen++
		got = got[end+1:]
	}
	if seen != writers*each {
		t.Errorf("%d messages arrived, want %d", seen, writers*each)
	}
}

// writeFromMany writes each messages "<ww:iiii xx…>" (writer w, message
// i) from writers goroutines at once, through write; the function it
// returns waits until all are written.
func writeFromMany(t *testing.T, writers, each int, write func(w int, msg []byte) error) (wait func()) {
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				msg := fmt.Sprintf("<%02d:%04d%s>", w, i, strings.Repeat("x", 100+i%200))
				if err := write(w, []byte(msg)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	return wg.Wait
}

// TestConnTxConnectionLost: a transaction whose connection closes ends at
// once with errConnectionLost, not at Timer F, and the connection is
// forgotten, so the next NOTIFY goes through sipgo (to the Contact).
func TestConnTxConnectionLost(t *testing.T) {
	sc, peer, txs := connPair(t)
	n := &Notifier{udpTxs: txs, lean: true}
	out := make(chan error, 1)
	go func() {
		_, err := n.roundTrip(t.Context(), sc, "127.0.0.1:5060", 0, func(b []byte, v via) []byte {
			return append(b, "NOTIFY sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n"...)
		})
		out <- err
	}()
	buf := make([]byte, 100)
	if _, err := peer.Read(buf); err != nil {
		t.Fatal(err)
	}
	sc.Close()
	select {
	case err := <-out:
		if !errors.Is(err, errConnectionLost) {
			t.Errorf("err %v, want errConnectionLost", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("transaction still waiting after its connection closed")
	}
	if sc.conns.get("TCP", sc.RemoteAddr().String()) != nil {
		t.Error("closed connection still registered")
	}
}

func TestFrameContentLength(t *testing.T) {
	tests := []struct {
		hdr  string
		want int
		ok   bool
	}{
		{"SIP/2.0 200 OK\r\nContent-Length: 12\r\n\r\n", 12, true},
		{"SIP/2.0 200 OK\r\ncontent-length:0\r\n\r\n", 0, true},
		{"SIP/2.0 200 OK\r\nl : 3\r\n\r\n", 3, true},
		{"SIP/2.0 200 OK\r\nCall-ID: l\r\n\r\n", 0, false},
		{"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n", 0, false},
		{"SIP/2.0 200 OK\r\nContent-Length: 99999999999\r\n\r\n", 0, false},
	}
	for _, tt := range tests {
		got, ok := frameContentLength([]byte(tt.hdr))
		if got != tt.want || ok != tt.ok {
			t.Errorf("%q: %d %v, want %d %v", tt.hdr, got, ok, tt.want, tt.ok)
		}
	}
}

// BenchmarkNotifyTransaction: one NOTIFY transaction (build, write, the
// 200 OK read and matched) over UDP, TCP, TLS, WS and WSS, from 64
// goroutines at once as the dispatcher runs them, to an in-process peer
// that answers every NOTIFY with a 200 OK (its work is in the figure too,
// alike for all). ns/op compares the cost per NOTIFY; the -sipgo cases run
// the same NOTIFYs as sipgo client transactions (what a NOTIFY on a new
// connection still costs, and every TCP, TLS, WS or WSS NOTIFY on a
// subscriber's connection did before).
func BenchmarkNotifyTransaction(b *testing.B) {
	pki := siptest.NewPKI(b)
	body := benchReginfoBody()
	for _, name := range []string{"udp", "tcp", "tls", "ws", "wss", "tcp-sipgo", "tls-sipgo", "ws-sipgo", "wss-sipgo"} {
		b.Run(name, func(b *testing.B) {
			network, viaSipgo := strings.CutSuffix(name, "-sipgo")
			txs := newUDPTxs()
			n := &Notifier{udpTxs: txs, lean: true}
			var f flow
			var peerAddr string
			switch {
			case network == "udp":
				f = benchUDPFlow(b, txs)
			case viaSipgo:
				peerAddr = benchStreamPeer(b, network, pki)
			default:
				f = benchStreamFlow(b, txs, network, pki)
			}
			j := job{
				event: "reg", contentType: "application/reginfo+xml", remain: 3599,
				d: dialog{
					callID: "a84b4c76e66710@pc33.example.com", localTag: "a6c85cf", remoteTag: "1928301774",
					localURI: "sip:alice@example.com", remoteURI: "sip:watcher@example.com",
					target:    sip.Uri{Scheme: "sip", User: "watcher", Host: "127.0.0.1", Port: 5060},
					localCSeq: 101, transport: strings.ToUpper(network),
					contact: "<sip:regbridge@127.0.0.1:5065>",
				},
			}
			h := hopOf(&j.d)
			var doer Doer
			if viaSipgo {
				cfg := pki.ClientConfig(false)
				cfg.ServerName = "localhost"
				ua, err := sipgo.NewUA(sipgo.WithUserAgenTLSConfig(cfg), sipgo.WithUserAgentParser(ownParser))
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { ua.Close() })
				client, err := sipgo.NewClient(ua)
				if err != nil {
					b.Fatal(err)
				}
				doer = clientDoer{client}
			}
			one := func() (*sip.Response, error) {
				if !viaSipgo {
					return n.roundTrip(context.Background(), f, "127.0.0.1:5065", 0, func(buf []byte, v via) []byte {
						return appendNotify(buf, &j, &h, v, body)
					})
				}
				m, err := ownParser.ParseSIP(appendNotify(nil, &j, &h, via{}, body))
				if err != nil {
					return nil, err
				}
				req := m.(*sip.Request)
				req.SetTransport(j.d.transport)
				req.SetDestination(peerAddr)
				return doer.Do(context.Background(), req)
			}
			if _, err := one(); err != nil { // sipgo: dial before the clock runs
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(64 / max(1, runtime.GOMAXPROCS(0)))
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					res, err := one()
					if err != nil || res.StatusCode != 200 {
						b.Errorf("NOTIFY: %v %v", res, err)
						return
					}
				}
			})
		})
	}
}

// append200 appends a 200 OK to the request req (its Via lines copied).
func append200(dst, req []byte) []byte {
	dst = append(dst, "SIP/2.0 200 OK\r\n"...)
	for line := range bytes.SplitSeq(req, []byte("\r\n")) {
		if len(line) == 0 {
			break
		}
		if bytes.HasPrefix(line, []byte("Via:")) || bytes.HasPrefix(line, []byte("Call-ID:")) || bytes.HasPrefix(line, []byte("CSeq:")) {
			dst = append(dst, line...)
			dst = append(dst, "\r\n"...)
		}
	}
	return append(dst, "Content-Length: 0\r\n\r\n"...)
}

// benchUDPFlow is a UDP listener whose reader feeds txs, towards a peer
// answering every datagram.
func benchUDPFlow(b *testing.B, txs *udpTxs) flow {
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	_ = uc.SetReadBuffer(4 << 20)
	_ = peer.SetReadBuffer(4 << 20)
	b.Cleanup(func() { uc.Close(); peer.Close() })
	sock := &udpSocket{UDPConn: uc, local: uc.LocalAddr().(*net.UDPAddr).AddrPort(), txs: txs}
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := sock.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		buf, out := make([]byte, 65535), make([]byte, 0, 512)
		for {
			k, from, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			out = append200(out[:0], buf[:k])
			_, _ = peer.WriteToUDPAddrPort(out, from)
		}
	}()
	return udpFlow{sock, peer.LocalAddr().(*net.UDPAddr).AddrPort()}
}

// benchStreamFlow is an accepted TCP, TLS, WS or WSS connection as
// regbridge wraps it (a WebSocket one after its upgrade), with sipgo's
// reader replaced by one that discards, and the peer at the other end
// answering every NOTIFY, one write per read.
func benchStreamFlow(b *testing.B, txs *udpTxs, network string, pki *siptest.PKI) flow {
	c, peer := loopbackTCP(b)
	if network == "tls" || network == "wss" {
		cert, err := tls.LoadX509KeyPair(pki.CertFile, pki.KeyFile)
		if err != nil {
			b.Fatal(err)
		}
		srv := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		cfg := pki.ClientConfig(false)
		cfg.ServerName = "localhost"
		cli := tls.Client(peer, cfg)
		errc := make(chan error, 1)
		go func() { errc <- srv.Handshake() }()
		if err := cli.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		c, peer = srv, cli
	}
	sc := newStreamConn(c, strings.ToUpper(network), txs, &streamConns{})
	b.Cleanup(func() { sc.Close(); peer.Close() })
	var answers io.Reader = peer
	if sc.ws != nil {
		errc := make(chan error, 1)
		go func() { _, err := ws.Upgrade(sc); errc <- err }()
		u, _ := url.Parse("ws://localhost/")
		br, _, err := ws.Dialer{}.Upgrade(peer, u)
		if err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		if br != nil {
			answers = io.MultiReader(br, peer)
		}
	}
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := sc.Read(buf); err != nil {
				return
			}
		}
	}()
	if sc.ws != nil {
		go answerWS(peer, answers, true)
	} else {
		go answerStream(peer)
	}
	return sc
}

// benchStreamPeer listens for TCP, TLS, WS or WSS connections and answers
// every NOTIFY on them; it returns its address.
func benchStreamPeer(b *testing.B, network string, pki *siptest.PKI) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	if network == "tls" || network == "wss" {
		cert, err := tls.LoadX509KeyPair(pki.CertFile, pki.KeyFile)
		if err != nil {
			b.Fatal(err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.Cleanup(func() { c.Close() })
			if network == "ws" || network == "wss" {
				go func() {
					if _, err := ws.Upgrade(c); err == nil {
						answerWS(c, c, false)
					}
				}()
				continue
			}
			go answerStream(c)
		}
	}()
	return ln.Addr().String()
}

// answerWS answers every NOTIFY frame read from r (peer's reads) with a
// 200 OK in a text frame of its own, on peer, one write per read; client
// masks the frames (with a zero key), as a WebSocket client must.
func answerWS(peer net.Conn, r io.Reader, client bool) {
	ok := make([]byte, 0, 512)
	answerAll(r, peer, func(out, data []byte) ([]byte, int) {
		f, whole := parseWSFrame(data)
		if !whole || len(data) < f.hlen+f.length {
			return out, 0
		}
		p := data[f.hlen : f.hlen+f.length]
		if f.op != ws.OpText {
			return out, f.hlen + f.length
		}
		if f.masked {
			ws.Cipher(p, f.mask, 0)
		}
		ok = append200(ok[:0], p)
		out = appendWSHeader(out, ws.OpText, len(ok), client)
		return append(out, ok...), f.hlen + f.length
	})
}

// answerStream answers every NOTIFY read from peer with a 200 OK, one
// write per read.
func answerStream(peer net.Conn) {
	answerAll(peer, peer, func(out, data []byte) ([]byte, int) {
		hend := bytes.Index(data, []byte("\r\n\r\n"))
		if hend < 0 {
			return out, 0
		}
		clen, _ := frameContentLength(data[:hend+4])
		if len(data) < hend+4+clen {
			return out, 0
		}
		return append200(out, data[:hend+4]), hend + 4 + clen
	})
}

// answerAll reads from r and, once per read, writes on w what next
// appends for the whole messages at the start of the bytes not used yet
// (next returns how many it used, 0 when it needs more).
func answerAll(r io.Reader, w io.Writer, next func(out, data []byte) ([]byte, int)) {
	buf, out := make([]byte, 256<<10), make([]byte, 0, 64<<10)
	start, end := 0, 0
	for {
		k, err := r.Read(buf[end:])
		if err != nil {
			return
		}
		end += k
		out = out[:0]
		for {
			var used int
			if out, used = next(out, buf[start:end]); used == 0 {
				break
			}
			start += used
		}
		end = copy(buf, buf[start:end])
		start = 0
		if len(out) > 0 {
			if _, err := w.Write(out); err != nil {
				return
			}
		}
	}
}

// running is the number of lean transactions waiting for their response.
func (t *udpTxs) running() int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
