package notifier

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
)

// States is the one read the notifier needs from the bridge.
type States interface {
	// Lookup returns the current registration of an AOR and the sequence
	// number of the last change it contains.
	Lookup(aor string) (bridge.Registration, uint64)
	// Ready reports whether the registrations are known yet.
	Ready() bool
}

// Doer sends one request and returns its final response: the seam through
// which every NOTIFY leaves (a sipgo client in production, a function in
// tests).
type Doer interface {
	Do(ctx context.Context, req *sip.Request) (*sip.Response, error)
}

// udpMaxMessage is the largest UDP message regbridge sends or accepts.
// sipgo refuses UDP writes over 1300 bytes by default (its issue #206), and a
// reginfo NOTIFY with a few contacts is larger; IP fragmentation carries it.
const udpMaxMessage = 65535

var allowLargeUDP sync.Once

// Notifier serves SUBSCRIBE for the reg event package and sends NOTIFYs.
type Notifier struct {
	cfg    Config
	log    *slog.Logger
	states States

	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	doer   Doer
	closed atomic.Bool

	// listeners are opened by Listen; bound holds their real addresses.
	listeners []listener
	bound     []ListenAddr

	// subsMu guards subs and byAOR.
	subsMu sync.RWMutex
	subs   map[string]*subscription   // by dialog id
	byAOR  map[string][]*subscription // by canonical AOR

	// readyMu guards ready: subscriptions with work and no delivery yet.
	readyMu sync.Mutex
	ready   []*subscription
	readyC  chan struct{}

	deliveries sync.WaitGroup
	stats      Stats
	obs        Observer
}

// listener is an opened listener of either kind.
type listener struct {
	network string
	packet  net.PacketConn
	stream  net.Listener
}

// Stats counts what the notifier did (exported for metrics and tests).
type Stats struct {
	Sent, Failed, Removed atomic.Uint64
}

// New builds a notifier reading registrations from states. It does no I/O;
// call Listen, then Run.
func New(cfg Config, states States, log *slog.Logger) (*Notifier, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	allowLargeUDP.Do(func() {
		// Process-wide sipgo limit (see udpMaxMessage), raised once and
		// never lowered, before any transport of ours runs.
		if sip.UDPMTUSize < udpMaxMessage+200 {
			sip.UDPMTUSize = udpMaxMessage + 200
		}
	})
	log = log.With("component", "notifier")
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("regbridge"))
	if err != nil {
		return nil, fmt.Errorf("creating SIP user agent: %w", err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		return nil, fmt.Errorf("creating SIP server: %w", err)
	}
	client, err := sipgo.NewClient(ua, sipgo.WithClientLogger(log))
	if err != nil {
		return nil, fmt.Errorf("creating SIP client: %w", err)
	}
	n := &Notifier{
		cfg:    cfg,
		log:    log,
		states: states,
		ua:     ua,
		srv:    srv,
		doer:   clientDoer{client},
		subs:   make(map[string]*subscription),
		byAOR:  make(map[string][]*subscription),
		readyC: make(chan struct{}, 1),
		obs:    nopObserver{},
	}
	srv.OnSubscribe(n.onSubscribe)
	srv.OnOptions(n.onOptions)
	srv.OnNotify(func(req *sip.Request, tx sip.ServerTransaction) {
		n.respond(tx, req, 481, "Call/Transaction Does Not Exist")
	})
	return n, nil
}

// SetDoer replaces the seam NOTIFYs leave through (tests).
func (n *Notifier) SetDoer(d Doer) { n.doer = d }

// clientDoer sends through sipgo. The request is complete except Via.
type clientDoer struct{ c *sipgo.Client }

func (d clientDoer) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	return d.c.Do(ctx, req, sipgo.ClientRequestAddVia)
}

// Listen opens every configured listener, so that a port already in use
// stops start-up with a clear error before anything runs.
func (n *Notifier) Listen() error {
	for _, l := range n.cfg.Listen {
		switch l.Network {
		case "udp":
			pc, err := net.ListenPacket("udp", l.Addr)
			if err != nil {
				n.closeListeners()
				return fmt.Errorf("listening on %s: %w", l, err)
			}
			n.listeners = append(n.listeners, listener{network: "udp", packet: pc})
			n.bound = append(n.bound, ListenAddr{"udp", pc.LocalAddr().String()})
		case "tcp":
			ln, err := net.Listen("tcp", l.Addr)
			if err != nil {
				n.closeListeners()
				return fmt.Errorf("listening on %s: %w", l, err)
			}
			n.listeners = append(n.listeners, listener{network: "tcp", stream: ln})
			n.bound = append(n.bound, ListenAddr{"tcp", ln.Addr().String()})
		}
	}
	return nil
}

