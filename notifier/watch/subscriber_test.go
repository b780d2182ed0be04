package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

func TestMain(m *testing.M) {
	// Raised before any goroutine reads it; New only raises it when lower.
	sip.UDPMTUSize = udpMTU
	os.Exit(m.Run())
}

const testAOR = "sip:alice@example.com"

// ---- fake notifier -------------------------------------------------------

// fakeNotifier is a minimal reg notifier on sipgo: it answers SUBSCRIBE
// (status, To tag, Contact, Expires capped at grant), sends a full NOTIFY
// after each accepted SUBSCRIBE, partials after the initial one, and a
// terminated NOTIFY on Expires: 0.
type fakeNotifier struct {
	t         *testing.T
	transport string // "UDP" or "TCP"
	addr      string // host:port it listens on
	client    *sipgo.Client
	// log is safe to use after the test ended, unlike t.
	log *slog.Logger
	// sending counts NOTIFY goroutines; cleanup waits for them.
	sending sync.WaitGroup

	// Behaviour; set by the options of newFakeNotifier only.
	status   int           // answer to initial SUBSCRIBEs; 0 means 200
	grant    time.Duration // longest duration granted; 0 means as asked
	partials int           // partial NOTIFYs after the first full one

	mu        sync.Mutex
	subs      []*sip.Request
	notifyRes []int
	dialogs   map[string]*fakeDialog // by Call-ID
	last      *fakeDialog
}

type fakeDialog struct {
	f      *fakeNotifier
	sendMu sync.Mutex // one NOTIFY at a time, so CSeq and version stay in order
	sub    *sip.Request
	tag    string
	cseq   uint32
	next   uint32 // next document version
	target sip.Uri
	source string
}

func newFakeNotifier(t *testing.T, transport string, opts ...func(*fakeNotifier)) *fakeNotifier {
	t.Helper()
	f := &fakeNotifier{t: t, transport: transport, partials: 2, dialogs: map[string]*fakeDialog{}}
	for _, o := range opts {
		o(f)
	}
	log := testLogger(t).With("side", "fake")
	f.log = log
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("fake-notifier"),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	if f.client, err = sipgo.NewClient(ua, sipgo.WithClientLogger(log)); err != nil {
		t.Fatal(err)
	}
	srv.OnSubscribe(f.onSubscribe)

	var closer func() error
	served := make(chan struct{})
	switch transport {
	case "UDP":
		conn, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.addr, closer = conn.LocalAddr().String(), conn.Close
		go func() { defer close(served); srv.ServeUDP(conn) }()
	case "TCP":
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.addr, closer = l.Addr().String(), l.Close
		go func() { defer close(served); srv.ServeTCP(l) }()
	}
	t.Cleanup(func() {
		ua.Close()
		closer()
		<-served
		f.sending.Wait()
	})
	return f
}

func status(code int) func(*fakeNotifier)       { return func(f *fakeNotifier) { f.status = code } }
func grant(d time.Duration) func(*fakeNotifier) { return func(f *fakeNotifier) { f.grant = d } }
func partials(n int) func(*fakeNotifier)        { return func(f *fakeNotifier) { f.partials = n } }

func (f *fakeNotifier) server() string { return strings.ToLower(f.transport) + "://" + f.addr }

func (f *fakeNotifier) contact() sip.Uri {
	host, port, _ := net.SplitHostPort(f.addr)
	p, _ := strconv.Atoi(port)
	u := sip.Uri{Scheme: "sip", User: "notifier", Host: host, Port: p}
	if f.transport == "TCP" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", "tcp")
	}
	return u
}

