package notifier

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// A SUBSCRIBE over UDP runs a server transaction of our own (RFC 3261
// 17.2.2, non-INVITE) instead of sipgo's, for the same reason the NOTIFYs
// do (udptx.go), and for memory: sipgo keeps each transaction, request
// and response parsed (about 2.2 KB and a timer), for Timer J, 32 s over
// UDP. A burst of 10,000 SUBSCRIBEs/s therefore held about 700 MB. The
// lean transaction keeps only what absorbing a retransmission needs: its
// key, where the response went, and the response's bytes.
//
//   - The listener's reader (udpSocket.ReadFrom) looks at a SUBSCRIBE's
//     top Via before anything is parsed. A retransmission (same branch and
//     sent-by as a running transaction) is answered with the last
//     response sent, or dropped while the handler is still working on the
//     original; it never reaches the handler again.
//   - A new SUBSCRIBE is parsed and first passes the checks that cost
//     nothing to hold (admit: shutdown, the request rates). A refusal
//     there is answered statelessly (RFC 3261 8.2.7): no table entry, no
//     goroutine, so a flood of refused requests holds nothing.
//   - An admitted SUBSCRIBE takes a place in the table, which holds at
//     most max transactions (REGBRIDGE_SUBSCRIBE_MAX_TRANSACTIONS), and
//     is handed to the handler in a goroutine of its own, as sipgo does,
//     at most maxHandling at once. Beyond either bound it gets a
//     stateless 503: what a flood holds is bounded by configuration,
//     whatever its packet rate.
//   - After a final response the transaction lingers for Timer J (sipgo's
//     value, so sip.SetTimers governs it) and is then forgotten by one
//     timer for the whole table, not one per transaction.
//   - Only SUBSCRIBEs whose branch carries the RFC 3261 magic cookie
//     take this path. Anything else (an RFC 2543 branch, no Via, no
//     CSeq, a parse error, another method) is left to sipgo, which
//     answers it as before.
//
// The response goes where sipgo would send it (RFC 3261 18.2.2, RFC 3581
// 4): to the source address of the request, at the source port when the
// top Via has rport and at the Via's port (default 5060) otherwise.

// udpServerTxs is the table of UDP SUBSCRIBE server transactions. mu
// guards all fields.
type udpServerTxs struct {
	handle func(*sip.Request, sip.ServerTransaction)
	// admit returns the response refusing req before anything is held
	// for it, or nil to go on.
	admit func(req *sip.Request) *sip.Response
	// overloaded is called for each SUBSCRIBE refused because the table
	// is full or every handler busy (counted by the notifier).
	overloaded func()
	// max bounds the transactions held, maxHandling those whose handler
	// is still running (a goroutine each).
	max, maxHandling int

	mu sync.Mutex
	m  map[string]*udpServerTx
	// handling counts the transactions whose handler is running.
	handling int
	// answered holds the transactions that sent a final response, in the
	// order they did so (so in order of expiry), from head on.
	answered []*udpServerTx
	head     int
	sweeper  *time.Timer // nil until the first final response
	armed    bool        // the sweeper is scheduled
	// linger is how long an answered transaction is kept: sip.Timer_J
	// when zero (tests shorten it without touching sipgo's globals).
	linger time.Duration
}

// udpServerTx is one SUBSCRIBE transaction.
type udpServerTx struct {
	key     string // branch, NUL, sent-by
	sock    *udpSocket
	dst     netip.AddrPort
	res     []byte    // last response sent, replayed on a retransmission
	final   bool      // res is a final response
	expires time.Time // end of Timer J, once final
}

// sweepEvery is the coarsest step the sweeper takes: a transaction may
// outlive Timer J by up to this much, which only means a very late
// retransmission is still answered.
const sweepEvery = 250 * time.Millisecond

// maxHandling bounds the SUBSCRIBE handlers running at once over UDP. A
// handler's work is bounded (CPU, and at most a credential or
// subscription store call under its timeout of 2 s), so 4096 carry
// 2,000 SUBSCRIBEs/s even when the store takes its full time, while
// their goroutines stay within a few tens of MB.
const maxHandling = 4096

// overloadRetryAfter is the Retry-After of a 503 for a full table: room
// comes back as answered transactions reach the end of Timer J.
const overloadRetryAfter = "5"

func newUDPServerTxs(handle func(*sip.Request, sip.ServerTransaction), max int) *udpServerTxs {
	return &udpServerTxs{handle: handle, max: max, maxHandling: maxHandling, m: make(map[string]*udpServerTx)}
}

