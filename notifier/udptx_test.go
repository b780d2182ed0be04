package notifier

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func TestTopViaBranch(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5065;rport=5065;branch=z9hG4bKrb1.a\r\nCSeq: 2 NOTIFY\r\n\r\n", "z9hG4bKrb1.a"},
		{"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP h;Branch = z9hG4bKx , SIP/2.0/UDP o;branch=z9hG4bKy\r\n\r\n", "z9hG4bKx"},
		{"SIP/2.0 200 OK\r\nTo: <sip:a@b>\r\nVIA : SIP/2.0/UDP h;received=1.2.3.4;branch=z9hG4bKq\r\nVia: SIP/2.0/UDP p;branch=z9hG4bKr\r\n\r\n", "z9hG4bKq"},
		{"SIP/2.0 200 OK\r\nTo: <sip:a@b>\r\n\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKbody\r\n", ""}, // in the body
		{"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n", ""},
		{"SIP/2.0 200 OK", ""},
	} {
		if got := string(topViaBranch([]byte(tc.msg))); got != tc.want {
			t.Errorf("topViaBranch(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}

func TestTopViaSentBy(t *testing.T) {
	for _, tc := range []struct{ msg, sentBy, branch string }{
		{"SUBSCRIBE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5070;rport;branch=z9hG4bKa\r\n\r\n", "192.0.2.1:5070", "z9hG4bKa"},
		{"SUBSCRIBE sip:a@b SIP/2.0\r\nv: SIP / 2.0 / UDP [::1]:5060 ;branch=z9hG4bKb\r\n\r\n", "[::1]:5060", "z9hG4bKb"},
		{"SUBSCRIBE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP\r\n\r\n", "", ""},
		{"SUBSCRIBE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h.example;received=192.0.2.9\r\n\r\n", "h.example", ""},
	} {
		sentBy, branch := topVia([]byte(tc.msg))
		if string(sentBy) != tc.sentBy || string(branch) != tc.branch {
			t.Errorf("topVia(%q) = %q, %q; want %q, %q", tc.msg, sentBy, branch, tc.sentBy, tc.branch)
		}
	}
}

// udpTxHarness is a Notifier reduced to its UDP transaction layer, on a
// loopback socket read the way sipgo reads it, and a raw peer.
type udpTxHarness struct {
	n        *Notifier
	peer     *net.UDPConn
	local    netip.AddrPort
	passed   chan []byte // what the wrapped socket handed to "sipgo"
	fellBack chan *sip.Request
}

type doerFunc func(context.Context, *sip.Request) (*sip.Response, error)

func (f doerFunc) Do(ctx context.Context, r *sip.Request) (*sip.Response, error) { return f(ctx, r) }

// loopbackUDP is a UDP socket on 127.0.0.1, closed at the test's end.
func loopbackUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newUDPTxHarness(t *testing.T) *udpTxHarness {
	t.Helper()
	uc, peer := loopbackUDP(t), loopbackUDP(t)
	local := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	n := &Notifier{udpTxs: newUDPTxs(), lean: true}
	n.udpSockets = []*udpSocket{{UDPConn: uc, local: local, txs: n.udpTxs}}
	n.bound = []ListenAddr{{"udp", local.String()}}
	h := &udpTxHarness{n: n, peer: peer, local: local, passed: make(chan []byte, 16), fellBack: make(chan *sip.Request, 1)}
	n.doer = doerFunc(func(_ context.Context, r *sip.Request) (*sip.Response, error) {
		h.fellBack <- r
		return sip.NewResponse(200, "OK"), nil
	})
	go func() {
		buf := make([]byte, 65535)
		for {
			k, _, err := n.udpSockets[0].ReadFrom(buf)
			if err != nil {
				return
			}
			h.passed <- bytes.Clone(buf[:k])
		}
	}()
	t.Cleanup(func() { uc.Close(); peer.Close() })
	return h
}

// job is a NOTIFY of a dialog with the peer, subscribed to our socket.
func (h *udpTxHarness) job() *job {
	return &job{
		event: "reg", contentType: "application/reginfo+xml", remain: 3600,
		d: dialog{
			callID: "c1@peer", localTag: "lt", remoteTag: "rt",
			localURI:  "sip:alice@example.com",
			remoteURI: "sip:w@example.com",
			target:    sip.Uri{Scheme: "sip", User: "w", Host: "127.0.0.1", Port: h.peer.LocalAddr().(*net.UDPAddr).Port},
			localCSeq: 7, transport: "UDP",
			contact: "<sip:regbridge@127.0.0.1:" + strconv.Itoa(int(h.local.Port())) + ">",
		},
	}
}

// read reads one request at the peer.
func (h *udpTxHarness) read(t *testing.T, within time.Duration) (*sip.Request, []byte, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, 65535)
	h.peer.SetReadDeadline(time.Now().Add(within))
	k, from, err := h.peer.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("peer read: %v", err)
	}
	m, err := sip.ParseMessage(bytes.Clone(buf[:k]))
	if err != nil {
		t.Fatalf("peer got unparsable %q: %v", buf[:k], err)
	}
	return m.(*sip.Request), buf[:k], from
}

// answer sends a response to req from the peer, built as a UAS does.
func (h *udpTxHarness) answer(t *testing.T, req *sip.Request, code int, reason string, extra ...sip.Header) {
	t.Helper()
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, x := range extra {
		res.AppendHeader(x)
	}
	if _, err := h.peer.WriteToUDPAddrPort([]byte(res.String()), h.local); err != nil {
		t.Fatal(err)
	}
}

func (h *udpTxHarness) do(t *testing.T, j *job) chan result {
	out := make(chan result, 1)
	go func() {
		res, err := h.n.send(t.Context(), j, []byte("<reginfo/>"))
		out <- result{res, err}
	}()
	return out
}

type result struct {
	res *sip.Response
	err error
}

func shortTimers(t *testing.T) {
	sip.SetTimers(20*time.Millisecond, 80*time.Millisecond, 100*time.Millisecond)
	t.Cleanup(func() { sip.SetTimers(500*time.Millisecond, 4*time.Second, 5*time.Second) })
}

// TestUDPTxRoundTrip: the NOTIFY goes out with our Via from our listener;
// the 200 is taken by the transaction and never reaches sipgo, nor does
// its retransmission; a request from the peer still does.
func TestUDPTxRoundTrip(t *testing.T) {
	h := newUDPTxHarness(t)
	out := h.do(t, h.job())
	req, raw, from := h.read(t, 5*time.Second)
	if from != h.local {
		t.Fatalf("NOTIFY came from %s, want the listener %s", from, h.local)
	}
	via := req.Via()
	if via == nil || via.Transport != "UDP" || via.Port != int(h.local.Port()) || !via.Params.Has("rport") {
		t.Fatalf("Via = %v", via)
	}
	if br, _ := via.Params.Get("branch"); !strings.HasPrefix(br, h.n.udpTxs.prefix) {
		t.Fatalf("branch %q lacks our prefix %q", br, h.n.udpTxs.prefix)
	}
	if !bytes.HasPrefix(raw, []byte("NOTIFY sip:w@127.0.0.1:")) || !bytes.HasSuffix(raw, []byte("\r\n\r\n<reginfo/>")) ||
		req.GetHeader("Subscription-State").Value() != "active;expires=3600" || req.CSeq().SeqNo != 7 {
		t.Fatalf("wire form:\n%s", raw)
	}
	if cl := req.ContentLength(); cl == nil || int(*cl) != len("<reginfo/>") {
		t.Fatalf("Content-Length = %v", cl)
	}
	h.answer(t, req, 200, "OK")
	r := <-out
	if r.err != nil || r.res.StatusCode != 200 || !r.res.IsSuccess() {
		t.Fatalf("Do = %v, %v", r.res, r.err)
	}
	h.answer(t, req, 200, "OK") // a retransmitted 200: absorbed
	if _, err := h.peer.WriteToUDPAddrPort([]byte("OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKother\r\n\r\n"), h.local); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-h.passed:
		if !bytes.HasPrefix(m, []byte("OPTIONS ")) {
			t.Fatalf("passed to sipgo: %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the peer's request never reached sipgo")
	}
}

// TestUDPTxRetransmits: Timer E resends the same bytes until an answer,
// at T1 then doubling; a provisional response does not end it; a
// non-2xx final comes back parsed in full.
func TestUDPTxRetransmits(t *testing.T) {
	shortTimers(t)
	h := newUDPTxHarness(t)
	out := h.do(t, h.job())
	req, first, _ := h.read(t, 5*time.Second)
	_, again, _ := h.read(t, 5*time.Second)
	if !bytes.Equal(first, again) {
		t.Fatalf("retransmission differs:\n%s\n---\n%s", first, again)
	}
	h.answer(t, req, 100, "Trying")
	h.read(t, 5*time.Second) // still retransmitted, now at T2
	select {
	case r := <-out:
		t.Fatalf("ended by a provisional response: %v %v", r.res, r.err)
	default:
	}
	h.answer(t, req, 401, "Unauthorized", sip.NewHeader("WWW-Authenticate", `Digest realm="r", nonce="n"`))
	r := <-out
	if r.err != nil || r.res.StatusCode != 401 || r.res.GetHeader("WWW-Authenticate") == nil {
		t.Fatalf("Do = %v, %v", r.res, r.err)
	}
}

// TestUDPTxTimerF: no answer ends the transaction with sip's transaction
// timeout after 64*T1, which the notifier treats as Timer F.
func TestUDPTxTimerF(t *testing.T) {
	shortTimers(t)
	h := newUDPTxHarness(t)
	start := time.Now()
	r := <-h.do(t, h.job())
	if !isTimeout(r.err) || !errors.Is(r.err, sip.ErrTransactionTimeout) {
		t.Fatalf("Do = %v, %v; want a transaction timeout", r.res, r.err)
	}
	if took := time.Since(start); took < sip.Timer_F {
		t.Fatalf("gave up after %v, before Timer F (%v)", took, sip.Timer_F)
	}
	sent := 0
	for {
		h.peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := h.peer.ReadFromUDPAddrPort(make([]byte, 65535)); err != nil {
			break
		}
		sent++
	}
	// T1=20ms doubling to T2=80ms over 1280ms: 1 + 1+1+1 + 14 or so.
	if sent < 8 || sent > 24 {
		t.Fatalf("%d transmissions in Timer F, want about 17", sent)
	}
}

// TestUDPTxFallsBack: what the lean path cannot route goes to sipgo, as
// the same NOTIFY.
func TestUDPTxFallsBack(t *testing.T) {
	h := newUDPTxHarness(t)
	for name, mod := range map[string]func(*job){
		"tcp":      func(j *job) { j.d.transport = "TCP" },
		"hostname": func(j *job) { j.d.target.Host = "subscriber.example" },
		"maddr":    func(j *job) { j.d.target.UriParams = sip.HeaderParams{{K: "maddr", V: "192.0.2.9"}} },
	} {
		j := h.job()
		mod(j)
		if _, err := h.n.send(t.Context(), j, []byte("<reginfo/>")); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		select {
		case req := <-h.fellBack:
			if req.CallID().Value() != "c1@peer" || string(req.Body()) != "<reginfo/>" || req.Transport() != j.d.transport {
				t.Fatalf("%s: sipgo got\n%s", name, req)
			}
		default:
			t.Fatalf("%s: not sent through sipgo", name)
		}
	}
}

// BenchmarkNotifyConstruction measures what every UDP NOTIFY costs before
// the socket: its wire form written from the dialog (hopOf, appendNotify)
// with our Via, for a partial document with one contact. The body's
// rendering is BenchmarkAppendReginfo.
func BenchmarkNotifyConstruction(b *testing.B) {
	j := job{
		event: "reg", contentType: "application/reginfo+xml", remain: 3599,
		d: dialog{
			callID: "a84b4c76e66710@pc33.example.com", localTag: "a6c85cf", remoteTag: "1928301774",
			localURI:   "sip:alice@example.com",
			remoteURI:  "sip:watcher@example.com",
			remoteName: "Watcher",
			target:     sip.Uri{Scheme: "sip", User: "watcher", Host: "198.51.100.7", Port: 5060},
			localCSeq:  101, transport: "UDP", source: "198.51.100.7:5060", symmetric: true,
			contact: "<sip:regbridge@192.0.2.1:5065>",
		},
	}
	sock := &udpSocket{local: netip.MustParseAddrPort("192.0.2.1:5065")}
	prefix := newUDPTxs().prefix
	body := benchReginfoBody()
	var wire []byte
	b.ReportAllocs()
	for b.Loop() {
		h := hopOf(&j.d)
		wire = appendNotify(wire[:0], &j, &h, via{proto: "UDP", sentBy: sentBy(j.d.contact, sock.local.String()), branch: prefix, id: 1}, body)
	}
	b.SetBytes(int64(len(wire)))
}

// TestConsume200AllocatesNothing: handing a 200 OK to its NOTIFY
// transaction (status, top Via, branch, the table, the shared response)
// allocates nothing; it runs for every NOTIFY.
func TestConsume200AllocatesNothing(t *testing.T) {
	const runs = 100
	txs := newUDPTxs()
	// Transactions and their 200s are made first (begin may allocate:
	// sync.Pool drops items under -race); only the reading is measured.
	var (
		open []*udpTx
		oks  [][]byte
	)
	for range runs + 1 { // AllocsPerRun runs once more to warm up
		tx := txs.begin()
		open = append(open, tx)
		oks = append(oks, []byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5065;rport=5065;received=127.0.0.1;branch="+
			txs.prefix+strconv.FormatUint(tx.id, 16)+"\r\nCSeq: 2 NOTIFY\r\nContent-Length: 0\r\n\r\n"))
	}
	i, answered := 0, 0
	n := testing.AllocsPerRun(runs, func() {
		if txs.consume(oks[i]) {
			select {
			case res := <-open[i].res:
				if res.StatusCode == 200 {
					answered++
				}
			default:
			}
		}
		i++
	})
	for _, tx := range open {
		txs.end(tx)
	}
	if answered != runs+1 {
		t.Fatalf("%d of %d 200s reached their transaction", answered, runs+1)
	}
	if n != 0 {
		t.Errorf("%v allocations per 200 OK, want 0", n)
	}
}
