package notifier

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
)

// datagramFixture is a notifier with a UDP listener whose reader the fuzz
// target plays: each input is a datagram from a stranger at src.
type datagramFixture struct {
	n    *Notifier
	sock *udpSocket
	src  netip.AddrPort
	// handled receives once per SUBSCRIBE the UDP table handed to the
	// handler, when the handler has returned.
	handled chan struct{}
	// admitted is what the UDP table's admission answered the last
	// SUBSCRIBE statelessly (nil: it went on to the handler).
	admitted *sip.Response
}

// branchToken in an input stands for a branch of one of our running
// NOTIFY transactions, which the fuzzer could not guess.
const branchToken = "@BRANCH@"

func newDatagramFixture(tb testing.TB) *datagramFixture {
	br := bridge.New(slog.New(slog.DiscardHandler))
	if err := br.Apply(context.Background(), source.Batch{Full: true, Contacts: []source.Contact{tAlice}}); err != nil {
		tb.Fatal(err)
	}
	n, err := New(Config{Listen: ListenAddrs{{"udp", "127.0.0.1:0"}}}, br, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	// NOTIFYs go nowhere: a Contact in fuzzed bytes may name any host.
	n.SetDoer(doerFunc(func(_ context.Context, req *sip.Request) (*sip.Response, error) {
		return sip.NewResponseFromRequest(req, 200, "OK", nil), nil
	}))
	br.Subscribe(n)
	if err := n.Listen(); err != nil {
		tb.Fatal(err)
	}
	// Responses go to the source (or its Via port) on loopback; a sink
	// there reads and drops them.
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	fx := &datagramFixture{n: n, sock: n.udpSockets[0], src: sink.LocalAddr().(*net.UDPAddr).AddrPort(), handled: make(chan struct{}, 1)}
	handle, admit := n.udpSrv.handle, n.udpSrv.admit
	n.udpSrv.handle = func(req *sip.Request, tx sip.ServerTransaction) {
		defer func() { fx.handled <- struct{}{} }()
		handle(req, tx)
	}
	n.udpSrv.admit = func(req *sip.Request) *sip.Response {
		fx.admitted = admit(req)
		return fx.admitted
	}
	tb.Cleanup(func() {
		sink.Close()
		for _, l := range n.listeners {
			if l.packet != nil {
				l.packet.Close()
			}
		}
	})
	return fx
}

// capturedTx is the server transaction sipgo would give a handler; it
// keeps what the handler answers.
type capturedTx struct {
	leanServerTx
	mu        sync.Mutex
	responses []*sip.Response
}

func (c *capturedTx) Respond(res *sip.Response) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.responses = append(c.responses, res)
	return nil
}

// sipgoServes reports whether sipgo's transaction layer would hand req to
// a handler (it drops a request it cannot key, RFC 3261 17.2.3).
func sipgoServes(req *sip.Request) bool {
	via, cseq := req.Via(), req.CSeq()
	if via == nil || cseq == nil {
		return false
	}
	if b, _ := via.Params.Get("branch"); strings.HasPrefix(b, sip.RFC3261BranchMagicCookie) && len(b) > len(sip.RFC3261BranchMagicCookie) {
		return true
	}
	from := req.From()
	if from == nil || req.CallID() == nil {
		return false
	}
	_, ok := from.Params.Get("tag")
	return ok
}

// checkAnswer holds an answer to req to what RFC 3261 8.2.6 asks of a
// response: it parses back as a response with a valid status and carries
// the request's Call-ID, CSeq and top Via branch.
func checkAnswer(t *testing.T, req *sip.Request, raw []byte) *sip.Response {
	t.Helper()
	m, err := sip.ParseMessage(bytes.Clone(raw))
	if err != nil {
		t.Fatalf("answer does not parse (%v):\n%s", err, raw)
	}
	res, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("answer is not a response:\n%s", raw)
	}
	if res.StatusCode == 500 {
		t.Fatalf("500: a handler panicked (answered by the recovery):\n%s", raw)
	}
	if res.StatusCode < 100 || res.StatusCode > 699 {
		t.Fatalf("status %d:\n%s", res.StatusCode, raw)
	}
	if c := req.CallID(); c != nil && (res.CallID() == nil || res.CallID().Value() != c.Value()) {
		t.Fatalf("Call-ID not copied from %q:\n%s", c.Value(), raw)
	}
	if c := req.CSeq(); c != nil && (res.CSeq() == nil || res.CSeq().SeqNo != c.SeqNo || res.CSeq().MethodName != c.MethodName) {
		t.Fatalf("CSeq not copied from %v:\n%s", c, raw)
	}
	if v := req.Via(); v != nil {
		want, _ := v.Params.Get("branch")
		got := ""
		if rv := res.Via(); rv != nil {
			got, _ = rv.Params.Get("branch")
		}
		if got != want {
			t.Fatalf("top Via branch %q, want %q:\n%s", got, want, raw)
		}
	}
	return res
}

