package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// udpMTU is what sip.UDPMTUSize is raised to: sipgo refuses to write UDP
// messages above UDPMTUSize-200 bytes (1300 by default), and a reginfo
// NOTIFY with a handful of contacts is larger than that.
const udpMTU = 65535

var raiseMTU sync.Once

// listenReadyWait bounds the wait for sipgo to register our UDP socket.
const listenReadyWait = 2 * time.Second

// eventQueue is how many accepted NOTIFYs may wait for the Run loop.
const eventQueue = 32

// endpoint is one sipgo user agent with its server (NOTIFY handler) and
// client (SUBSCRIBE sender), living for one Run.
type endpoint struct {
	log     *slog.Logger
	network string // "UDP" or "TCP"
	server  string // host:port of the notifier
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	client  *sipgo.Client

	// UDP only: our socket, its address, and the end of its serve loop.
	udp    net.PacketConn
	laddr  sip.Addr
	served chan struct{}

	sessMu sync.Mutex
	sess   *session
}

func newEndpoint(s *Subscriber) (*endpoint, error) {
	raiseMTU.Do(func() {
		if sip.UDPMTUSize < udpMTU {
			sip.UDPMTUSize = udpMTU
		}
	})
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("regbridge-watch"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(s.log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(s.log)),
	)
	if err != nil {
		return nil, fmt.Errorf("creating SIP user agent: %w", err)
	}
	e := &endpoint{log: s.log, network: s.network, server: s.server, ua: ua}
	if e.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(s.log)); err != nil {
		ua.Close()
		return nil, fmt.Errorf("creating SIP server: %w", err)
	}
	if e.client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(s.log)); err != nil {
		ua.Close()
		return nil, fmt.Errorf("creating SIP client: %w", err)
	}
	e.srv.OnNotify(e.onNotify)

	if e.network == "UDP" {
		if err := e.listenUDP(s.local); err != nil {
			ua.Close()
			return nil, err
		}
	}
	return e, nil
}

// listenUDP opens the socket SUBSCRIBEs leave from and NOTIFYs arrive on,
// so the Contact we advertise is where the notifier sends.
func (e *endpoint) listenUDP(local string) error {
	conn, err := net.ListenPacket("udp", net.JoinHostPort(local, "0"))
	if err != nil {
		return fmt.Errorf("listening on udp %s: %w", local, err)
	}
	ua := conn.LocalAddr().(*net.UDPAddr)
	e.udp = conn
	e.laddr = sip.Addr{IP: ua.IP, Port: ua.Port, Hostname: ua.IP.String()}
	e.served = make(chan struct{})
	go func() {
		defer close(e.served)
		if err := e.srv.ServeUDP(conn); err != nil {
			e.log.Debug("udp serve ended", "err", err)
		}
	}()
	// ServeUDP puts the socket into sipgo's connection pool before it reads;
	// a request sent earlier would try to bind a second socket to the port.
	deadline := time.Now().Add(listenReadyWait)
	for {
		if c, err := e.ua.TransportLayer().GetConnection("udp", e.laddr.String()); err == nil {
			c.TryClose() // a listener ignores it; only balances the Get
			return nil
		}
		if time.Now().After(deadline) {
			conn.Close()
			<-e.served
			e.udp = nil
			return errors.New("udp listener not ready")
		}
		time.Sleep(time.Millisecond)
	}
}

func (e *endpoint) close() {
	if e.network == "TCP" {
		e.closeTCP()
	}
	e.ua.Close()
	if e.udp != nil {
		e.udp.Close()
		<-e.served
	}
}

