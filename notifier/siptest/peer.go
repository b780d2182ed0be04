// Package siptest is a SIP subscriber for tests: it sends SUBSCRIBE with
// plain sipgo requests over real loopback sockets and records every NOTIFY
// it receives, reading reginfo bodies with its own decoder. It shares no
// code with the notifier or with notifier/watch, so that tests using it
// check regbridge from the outside.
package siptest

import (
	"context"
	"crypto/tls"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// Notify is one NOTIFY the peer received.
type Notify struct {
	Req *sip.Request
	// Doc is the reginfo body, PIDF the presence body (by Content-Type).
	Doc   Reginfo
	PIDF  Presence
	Winfo Watcherinfo
	// SubscriptionState is the raw Subscription-State header value.
	SubscriptionState string
	// Transport is the transport the NOTIFY arrived on (UDP, TCP, TLS,
	// WS, WSS), Source the address it came from.
	Transport, Source string
}

// Presence is the peer's own reading of an application/pidf+xml body.
type Presence struct {
	Entity string  `xml:"entity,attr"`
	Tuples []Tuple `xml:"tuple"`
}

// Tuple is one PIDF <tuple>.
type Tuple struct {
	ID        string `xml:"id,attr"`
	Basic     string `xml:"status>basic"`
	Contact   string `xml:"contact"`
	Timestamp string `xml:"timestamp"`
}

// Watcherinfo is the peer's own reading of an
// application/watcherinfo+xml body (RFC 3858).
type Watcherinfo struct {
	Version uint32        `xml:"version,attr"`
	State   string        `xml:"state,attr"`
	Lists   []WatcherList `xml:"watcher-list"`
}

// WatcherList is one <watcher-list> element.
type WatcherList struct {
	Resource string    `xml:"resource,attr"`
	Package  string    `xml:"package,attr"`
	Watchers []Watcher `xml:"watcher"`
}

// Watcher is one <watcher> element.
type Watcher struct {
	ID          string `xml:"id,attr"`
	Status      string `xml:"status,attr"`
	Event       string `xml:"event,attr"`
	DisplayName string `xml:"display-name,attr"`
	Expiration  string `xml:"expiration,attr"`
	URI         string `xml:",chardata"`
}

// Reginfo is the peer's own reading of an application/reginfo+xml body.
type Reginfo struct {
	Version       uint32         `xml:"version,attr"`
	State         string         `xml:"state,attr"`
	Registrations []Registration `xml:"registration"`
}

// Registration is one <registration> element.
type Registration struct {
	AOR      string    `xml:"aor,attr"`
	ID       string    `xml:"id,attr"`
	State    string    `xml:"state,attr"`
	Contacts []Contact `xml:"contact"`
}

// Contact is one <contact> element.
type Contact struct {
	ID         string `xml:"id,attr"`
	State      string `xml:"state,attr"`
	Event      string `xml:"event,attr"`
	Expires    string `xml:"expires,attr"`
	RetryAfter string `xml:"retry-after,attr"`
	CallID     string `xml:"callid,attr"`
	CSeq       string `xml:"cseq,attr"`
	URI        string `xml:"uri"`
	// Params are the <unknown-param> children.
	Params []Param `xml:"unknown-param"`
	// PubGRUU is the RFC 5628 <gr:pub-gruu> child, if any.
	PubGRUU  *GRUU `xml:"urn:ietf:params:xml:ns:gruuinfo pub-gruu"`
	TempGRUU *GRUU `xml:"urn:ietf:params:xml:ns:gruuinfo temp-gruu"`
}

// Param is one <unknown-param>.
type Param struct {
	Name  string `xml:"name,attr"`
	Value string `xml:",chardata"`
}

// GRUU is a <gr:pub-gruu> or <gr:temp-gruu>.
type GRUU struct {
	URI string `xml:"uri,attr"`
}

// Peer is a subscriber on loopback.
type Peer struct {
	t       testing.TB
	network string // udp, tcp, tls, ws or wss
	client  *sipgo.Client
	local   string // our UDP listening address; "" for the others (NOTIFYs reuse the flow)
	server  string

	answerMu   sync.Mutex
	answer     func(i int, req *sip.Request) (int, []sip.Header)
	count      int
	notifies   chan Notify
	lastReq    *sip.Request // the last SUBSCRIBE sent, for Cancel
	lastCSeq   uint32       // of the last NOTIFY checked
	lastCallID string

	CallID, FromTag, ToTag string
	CSeq                   uint32
	// FromUser and FromName are the user part and display name of the
	// From header (default "watcher", none).
	FromUser, FromName string
}

// Option configures a Peer.
type Option func(*peerOptions)

type peerOptions struct {
	tls    *tls.Config
	nat    bool
	tcp    bool
	source string
}

// WithSource makes a UDP peer send from (and receive NOTIFYs on) the
// loopback address ip instead of 127.0.0.1: another host, as far as
// source-address policies are concerned (127.0.0.2 is outside
// 127.0.0.1/32).
func WithSource(ip string) Option { return func(o *peerOptions) { o.source = ip } }

// WithTCP makes a udp peer listen on TCP too, at the same address, and
// take messages up to 1 MB (sipgo's default is 64 KB), as a phone that
// takes requests too large for UDP (RFC 3261 18.1.1) does.
func WithTCP() Option { return func(o *peerOptions) { o.tcp = true } }

// WithNAT makes the peer ask for symmetric response routing: rport in its
// Via (RFC 3581), as a client behind NAT does.
func WithNAT() Option { return func(o *peerOptions) { o.nat = true } }

// WithTLS sets the client TLS configuration for tls and wss (typically
// RootCAs holding the test CA, and a client certificate).
func WithTLS(c *tls.Config) Option { return func(o *peerOptions) { o.tls = c } }

// Quiet is a logger that drops everything, for sipgo inside tests.
var Quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// New starts a subscriber that talks to server ("host:port") over network
// ("udp", "tcp", "tls", "ws" or "wss"). It is closed when the test ends.
func New(t testing.TB, network, server string, opts ...Option) *Peer {
	t.Helper()
	o := peerOptions{source: "127.0.0.1"}
	for _, f := range opts {
		f(&o)
	}
	uaOpts := []sipgo.UserAgentOption{sipgo.WithUserAgent("siptest-subscriber")}
	if o.tls != nil {
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(o.tls))
	}
	if o.tcp {
		parser := sip.NewParser()
		parser.MaxMessageLength = 1 << 20
		uaOpts = append(uaOpts, sipgo.WithUserAgentParser(parser))
	}
	ua, err := sipgo.NewUA(uaOpts...)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(Quiet))
	if err != nil {
		t.Fatal(err)
	}
	p := &Peer{t: t, network: network, server: server, notifies: make(chan Notify, 1000),
		answer: func(int, *sip.Request) (int, []sip.Header) { return 200, nil },
		CallID: fmt.Sprintf("siptest-%d@127.0.0.1", time.Now().UnixNano()), FromTag: sip.GenerateTagN(10), CSeq: 1}
	// The handler is in place before the server runs (sipgo reads its
	// handlers unlocked).
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		p.answerMu.Lock()
		i := p.count
		p.count++
		answer := p.answer
		p.answerMu.Unlock()
		n := Notify{Req: req, Transport: req.Transport(), Source: req.Source()}
		if h := req.GetHeader("Subscription-State"); h != nil {
			n.SubscriptionState = h.Value()
		}
		ct := ""
		if h := req.ContentType(); h != nil {
			ct = h.Value()
		}
		var err error
		switch {
		case len(req.Body()) == 0:
		case ct == "application/pidf+xml":
			err = xml.Unmarshal(req.Body(), &n.PIDF)
		case ct == "application/watcherinfo+xml":
			err = xml.Unmarshal(req.Body(), &n.Winfo)
		default:
			err = xml.Unmarshal(req.Body(), &n.Doc)
		}
		if err != nil {
			t.Errorf("NOTIFY body is not XML: %v\n%s", err, req.Body())
		}
		// Record first, answer after: a test may hold the answer.
		p.notifies <- n
		code, hdrs := answer(i, req)
		res := sip.NewResponseFromRequest(req, code, "Test", nil)
		for _, h := range hdrs {
			res.AppendHeader(h)
		}
		tx.Respond(res)
	})
	var clientOpts []sipgo.ClientOption
	if network == "udp" {
		// The TCP port beside it is free too, whether the peer takes TCP
		// (WithTCP) or a test wants nothing to listen there.
		conn, ln := ListenPair(t, o.source)
		p.local = conn.LocalAddr().String()
		go srv.ServeUDP(conn)
		t.Cleanup(func() { conn.Close() })
		if o.tcp {
			go srv.ServeTCP(ln)
			t.Cleanup(func() { ln.Close() })
		} else {
			ln.Close()
		}
		// The SUBSCRIBE must leave from this socket: wait until sipgo has it.
		Eventually(t, func() bool {
			c, err := ua.TransportLayer().GetConnection("udp", p.local)
			return err == nil && c != nil
		}, "UDP listener registered")
		clientOpts = append(clientOpts, sipgo.WithClientConnectionAddr(p.local))
	}
	if o.nat {
		clientOpts = append(clientOpts, sipgo.WithClientNAT())
	}
	p.client, err = sipgo.NewClient(ua, append(clientOpts, sipgo.WithClientLogger(Quiet))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	return p
}