// run takes one datagram through everything a UDP listener does with it.
func (fx *datagramFixture) run(t *testing.T, data []byte) {
	n := fx.n
	defer fx.reset()

	// 1. A response to one of our NOTIFY transactions (udptx.go).
	tx := n.udpTxs.begin()
	msg := bytes.ReplaceAll(data, []byte(branchToken), []byte(n.udpTxs.prefix+strconv.FormatUint(tx.id, 16)))
	var code int
	var codeOK bool
	if len(msg) >= 12 && bytes.HasPrefix(msg, []byte("SIP/2.0 ")) { // statusCode's precondition, which consume checks
		code, codeOK = statusCode(msg)
	}
	consumed := n.udpTxs.consume(msg)
	if consumed && !bytes.HasPrefix(msg, []byte("SIP/2.0 ")) {
		t.Fatalf("consume took a datagram that is not a response: %q", msg)
	}
	select {
	case res := <-tx.res:
		if !consumed || !codeOK || res.StatusCode != code || code < 200 || code > 699 {
			t.Fatalf("final response %d handed to a transaction (consumed %v, status line %d %v): %q", res.StatusCode, consumed, code, codeOK, msg)
		}
	default:
	}
	n.udpTxs.end(tx)
	if consumed {
		return
	}

	// 2. A SUBSCRIBE for the lean UDP server transactions (udpsrv.go),
	// else 3. what sipgo parses and hands to the handlers.
	before := n.Count()
	req, refused := (*sip.Request)(nil), false
	fx.admitted = nil
	if n.udpSrv.receive(fx.sock, data, fx.src) {
		m, err := sip.ParseMessage(bytes.Clone(data))
		if err != nil {
			t.Fatalf("the UDP table took a datagram sipgo cannot parse (%v): %q", err, data)
		}
		req = m.(*sip.Request)
		var raw []byte
		if fx.admitted != nil { // refused statelessly, before anything is held
			var w bytes.Buffer
			fx.admitted.StringWrite(&w)
			raw = w.Bytes()
		} else {
			select {
			case <-fx.handled:
			case <-time.After(10 * time.Second):
				t.Fatalf("SUBSCRIBE handler did not return")
			}
			sentBy, branch := topVia(data)
			key := string(branch) + "\x00" + string(sentBy)
			n.udpSrv.mu.Lock()
			if stx := n.udpSrv.m[key]; stx != nil && stx.final {
				raw = stx.res
			}
			n.udpSrv.mu.Unlock()
		}
		if raw == nil {
			refused = true // no answer: nothing may be held
		} else {
			refused = checkAnswer(t, req, raw).StatusCode >= 300
		}
	} else {
		m, err := sip.ParseMessage(bytes.Clone(data))
		r, ok := m.(*sip.Request)
		if err != nil || !ok || !sipgoServes(r) {
			if n.Count() != before {
				t.Fatalf("a datagram nobody handles created a subscription")
			}
			return
		}
		req = r
		r.SetTransport("UDP")
		r.SetSource(fx.src.String())
		r.SetDestination(fx.sock.local.String())
		ctx := &capturedTx{}
		switch r.Method { // as New registers them with sipgo, without the recovery: a panic fails the input
		case sip.SUBSCRIBE:
			answerableOnly(n.onSubscribe)(r, ctx)
		case sip.CANCEL:
			answerableOnly(n.onCancel)(r, ctx)
		case sip.OPTIONS:
			answerableOnly(n.onOptions)(r, ctx)
		case sip.NOTIFY, sip.ACK:
			return // sipgo's own answers, not ours
		default:
			answerableOnly(n.onNoRoute)(r, ctx)
		}
		if len(ctx.responses) == 0 {
			refused = true
		}
		for _, res := range ctx.responses {
			var w bytes.Buffer
			res.StringWrite(&w)
			if checkAnswer(t, r, w.Bytes()).StatusCode >= 300 {
				refused = true
			}
		}
		if r.Method != sip.SUBSCRIBE {
			refused = true // nothing else may create a subscription
		}
	}
	if refused && n.Count() != before {
		t.Fatalf("refused %s created a subscription:\n%s", req.Method, data)
	}
}