func (f *fakeNotifier) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	respond := func(res *sip.Response) {
		if err := tx.Respond(res); err != nil {
			f.log.Error("responding", "err", err)
		}
	}
	f.mu.Lock()
	f.subs = append(f.subs, req)
	toTag, _ := req.To().Params.Get("tag")
	d := f.dialogs[req.CallID().Value()]
	f.mu.Unlock()

	initial := toTag == ""
	switch {
	case !initial && (d == nil || d.tag != toTag):
		respond(sip.NewResponseFromRequest(req, 481, "Subscription Does Not Exist", nil))
		return
	case initial && f.status != 0 && f.status != 200:
		respond(sip.NewResponseFromRequest(req, f.status, "Scripted", nil))
		return
	}

	expires := uint64(3761)
	if h := req.GetHeader("Expires"); h != nil {
		expires, _ = strconv.ParseUint(h.Value(), 10, 32)
	}
	if g := uint64(f.grant / time.Second); g > 0 && expires > g {
		expires = g
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	res.AppendHeader(&sip.ContactHeader{Address: f.contact()})
	res.AppendHeader(sip.NewHeader("Expires", strconv.FormatUint(expires, 10)))
	if initial {
		tag, _ := res.To().Params.Get("tag")
		d = &fakeDialog{f: f, sub: req, tag: tag, target: req.Contact().Address, source: req.Source()}
		f.mu.Lock()
		f.dialogs[req.CallID().Value()] = d
		f.last = d
		f.mu.Unlock()
	}
	respond(res)

	f.sending.Add(1)
	go func() {
		defer f.sending.Done()
		d.sendMu.Lock()
		defer d.sendMu.Unlock()
		if expires == 0 {
			d.sendLocked("terminated;reason=timeout", fullDoc(d.nextVersion()))
			return
		}
		state := "active;expires=" + strconv.FormatUint(expires, 10)
		d.sendLocked(state, fullDoc(d.nextVersion()))
		if initial {
			for i := 0; i < f.partials; i++ {
				v := d.nextVersion()
				d.sendLocked(state, partialDoc(v, fmt.Sprintf("c%d", v+1), "active", "registered"))
			}
		}
	}()
}

func (d *fakeDialog) nextVersion() uint32 {
	v := d.next
	d.next++
	return v
}

// send sends one NOTIFY in the dialog and returns the answer's status.
func (d *fakeDialog) send(subState, body string) int {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	return d.sendLocked(subState, body)
}

func (d *fakeDialog) sendLocked(subState, body string) int {
	return d.f.notify(d, d.sub.CallID().Value(), subState, body)
}

// notify sends a NOTIFY shaped for dialog d but with the given Call-ID.
func (f *fakeNotifier) notify(d *fakeDialog, callID, subState, body string) int {
	req := sip.NewRequest(sip.NOTIFY, d.target)
	from := &sip.FromHeader{Address: d.sub.To().Address, Params: sip.NewParams()}
	from.Params.Add("tag", d.tag)
	subFrom := d.sub.From()
	to := &sip.ToHeader{Address: subFrom.Address, Params: subFrom.Params.Clone()}
	cid := sip.CallIDHeader(callID)
	d.cseq++
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: d.cseq, MethodName: sip.NOTIFY})
	req.AppendHeader(&sip.ContactHeader{Address: f.contact()})
	req.AppendHeader(sip.NewHeader("Event", "reg"))
	req.AppendHeader(sip.NewHeader("Subscription-State", subState))
	if body != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/reginfo+xml"))
		req.SetBody([]byte(body))
	} else {
		req.SetBody(nil)
	}
	req.SetDestination(d.source)
	req.SetTransport(f.transport)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	code := 0
	if res, err := f.client.Do(ctx, req); err != nil || res == nil {
		f.log.Info("NOTIFY failed", "err", err)
	} else {
		code = res.StatusCode
	}
	f.mu.Lock()
	f.notifyRes = append(f.notifyRes, code)
	f.mu.Unlock()
	return code
}

func (f *fakeNotifier) subscribes() []*sip.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*sip.Request(nil), f.subs...)
}

func (f *fakeNotifier) notifyAnswers() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.notifyRes...)
}

func (f *fakeNotifier) lastDialog() *fakeDialog {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func fullDoc(v uint32) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="%d" state="full">
  <registration aor="sip:alice@example.com" id="a1" state="active">
    <contact id="c1" state="active" event="registered" expires="3600">
      <uri>sip:alice@192.0.2.10:5060</uri>
    </contact>
  </registration>
</reginfo>`, v)
}

func partialDoc(v uint32, contactID, state, event string) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="%d" state="partial">
  <registration aor="sip:alice@example.com" id="a1" state="active">
    <contact id="%s" state="%s" event="%s">
      <uri>sip:alice@192.0.2.%d:5060</uri>
    </contact>
  </registration>
</reginfo>`, v, contactID, state, event, 10+v)
}