// Answer sets the status code the peer answers its i-th NOTIFY (from 0)
// with; the function may block to hold the answer.
func (p *Peer) Answer(f func(i int) int) {
	p.AnswerWith(func(i int, _ *sip.Request) (int, []sip.Header) { return f(i), nil })
}

// AnswerWith sets the status code and extra headers the peer answers its
// i-th NOTIFY (from 0) with; the function may block to hold the answer.
func (p *Peer) AnswerWith(f func(i int, req *sip.Request) (int, []sip.Header)) {
	p.answerMu.Lock()
	defer p.answerMu.Unlock()
	p.answer = f
}

// Local is the peer's UDP listening address ("" on other transports).
func (p *Peer) Local() string { return p.local }

// Header builds a header; an empty value means "leave this header out"
// (useful to drop the default Contact).
func Header(name, value string) sip.Header { return sip.NewHeader(name, value) }

// Subscribe sends a SUBSCRIBE for aor: initial while ToTag is empty,
// in-dialog after a 2xx gave one. Extra headers are appended.
func (p *Peer) Subscribe(aor string, hdrs ...sip.Header) *sip.Response {
	p.t.Helper()
	return p.SubscribeWith(aor, nil, hdrs...)
}

// SubscribeWith is Subscribe with a body (give its Content-Type in hdrs).
func (p *Peer) SubscribeWith(aor string, body []byte, hdrs ...sip.Header) *sip.Response {
	p.t.Helper()
	var uri sip.Uri
	if err := sip.ParseUri(aor, &uri); err != nil {
		p.t.Fatal(err)
	}
	req := sip.NewRequest(sip.SUBSCRIBE, uri)
	user := p.FromUser
	if user == "" {
		user = "watcher"
	}
	from := &sip.FromHeader{DisplayName: p.FromName, Address: sip.Uri{Scheme: "sip", User: user, Host: "127.0.0.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", p.FromTag)
	to := &sip.ToHeader{Address: uri, Params: sip.NewParams()}
	if p.ToTag != "" {
		to.Params.Add("tag", p.ToTag)
	}
	callID := sip.CallIDHeader(p.CallID)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: p.CSeq, MethodName: sip.SUBSCRIBE})
	p.CSeq++
	// Over connection-oriented transports the Contact is unreachable on
	// purpose: NOTIFYs must come back on the flow. A WebSocket client has
	// no address at all (RFC 7118 5.2 uses a .invalid host).
	var contact string
	switch p.network {
	case "udp":
		contact = "<sip:watcher@" + p.local + ">"
	case "ws", "wss":
		contact = "<sip:watcher@df7jal23ls0d.invalid;transport=ws>"
	default:
		contact = "<sip:watcher@127.0.0.1:9;transport=" + p.network + ">"
	}
	hasContact := false
	for _, h := range hdrs {
		if strings.EqualFold(h.Name(), "Contact") {
			hasContact = true
		}
	}
	if !hasContact {
		req.AppendHeader(sip.NewHeader("Contact", contact))
	}
	for _, h := range hdrs {
		if h.Value() != "" {
			req.AppendHeader(h)
		}
	}
	if body != nil {
		req.SetBody(body)
	}
	req.SetDestination(p.server)
	req.SetTransport(strings.ToUpper(p.network))
	if p.local != "" {
		host, port, _ := net.SplitHostPort(p.local)
		pn, _ := strconv.Atoi(port)
		req.Laddr = sip.Addr{IP: net.ParseIP(host), Port: pn}
	}
	p.lastReq = req
	res := p.do(req)
	if res.IsSuccess() && p.ToTag == "" {
		p.ToTag, _ = res.To().Params.Get("tag")
	}
	return res
}

