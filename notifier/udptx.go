package notifier

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The NOTIFYs regbridge sends over UDP run their own client transactions
// (RFC 3261 17.1.2, non-INVITE) instead of sipgo's. A sipgo client
// transaction per NOTIFY cost about 40% of regbridge's CPU in a fan-out
// (its state machine, timers, goroutines, and the full parse of every
// 200 OK): the lean one here costs a write, a table entry and a wait.
//
//   - The request leaves from the UDP listener the SUBSCRIBE came to
//     (RFC 3581 symmetric response routing works through NATs), with a
//     top Via whose branch is this notifier's prefix plus a counter.
//   - The listener is wrapped (udpSocket) so that its reader takes the
//     responses carrying that prefix before sipgo sees them: only the
//     status line and the top Via's branch are read for a 2xx; anything
//     else is parsed in full, for the digest challenge and the logs.
//   - Timer E retransmits from T1 doubling up to T2 (at T2 once a
//     provisional response came), Timer F (64*T1) ends the transaction
//     with sip.ErrTransactionTimeout; sipgo's timer values are used, so
//     sip.SetTimers governs both. A retransmitted final response that
//     arrives after the transaction ended is absorbed (Timer K's job).
//
// NOTIFYs on a subscriber's TCP, TLS, WS or WSS connection run the same
// transactions (conntx.go). Everything else (a destination that needs
// DNS, a new connection) goes through sipgo's client.

// udpTxs is the table of running lean NOTIFY transactions, over UDP and
// over subscribers' connections (conntx.go) alike.
type udpTxs struct {
	prefix string // branch prefix: magic cookie, "rb", instance token, "."
	next   atomic.Uint64
	shards [udpTxShards]udpTxShard
	pool   sync.Pool // *udpTx
}

const udpTxShards = 32

type udpTxShard struct {
	mu sync.Mutex
	m  map[uint64]*udpTx
	_  [40]byte // keep shards on separate cache lines
}

// udpTx is one transaction: the request's bytes (kept for retransmission)
// and where its final response arrives.
type udpTx struct {
	id          uint64
	buf         []byte
	res         chan *sip.Response // capacity 1: the final response
	provisional atomic.Bool
	timer       *time.Timer
}

func newUDPTxs() *udpTxs {
	token := make([]byte, 4)
	_, _ = rand.Read(token)
	t := &udpTxs{prefix: sip.RFC3261BranchMagicCookie + "rb" + hex.EncodeToString(token) + "."}
	for i := range t.shards {
		t.shards[i].m = make(map[uint64]*udpTx)
	}
	return t
}

// begin registers a new transaction.
func (t *udpTxs) begin() *udpTx {
	tx, _ := t.pool.Get().(*udpTx)
	if tx == nil {
		tx = &udpTx{res: make(chan *sip.Response, 1)}
	}
	tx.id = t.next.Add(1)
	tx.provisional.Store(false)
	sh := &t.shards[tx.id%udpTxShards]
	sh.mu.Lock()
	sh.m[tx.id] = tx
	sh.mu.Unlock()
	return tx
}

// end forgets tx; a response arriving later finds nothing and is dropped.
func (t *udpTxs) end(tx *udpTx) {
	sh := &t.shards[tx.id%udpTxShards]
	sh.mu.Lock()
	delete(sh.m, tx.id)
	sh.mu.Unlock()
	if tx.timer != nil {
		tx.timer.Stop()
	}
	select { // a response that raced the end
	case <-tx.res:
	default:
	}
	if cap(tx.buf) > 8<<10 {
		tx.buf = nil // don't pool the rare huge document
	}
	t.pool.Put(tx)
}

// consume takes msg if it is a response to one of our transactions, and
// reports whether it did. Responses with our branch prefix and no running
// transaction (retransmissions) are consumed too.
func (t *udpTxs) consume(msg []byte) bool {
	if len(msg) < 12 || !bytes.HasPrefix(msg, []byte("SIP/2.0 ")) {
		return false
	}
	branch := topViaBranch(msg)
	if !bytes.HasPrefix(branch, []byte(t.prefix)) {
		return false
	}
	id, err := strconv.ParseUint(string(branch[len(t.prefix):]), 16, 64)
	if err != nil {
		return true // ours in form, not one we made: drop it
	}
	code, ok := statusCode(msg)
	if !ok {
		return true
	}
	var res *sip.Response
	if code >= 200 {
		res = finalResponse(msg, code)
	}
	sh := &t.shards[id%udpTxShards]
	sh.mu.Lock()
	// Under the shard lock, so that end, which deletes under it too,
	// never recycles a transaction a response is still being handed to.
	if tx := sh.m[id]; tx != nil {
		if res == nil {
			tx.provisional.Store(true)
		} else {
			delete(sh.m, id)
			tx.res <- res // never blocks: one final response per registration
		}
	}
	sh.mu.Unlock()
	return true
}

