package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Defaults of Config.
const (
	// DefaultServer is regbridge's own default listen address.
	DefaultServer = "udp://127.0.0.1:5065"
	// DefaultExpires is RFC 3680 section 4.4's default subscription
	// duration, chosen just above the usual 3600 s registration so the two
	// refreshes do not fall together.
	DefaultExpires = 3761 * time.Second
	// DefaultLocal is the local listen host; "::1" is picked instead when
	// the server host is an IPv6 literal.
	DefaultLocal = "127.0.0.1"
	// DefaultAnswerTimeout bounds the wait for the answer to an initial
	// SUBSCRIBE. Timer B (64*T1, 32 s) is made for lossy paths; a notifier
	// that has not answered after the retransmissions at 0.5, 1 and 2 s
	// is almost always not there, and whoever typed the address should
	// hear so at once.
	DefaultAnswerTimeout = 5 * time.Second
)

// Timing of the subscription.
const (
	// maxRefreshMargin caps how long before expiry a refresh is sent; the
	// margin is a third of the granted duration below that, leaving room
	// for a retry or two on short subscriptions.
	maxRefreshMargin = 60 * time.Second
	// refreshRetry is the pause after a refresh that failed without ending
	// the subscription (timeout, 5xx): it is still valid until it expires.
	refreshRetry = 5 * time.Second
	// unsubscribeWait bounds shutdown: the Expires: 0 SUBSCRIBE and the
	// final NOTIFY must both arrive within it.
	unsubscribeWait = 2 * time.Second
	// probationDelay is the wait before re-subscribing after
	// terminated;reason=probation or giveup without retry-after ("retry
	// later", RFC 6665 4.2.2).
	probationDelay = 30 * time.Second
	// A subscription that ended sooner than stableAfter counts as a failure
	// for the re-subscribe backoff, which doubles from 1 s up to maxBackoff.
	stableAfter = 30 * time.Second
	maxBackoff  = time.Minute
)

// Config says what to watch and where. Zero fields take the defaults above.
type Config struct {
	// Server is the notifier: "udp://host:port" or "tcp://host:port"
	// (port 5060 when absent). Default DefaultServer.
	Server string
	// AOR is the resource to watch, e.g. "sip:alice@example.com"; it is the
	// Request-URI and To of the initial SUBSCRIBE. Required.
	AOR string
	// Expires is the requested subscription duration, whole seconds.
	// Default DefaultExpires.
	Expires time.Duration
	// Local is the local IP to listen on (UDP) and to name in From by
	// default. Default DefaultLocal, or "::1" for an IPv6 server.
	Local string
	// From is the subscriber identity. Default "sip:watch@<Local>".
	From string
	// Event is the event package: "reg" (the default), or "reg.winfo"
	// or "presence.winfo" for the AOR's watchers (RFC 3857).
	Event string
	// AnswerTimeout bounds the wait for the final answer to each initial
	// SUBSCRIBE. Default DefaultAnswerTimeout.
	AnswerTimeout time.Duration
	// Notice, when set, receives one-line messages for the person
	// watching: a retry after 503, a subscription ended by the notifier, a
	// re-subscription. Called from Run's goroutine. Nil: they are logged
	// at info level.
	Notice func(msg string)
}

// ConfigError names the Config field New rejected.
type ConfigError struct {
	Field string // "Server", "AOR", "Expires", "Local", "From" or "Event"
	Err   error
}