func (p *Peer) do(req *sip.Request) *sip.Response {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err != nil {
		p.t.Fatalf("%s: %v", req.Method, err)
	}
	return res
}

// Cancel sends a CANCEL for the last SUBSCRIBE (RFC 3261 9.1: same
// Request-URI, Call-ID, From, To, CSeq number and top Via) and returns the
// response to the CANCEL.
func (p *Peer) Cancel() *sip.Response {
	p.t.Helper()
	return p.CancelBranch("")
}

// CancelBranch is Cancel with the top Via's branch replaced (when not
// empty), so that the CANCEL matches no transaction.
func (p *Peer) CancelBranch(branch string) *sip.Response {
	p.t.Helper()
	orig := p.lastReq
	if orig == nil || orig.Via() == nil {
		p.t.Fatal("Cancel before any SUBSCRIBE")
	}
	req := sip.NewRequest(sip.CANCEL, orig.Recipient)
	via := orig.Via().Clone()
	if branch != "" {
		via.Params.Add("branch", branch)
	}
	req.AppendHeader(via)
	for _, name := range []string{"From", "To", "Call-ID"} {
		req.AppendHeader(orig.GetHeader(name))
	}
	req.AppendHeader(&sip.CSeqHeader{SeqNo: orig.CSeq().SeqNo, MethodName: sip.CANCEL})
	maxFwd := sip.MaxForwardsHeader(70)
	req.AppendHeader(&maxFwd)
	req.SetDestination(p.server)
	req.SetTransport(orig.Transport())
	req.Laddr = orig.Laddr
	return p.do(req)
}