// receive takes msg, read from sock and sent from src, if it is a
// SUBSCRIBE for this table, and reports whether it did.
func (t *udpServerTxs) receive(sock *udpSocket, msg []byte, src netip.AddrPort) bool {
	if t == nil || !bytes.HasPrefix(msg, []byte("SUBSCRIBE ")) {
		return false
	}
	sentBy, branch := topVia(msg)
	if len(sentBy) == 0 || len(branch) <= len(sip.RFC3261BranchMagicCookie) ||
		!bytes.HasPrefix(branch, []byte(sip.RFC3261BranchMagicCookie)) {
		return false
	}
	var kb [160]byte
	key := append(append(append(kb[:0], branch...), 0), sentBy...)
	t.mu.Lock()
	if tx, ok := t.m[string(key)]; ok {
		res, dst := tx.res, tx.dst
		t.mu.Unlock()
		if res != nil { // else the handler is still at it: absorb
			_, _ = sock.WriteToUDPAddrPort(res, dst)
		}
		return true
	}
	t.mu.Unlock()

	m, err := sip.ParseMessage(msg)
	if err != nil {
		return false
	}
	req, ok := m.(*sip.Request)
	if !ok || req.Method != sip.SUBSCRIBE || req.CSeq() == nil {
		return false
	}
	via := req.Via()
	if via == nil {
		return false
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port()) // as sipgo prints it
	req.SetTransport("UDP")
	req.SetSource(src.String())
	req.SetDestination(sock.local.String())
	dst := src
	if rport, ok := via.Params.Get("rport"); !ok || rport != "" {
		port := uint16(5060)
		if via.Port > 0 && via.Port <= 65535 {
			port = uint16(via.Port)
		}
		dst = netip.AddrPortFrom(src.Addr(), port)
	}
	if t.admit != nil {
		if res := t.admit(req); res != nil {
			t.reply(sock, dst, res)
			return true
		}
	}
	tx := &udpServerTx{key: string(key), sock: sock, dst: dst}
	t.mu.Lock()
	if _, ok := t.m[tx.key]; ok { // the same request on another listener
		t.mu.Unlock()
		return true
	}
	if len(t.m) >= t.max || t.handling >= t.maxHandling {
		t.mu.Unlock()
		if t.overloaded != nil {
			t.overloaded()
		}
		res := sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", overloadRetryAfter))
		t.reply(sock, dst, res)
		return true
	}
	t.m[tx.key] = tx
	t.handling++
	t.mu.Unlock()
	go t.serve(req, tx)
	return true
}

// reply sends res to dst without a transaction: a retransmission of the
// request is taken as a new one and answered anew.
func (t *udpServerTxs) reply(sock *udpSocket, dst netip.AddrPort, res *sip.Response) {
	w := byteWriter(make([]byte, 0, 512))
	res.StringWrite(&w)
	_, _ = sock.WriteToUDPAddrPort(w, dst)
}

// serve runs the handler; a transaction it left without a final response
// is forgotten then, as sipgo does.
func (t *udpServerTxs) serve(req *sip.Request, tx *udpServerTx) {
	defer func() {
		t.mu.Lock()
		t.handling--
		if !tx.final {
			delete(t.m, tx.key)
		}
		t.mu.Unlock()
	}()
	t.handle(req, &leanServerTx{t: t, tx: tx})
}

// respond sends res in tx and keeps its bytes for retransmissions.
func (t *udpServerTxs) respond(tx *udpServerTx, res *sip.Response) error {
	w := byteWriter(make([]byte, 0, 512))
	res.StringWrite(&w)
	if len(w) > udpMaxMessage {
		return fmt.Errorf("response of %d bytes is over the UDP limit", len(w))
	}
	t.mu.Lock()
	if tx.final {
		t.mu.Unlock()
		return errAnswered
	}
	tx.res = w
	if !res.IsProvisional() {
		linger := t.linger
		if linger == 0 {
			linger = sip.Timer_J
		}
		tx.final = true
		tx.expires = time.Now().Add(linger)
		t.answered = append(t.answered, tx)
		if !t.armed {
			t.armed = true
			if t.sweeper == nil {
				t.sweeper = time.AfterFunc(linger, t.sweep)
			} else {
				t.sweeper.Reset(linger)
			}
		}
	}
	t.mu.Unlock()
	if _, err := tx.sock.WriteToUDPAddrPort(w, tx.dst); err != nil {
		return fmt.Errorf("sending response to %s: %w", tx.dst, err)
	}
	return nil
}

var errAnswered = errors.New("transaction already has a final response")

// sweep forgets the transactions whose Timer J has run out and schedules
// itself for the next one.
func (t *udpServerTxs) sweep() { t.sweepAt(time.Now()) }

// sweepAt is sweep as of now.
func (t *udpServerTxs) sweepAt(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.head < len(t.answered) {
		tx := t.answered[t.head]
		if tx.expires.After(now) {
			break
		}
		delete(t.m, tx.key)
		t.answered[t.head] = nil
		t.head++
	}
	switch {
	case t.head == len(t.answered):
		t.answered, t.head = t.answered[:0], 0
		if cap(t.answered) > 4096 {
			t.answered = nil // a burst is over: give its array back
		}
	case t.head > len(t.answered)/2:
		n := copy(t.answered, t.answered[t.head:])
		clear(t.answered[n:])
		t.answered, t.head = t.answered[:n], 0
	}
	if t.head == len(t.answered) {
		t.armed = false
		return
	}
	t.sweeper.Reset(max(time.Until(t.answered[t.head].expires), sweepEvery))
}

// len returns the number of transactions held.
func (t *udpServerTxs) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// leanServerTx is what the handler answers through. The notifier's
// handlers only call Respond; the rest of sip.ServerTransaction is there
// for the interface and reports the transaction as it stands.
type leanServerTx struct {
	t  *udpServerTxs
	tx *udpServerTx
}

func (l *leanServerTx) Respond(res *sip.Response) error { return l.t.respond(l.tx, res) }

// Terminate forgets the transaction now, so a retransmission would be
// taken as a new request; the notifier never calls it.
func (l *leanServerTx) Terminate() {
	l.t.mu.Lock()
	if l.t.m[l.tx.key] == l.tx {
		delete(l.t.m, l.tx.key)
	}
	l.t.mu.Unlock()
}

// OnTerminate is not supported: it reports the transaction as ended.
func (l *leanServerTx) OnTerminate(sip.FnTxTerminate) bool { return false }

// Done is closed: the handler owns the transaction only until it returns.
func (l *leanServerTx) Done() <-chan struct{} { return closedChan }

func (l *leanServerTx) Err() error { return nil }

// Acks is nil: ACK belongs to INVITE transactions.
func (l *leanServerTx) Acks() <-chan *sip.Request { return nil }

// OnCancel is not supported (a SUBSCRIBE cannot be cancelled, cancel.go).
func (l *leanServerTx) OnCancel(sip.FnTxCancel) bool { return false }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
