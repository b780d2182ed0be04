package notifier

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/substore"
)

// Registrations is the one read the notifier needs from the bridge (the
// bridge's read side; bridge/httpapi names its own read of it the same).
type Registrations interface {
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
// sipgo refuses UDP writes over 1300 bytes by default (its own MTU guard), and a
// reginfo NOTIFY with a few contacts is larger; IP fragmentation carries it.
const udpMaxMessage = 65535

var allowLargeUDP sync.Once

// Notifier serves SUBSCRIBE for the reg event package and sends NOTIFYs.
type Notifier struct {
	cfg  Config
	log  *slog.Logger
	regs Registrations

	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	doer   Doer
	closed atomic.Bool

	// packages are the enabled event packages, allowEvents names them.
	packages    []*eventPackage
	allowEvents string

	// listeners are opened by Listen; bound holds their real addresses.
	listeners []listener
	bound     []ListenAddr
	// udpSockets are the UDP listeners, whose readers hand responses to
	// our NOTIFY transactions to udpTxs (udptx.go).
	udpSockets []*udpSocket
	udpTxs     *udpTxs
	udpSrv     *udpServerTxs // SUBSCRIBE transactions over UDP (udpsrv.go)
	// lean: UDP NOTIFYs to addresses, and NOTIFYs on a subscriber's TCP
	// or TLS connection, skip doer (SetDoer clears it).
	lean      bool
	conns     streamConns // accepted TCP, TLS, WS and WSS connections (conntx.go)
	tlsServer *tls.Config // nil without REGBRIDGE_TLS_CERT
	// noTCP remembers destinations that took no large NOTIFY over TCP;
	// tcpAttempts counts the attempts (large.go).
	noTCP       tcpRefusals
	tcpAttempts atomic.Uint64

	// recent remembers SUBSCRIBE transactions for CANCEL matching.
	recent recentTxs
	// localRoutes caches our address towards subscribers, for wildcard
	// listeners (contact.go).
	localRoutes routeCache

	// subsMu guards subs and byAOR.
	subsMu sync.RWMutex
	subs   map[string]*subscription   // by dialog id
	byAOR  map[string][]*subscription // by canonical AOR

	// readyMu guards ready: subscriptions with work and no delivery yet,
	// a queue from readyHead on.
	readyMu   sync.Mutex
	ready     []*subscription
	readyHead int
	readyC    chan struct{}

	deliveries sync.WaitGroup
	delivering atomic.Int32 // deliveries running now (pause polls it)
	stats      Counters
	obs        Observer
	guards     atomic.Pointer[Guards]
	leases     leases
	neutral    sync.Map // ids of politely blocked subscriptions

	// store keeps subscriptions across restarts and instances (nil: in
	// memory only); see persist.go.
	store      Store
	parts      Partitioned // store, when it partitions subscriptions
	storeLease time.Duration
	// deferredMu guards deferred: adopted subscriptions owed a full
	// NOTIFY once the registrations are known.
	deferredMu sync.Mutex
	deferred   []*subscription
	// watchers records reg and presence subscriptions for the winfo
	// packages (watchers.go).
	watchers WatcherStore

	// hooks are for tests: each, when set, runs at a point where another
	// goroutine may interleave with a SUBSCRIBE's handler.
	hooks struct {
		// beforeAdd: a new subscription is built (and stored), not yet
		// known here nor answered.
		beforeAdd atomic.Pointer[func()]
		// answered: a new subscription's 200 has been sent, its first
		// NOTIFY not yet queued.
		answered atomic.Pointer[func()]
	}
}

// hook runs the test hook h, if set.
func hook(h *atomic.Pointer[func()]) {
	if f := h.Load(); f != nil {
		(*f)()
	}
}

// Counters count what the notifier did, live (for metrics and tests; a
// Stats method elsewhere returns a snapshot).
type Counters struct {
	Sent, Failed, Removed atomic.Uint64
	// Refused counts SUBSCRIBEs refused by the guards (limits,
	// authentication, policy).
	Refused atomic.Uint64
	// Overloaded counts UDP SUBSCRIBEs answered 503 without a
	// transaction because REGBRIDGE_SUBSCRIBE_MAX_TRANSACTIONS were held
	// or every handler was busy.
	Overloaded atomic.Uint64
	// LargeOverTCP counts NOTIFYs of UDP dialogs over the UDP path MTU
	// limit (1300 bytes) answered over TCP; LargeOverUDP those answered
	// over UDP because the destination took no TCP; LargeEnded the
	// subscriptions ended because such a NOTIFY, too large for a UDP
	// datagram too, reached the subscriber over no transport (large.go).
	LargeOverTCP, LargeOverUDP, LargeEnded atomic.Uint64
	// HandlerPanics and DeliveryPanics count panics recovered in SIP
	// request handlers and in NOTIFY deliveries (recover.go).
	HandlerPanics, DeliveryPanics atomic.Uint64
}

func (s *Counters) countRefusal(string) { s.Refused.Add(1) }

// New builds a notifier reading registrations from regs. It reads the
// TLS files when configured but opens no socket; call Listen, then Run.
func New(cfg Config, regs Registrations, log *slog.Logger) (*Notifier, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	tlsServer, tlsClient, err := loadTLS(&cfg)
	if err != nil {
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
	uaOpts := []sipgo.UserAgentOption{sipgo.WithUserAgent("regbridge")}
	if tlsClient != nil {
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(tlsClient))
	}
	ua, err := sipgo.NewUA(uaOpts...)
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
		regs:   regs,
		ua:     ua,
		srv:    srv,
		udpTxs: newUDPTxs(),
		subs:   make(map[string]*subscription),
		byAOR:  make(map[string][]*subscription),
		readyC: make(chan struct{}, 1),
		obs:    nopObserver{},

		tlsServer: tlsServer,
	}
	n.doer, n.lean = clientDoer{client}, true
	n.watchers = substore.NewLocalWatchers(n.watcherChanged)
	n.udpSrv = newUDPServerTxs(n.recovering(answerableOnly(n.onAdmittedSubscribe)), cfg.MaxTransactions)
	n.udpSrv.admit = func(req *sip.Request) *sip.Response {
		if !answerable(req) {
			return nil // the handler drops it: no answer could be SIP
		}
		return n.admitRequest(req)
	}
	n.udpSrv.overloaded = func() {
		n.obs.SubscribeAnswered(503)
		n.stats.Overloaded.Add(1)
	}
	n.packages, n.allowEvents = packages(&cfg)
	srv.OnSubscribe(n.recovering(answerableOnly(n.onSubscribe)))
	srv.OnOptions(n.recovering(answerableOnly(n.onOptions)))
	srv.OnCancel(n.recovering(answerableOnly(n.onCancel)))
	srv.OnNoRoute(n.recovering(answerableOnly(n.onNoRoute)))
	srv.OnNotify(n.recovering(func(req *sip.Request, tx sip.ServerTransaction) {
		// regbridge subscribes to nothing (and the observer counts only
		// answers to SUBSCRIBE).
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
	}))
	return n, nil
}

