package main

// The registrar's side of `regload regcost`: a UDP user agent that sends
// REGISTERs to a real registrar at a fixed rate, retransmits them as RFC
// 3261 17.1.2.2 says (Timer E from T1 = 500 ms doubling to T2 = 4 s), and
// measures from the first transmission to the final response.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

const (
	regT1 = 500 * time.Millisecond
	regT2 = 4 * time.Second
)

// regAgent registers users user0..userN-1 of one registrar, each from the
// agent's socket with its own Call-ID (so each re-REGISTER is a refresh of
// the same binding: one UPDATE in usrloc db_mode 1).
type regAgent struct {
	conn    *net.UDPConn
	server  *net.UDPAddr
	local   string // host:port of conn, for Via and Contact
	domain  string
	users   []string
	callIDs []string
	cseq    []uint32
	next    int    // the user the next REGISTER is for
	branch  uint64 // branch counter

	mu      sync.Mutex
	pending map[string]*regTx // by Via branch
	st      regStats
}

type regTx struct {
	msg         []byte
	first, next time.Time
	interval    time.Duration
}

// regStats is what one measured stretch of REGISTERs gave.
type regStats struct {
	Sent     int             `json:"sent"`
	OK       int             `json:"ok"`     // 200 received
	Failed   int             `json:"failed"` // another final response
	Lost     int             `json:"lost"`   // no final response by the end of the drain
	Retrans  int             `json:"retransmissions"`
	lat      []time.Duration // first transmission to 200
	Statuses map[int]int     `json:"statuses,omitempty"`
}

func newRegAgent(server *net.UDPAddr, prefix, domain string, users int) (*regAgent, error) {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadBuffer(4 << 20)
	a := &regAgent{conn: conn, server: server, local: conn.LocalAddr().String(), domain: domain,
		pending: map[string]*regTx{}}
	for i := range users {
		a.users = append(a.users, prefix+strconv.Itoa(i))
		a.callIDs = append(a.callIDs, fmt.Sprintf("%s-%d-%s", prefix, i, a.local))
		a.cseq = append(a.cseq, 0)
	}
	go a.readLoop()
	return a, nil
}

func (a *regAgent) close() { a.conn.Close() }

// readLoop matches responses to their transactions by Via branch.
func (a *regAgent) readLoop() {
	buf := make([]byte, 65535)
	for {
		n, err := a.conn.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now()
		code, branch := parseRegResponse(buf[:n])
		if code < 200 || branch == "" {
			continue
		}
		a.mu.Lock()
		if tx, ok := a.pending[branch]; ok {
			delete(a.pending, branch)
			if code == 200 {
				a.st.OK++
				a.st.lat = append(a.st.lat, now.Sub(tx.first))
			} else {
				a.st.Failed++
				if a.st.Statuses == nil {
					a.st.Statuses = map[int]int{}
				}
				a.st.Statuses[code]++
			}
		}
		a.mu.Unlock()
	}
}

// parseRegResponse returns a response's status code and the branch of its
// top Via (0 and "" for anything else).
func parseRegResponse(b []byte) (int, string) {
	if !bytes.HasPrefix(b, []byte("SIP/2.0 ")) || len(b) < 11 {
		return 0, ""
	}
	code, err := strconv.Atoi(string(b[8:11]))
	if err != nil {
		return 0, ""
	}
	i := bytes.Index(b, []byte(";branch="))
	if i < 0 {
		return code, ""
	}
	rest := b[i+len(";branch="):]
	end := bytes.IndexAny(rest, ";,\r\n ")
	if end < 0 {
		end = len(rest)
	}
	return code, string(rest[:end])
}