func (n *Notifier) closeListeners() {
	for _, l := range n.listeners {
		if l.packet != nil {
			l.packet.Close()
		}
		if l.stream != nil {
			l.stream.Close()
		}
	}
}

// Addrs returns the bound listener addresses (after Listen).
func (n *Notifier) Addrs() []ListenAddr { return n.bound }

// Run serves SIP until ctx ends, then ends every subscription with a final
// NOTIFY (terminated;reason=deactivated, so subscribers re-subscribe at once,
// RFC 6665 4.2.2) within the configured drain time, and returns.
func (n *Notifier) Run(ctx context.Context) error {
	if len(n.listeners) == 0 {
		if err := n.Listen(); err != nil {
			return err
		}
	}
	serveErr := make(chan error, len(n.listeners))
	var serving sync.WaitGroup
	for _, l := range n.listeners {
		serving.Add(1)
		go func() {
			defer serving.Done()
			var err error
			if l.packet != nil {
				err = n.srv.ServeUDP(l.packet)
			} else {
				err = n.srv.ServeTCP(l.stream)
			}
			if err != nil && !n.closed.Load() {
				serveErr <- fmt.Errorf("serving SIP on %s: %w", l.network, err)
			}
		}()
	}
	for _, b := range n.bound {
		n.log.Info("listening", "transport", b.Network, "addr", b.Addr)
	}

	dispatchCtx, stopDispatch := context.WithCancel(context.WithoutCancel(ctx))
	dispatched := make(chan struct{})
	go func() { defer close(dispatched); n.dispatch(dispatchCtx) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	n.shutdown()
	stopDispatch()
	<-dispatched
	n.closed.Store(true)
	n.closeListeners()
	n.ua.Close()
	serving.Wait()
	return err
}

// shutdown ends every subscription with deactivated and waits, bounded by
// the drain time, for the final NOTIFYs.
func (n *Notifier) shutdown() {
	n.subsMu.RLock()
	all := make([]*subscription, 0, len(n.subs))
	for _, s := range n.subs {
		all = append(all, s)
	}
	n.subsMu.RUnlock()
	for _, s := range all {
		n.end(s, ReasonDeactivated)
	}
	if len(all) == 0 {
		return
	}
	n.log.Info("ending subscriptions", "count", len(all), "drain", n.cfg.Drain)
	deadline := time.Now().Add(n.cfg.Drain)
	for time.Now().Before(deadline) {
		n.subsMu.RLock()
		left := len(n.subs)
		n.subsMu.RUnlock()
		if left == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	n.log.Warn("drain time over; subscriptions left without a final NOTIFY", "count", len(n.subs))
}

// Publish takes a change from the bridge (bridge.Publisher). It only
// coalesces and schedules; it never blocks on the network.
func (n *Notifier) Publish(c bridge.Change) {
	canonical := bridge.CanonicalAOR(c.AOR)
	n.subsMu.RLock()
	list := n.byAOR[canonical]
	for _, s := range list {
		if s.offer(&c) {
			n.enqueue(s)
		}
	}
	n.subsMu.RUnlock()
}

// Count returns the number of live subscriptions.
func (n *Notifier) Count() int {
	n.subsMu.RLock()
	defer n.subsMu.RUnlock()
	return len(n.subs)
}

// Stats returns the notifier's counters.
func (n *Notifier) Stats() *Stats { return &n.stats }

func (n *Notifier) add(s *subscription) {
	n.subsMu.Lock()
	defer n.subsMu.Unlock()
	n.subs[s.id] = s
	n.byAOR[s.canonical] = append(n.byAOR[s.canonical], s)
}

func (n *Notifier) lookup(id string) *subscription {
	n.subsMu.RLock()
	defer n.subsMu.RUnlock()
	return n.subs[id]
}

// remove forgets a subscription; nothing more is sent on it.
func (n *Notifier) remove(s *subscription) {
	s.mu.Lock()
	s.done = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	n.subsMu.Lock()
	defer n.subsMu.Unlock()
	if n.subs[s.id] != s {
		return
	}
	delete(n.subs, s.id)
	list := n.byAOR[s.canonical]
	for i, x := range list {
		if x == s {
			list[i] = list[len(list)-1]
			list[len(list)-1] = nil
			list = list[:len(list)-1]
			break
		}
	}
	if len(list) == 0 {
		delete(n.byAOR, s.canonical)
	} else {
		n.byAOR[s.canonical] = list
	}
}

// end schedules the final NOTIFY of s with reason.
func (n *Notifier) end(s *subscription, reason Reason) {
	s.mu.Lock()
	if s.done || s.final != nil {
		s.mu.Unlock()
		return
	}
	s.final = &reason
	claimed := s.claim()
	s.mu.Unlock()
	if claimed {
		n.enqueue(s)
	}
}

var errClosed = errors.New("notifier closed")