// Next returns the next NOTIFY, failing the test after 5 s.
func (p *Peer) Next() Notify {
	p.t.Helper()
	return p.NextWithin(5 * time.Second)
}

// NextWithin returns the next NOTIFY, failing the test after d.
func (p *Peer) NextWithin(d time.Duration) Notify {
	p.t.Helper()
	select {
	case n := <-p.notifies:
		return n
	case <-time.After(d):
		p.t.Fatalf("no NOTIFY within %v", d)
	}
	return Notify{}
}

// None fails the test if a NOTIFY arrives within d.
func (p *Peer) None(d time.Duration) {
	p.t.Helper()
	select {
	case n := <-p.notifies:
		p.t.Fatalf("unexpected NOTIFY version %d %s: %s", n.Doc.Version, n.SubscriptionState, n.Req.Body())
	case <-time.After(d):
	}
}

// Check verifies the NOTIFY headers of RFC 6665 3.2 and RFC 3261 12.2.1.1
// Drain returns the NOTIFYs received and not yet taken, without waiting.
func (p *Peer) Drain() []Notify {
	var out []Notify
	for {
		select {
		case n := <-p.notifies:
			out = append(out, n)
		default:
			return out
		}
	}
}

// for this peer's dialog, and the document's version and state.
func (p *Peer) Check(n Notify, version uint32, state, subsPrefix string) {
	p.t.Helper()
	req := n.Req
	if n.Doc.Version != version || n.Doc.State != state {
		p.t.Fatalf("NOTIFY version=%d state=%s, want %d %s:\n%s", n.Doc.Version, n.Doc.State, version, state, req.Body())
	}
	if !strings.HasPrefix(n.SubscriptionState, subsPrefix) {
		p.t.Errorf("Subscription-State %q, want prefix %q", n.SubscriptionState, subsPrefix)
	}
	if ev := req.GetHeader("Event"); ev == nil || !strings.HasPrefix(ev.Value(), "reg") {
		p.t.Errorf("Event header %v", ev)
	}
	if ct := req.ContentType(); ct == nil || ct.Value() != "application/reginfo+xml" {
		p.t.Errorf("Content-Type %v", ct)
	}
	p.checkDialog(n)
}