// reset forgets every subscription and UDP transaction between inputs.
func (fx *datagramFixture) reset() {
	n := fx.n
	n.subsMu.RLock()
	subs := slices.Collect(maps.Values(n.subs))
	n.subsMu.RUnlock()
	for _, s := range subs {
		n.drop(s)
	}
	n.udpSrv.mu.Lock()
	clear(n.udpSrv.m)
	clear(n.udpSrv.answered)
	n.udpSrv.answered, n.udpSrv.head = n.udpSrv.answered[:0], 0
	n.udpSrv.mu.Unlock()
}

// FuzzSubscribeDatagram sends arbitrary datagrams down the whole UDP
// SUBSCRIBE path: the pre-parsers that read the top Via and status line
// before any parse (consume, statusCode, topVia, receive), sipgo's
// parser, the request checks, the route set of a new dialog and CANCEL
// matching. An answer is a well-formed SIP response to the request (or
// there is none), and a refused request leaves no subscription.
func FuzzSubscribeDatagram(f *testing.F) {
	const peer = "127.0.0.1:5070"
	sub := func(extra string, id int) string { return rawSubscribe(peer, "sip:alice@example.com", extra, id) }
	for _, s := range []string{
		sub("Event: reg\r\n", 1),
		sub("Event: reg\r\nExpires: 0\r\n", 2),
		sub("Event: reg\r\nExpires: 600\r\nRecord-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\nAccept: application/reginfo+xml\r\n", 3),
		sub("Event: presence\r\nAccept: application/pidf+xml\r\n", 4),
		sub("Event: reg;id=7\r\nRequire: eventlist\r\n", 5),
		sub("Event: reg\r\nExpires: 1\r\n", 6),
		strings.Replace(sub("Event: reg\r\n", 7), "To: <sip:alice@example.com>", "To: <sip:alice@example.com>;tag=x1", 1),
		strings.Replace(strings.Replace(sub("", 8), "SUBSCRIBE sip:", "CANCEL sip:", 1), "1 SUBSCRIBE", "1 CANCEL", 1),
		strings.Replace(strings.Replace(sub("", 9), "SUBSCRIBE sip:", "OPTIONS sip:", 1), "1 SUBSCRIBE", "1 OPTIONS", 1),
		strings.Replace(strings.Replace(sub("", 10), "SUBSCRIBE sip:", "MESSAGE sip:", 1), "1 SUBSCRIBE", "1 MESSAGE", 1),
		strings.Replace(sub("Event: reg\r\n", 11), "branch=z9hG4bK-hostile-11", "branch=rfc2543", 1),
		"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5065;branch=" + branchToken + "\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 NOTIFY\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 481 Gone\r\nv: SIP/2.0/UDP 127.0.0.1:5065;branch=" + branchToken + "\r\nCall-ID: x\r\nCSeq: 2 NOTIFY\r\nContent-Length: 0\r\n\r\n",
		"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5065;branch=" + branchToken + "\r\n\r\n",
		"SUBSCRIBE sip:a@b SIP/2.0\r\nv: SIP / 2.0 / UDP [::1]:5060 ;branch=z9hG4bKb\r\n\r\n",
		"\x00\xff",
	} {
		f.Add([]byte(s))
	}
	fx := newDatagramFixture(f)
	f.Fuzz(func(t *testing.T, data []byte) { fx.run(t, data) })
}