// send sends the next REGISTER (round robin over the users).
func (a *regAgent) send(expires int) {
	u := a.next
	a.next = (a.next + 1) % len(a.users)
	a.cseq[u]++
	a.branch++
	branch := "z9hG4bK-rc-" + strconv.FormatUint(a.branch, 36)
	user := a.users[u]
	msg := []byte("REGISTER sip:" + a.domain + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + a.local + ";branch=" + branch + ";rport\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:" + user + "@" + a.domain + ">;tag=rc" + strconv.Itoa(u) + "\r\n" +
		"To: <sip:" + user + "@" + a.domain + ">\r\n" +
		"Call-ID: " + a.callIDs[u] + "\r\n" +
		"CSeq: " + strconv.FormatUint(uint64(a.cseq[u]), 10) + " REGISTER\r\n" +
		"Contact: <sip:" + user + "@" + a.local + ">\r\n" +
		"Expires: " + strconv.Itoa(expires) + "\r\n" +
		"User-Agent: regload regcost\r\n" +
		"Content-Length: 0\r\n\r\n")
	now := time.Now()
	a.mu.Lock()
	a.pending[branch] = &regTx{msg: msg, first: now, next: now.Add(regT1), interval: regT1}
	a.st.Sent++
	a.mu.Unlock()
	_, _ = a.conn.WriteToUDP(msg, a.server)
}

// retransmit resends every transaction whose timer has fired.
func (a *regAgent) retransmit(now time.Time) {
	var due [][]byte
	a.mu.Lock()
	for _, tx := range a.pending {
		if now.Before(tx.next) {
			continue
		}
		tx.interval = min(2*tx.interval, regT2)
		tx.next = now.Add(tx.interval)
		due = append(due, tx.msg)
		a.st.Retrans++
	}
	a.mu.Unlock()
	for _, m := range due {
		_, _ = a.conn.WriteToUDP(m, a.server)
	}
}

// run sends rate REGISTERs per second for d, then waits up to drain for
// the last final responses, and returns what happened. Sending keeps to
// the schedule (a late tick sends what is due), so a slow registrar does
// not slow the offered load.
func (a *regAgent) run(ctx context.Context, rate float64, d, drain time.Duration, expires int) regStats {
	a.mu.Lock()
	a.pending = map[string]*regTx{} // late answers to an earlier run are ignored
	a.st = regStats{}
	a.mu.Unlock()
	start := time.Now()
	sent := 0
	total := int(rate * d.Seconds())
	lastRetrans := start
	for sent < total && ctx.Err() == nil {
		now := time.Now()
		due := min(int(rate*now.Sub(start).Seconds())+1, total)
		for ; sent < due; sent++ {
			a.send(expires)
		}
		if now.Sub(lastRetrans) >= 20*time.Millisecond {
			a.retransmit(now)
			lastRetrans = now
		}
		time.Sleep(time.Millisecond)
	}
	end := time.Now().Add(drain)
	for time.Now().Before(end) && ctx.Err() == nil {
		a.mu.Lock()
		n := len(a.pending)
		a.mu.Unlock()
		if n == 0 {
			break
		}
		a.retransmit(time.Now())
		time.Sleep(20 * time.Millisecond)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.st
	st.Lost = len(a.pending)
	st.lat = slices.Clone(a.st.lat)
	a.pending = map[string]*regTx{}
	return st
}

// quantile returns the q quantile of the REGISTER->200 times, counting
// lost REGISTERs as slower than any answered one (so a p99 is never
// flattered by what never came back); -1 when beyond every answer.
func (s regStats) quantile(q float64) time.Duration {
	n := len(s.lat) + s.Lost + s.Failed
	if n == 0 {
		return 0
	}
	lat := slices.Clone(s.lat)
	slices.Sort(lat)
	i := int(q * float64(n-1))
	if i >= len(lat) {
		return -1
	}
	return lat[i]
}

// probe sends OPTIONS until the registrar answers or timeout passes.
func probeSIP(ctx context.Context, server *net.UDPAddr, timeout time.Duration) error {
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer conn.Close()
	local := conn.LocalAddr().String()
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 4096)
	for i := 0; time.Now().Before(deadline); i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := "OPTIONS sip:" + server.String() + " SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-rcprobe" + strconv.Itoa(i) + "\r\n" +
			"Max-Forwards: 70\r\nFrom: <sip:probe@" + local + ">;tag=p\r\nTo: <sip:" + server.String() + ">\r\n" +
			"Call-ID: rcprobe-" + local + "\r\nCSeq: " + strconv.Itoa(i+1) + " OPTIONS\r\nContent-Length: 0\r\n\r\n"
		_, _ = conn.WriteToUDP([]byte(msg), server)
		_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := conn.Read(buf); err == nil {
			if code, _ := parseRegResponse(buf[:n]); code == 200 {
				return nil
			}
		}
	}
	return fmt.Errorf("no answer to OPTIONS from %s within %v", server, timeout)
}