// CheckPresence verifies the NOTIFY headers of a presence subscription
// (RFC 3856 6.7: a complete PIDF document or none).
func (p *Peer) CheckPresence(n Notify, subsPrefix string) {
	p.t.Helper()
	req := n.Req
	if !strings.HasPrefix(n.SubscriptionState, subsPrefix) {
		p.t.Errorf("Subscription-State %q, want prefix %q", n.SubscriptionState, subsPrefix)
	}
	if ev := req.GetHeader("Event"); ev == nil || !strings.HasPrefix(ev.Value(), "presence") {
		p.t.Errorf("Event header %v", ev)
	}
	if len(req.Body()) > 0 {
		if ct := req.ContentType(); ct == nil || ct.Value() != "application/pidf+xml" {
			p.t.Errorf("Content-Type %v", ct)
		}
	}
	p.checkDialog(n)
}

// checkDialog verifies the dialog headers every NOTIFY carries and that
// CSeq grows strictly from one checked NOTIFY to the next.
func (p *Peer) checkDialog(n Notify) {
	p.t.Helper()
	req := n.Req
	if req.Contact() == nil {
		p.t.Errorf("NOTIFY without Contact")
	}
	if cseq := req.CSeq(); cseq == nil || cseq.MethodName != sip.NOTIFY {
		p.t.Errorf("CSeq %v", cseq)
	} else {
		callID := req.CallID().Value()
		if p.lastCSeq != 0 && callID == p.lastCallID && cseq.SeqNo <= p.lastCSeq {
			p.t.Errorf("CSeq %d after %d: not strictly increasing", cseq.SeqNo, p.lastCSeq)
		}
		p.lastCSeq, p.lastCallID = cseq.SeqNo, callID
	}
	if mf := req.MaxForwards(); mf == nil {
		p.t.Errorf("NOTIFY without Max-Forwards")
	}
	if tag, _ := req.To().Params.Get("tag"); tag != p.FromTag {
		p.t.Errorf("To tag %q, want the SUBSCRIBE From tag %q", tag, p.FromTag)
	}
	if tag, _ := req.From().Params.Get("tag"); tag != p.ToTag {
		p.t.Errorf("From tag %q, want the 200's To tag %q", tag, p.ToTag)
	}
	if req.CallID().Value() != p.CallID {
		p.t.Errorf("Call-ID %q, want %q", req.CallID().Value(), p.CallID)
	}
	if req.Recipient.User != "watcher" {
		p.t.Errorf("Request-URI %s, want the subscriber's Contact", req.Recipient.String())
	}
}

// ExpiresParam returns the expires parameter of a Subscription-State, or -1.
func ExpiresParam(subs string) int {
	_, v, ok := strings.Cut(subs, "expires=")
	if !ok {
		return -1
	}
	v, _, _ = strings.Cut(v, ";")
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// Eventually polls cond until it holds, failing the test after 5 s.
func Eventually(t testing.TB, cond func() bool, what string) {
	t.Helper()
	EventuallyWithin(t, 5*time.Second, cond, what)
}

// EventuallyWithin polls cond until it holds, failing the test after d.
func EventuallyWithin(t testing.TB, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