// ---- helpers -------------------------------------------------------------

// testLogger logs through t until the test ends (sipgo goroutines may
// outlive it).
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// watching is a Subscriber running in the background.
type watching struct {
	cancel context.CancelFunc
	done   chan error

	mu       sync.Mutex
	notifies []Notify
}

func startWatch(t *testing.T, cfg Config) *watching {
	t.Helper()
	s, err := New(cfg, testLogger(t).With("side", "watch"))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &watching{cancel: cancel, done: make(chan error, 1)}
	go func() {
		w.done <- s.Run(ctx, func(n Notify) {
			w.mu.Lock()
			w.notifies = append(w.notifies, n)
			w.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-w.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return w
}

func (w *watching) got() []Notify {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Notify(nil), w.notifies...)
}

// stop cancels and returns Run's result.
func (w *watching) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	select {
	case err := <-w.done:
		w.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
		return nil
	}
}

// result waits for Run to return on its own.
func (w *watching) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

func versions(ns []Notify) []uint32 {
	var out []uint32
	for _, n := range ns {
		out = append(out, n.Version)
	}
	return out
}

func expiresOf(req *sip.Request) string {
	if h := req.GetHeader("Expires"); h != nil {
		return h.Value()
	}
	return ""
}

var transports = []string{"UDP", "TCP"}

// ---- tests ---------------------------------------------------------------

func TestSubscribeNotifyUnsubscribe(t *testing.T) {
	for _, tp := range transports {
		t.Run(tp, func(t *testing.T) {
			t.Parallel()
			f := newFakeNotifier(t, tp)
			w := startWatch(t, Config{Server: f.server(), AOR: testAOR})

			eventually(t, 5*time.Second, "three NOTIFYs", func() bool { return len(w.got()) >= 3 })
			ns := w.got()
			if got := versions(ns); len(got) != 3 || got[0] != 0 || got[1] != 1 || got[2] != 2 {
				t.Fatalf("versions %v, want [0 1 2]", got)
			}
			if !ns[0].Full || ns[1].Full || ns[2].Full {
				t.Errorf("full flags %v %v %v, want true false false", ns[0].Full, ns[1].Full, ns[2].Full)
			}
			if ns[0].SubscriptionState != "active;expires=3761" {
				t.Errorf("Subscription-State %q", ns[0].SubscriptionState)
			}
			if c := ns[0].Doc.Registrations[0].Contacts[0]; c.URI != "sip:alice@192.0.2.10:5060" {
				t.Errorf("first contact %+v", c)
			}
			for i, code := range f.notifyAnswers() {
				if code != 200 {
					t.Errorf("NOTIFY %d answered %d", i, code)
				}
			}

			subs := f.subscribes()
			if len(subs) != 1 {
				t.Fatalf("%d SUBSCRIBEs, want 1", len(subs))
			}
			checkInitialSubscribe(t, subs[0], tp)

			if err := w.stop(t); err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
			subs = f.subscribes()
			last := subs[len(subs)-1]
			if len(subs) != 2 || expiresOf(last) != "0" {
				t.Fatalf("last of %d SUBSCRIBEs has Expires %q, want an unsubscribe", len(subs), expiresOf(last))
			}
			checkInDialog(t, subs[0], last, f)
			ns = w.got()
			final := ns[len(ns)-1]
			if !strings.HasPrefix(final.SubscriptionState, "terminated") || final.Version != 3 || !final.Full {
				t.Errorf("final NOTIFY %q version %d full %v, want terminated full version 3", final.SubscriptionState, final.Version, final.Full)
			}
		})
	}
}

func checkInitialSubscribe(t *testing.T, req *sip.Request, tp string) {
	t.Helper()
	if req.Recipient.String() != testAOR {
		t.Errorf("Request-URI %s, want %s", req.Recipient.String(), testAOR)
	}
	if to := req.To(); to.Address.String() != testAOR || to.Params.Has("tag") {
		t.Errorf("To %s, want the AOR without tag", to.Value())
	}
	if tag, _ := req.From().Params.Get("tag"); tag == "" {
		t.Errorf("From %s has no tag", req.From().Value())
	}
	if req.From().Address.String() != "sip:watch@127.0.0.1" {
		t.Errorf("From %s", req.From().Value())
	}
	for name, want := range map[string]string{
		"Event": "reg", "Accept": "application/reginfo+xml", "Expires": "3761", "Max-Forwards": "70", "Content-Length": "0",
	} {
		if h := req.GetHeader(name); h == nil || h.Value() != want {
			t.Errorf("%s header %v, want %q", name, h, want)
		}
	}
	if req.CallID() == nil || req.CallID().Value() == "" {
		t.Error("no Call-ID")
	}
	if c := req.CSeq(); c == nil || c.MethodName != sip.SUBSCRIBE {
		t.Errorf("CSeq %v", c)
	}
	contact := req.Contact()
	if contact == nil {
		t.Fatal("no Contact")
	}
	// The Contact names the address the SUBSCRIBE came from: NOTIFYs
	// sent there reach the subscriber.
	want := net.JoinHostPort(contact.Address.Host, strconv.Itoa(contact.Address.Port))
	if req.Source() != want || contact.Address.User != "watch" {
		t.Errorf("Contact %s, SUBSCRIBE came from %s", contact.Value(), req.Source())
	}
	tpParam, _ := contact.Address.UriParams.Get("transport")
	if (tp == "TCP") != (tpParam == "tcp") {
		t.Errorf("Contact %s over %s", contact.Value(), tp)
	}
}

// checkInDialog checks that req belongs to the dialog initial created.
func checkInDialog(t *testing.T, initial, req *sip.Request, f *fakeNotifier) {
	t.Helper()
	if req.CallID().Value() != initial.CallID().Value() {
		t.Errorf("Call-ID %s, want %s", req.CallID().Value(), initial.CallID().Value())
	}
	ft0, _ := initial.From().Params.Get("tag")
	ft, _ := req.From().Params.Get("tag")
	if ft != ft0 {
		t.Errorf("From tag %s, want %s", ft, ft0)
	}
	if tt, _ := req.To().Params.Get("tag"); tt != f.lastDialog().tag {
		t.Errorf("To tag %q, want the notifier's %q", tt, f.lastDialog().tag)
	}
	if req.CSeq().SeqNo <= initial.CSeq().SeqNo {
		t.Errorf("CSeq %d not above %d", req.CSeq().SeqNo, initial.CSeq().SeqNo)
	}
	if got, want := req.Recipient.String(), f.contact(); got != want.String() {
		t.Errorf("Request-URI %s, want the notifier's Contact %s", got, want.String())
	}
}

func TestRefreshBeforeExpiry(t *testing.T) {
	for _, tp := range transports {
		t.Run(tp, func(t *testing.T) {
			t.Parallel()
			f := newFakeNotifier(t, tp, grant(2*time.Second), partials(0))
			start := time.Now()
			w := startWatch(t, Config{Server: f.server(), AOR: testAOR, Expires: time.Hour})

			eventually(t, 5*time.Second, "a refresh SUBSCRIBE", func() bool { return len(f.subscribes()) >= 2 })
			if d := time.Since(start); d >= 2*time.Second {
				t.Errorf("refresh after %v, not before the 2s expiry", d)
			}
			subs := f.subscribes()
			if expiresOf(subs[0]) != "3600" || expiresOf(subs[1]) != "3600" {
				t.Errorf("Expires %q then %q, want 3600", expiresOf(subs[0]), expiresOf(subs[1]))
			}
			checkInDialog(t, subs[0], subs[1], f)
			// The refresh brings full state with the next version.
			eventually(t, 5*time.Second, "the refresh NOTIFY", func() bool { return len(w.got()) >= 2 })
			if got := versions(w.got()); got[0] != 0 || got[1] != 1 || !w.got()[1].Full {
				t.Errorf("versions %v", got)
			}
			if err := w.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

func TestRejected(t *testing.T) {
	for _, tp := range transports {
		t.Run(tp, func(t *testing.T) {
			t.Parallel()
			f := newFakeNotifier(t, tp, status(489))
			w := startWatch(t, Config{Server: f.server(), AOR: testAOR})
			err := w.result(t)
			var rej *RejectedError
			if !errors.As(err, &rej) || rej.StatusCode != 489 || !strings.Contains(err.Error(), "489") {
				t.Fatalf("Run: %v, want a rejection naming 489", err)
			}
			if len(w.got()) != 0 {
				t.Errorf("notifies after rejection: %v", w.got())
			}
		})
	}
}

// E.47: versions 0, 1, 3 -> document 3 is reported, then a refresh.
func TestVersionGapRefreshes(t *testing.T) {
	for _, tp := range transports {
		t.Run(tp, func(t *testing.T) {
			t.Parallel()
			f := newFakeNotifier(t, tp, partials(0))
			w := startWatch(t, Config{Server: f.server(), AOR: testAOR})
			eventually(t, 5*time.Second, "the initial NOTIFY", func() bool { return len(w.got()) >= 1 })

			d := f.lastDialog()
			d.sendMu.Lock()
			d.next = 4 // the refresh's full document continues after 3
			d.sendMu.Unlock()
			for _, v := range []uint32{1, 3, 2} {
				if code := d.send("active;expires=3000", partialDoc(v, "c"+strconv.Itoa(int(v)), "active", "registered")); code != 200 {
					t.Fatalf("NOTIFY version %d answered %d", v, code)
				}
			}
			eventually(t, 5*time.Second, "a refresh SUBSCRIBE", func() bool { return len(f.subscribes()) >= 2 })
			checkInDialog(t, f.subscribes()[0], f.subscribes()[1], f)
			eventually(t, 5*time.Second, "the refresh NOTIFY", func() bool { return len(w.got()) >= 4 })
			// Version 2 arrived after 3 and is not reported.
			if got := versions(w.got()); len(got) != 4 || got[1] != 1 || got[2] != 3 || got[3] != 4 {
				t.Errorf("versions %v, want [0 1 3 4]", got)
			}
		})
	}
}

func TestTerminatedByNotifier(t *testing.T) {
	tests := []struct {
		name     string
		subState string
		fatal    bool
	}{
		{"noresource ends Run", "terminated;reason=noresource", true},
		{"rejected ends Run", "terminated;reason=rejected", true},
		{"deactivated re-subscribes", "terminated;reason=deactivated", false},
		{"timeout with retry-after re-subscribes", "terminated;reason=timeout;retry-after=1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeNotifier(t, "UDP", partials(0))
			w := startWatch(t, Config{Server: f.server(), AOR: testAOR})
			eventually(t, 5*time.Second, "the initial NOTIFY", func() bool { return len(w.got()) >= 1 })
			first := f.lastDialog()
			if code := first.send(tc.subState, ""); code != 200 {
				t.Fatalf("terminating NOTIFY answered %d", code)
			}
			if tc.fatal {
				err := w.result(t)
				var term *TerminatedError
				if !errors.As(err, &term) || !strings.Contains(tc.subState, term.Reason) {
					t.Fatalf("Run: %v, want TerminatedError", err)
				}
				return
			}
			eventually(t, 5*time.Second, "a new subscription", func() bool { return len(f.subscribes()) >= 2 })
			subs := f.subscribes()
			if subs[1].CallID().Value() == subs[0].CallID().Value() || subs[1].To().Params.Has("tag") {
				t.Errorf("second SUBSCRIBE is not a new dialog: %s", subs[1].String())
			}
			// The new subscription starts its versions at 0 again.
			eventually(t, 5*time.Second, "the new initial NOTIFY", func() bool { return len(w.got()) >= 3 })
			ns := w.got()
			if ns[1].Doc != nil || !strings.HasPrefix(ns[1].SubscriptionState, "terminated") || ns[2].Version != 0 || !ns[2].Full {
				t.Errorf("notifies %q %q v%d", ns[0].SubscriptionState, ns[1].SubscriptionState, ns[2].Version)
			}
			// NOTIFYs of the old dialog are refused now.
			if code := first.send("active;expires=100", partialDoc(1, "c9", "active", "registered")); code != 481 {
				t.Errorf("NOTIFY in the old dialog answered %d, want 481", code)
			}
			if err := w.stop(t); err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

func TestNotifyOutsideDialog(t *testing.T) {
	f := newFakeNotifier(t, "UDP", partials(0))
	w := startWatch(t, Config{Server: f.server(), AOR: testAOR})
	eventually(t, 5*time.Second, "the initial NOTIFY", func() bool { return len(w.got()) >= 1 })
	d := f.lastDialog()
	d.sendMu.Lock()
	code := f.notify(d, "unknown-call-id", "active;expires=100", partialDoc(1, "c9", "active", "registered"))
	d.sendMu.Unlock()
	if code != 481 {
		t.Errorf("stray NOTIFY answered %d, want 481", code)
	}
	// A body that is not reginfo is refused, the subscription goes on.
	if code := d.send("active;expires=100", "<nonsense/>"); code != 400 {
		t.Errorf("NOTIFY with a bad body answered %d, want 400", code)
	}
	if code := d.send("active;expires=100", partialDoc(1, "c2", "active", "registered")); code != 200 {
		t.Errorf("next NOTIFY answered %d", code)
	}
	eventually(t, 5*time.Second, "the second NOTIFY", func() bool { return len(w.got()) >= 2 })
	if got := versions(w.got()); len(got) != 2 || got[1] != 1 {
		t.Errorf("versions %v", got)
	}
}

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string // "" = valid
		check func(t *testing.T, s *Subscriber)
	}{
		{name: "defaults", cfg: Config{AOR: testAOR}, check: func(t *testing.T, s *Subscriber) {
			if s.network != "UDP" || s.server != "127.0.0.1:5065" || s.expires != 3761 || s.local != "127.0.0.1" || s.from.String() != "sip:watch@127.0.0.1" {
				t.Errorf("got %+v", s)
			}
		}},
		{name: "tcp ipv6 without port", cfg: Config{Server: "tcp://[2001:db8::1]", AOR: testAOR}, check: func(t *testing.T, s *Subscriber) {
			if s.network != "TCP" || s.server != "[2001:db8::1]:5060" || s.local != "::1" || s.from.String() != "sip:watch@[::1]" {
				t.Errorf("got %+v", s)
			}
		}},
		{name: "sub-second expires rounds up", cfg: Config{AOR: testAOR, Expires: 1500 * time.Millisecond}, check: func(t *testing.T, s *Subscriber) {
			if s.expires != 2 {
				t.Errorf("expires %d", s.expires)
			}
		}},
		{name: "missing AOR", cfg: Config{}, field: "AOR"},
		{name: "tel AOR", cfg: Config{AOR: "tel:+123"}, field: "AOR"},
		{name: "bad scheme", cfg: Config{Server: "http://x:1", AOR: testAOR}, field: "Server"},
		{name: "no scheme", cfg: Config{Server: "127.0.0.1:5060", AOR: testAOR}, field: "Server"},
		{name: "bad port", cfg: Config{Server: "udp://h:99999", AOR: testAOR}, field: "Server"},
		{name: "negative expires", cfg: Config{AOR: testAOR, Expires: -time.Second}, field: "Expires"},
		{name: "local not an IP", cfg: Config{AOR: testAOR, Local: "localhost"}, field: "Local"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.cfg, nil)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				tc.check(t, s)
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("New: %v, want a ConfigError for %s", err, tc.field)
			}
		})
	}
}

func TestParseSubState(t *testing.T) {
	tests := []struct {
		in   string
		want subState
	}{
		{"active;expires=3600", subState{state: "active", expires: time.Hour, retryAfter: -1}},
		{"Terminated; Reason=Probation; retry-after=60", subState{state: "terminated", reason: "probation", expires: -1, retryAfter: time.Minute}},
		{"pending", subState{state: "pending", expires: -1, retryAfter: -1}},
		{"active;expires=soon", subState{state: "active", expires: -1, retryAfter: -1}},
	}
	for _, tc := range tests {
		if got := parseSubState(tc.in); got != tc.want {
			t.Errorf("parseSubState(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}