// closeTCP closes our idle connection to the server and waits (briefly)
// for sipgo's reader to release it. Closing the user agent with the
// connection still pooled makes sipgo log a spurious "TCP ref went
// negative" warning through the process-wide default logger; the reader
// cleans up quietly when it holds the last reference.
func (e *endpoint) closeTCP() {
	tp := e.ua.TransportLayer()
	c, err := tp.GetConnection("tcp", e.server)
	if err != nil {
		return
	}
	tc, ok := c.(*sip.TCPConnection)
	// Idle: the reader's and the idle reference, plus ours from the Get.
	if !ok || c.Ref(0) != 2+sip.TransportIdleConnection {
		c.TryClose()
		return
	}
	c.TryClose() // ours
	c.TryClose() // the idle one; the reader's is left
	tc.Conn.Close()
	pool := tp.Pool("tcp")
	for deadline := time.Now().Add(time.Second); pool.Size() > 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

func (e *endpoint) setSession(s *session) {
	e.sessMu.Lock()
	e.sess = s
	e.sessMu.Unlock()
}

func (e *endpoint) current() *session {
	e.sessMu.Lock()
	defer e.sessMu.Unlock()
	return e.sess
}

// prepare sets transport, destination, local socket, Via and Contact of a
// SUBSCRIBE about to be sent to dest.
func (e *endpoint) prepare(ctx context.Context, req *sip.Request, dest, contactHost string) error {
	req.SetTransport(e.network)
	req.SetDestination(dest)
	contact := sip.Uri{Scheme: "sip", User: "watch"}
	switch e.network {
	case "UDP":
		e.laddr.Copy(&req.Laddr)
		contact.Host, contact.Port = contactHost, e.laddr.Port
		if err := sipgo.ClientRequestBuild(e.client, req); err != nil {
			return err
		}
	default:
		// Over TCP the notifier answers on the connection the SUBSCRIBE came
		// on; open (or reuse) it first so the Contact names its local end.
		if err := sipgo.ClientRequestBuild(e.client, req); err != nil {
			return err
		}
		conn, err := e.ua.TransportLayer().ClientRequestConnection(ctx, req)
		if err != nil {
			return fmt.Errorf("connecting to %s: %w", dest, err)
		}
		la, _ := conn.LocalAddr().(*net.TCPAddr)
		conn.TryClose() // the pool and the transaction keep their own references
		if la == nil {
			return fmt.Errorf("connecting to %s: no local address", dest)
		}
		contact.Host, contact.Port = la.IP.String(), la.Port
		contact.UriParams = sip.NewParams()
		contact.UriParams.Add("transport", "tcp")
	}
	req.AppendHeader(&sip.ContactHeader{Address: contact})
	return nil
}

// onNotify answers every NOTIFY before returning (sipgo ends the
// transaction when the handler returns).
func (e *endpoint) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	respond := func(code int, reason string) {
		res := sip.NewResponseFromRequest(req, code, reason, nil)
		if err := tx.Respond(res); err != nil {
			e.log.Warn("answering NOTIFY", "status", code, "err", err)
		}
	}
	s := e.current()
	if s == nil {
		respond(481, "Subscription Does Not Exist")
		return
	}
	s.receive(req, respond)
}

// session is the state one subscription shares between the NOTIFY handler
// goroutines and the Run loop.
type session struct {
	log   *slog.Logger
	event string // the package NOTIFYs must name

	dialogMu sync.Mutex
	dialog   dialog

	// deliverMu serialises NOTIFY handling from dialog check to enqueue, so
	// that events reach the Run loop in CSeq order: a notifier sends the
	// next NOTIFY of a dialog only after our answer to the previous one.
	deliverMu sync.Mutex
	events    chan event
	// done is closed when the Run loop stops reading events.
	done chan struct{}
}

// event is one accepted NOTIFY.
type event struct {
	n   Notify
	sub subState
}

func newSession(log *slog.Logger, pkg string) *session {
	s := &session{
		event:  pkg,
		dialog: newDialog(),
		events: make(chan event, eventQueue),
		done:   make(chan struct{}),
	}
	s.log = log.With("call_id", s.dialog.callID)
	return s
}

// receive checks one NOTIFY, answers it and queues it for the Run loop.
// The answer goes out first (RFC 6665 4.1.3: promptly, not waiting for the
// user), still under deliverMu so the next NOTIFY queues behind this one.
func (s *session) receive(req *sip.Request, respond func(code int, reason string)) {
	s.deliverMu.Lock()
	defer s.deliverMu.Unlock()
	ev, code, reason := s.check(req)
	respond(code, reason)
	if code != 200 {
		return
	}
	select {
	case s.events <- ev:
	case <-s.done:
	}
}

// check matches a NOTIFY to the dialog and parses it into an event; a
// code other than 200 refuses it.
func (s *session) check(req *sip.Request) (ev event, code int, reason string) {
	if h := req.GetHeader("Event"); h == nil || eventPackage(h.Value()) != s.event {
		return ev, 481, "Subscription Does Not Exist"
	}
	s.dialogMu.Lock()
	code, reason = s.dialog.matchNotify(req)
	s.dialogMu.Unlock()
	if code != 0 {
		return ev, code, reason
	}

	ev = event{n: Notify{Received: time.Now(), Raw: req}}
	// RFC 3680's own examples predate the mandatory Subscription-State
	// (erratum 3494); read a missing one as active.
	ev.sub = subState{state: subActive, expires: -1, retryAfter: -1}
	if h := req.GetHeader("Subscription-State"); h != nil {
		ev.n.SubscriptionState = h.Value()
		ev.sub = parseSubState(h.Value())
	}
	if body := req.Body(); len(strings.TrimSpace(string(body))) > 0 {
		var err error
		if s.event == "reg" {
			var doc *Reginfo
			if doc, err = ParseReginfo(body); err == nil {
				ev.n.Doc, ev.n.Version, ev.n.Full = doc, doc.Version, doc.State == StateFull
			}
		} else {
			var doc *Watcherinfo
			if doc, err = ParseWatcherinfo(body); err == nil {
				ev.n.Winfo, ev.n.Version, ev.n.Full = doc, doc.Version, doc.State == StateFull
			}
		}
		if err != nil {
			s.log.Warn("unusable NOTIFY body", "err", err)
			if ev.sub.state != subTerminated {
				return ev, 400, "Bad Document"
			}
			// The termination still counts; the state it carried is lost.
		}
	}
	return ev, 200, "OK"
}

// eventPackage returns the package name of an Event header value.
func eventPackage(v string) string {
	name, _, _ := strings.Cut(v, ";")
	return strings.TrimSpace(name)
}