// SetDoer replaces the seam NOTIFYs leave through (tests); every NOTIFY,
// UDP included, then goes through d.
func (n *Notifier) SetDoer(d Doer) { n.doer, n.lean = d, false }

// clientDoer sends through sipgo. The request is complete except Via.
type clientDoer struct{ c *sipgo.Client }

func (d clientDoer) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	return d.c.Do(ctx, req, sipgo.ClientRequestAddVia)
}

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
			if err := n.serve(l); err != nil && !n.closed.Load() {
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
	leaseCtx, stopLease := context.WithCancel(ctx)
	defer stopLease()
	leased := make(chan struct{})
	go func() {
		defer close(leased)
		if n.store != nil {
			n.runLease(leaseCtx)
		}
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-serveErr:
	}
	// Refuse new SUBSCRIBEs (503) from here on: one accepted during the
	// drain would get no final NOTIFY and hold the drain to its limit.
	n.closed.Store(true)
	stopLease()
	<-leased
	n.shutdown()
	stopDispatch()
	<-dispatched
	if n.store != nil {
		n.closeStored()
	}
	n.closeListeners()
	n.ua.Close()
	serving.Wait()
	return err
}

// shutdown ends every subscription with deactivated and waits, bounded by
// the drain time, for the final NOTIFYs.
func (n *Notifier) shutdown() {
	if n.store != nil {
		n.pause()
		return
	}
	n.subsMu.RLock()
	all := make([]*subscription, 0, len(n.subs))
	for _, s := range n.subs {
		all = append(all, s)
	}
	n.subsMu.RUnlock()
	for _, s := range all {
		n.end(s, ending{reason: ReasonDeactivated})
	}
	if len(all) == 0 {
		return
	}
	n.log.Info("ending subscriptions", "count", len(all), "drain", n.cfg.Drain)
	deadline := time.Now().Add(n.cfg.Drain)
	for {
		left := n.Count()
		if left == 0 {
			return
		}
		if !time.Now().Before(deadline) {
			n.log.Warn("drain time over; subscriptions left without a final NOTIFY", "count", left)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
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

// Transactions returns the number of UDP SUBSCRIBE transactions held
// (running, or answered and absorbing retransmissions until Timer J).
func (n *Notifier) Transactions() int { return n.udpSrv.len() }

// Counters returns the notifier's live counters.
func (n *Notifier) Counters() *Counters { return &n.stats }

// add makes s known, unless the notifier is closed: closed is set before
// shutdown lists the subscriptions to end under subsMu, so checking it
// under subsMu means s is either in that list or refused here, never
// added after it and left without a final NOTIFY.
//
// A copy of the same dialog known already (adopted from the store while
// s was being answered) is replaced: left in byAOR it would send every
// change a second time.
func (n *Notifier) add(s *subscription) bool {
	n.subsMu.Lock()
	if n.closed.Load() {
		n.subsMu.Unlock()
		return false
	}
	old := n.subs[s.id]
	if old == s {
		old = nil
	}
	if old != nil {
		n.unlinkAOR(old)
	}
	n.subs[s.id] = s
	if _, neutral := n.neutral.Load(s.id); !neutral { // never notified of changes: see admission.neutral
		n.byAOR[s.canonical] = append(n.byAOR[s.canonical], s)
	}
	n.subsMu.Unlock()
	if old != nil {
		old.halt()
	}
	return true
}

// halt marks s done and stops its timers: nothing more is sent on it.
func (s *subscription) halt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.window != nil {
		s.window.Stop()
	}
}

// unlinkAOR removes s from byAOR. Called with subsMu held.
func (n *Notifier) unlinkAOR(s *subscription) {
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

func (n *Notifier) lookup(id string) *subscription {
	n.subsMu.RLock()
	defer n.subsMu.RUnlock()
	return n.subs[id]
}

// remove ends a subscription: it is forgotten here and in the store.
func (n *Notifier) remove(s *subscription) {
	n.drop(s)
	n.watchEnded(s)
	if s.stored {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		if err := n.store.Delete(ctx, s.id); err != nil {
			n.log.Warn("deleting stored subscription failed", "aor", s.aor, "err", err)
		}
	}
}

// drop forgets a subscription here; nothing more is sent on it from this
// instance.
func (n *Notifier) drop(s *subscription) {
	n.leases.release(s.id)
	n.neutral.Delete(s.id)
	s.halt()
	n.subsMu.Lock()
	defer n.subsMu.Unlock()
	if n.subs[s.id] != s {
		return
	}
	delete(n.subs, s.id)
	n.unlinkAOR(s)
}

// end schedules the final NOTIFY of s.
func (n *Notifier) end(s *subscription, e ending) bool {
	s.mu.Lock()
	if s.done || s.final != nil {
		s.mu.Unlock()
		return false
	}
	s.final = &e
	claimed := s.claim()
	s.mu.Unlock()
	if claimed {
		n.enqueue(s)
	}
	return true
}

// Terminate ends every subscription to aor, of any package, with a final
// NOTIFY carrying reason (RFC 6665 4.1.3, 4.2.2), and returns how many it
// ended. It is the hook for the decisions regbridge does not make itself:
// authorization withdrawn (ReasonRejected), the AOR deprovisioned
// (ReasonNoResource), maintenance (ReasonProbation with retryAfter) or an
// authorization that never came (ReasonGiveUp with retryAfter).
// retryAfter is sent, in whole seconds, only with probation and giveup,
// the reasons it means something for. After rejected, noresource and
// giveup the final NOTIFY reveals no registration state.
func (n *Notifier) Terminate(aor string, reason Reason, retryAfter time.Duration) (int, error) {
	if !reason.valid() {
		return 0, fmt.Errorf("%w: %q", ErrReason, reason)
	}
	if retryAfter < 0 {
		return 0, fmt.Errorf("%w: negative retry-after %v", ErrReason, retryAfter)
	}
	e := ending{reason: reason}
	if reason.retryAfterMeaningful() {
		e.retryAfter = uint32(min(retryAfter/time.Second, 1<<32-1))
	}
	n.subsMu.RLock()
	list := slices.Clone(n.byAOR[bridge.CanonicalAOR(aor)])
	n.subsMu.RUnlock()
	count := 0
	for _, s := range list {
		if n.end(s, e) {
			count++
		}
	}
	return count, nil
}

// ErrReason is returned by Terminate for a reason regbridge does not send.
var ErrReason = errors.New("not a Subscription-State reason regbridge sends")

// errClosed: the notifier is shutting down.
var errClosed = errors.New("notifier closed")