func (e *ConfigError) Error() string { return "watch config: " + e.Field + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// RejectedError is a final non-2xx answer to the initial SUBSCRIBE.
type RejectedError struct {
	StatusCode int
	Reason     string
	// RetryAfter is the answer's Retry-After; zero when it had none.
	RetryAfter time.Duration
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("SUBSCRIBE rejected: %d %s", e.StatusCode, e.Reason)
}

// TerminatedError is a subscription ended by the notifier with a reason
// that forbids subscribing again (noresource, rejected, invariant).
type TerminatedError struct {
	Reason string
}

func (e *TerminatedError) Error() string {
	return "subscription terminated by the notifier: reason=" + e.Reason
}

// NoAnswerError is an initial SUBSCRIBE that got no answer at all: nothing
// listens at Server, or a firewall drops the requests.
type NoAnswerError struct {
	Server string        // as configured, e.g. "udp://127.0.0.1:5065"
	After  time.Duration // the wait that expired; zero when sending failed
	Err    error         // the transport's error
}

func (e *NoAnswerError) Error() string {
	if e.After > 0 {
		return fmt.Sprintf("no answer from %s within %v: is regbridge running and listening there?", e.Server, e.After)
	}
	return fmt.Sprintf("no answer from %s: is regbridge running and listening there? (%v)", e.Server, e.Err)
}
func (e *NoAnswerError) Unwrap() error { return e.Err }

// ErrNoNotify is returned when a SUBSCRIBE was accepted but no NOTIFY
// followed within Timer N (64*T1, RFC 6665 section 4.1.2.4).
var ErrNoNotify = errors.New("no NOTIFY after the SUBSCRIBE was accepted")

// Notify is one NOTIFY of the subscription as the subscriber accepted it.
type Notify struct {
	Received time.Time
	// Version and Full describe Doc; zero when the NOTIFY had no body.
	Version uint32
	Full    bool
	// SubscriptionState is the raw header value, e.g. "active;expires=3600".
	SubscriptionState string
	// Doc is the parsed body as received (not merged with earlier ones);
	// Winfo instead for the watcher information packages.
	Doc   *Reginfo
	Winfo *Watcherinfo
	Raw   *sip.Request
}

// Subscriber is the subscriber side of the reg event package (RFC 3680
// over RFC 6665): it subscribes to one AOR and reports every NOTIFY.
type Subscriber struct {
	log     *slog.Logger
	network string // "UDP" or "TCP"
	server  string // host:port
	aor     sip.Uri
	from    sip.Uri
	local   string
	expires uint32 // seconds
	event   string // Event header value
	accept  string // the body type the package carries

	serverURL     string // Config.Server, for messages
	answerTimeout time.Duration
	notice        func(string)
}

// New checks cfg and returns a Subscriber; nothing is opened before Run.
// Errors are *ConfigError.
func New(cfg Config, log *slog.Logger) (*Subscriber, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Subscriber{}
	var err error
	if cfg.Server == "" {
		cfg.Server = DefaultServer
	}
	s.network, s.server, err = parseServer(cfg.Server)
	if err != nil {
		return nil, &ConfigError{"Server", err}
	}
	s.serverURL = strings.ToLower(s.network) + "://" + s.server
	s.answerTimeout = cfg.AnswerTimeout
	if s.answerTimeout <= 0 {
		s.answerTimeout = DefaultAnswerTimeout
	}
	s.notice = cfg.Notice

	if strings.TrimSpace(cfg.AOR) == "" {
		return nil, &ConfigError{"AOR", errors.New("missing")}
	}
	if err := sip.ParseUri(strings.TrimSpace(cfg.AOR), &s.aor); err != nil {
		return nil, &ConfigError{"AOR", fmt.Errorf("%q: %w", cfg.AOR, err)}
	}
	if (s.aor.Scheme != "sip" && s.aor.Scheme != "sips") || s.aor.Host == "" {
		return nil, &ConfigError{"AOR", fmt.Errorf("%q is not a sip: or sips: URI with a host", cfg.AOR)}
	}

	switch {
	case cfg.Expires == 0:
		cfg.Expires = DefaultExpires
	case cfg.Expires < 0 || cfg.Expires > math.MaxUint32*time.Second:
		return nil, &ConfigError{"Expires", fmt.Errorf("%v out of range", cfg.Expires)}
	}
	s.expires = uint32((cfg.Expires + time.Second - 1) / time.Second)

	s.local = cfg.Local
	if s.local == "" {
		s.local = DefaultLocal
		if host, _, _ := net.SplitHostPort(s.server); strings.Contains(host, ":") {
			s.local = "::1"
		}
	}
	s.local = strings.Trim(s.local, "[]")
	if net.ParseIP(s.local) == nil {
		return nil, &ConfigError{"Local", fmt.Errorf("%q is not an IP address", cfg.Local)}
	}

	if cfg.From == "" {
		cfg.From = "sip:watch@" + hostForURI(s.local)
	}
	if err := sip.ParseUri(cfg.From, &s.from); err != nil || s.from.Host == "" {
		return nil, &ConfigError{"From", fmt.Errorf("%q is not a SIP URI", cfg.From)}
	}

	switch cfg.Event {
	case "", "reg":
		s.event, s.accept = "reg", "application/reginfo+xml"
	case "reg.winfo", "presence.winfo":
		s.event, s.accept = cfg.Event, "application/watcherinfo+xml"
	default:
		return nil, &ConfigError{"Event", fmt.Errorf("%q is not reg, reg.winfo or presence.winfo", cfg.Event)}
	}

	s.log = log.With("component", "watch", "aor", s.aor.String(), "server", cfg.Server)
	return s, nil
}

// say tells the person watching what the subscriber does about a
// problem; without Config.Notice it goes to the log.
func (s *Subscriber) say(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	if s.notice != nil {
		s.notice(msg)
		return
	}
	s.log.Info(msg)
}

func hostForURI(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}

// parseServer splits "udp://host:port" into "UDP" and "host:port".
func parseServer(v string) (network, hostport string, err error) {
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		return "", "", fmt.Errorf("%q: want udp://host:port or tcp://host:port", v)
	}
	switch strings.ToLower(scheme) {
	case "udp":
		network = "UDP"
	case "tcp":
		network = "TCP"
	default:
		return "", "", fmt.Errorf("%q: unsupported scheme %q (want udp or tcp)", v, scheme)
	}
	rest = strings.TrimSuffix(rest, "/")
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		// No port: a bare host or a bracketed/unbracketed IPv6 literal.
		host, port = strings.Trim(rest, "[]"), "5060"
		if strings.Count(rest, ":") == 1 {
			return "", "", fmt.Errorf("%q: bad host:port", v)
		}
	}
	if host == "" {
		return "", "", fmt.Errorf("%q: missing host", v)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", "", fmt.Errorf("%q: bad port %q", v, port)
	}
	return network, net.JoinHostPort(host, port), nil
}