// finalResponse turns a final response into what the dialog reads: a 2xx
// needs only its status (the full parse is skipped), anything else is
// parsed in full, for the digest challenge and the logs.
func finalResponse(msg []byte, code int) *sip.Response {
	if code >= 300 {
		m, err := sip.ParseMessage(bytes.Clone(msg))
		if r, ok := m.(*sip.Response); err == nil && ok {
			r.SetTransport("UDP")
			return r
		}
	}
	if code == 200 {
		return ok200
	}
	res := &sip.Response{StatusCode: code, Reason: "OK"}
	if code != 200 {
		line, _, _ := bytes.Cut(msg[12:], []byte("\r\n"))
		res.Reason = string(line)
	}
	res.SipVersion = "SIP/2.0"
	res.SetTransport("UDP")
	return res
}

// ok200 is what every 200 OK to a NOTIFY becomes: only its status is
// read, so one value, never modified, serves them all.
var ok200 = func() *sip.Response {
	r := &sip.Response{StatusCode: 200, Reason: "OK"}
	r.SipVersion = "SIP/2.0"
	r.SetTransport("UDP")
	return r
}()

// statusCode reads the status code of a response's status line.
func statusCode(msg []byte) (int, bool) {
	c := msg[8:11]
	if c[0] < '1' || c[0] > '6' || c[1] < '0' || c[1] > '9' || c[2] < '0' || c[2] > '9' || msg[11] != ' ' {
		return 0, false
	}
	return int(c[0]-'0')*100 + int(c[1]-'0')*10 + int(c[2]-'0'), true
}

// topViaBranch returns the branch parameter of the first Via of a SIP
// message, or nil.
func topViaBranch(msg []byte) []byte {
	_, branch := topVia(msg)
	return branch
}

// topVia returns the sent-by and the branch parameter of the first Via
// of a SIP message (nil where absent) without parsing the message. Header
// names are case-insensitive and "v" is Via's compact form (RFC 3261
// 7.3.3); a folded Via line is not followed, which leaves such a message
// to sipgo.
func topVia(msg []byte) (sentBy, branch []byte) {
	i := bytes.Index(msg, []byte("\r\n"))
	if i < 0 {
		return nil, nil
	}
	rest := msg[i+2:]
	for len(rest) > 0 {
		var line []byte
		if j := bytes.Index(rest, []byte("\r\n")); j >= 0 {
			line, rest = rest[:j], rest[j+2:]
		} else {
			line, rest = rest, nil
		}
		if len(line) == 0 {
			return nil, nil // end of the header
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		name := bytes.TrimSpace(line[:colon])
		if !bytes.EqualFold(name, []byte("via")) && !bytes.EqualFold(name, []byte("v")) {
			continue
		}
		value := line[colon+1:]
		if k := bytes.IndexByte(value, ','); k >= 0 {
			value = value[:k]
		}
		// "SIP/2.0/UDP host:port": the sent-by is the last word before
		// the parameters (LWS is allowed inside the protocol part).
		proto, params, _ := bytes.Cut(value, []byte(";"))
		proto = bytes.TrimSpace(proto)
		if i := bytes.LastIndexAny(proto, " \t"); i >= 0 {
			sentBy = proto[i+1:]
		}
		for len(params) > 0 { // without bytes.Split: this runs per 200 OK
			var p []byte
			p, params, _ = bytes.Cut(params, []byte(";"))
			k, v, _ := bytes.Cut(p, []byte("="))
			if bytes.EqualFold(bytes.TrimSpace(k), []byte("branch")) {
				return sentBy, bytes.TrimSpace(v)
			}
		}
		return sentBy, nil
	}
	return nil, nil
}

// udpSocket is a UDP listener as sipgo reads it, minus the responses to
// our NOTIFY transactions and the SUBSCRIBEs, which its reader hands to
// their tables instead (udpsrv.go).
type udpSocket struct {
	*net.UDPConn
	local netip.AddrPort
	txs   *udpTxs
	srv   *udpServerTxs
}

func (s *udpSocket) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := s.UDPConn.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, nil, err
		}
		if s.txs.consume(b[:n]) || s.srv.receive(s, b[:n], from) {
			continue
		}
		return n, net.UDPAddrFromAddrPort(from), nil
	}
}

// send runs one NOTIFY transaction of job j and returns its final
// response: over UDP to an address through a lean transaction of our own,
// otherwise through the Doer (sipgo); a UDP NOTIFY over udpPathMTULimit
// goes over TCP first (large.go). extra are header lines to add (a digest
// answer).
func (n *Notifier) send(ctx context.Context, j *job, body []byte, extra ...string) (*sip.Response, error) {
	h := hopOf(&j.d)
	if h.transport != "UDP" {
		return n.sendTo(ctx, j, &h, body, 0, extra...)
	}
	res, err := n.sendTo(ctx, j, &h, body, udpPathMTULimit, extra...)
	if errors.Is(err, errOverMTU) || errors.Is(err, syscall.EMSGSIZE) {
		return n.sendLarge(ctx, j, h, body, extra...)
	}
	return res, err
}

