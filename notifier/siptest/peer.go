// Package siptest is a SIP subscriber for tests: it sends SUBSCRIBE with
// plain sipgo requests over real loopback sockets and records every NOTIFY
// it receives, reading reginfo bodies with its own decoder. It shares no
// code with the notifier or with notifier/watch, so that tests using it
// check regbridge from the outside.
package siptest

import (
	"context"
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
	Doc Reginfo
	// SubscriptionState is the raw Subscription-State header value.
	SubscriptionState string
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
}

// Peer is a subscriber on loopback.
type Peer struct {
	t       testing.TB
	network string
	client  *sipgo.Client
	local   string // our UDP listening address; "" for TCP (NOTIFYs reuse the flow)
	server  string

	answerMu sync.Mutex
	answer   func(i int) int
	count    int
	notifies chan Notify

	CallID, FromTag, ToTag string
	CSeq                   uint32
}

// Quiet is a logger that drops everything, for sipgo inside tests.
var Quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// New starts a subscriber that talks to server ("host:port") over network
// ("udp" or "tcp"). It is closed when the test ends.
func New(t testing.TB, network, server string) *Peer {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("siptest-subscriber"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(Quiet))
	if err != nil {
		t.Fatal(err)
	}
	p := &Peer{t: t, network: network, server: server, notifies: make(chan Notify, 1000),
		answer: func(int) int { return 200 },
		CallID: fmt.Sprintf("siptest-%d@127.0.0.1", time.Now().UnixNano()), FromTag: sip.GenerateTagN(10), CSeq: 1}
	var opts []sipgo.ClientOption
	if network == "udp" {
		conn, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p.local = conn.LocalAddr().String()
		go srv.ServeUDP(conn)
		t.Cleanup(func() { conn.Close() })
		// The SUBSCRIBE must leave from this socket: wait until sipgo has it.
		Eventually(t, func() bool {
			c, err := ua.TransportLayer().GetConnection("udp", p.local)
			return err == nil && c != nil
		}, "UDP listener registered")
		opts = append(opts, sipgo.WithClientConnectionAddr(p.local))
	}
	p.client, err = sipgo.NewClient(ua, append(opts, sipgo.WithClientLogger(Quiet))...)
	if err != nil {
		t.Fatal(err)
	}
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		p.answerMu.Lock()
		i := p.count
		p.count++
		answer := p.answer
		p.answerMu.Unlock()
		var doc Reginfo
		if err := xml.Unmarshal(req.Body(), &doc); err != nil {
			t.Errorf("NOTIFY body is not XML: %v\n%s", err, req.Body())
		}
		st := ""
		if h := req.GetHeader("Subscription-State"); h != nil {
			st = h.Value()
		}
		// Record first, answer after: a test may hold the answer.
		p.notifies <- Notify{Req: req, Doc: doc, SubscriptionState: st}
		tx.Respond(sip.NewResponseFromRequest(req, answer(i), "Test", nil))
	})
	t.Cleanup(func() { ua.Close() })
	return p
}

// Answer sets the status code the peer answers its i-th NOTIFY (from 0)
// with; the function may block to hold the answer.
func (p *Peer) Answer(f func(i int) int) {
	p.answerMu.Lock()
	defer p.answerMu.Unlock()
	p.answer = f
}

// Header builds a header; an empty value means "leave this header out"
// (useful to drop the default Contact).
func Header(name, value string) sip.Header { return sip.NewHeader(name, value) }

// Subscribe sends a SUBSCRIBE for aor: initial while ToTag is empty,
// in-dialog after a 2xx gave one. Extra headers are appended.
func (p *Peer) Subscribe(aor string, hdrs ...sip.Header) *sip.Response {
	p.t.Helper()
	var uri sip.Uri
	if err := sip.ParseUri(aor, &uri); err != nil {
		p.t.Fatal(err)
	}
	req := sip.NewRequest(sip.SUBSCRIBE, uri)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "watcher", Host: "127.0.0.1"}, Params: sip.NewParams()}
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
	contact := "<sip:watcher@" + p.local + ">"
	if p.network == "tcp" {
		// Unreachable on purpose: NOTIFYs must come back on the flow.
		contact = "<sip:watcher@127.0.0.1:9;transport=tcp>"
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
	req.SetDestination(p.server)
	req.SetTransport(strings.ToUpper(p.network))
	if p.local != "" {
		host, port, _ := net.SplitHostPort(p.local)
		pn, _ := strconv.Atoi(port)
		req.Laddr = sip.Addr{IP: net.ParseIP(host), Port: pn}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err != nil {
		p.t.Fatalf("SUBSCRIBE: %v", err)
	}
	if res.IsSuccess() && p.ToTag == "" {
		p.ToTag, _ = res.To().Params.Get("tag")
	}
	return res
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
	if req.Contact() == nil {
		p.t.Errorf("NOTIFY without Contact")
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