// Run subscribes and calls out, from one goroutine and in order, for every
// NOTIFY of the subscription whose document is new (RFC 3680 4.8: stale
// or duplicate versions are answered but not reported) or that has no
// body. It answers every NOTIFY of its dialog with 200 OK (400 when the
// body is not a usable reginfo document) and any other with 481. It
// refreshes the subscription at granted - min(granted/3, 60s), adopting a
// shorter expires from Subscription-State, and at once when a partial
// document skips versions. out must not block for long: NOTIFYs queue
// (boundedly) behind it.
//
// When ctx is cancelled Run unsubscribes (Expires: 0), waits at most
// unsubscribeWait for the final NOTIFY (reported to out like the others)
// and returns nil, also when the notifier does not answer.
//
// Run returns an error when the initial SUBSCRIBE fails (*RejectedError
// for a final non-2xx answer other than 503, naming its status code and
// reason; *NoAnswerError when nothing answers within AnswerTimeout), when
// no NOTIFY follows an accepted SUBSCRIBE in time (ErrNoNotify), or when the
// notifier ends the subscription with reason noresource, rejected or
// invariant (*TerminatedError). Any other end from the notifier side
// (terminated with reason timeout, deactivated, probation, giveup or none;
// a refresh answered 481 and the like; a lapse without a successful
// refresh) starts a new subscription, with a new dialog and version
// numbering: after retry-after when the notifier gives one, after
// probationDelay for probation and giveup without it, and never sooner
// than a backoff that grows while subscriptions keep ending quickly.
// Failures of those re-subscriptions other than a rejection are retried
// the same way. A 503 answer, to the first SUBSCRIBE too, is retried
// after its Retry-After (else the backoff). Config.Notice hears of each
// retry, each end from the notifier side and each re-subscription. A new subscription numbers its documents from 0 again;
// its NOTIFYs carry a new Call-ID (Notify.Raw).
func (s *Subscriber) Run(ctx context.Context, out func(Notify)) error {
	if out == nil {
		out = func(Notify) {}
	}
	ep, err := newEndpoint(s)
	if err != nil {
		return err
	}
	defer ep.close()

	var backoff time.Duration
	subscribed := false // a subscription was made before: this is a re-subscription
	for {
		start := time.Now()
		o := s.subscription(ctx, ep, out, subscribed)
		subscribed = subscribed || o.subscribed
		if time.Since(start) < stableAfter {
			backoff = min(max(2*backoff, time.Second), maxBackoff)
		} else {
			backoff = 0
		}
		var rej *RejectedError
		var term *TerminatedError
		switch {
		case o.done:
			return nil
		case errors.As(o.err, &rej) && rej.StatusCode == 503:
			// Overloaded or starting (RFC 3261 21.5.4): ask again when
			// told to, else after the backoff.
			o.retryAfter = rej.RetryAfter
			if o.retryAfter > 0 {
				s.say("SUBSCRIBE answered 503 %s: retrying in %v as its Retry-After asks", rej.Reason, o.retryAfter)
			} else {
				s.say("SUBSCRIBE answered 503 %s: retrying in %v", rej.Reason, backoff)
			}
		case o.err != nil:
			if !subscribed || rej != nil || errors.As(o.err, &term) {
				return o.err
			}
			s.say("re-subscribing failed: %v; trying again in %v", o.err, max(o.retryAfter, backoff))
		default:
			s.say("subscription ended (%s); subscribing again in %v", o.why, max(o.retryAfter, backoff))
		}
		delay := max(o.retryAfter, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}

// outcome is how one subscription (one dialog) ended.
type outcome struct {
	done       bool          // unsubscribed after ctx was cancelled
	err        error         // give up (or, re-subscribing, retry later)
	retryAfter time.Duration // otherwise: subscribe again after this
	why        string        // otherwise: what ended it, for the notice
	subscribed bool          // the initial SUBSCRIBE was accepted
}

// subscription runs one dialog from the initial SUBSCRIBE to its end;
// again says an earlier subscription existed, so that success is
// announced as a re-subscription.
func (s *Subscriber) subscription(ctx context.Context, ep *endpoint, out func(Notify), again bool) (o outcome) {
	sess := newSession(s.log, s.event)
	ep.setSession(sess)
	defer func() {
		ep.setSession(nil)
		close(sess.done)
	}()
	sub := &subscriptionLoop{s: s, ep: ep, sess: sess, out: out, requested: s.expires}

	granted, err := sub.initial(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return outcome{done: true}
		}
		return outcome{err: err}
	}
	defer func() { o.subscribed = true }()
	if again {
		sess.dialogMu.Lock()
		callID := sess.dialog.callID
		sess.dialogMu.Unlock()
		s.say("re-subscribed to %s at %s (new dialog, Call-ID %s)", s.aor.String(), s.serverURL, callID)
	}
	now := time.Now()
	sub.setExpiry(now, granted)
	timerN := now.Add(64 * sip.T1)

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wake := sub.expiresAt
		if !sub.refreshAt.IsZero() && sub.refreshAt.Before(wake) {
			wake = sub.refreshAt
		}
		if !sub.gotNotify && timerN.Before(wake) {
			wake = timerN
		}
		timer.Reset(time.Until(wake))

		select {
		case <-ctx.Done():
			return sub.unsubscribe()

		case ev := <-sess.events:
			if o, end := sub.handle(ev); end {
				return o
			}

		case <-timer.C:
			now := time.Now()
			switch {
			case !sub.gotNotify && !now.Before(timerN):
				return outcome{err: fmt.Errorf("%w within %v", ErrNoNotify, 64*sip.T1)}
			case !now.Before(sub.expiresAt):
				sess.log.Warn("subscription lapsed without a successful refresh")
				return outcome{why: "it lapsed without a successful refresh"}
			case !sub.refreshAt.IsZero() && !now.Before(sub.refreshAt):
				if o, end := sub.refresh(ctx); end {
					return o
				}
			}
		}
	}
}