// sendTo runs the NOTIFY transaction of job j to hop h. A UDP NOTIFY
// larger than limit (when not 0) is errOverMTU, and nothing is sent.
func (n *Notifier) sendTo(ctx context.Context, j *job, h *hop, body []byte, limit int, extra ...string) (*sip.Response, error) {
	if f, local := n.leanFlow(j, h); f != nil {
		return n.roundTrip(ctx, f, sentBy(j.d.contact, local), limit, func(b []byte, v via) []byte {
			return appendNotify(b, j, h, v, body, extra...)
		})
	}
	if limit > 0 && h.transport == "UDP" && len(appendNotify(nil, j, h, via{}, body, extra...))+viaRoom > limit {
		return nil, errOverMTU
	}
	req, err := n.buildNotify(j, h, body, extra...)
	if err != nil {
		return nil, err
	}
	res, err := n.doer.Do(ctx, req)
	if err == nil && res == nil {
		err = errNoResponse // sipgo ends some transactions without either
	}
	return res, err
}

// leanFlow returns the flow a lean transaction of job j to hop h takes,
// and its local address, or nil when sipgo carries the NOTIFY: over UDP
// to an address, from our listener; over TCP, TLS, WS or WSS, on the open
// connection the SUBSCRIBE came on (conntx.go).
func (n *Notifier) leanFlow(j *job, h *hop) (flow, string) {
	if !n.lean || h.transport != j.d.transport {
		return nil, ""
	}
	switch h.transport {
	case "UDP":
		if dst, err := netip.ParseAddrPort(h.dest); err == nil {
			if sock := n.udpSocketFor(dst); sock != nil {
				return udpFlow{sock, dst}, sock.local.String()
			}
		}
	case "TCP", "TLS", "WS", "WSS":
		if h.dest == j.d.source {
			if c := n.conns.get(h.transport, h.dest); c != nil {
				return c, c.localAddr()
			}
		}
	}
	return nil, ""
}

// udpSocketFor picks the UDP listener a NOTIFY to dst leaves from: the
// first of dst's address family, as setUDPSource does for sipgo.
func (n *Notifier) udpSocketFor(dst netip.AddrPort) *udpSocket {
	v4 := dst.Addr().Unmap().Is4()
	for _, s := range n.udpSockets {
		if s.local.Addr().Unmap().Is4() == v4 {
			return s
		}
	}
	return nil
}

// roundTrip runs one transaction over flow f: write the request build
// makes (with our Via), over UDP retransmit on Timer E, give up on Timer
// F or when the connection closes, return the final response. A request
// larger than limit (when not 0) is errOverMTU, unsent: measured as
// built, it costs a small NOTIFY nothing more.
func (n *Notifier) roundTrip(ctx context.Context, f flow, sentBy string, limit int, build func([]byte, via) []byte) (*sip.Response, error) {
	txs := n.udpTxs
	tx := txs.begin()
	defer txs.end(tx)
	tx.buf = build(tx.buf[:0], via{proto: f.proto(), sentBy: sentBy, branch: txs.prefix, id: tx.id})
	if limit > 0 && len(tx.buf) > limit {
		return nil, errOverMTU
	}
	if err := f.write(tx.buf); err != nil {
		return nil, err
	}
	t1, t2 := sip.T1, sip.T2
	deadline := time.Now().Add(sip.Timer_F)
	interval := t1
	if f.reliable() {
		interval = sip.Timer_F // no retransmission: Timer F only
	}
	if tx.timer == nil {
		tx.timer = time.NewTimer(interval)
	} else {
		tx.timer.Reset(interval)
	}
	for {
		select {
		case res := <-tx.res:
			return res, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-f.gone():
			select {
			case res := <-tx.res: // it came just before the close
				return res, nil
			default:
			}
			return nil, fmt.Errorf("NOTIFY to %s: %w", f, errConnectionLost)
		case now := <-tx.timer.C:
			left := deadline.Sub(now)
			if left <= 0 || f.reliable() {
				return nil, fmt.Errorf("NOTIFY to %s: %w", f, sip.ErrTransactionTimeout)
			}
			if err := f.write(tx.buf); err != nil {
				return nil, err
			}
			if tx.provisional.Load() {
				interval = t2
			} else {
				interval = min(2*interval, t2)
			}
			tx.timer.Reset(min(interval, left))
		}
	}
}

// sentBy is the Via sent-by of a NOTIFY: the host and port of the
// dialog's Contact (the address the subscriber reaches us at, as
// contactFor wrote it: <sip:regbridge@host:port>), else local, the
// listener's or connection's own address.
func sentBy(contact string, local string) string {
	if at := strings.IndexByte(contact, '@'); at >= 0 {
		hp := contact[at+1:]
		if end := strings.IndexAny(hp, ";>"); end >= 0 {
			hp = hp[:end]
		}
		if _, port, err := net.SplitHostPort(hp); err == nil && port != "" {
			return hp
		}
	}
	return local
}

// byteWriter is an io.StringWriter appending to a byte slice.
type byteWriter []byte

func (w *byteWriter) WriteString(s string) (int, error) {
	*w = append(*w, s...)
	return len(s), nil
}