// subscriptionLoop is the Run-loop state of one subscription.
type subscriptionLoop struct {
	s    *Subscriber
	ep   *endpoint
	sess *session
	out  func(Notify)
	view View
	// wview replaces view for the watcher information packages.
	wview WatcherView

	requested uint32 // seconds asked for in SUBSCRIBEs
	gotNotify bool
	// refreshAt is zero when no refresh is due (granted 0: a fetch).
	refreshAt time.Time
	expiresAt time.Time
}

// setExpiry records a granted duration starting at now.
func (l *subscriptionLoop) setExpiry(now time.Time, granted time.Duration) {
	if granted <= 0 {
		// Nothing to refresh; allow time for the final NOTIFY.
		l.refreshAt = time.Time{}
		l.expiresAt = now.Add(64 * sip.T1)
		return
	}
	l.expiresAt = now.Add(granted)
	l.refreshAt = now.Add(granted - min(granted/3, maxRefreshMargin))
}

// send sends one SUBSCRIBE of the dialog and waits for its final answer.
func (l *subscriptionLoop) send(ctx context.Context, expires uint32) (*sip.Response, error) {
	l.sess.dialogMu.Lock()
	p := l.sess.dialog.next()
	l.sess.dialogMu.Unlock()

	req := buildSubscribe(p, l.s.aor, l.s.from, expires, l.s.event, l.s.accept)
	dest := routeDestination(p.routes)
	if dest == "" {
		// Without a route set, keep talking to the configured server
		// rather than to the notifier's Contact host: that is the address
		// known to be reachable (and, over TCP, the open connection).
		dest = l.s.server
	}
	if err := l.ep.prepare(ctx, req, dest, l.s.local); err != nil {
		return nil, err
	}
	res, err := l.ep.client.Do(ctx, req)
	if err == nil && res == nil {
		// sipgo reports a transaction terminated without error this way.
		err = errors.New("transaction ended without a response")
	}
	if err != nil {
		return nil, fmt.Errorf("sending SUBSCRIBE to %s: %w", dest, err)
	}
	if res.IsSuccess() {
		l.sess.dialogMu.Lock()
		l.sess.dialog.confirm(res)
		l.sess.dialogMu.Unlock()
	}
	return res, nil
}

// initial sends the dialog-creating SUBSCRIBE and returns the granted
// duration. A 423 is retried once with the notifier's Min-Expires.
func (l *subscriptionLoop) initial(ctx context.Context) (time.Duration, error) {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, l.s.answerTimeout)
		res, err := l.send(actx, l.requested)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return 0, err
			}
			e := &NoAnswerError{Server: l.s.serverURL, Err: err}
			if errors.Is(err, context.DeadlineExceeded) {
				e.After = l.s.answerTimeout
			}
			return 0, e
		}
		if res.StatusCode == 423 && attempt == 0 {
			if m, ok := headerUint(res, "Min-Expires"); ok && m > uint64(l.requested) && m <= math.MaxUint32 {
				l.requested = uint32(m)
				continue
			}
		}
		if !res.IsSuccess() {
			rej := &RejectedError{StatusCode: res.StatusCode, Reason: res.Reason}
			rej.RetryAfter = retryAfter(res)
			return 0, rej
		}
		g := grantedExpires(res, l.requested)
		l.sess.log.Info("subscribed", "expires", g)
		return g, nil
	}
}

// refresh sends an in-dialog SUBSCRIBE. It ends the subscription when the
// answer says it no longer exists (RFC 6665 4.1.2.2).
func (l *subscriptionLoop) refresh(ctx context.Context) (outcome, bool) {
	res, err := l.send(ctx, l.requested)
	now := time.Now()
	if err != nil {
		if ctx.Err() != nil {
			return outcome{}, false // the loop unsubscribes next
		}
		l.sess.log.Warn("refresh failed", "err", err)
		l.retryRefresh(now)
		return outcome{}, false
	}
	switch {
	case res.IsSuccess():
		l.setExpiry(now, grantedExpires(res, l.requested))
		return outcome{}, false
	case res.StatusCode == 423:
		if m, ok := headerUint(res, "Min-Expires"); ok && m > uint64(l.requested) && m <= math.MaxUint32 {
			l.requested = uint32(m)
			l.refreshAt = now
			return outcome{}, false
		}
	case endsSubscription(res.StatusCode):
		l.sess.log.Info("refresh says the subscription is gone", "status", res.StatusCode)
		return outcome{why: fmt.Sprintf("the refresh was answered %d %s", res.StatusCode, res.Reason)}, true
	}
	l.sess.log.Warn("refresh refused", "status", res.StatusCode, "reason", res.Reason)
	l.retryRefresh(now)
	return outcome{}, false
}

func (l *subscriptionLoop) retryRefresh(now time.Time) {
	l.refreshAt = now.Add(min(refreshRetry, max(l.expiresAt.Sub(now)/2, 0)))
}

// handle processes one accepted NOTIFY; end reports the subscription over.
func (l *subscriptionLoop) handle(ev event) (o outcome, end bool) {
	l.gotNotify = true
	if l.deliver(ev) && ev.sub.state != subTerminated {
		l.refreshAt = time.Now()
	}
	switch ev.sub.state {
	case subTerminated:
		reason := ev.sub.reason
		l.sess.log.Info("subscription terminated by the notifier", "reason", reason)
		if retryForbidden(reason) {
			return outcome{err: &TerminatedError{Reason: reason}}, true
		}
		o.why = "the notifier ended it: reason=" + reason
		if reason == "" {
			o.why = "the notifier ended it"
		}
		o.retryAfter = max(ev.sub.retryAfter, 0)
		if ev.sub.retryAfter < 0 && (reason == "probation" || reason == "giveup") {
			o.retryAfter = probationDelay
		}
		return o, true
	default:
		// active, pending, or an extension state: adopt a shorter expiry
		// (RFC 6665 4.1.3: the notifier may shorten, never lengthen).
		if e := ev.sub.expires; e >= 0 {
			if at := ev.n.Received.Add(e); at.Before(l.expiresAt) {
				l.setExpiry(ev.n.Received, e)
			}
		}
		return outcome{}, false
	}
}

// deliver applies the document to the view and reports the NOTIFY to out
// unless its document is stale; it returns whether a refresh is needed.
func (l *subscriptionLoop) deliver(ev event) (needRefresh bool) {
	if ev.n.Doc != nil || ev.n.Winfo != nil {
		var applied, need bool
		if ev.n.Winfo != nil {
			applied, need = l.wview.Apply(ev.n.Winfo)
		} else {
			applied, need = l.view.Apply(ev.n.Doc)
		}
		if !applied {
			l.sess.log.Debug("ignoring stale document", "version", ev.n.Version)
			return false
		}
		needRefresh = need
		if need {
			l.sess.log.Info("document versions skipped, asking for full state", "version", ev.n.Version)
		}
	}
	l.out(ev.n)
	return needRefresh
}

// unsubscribe ends the subscription after ctx was cancelled.
func (l *subscriptionLoop) unsubscribe() outcome {
	ctx, cancel := context.WithTimeout(context.Background(), unsubscribeWait)
	defer cancel()
	res, err := l.send(ctx, 0)
	if err != nil {
		l.sess.log.Warn("unsubscribe failed", "err", err)
		return outcome{done: true}
	}
	if !res.IsSuccess() {
		l.sess.log.Info("unsubscribe refused", "status", res.StatusCode, "reason", res.Reason)
		return outcome{done: true}
	}
	for {
		select {
		case ev := <-l.sess.events:
			l.deliver(ev)
			if ev.sub.state == subTerminated {
				return outcome{done: true}
			}
		case <-ctx.Done():
			l.sess.log.Info("no final NOTIFY after unsubscribe")
			return outcome{done: true}
		}
	}
}

// endsSubscription reports answers to a refresh after which the
// subscription no longer exists (RFC 6665 4.1.2.2).
func endsSubscription(code int) bool {
	switch code {
	case 404, 405, 410, 416, 489, 501, 604:
		return true
	}
	return code >= 480 && code <= 485
}

func grantedExpires(res *sip.Response, requested uint32) time.Duration {
	if v, ok := headerUint(res, "Expires"); ok && v <= uint64(requested) {
		return time.Duration(v) * time.Second
	}
	// Missing (RFC 6665 makes it mandatory) or longer than asked for,
	// which a notifier must not grant: keep what we asked for.
	return time.Duration(requested) * time.Second
}

func headerUint(res *sip.Response, name string) (uint64, bool) {
	h := res.GetHeader(name)
	if h == nil {
		return 0, false
	}
	v, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	return v, err == nil
}

// retryAfter is the delta-seconds of a Retry-After header (RFC 3261
// 20.33: a comment and parameters may follow), zero when absent or bad.
func retryAfter(res *sip.Response) time.Duration {
	h := res.GetHeader("Retry-After")
	if h == nil {
		return 0
	}
	v := strings.TrimSpace(h.Value())
	end := strings.IndexFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	if end >= 0 {
		v = v[:end]
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0
	}
	return time.Duration(n) * time.Second
}
