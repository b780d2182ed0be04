package notifier

import (
	"context"
	"encoding/xml"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/render/xmlcheck"
	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// Tests of the notifier's timing inside testing/synctest: the notifier's
// own code with a fake clock, its NOTIFYs answered through the Doer seam
// (STYLE 12, 19) and its SUBSCRIBEs handed to the handler directly. Times
// asserted here are exact fake-clock instants, not thresholds.

// sentNotify is one NOTIFY that left through the fake Doer.
type sentNotify struct {
	at  time.Time
	req *sip.Request
	doc siptest.Reginfo
}

// recordingDoer answers every NOTIFY 200 and records it.
type recordingDoer struct {
	mu   sync.Mutex
	sent []sentNotify
}

func (d *recordingDoer) Do(_ context.Context, req *sip.Request) (*sip.Response, error) {
	s := sentNotify{at: time.Now(), req: req}
	if len(req.Body()) > 0 {
		if err := xml.Unmarshal(req.Body(), &s.doc); err != nil {
			return nil, err
		}
	}
	d.mu.Lock()
	d.sent = append(d.sent, s)
	d.mu.Unlock()
	return sip.NewResponseFromRequest(req, 200, "OK", nil), nil
}

func (d *recordingDoer) all() []sentNotify {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]sentNotify(nil), d.sent...)
}

// fakeTx is a server transaction that keeps the response.
type fakeTx struct {
	sip.ServerTransaction
	res *sip.Response
}

func (f *fakeTx) Respond(res *sip.Response) error { f.res = res; return nil }

// bubble is a notifier inside a synctest bubble, dispatching but not
// serving: its listeners are open (its Contact names one) but nothing
// reads them, and NOTIFYs go to the recording doer.
type bubble struct {
	br   *bridge.Bridge
	n    *Notifier
	doer *recordingDoer
	cseq uint32
	tag  string // the To tag of the last 2xx
}

func newBubble(t *testing.T, cfg Config, contacts ...source.Contact) *bubble {
	t.Helper()
	if cfg.Listen == nil {
		cfg.Listen = ListenAddrs{{"udp", "127.0.0.1:0"}}
	}
	br := bridge.New(testLog())
	n, err := New(cfg, br, testLog())
	if err != nil {
		t.Fatal(err)
	}
	br.Subscribe(n)
	if err := br.Apply(t.Context(), source.Batch{Full: true, Contacts: contacts}); err != nil {
		t.Fatal(err)
	}
	if err := n.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.closeListeners)
	b := &bubble{br: br, n: n, doer: &recordingDoer{}, cseq: 1}
	n.SetDoer(b.doer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.dispatch(ctx) }()
	t.Cleanup(func() {
		n.subsMu.RLock()
		for _, s := range n.subs {
			defer n.remove(s) // stops its timers
		}
		n.subsMu.RUnlock()
		cancel()
		<-done
		n.ua.Close()
	})
	return b
}

// subscribe hands a SUBSCRIBE for sip:alice@example.com to the handler:
// initial while no 2xx gave a tag, in-dialog after.
func (b *bubble) subscribe(t *testing.T, event string, expires int) *sip.Response {
	t.Helper()
	uri := sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}
	req := sip.NewRequest(sip.SUBSCRIBE, uri)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "watcher", Host: "192.0.2.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", "from-tag")
	to := &sip.ToHeader{Address: uri, Params: sip.NewParams()}
	if b.tag != "" {
		to.Params.Add("tag", b.tag)
	}
	callID := sip.CallIDHeader("bubble-call")
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: b.cseq, MethodName: sip.SUBSCRIBE})
	b.cseq++
	req.AppendHeader(sip.NewHeader("Contact", "<sip:watcher@192.0.2.1:5060>"))
	req.AppendHeader(sip.NewHeader("Event", event))
	req.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(expires)))
	req.SetTransport("UDP")
	req.SetSource("192.0.2.1:5060")
	tx := &fakeTx{}
	b.n.onSubscribe(req, tx)
	if tx.res == nil {
		t.Fatal("no response to SUBSCRIBE")
	}
	if tx.res.IsSuccess() && b.tag == "" {
		b.tag, _ = tx.res.To().Params.Get("tag")
	}
	return tx.res
}

// sent waits for the bubble to settle and returns every NOTIFY so far.
func (b *bubble) sent() []sentNotify {
	synctest.Wait()
	return b.doer.all()
}

func subState(n sentNotify) string { return n.req.GetHeader("Subscription-State").Value() }

// TestRateWindow: with REGBRIDGE_NOTIFY_MIN_INTERVAL=5s, five changes within
// 2 s of the initial NOTIFY leave as one partial document exactly when the
// window ends, version +1, each changed contact once in its final state (RFC
// 3680 4.10; docs/sip.md#subscribe-and-notify). NOTIFYs answering a SUBSCRIBE
// and the final one never wait (RFC 6665 4.2.1.2).
func TestRateWindow(t *testing.T) {
	var bodies [][]byte
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, Config{MinInterval: 5 * time.Second}, fresh(tAlice))
		t0 := time.Now()
		if res := b.subscribe(t, "reg", 3600); res.StatusCode != 200 {
			t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
		}
		sent := b.sent()
		if len(sent) != 1 || !sent[0].at.Equal(t0) || sent[0].doc.Version != 0 {
			t.Fatalf("initial NOTIFY: %d sent, want 1 at once", len(sent))
		}

		// Five changes in 2 s: c2 registers and refreshes three times, c3
		// registers.
		c2 := fresh(tAlice)
		c2.Key, c2.URI, c2.CallID = "uloc-2", "sip:alice@192.0.2.11", "c2"
		c3 := fresh(tAlice)
		c3.Key, c3.URI, c3.CallID = "uloc-3", "sip:alice@192.0.2.12", "c3"
		for i := range 5 {
			time.Sleep(400 * time.Millisecond)
			switch {
			case i < 4:
				c2.CSeq = uint32(i + 1)
				apply(t, &harness{br: b.br}, c2)
			default:
				apply(t, &harness{br: b.br}, c3)
			}
			if got := len(b.sent()); got != 1 {
				t.Fatalf("change %d: %d NOTIFYs, want none inside the window", i, got-1)
			}
		}
		time.Sleep(t0.Add(5*time.Second).Sub(time.Now()) - time.Millisecond)
		if got := len(b.sent()); got != 1 {
			t.Fatalf("%d NOTIFYs 1 ms before the window ends, want 1", got)
		}
		time.Sleep(time.Millisecond)
		sent = b.sent()
		if len(sent) != 2 {
			t.Fatalf("%d NOTIFYs when the window ends, want 2", len(sent))
		}
		n := sent[1]
		if !n.at.Equal(t0.Add(5*time.Second)) || n.doc.Version != 1 || n.doc.State != "partial" {
			t.Fatalf("coalesced NOTIFY at +%v version %d %s, want +5s version 1 partial", n.at.Sub(t0), n.doc.Version, n.doc.State)
		}
		cs := n.doc.Registrations[0].Contacts
		if len(cs) != 2 || cs[0].URI != c2.URI || cs[0].Event != "refreshed" || cs[0].CSeq != "4" ||
			cs[1].URI != c3.URI || cs[1].Event != "registered" {
			t.Fatalf("coalesced contacts: %s", n.req.Body())
		}

		// A change inside the next window waits; a refresh does not, and
		// its full state includes the change, so nothing follows.
		time.Sleep(time.Second)
		apply(t, &harness{br: b.br}, fresh(tAlice))
		time.Sleep(time.Second)
		if res := b.subscribe(t, "reg", 3600); res.StatusCode != 200 {
			t.Fatalf("refresh: %d", res.StatusCode)
		}
		sent = b.sent()
		if len(sent) != 3 || !sent[2].at.Equal(t0.Add(7*time.Second)) || sent[2].doc.State != "full" || sent[2].doc.Version != 2 {
			t.Fatalf("refresh inside the window: %d NOTIFYs, want a full one at once", len(sent))
		}
		time.Sleep(10 * time.Second)
		if got := len(b.sent()); got != 3 {
			t.Fatalf("%d NOTIFYs after the refresh, want none: the change was in its full state", got-3)
		}

		// The final NOTIFY does not wait for the window either.
		apply(t, &harness{br: b.br}, fresh(c3))
		if got := len(b.sent()); got != 4 {
			t.Fatalf("change after the window: %d NOTIFYs, want 4", got)
		}
		time.Sleep(time.Second)
		apply(t, &harness{br: b.br}, fresh(c2))
		b.subscribe(t, "reg", 0)
		sent = b.sent()
		last := sent[len(sent)-1]
		if len(sent) != 5 || subState(last) != "terminated;reason=timeout" || last.doc.Version != 4 || last.doc.State != "full" {
			t.Fatalf("final NOTIFY inside the window: %d NOTIFYs, last %q", len(sent), subState(last))
		}
		for i, s := range sent {
			bodies = append(bodies, s.req.Body())
			// RFC 3261 12.2.1.1: CSeq +1 per NOTIFY.
			if i > 0 && s.req.CSeq().SeqNo != sent[i-1].req.CSeq().SeqNo+1 {
				t.Errorf("NOTIFY %d: CSeq %d after %d", i, s.req.CSeq().SeqNo, sent[i-1].req.CSeq().SeqNo)
			}
		}
	})
	for _, body := range bodies {
		xmlcheck.Validate(t, xmlcheck.Reginfo, body)
	}
}

// TestExpiresParam: Subscription-State expires is the whole seconds left
// and decreases from NOTIFY to NOTIFY; a refresh sets it anew (RFC 6665
// 4.2.2).
func TestExpiresParam(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, Config{}, fresh(tAlice))
		b.subscribe(t, "reg", 3600)
		time.Sleep(100 * time.Second)
		apply(t, &harness{br: b.br}, fresh(tAlice))
		time.Sleep(1500 * time.Millisecond)
		apply(t, &harness{br: b.br}, fresh(tAlice))
		time.Sleep(time.Minute)
		b.subscribe(t, "reg", 600)
		want := []string{"active;expires=3600", "active;expires=3500", "active;expires=3498", "active;expires=600"}
		sent := b.sent()
		if len(sent) != len(want) {
			t.Fatalf("%d NOTIFYs, want %d", len(sent), len(want))
		}
		for i, n := range sent {
			if got := subState(n); got != want[i] {
				t.Errorf("NOTIFY %d: Subscription-State %q, want %q", i, got, want[i])
			}
		}
	})
}

// TestRateWindowCoalescesOverSockets: the same over real sockets, without
// timing: changes made right after the initial NOTIFY leave as one
// document.
func TestRateWindowCoalescesOverSockets(t *testing.T) {
	h := newHarness(t, Config{MinInterval: time.Second}, tAlice)
	p := siptest.New(t, "udp", h.addr("udp"))
	p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
	p.Check(next(t, p), 0, "full", "active")
	var uris []string
	for i := range 5 {
		c := fresh(tAlice)
		c.Key, c.CallID = "uloc-w"+strconv.Itoa(i), "cw"+strconv.Itoa(i)
		c.URI = "sip:alice@192.0.2." + strconv.Itoa(50+i)
		uris = append(uris, c.URI)
		apply(t, h, c)
	}
	n := next(t, p)
	p.Check(n, 1, "partial", "active")
	cs := n.Doc.Registrations[0].Contacts
	if len(cs) != 5 {
		t.Fatalf("%d contacts in the coalesced document, want 5:\n%s", len(cs), n.Req.Body())
	}
	for i, c := range cs {
		if c.URI != uris[i] || c.Event != "registered" {
			t.Errorf("contact %d: %s %s, want %s registered", i, c.URI, c.Event, uris[i])
		}
	}
	p.None(1500 * time.Millisecond)
}

// TestRateWindowPresence: the window holds for presence too (RFC 3856
// 6.10 asks for at most one NOTIFY per 5 s): contacts
// registering within it leave as one complete document at its end.
func TestRateWindowPresence(t *testing.T) {
	var bodies [][]byte
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, Config{MinInterval: 5 * time.Second, Presence: true})
		t0 := time.Now()
		b.subscribe(t, "presence", 3600)
		for i := range 3 {
			time.Sleep(500 * time.Millisecond)
			c := fresh(tAlice)
			c.Key, c.CallID, c.URI = "uloc-p"+strconv.Itoa(i), "p"+strconv.Itoa(i), "sip:alice@192.0.2."+strconv.Itoa(60+i)
			apply(t, &harness{br: b.br}, c)
		}
		sent := b.sent()
		if len(sent) != 1 {
			t.Fatalf("%d NOTIFYs inside the window, want only the first", len(sent))
		}
		time.Sleep(t0.Add(5 * time.Second).Sub(time.Now()))
		sent = b.sent()
		if len(sent) != 2 || !sent[1].at.Equal(t0.Add(5*time.Second)) {
			t.Fatalf("%d NOTIFYs at the end of the window, want 2", len(sent))
		}
		var doc siptest.Presence
		if err := xml.Unmarshal(sent[1].req.Body(), &doc); err != nil {
			t.Fatal(err)
		}
		if len(doc.Tuples) != 3 || doc.Tuples[0].Basic != "open" {
			t.Fatalf("coalesced presence document: %s", sent[1].req.Body())
		}
		for _, s := range sent {
			bodies = append(bodies, s.req.Body())
		}
	})
	for _, body := range bodies {
		xmlcheck.Validate(t, xmlcheck.PIDF, body)
	}
}

// failingDoer fails NOTIFY number fail (from 0) with err, answers 200
// otherwise.
type failingDoer struct {
	recordingDoer
	fail int
	err  error
}

func (d *failingDoer) Do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	res, _ := d.recordingDoer.Do(ctx, req)
	if len(d.all()) == d.fail+1 {
		return nil, d.err
	}
	return res, nil
}

// TestNotifyTimeoutRemoves: a NOTIFY that times out (Timer F) or fails at
// the transport removes the subscription; nothing more is sent (RFC 6665
// 4.2.2).
func TestNotifyTimeoutRemoves(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"Timer F", sip.ErrTransactionTimeout},
		{"transport", sip.ErrTransactionTransport},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := newBubble(t, Config{}, fresh(tAlice))
				d := &failingDoer{fail: 1, err: tt.err}
				b.n.SetDoer(d)
				b.subscribe(t, "reg", 3600)
				time.Sleep(time.Second)
				apply(t, &harness{br: b.br}, fresh(tAlice)) // a refresh; NOTIFY 1 fails
				synctest.Wait()
				if b.n.Count() != 0 || b.n.Counters().Removed.Load() != 1 {
					t.Fatalf("after %v: %d subscriptions, %d removed; want 0, 1", tt.err, b.n.Count(), b.n.Counters().Removed.Load())
				}
				time.Sleep(time.Second)
				apply(t, &harness{br: b.br}, fresh(tAlice))
				time.Sleep(time.Hour)
				synctest.Wait()
				if got := len(d.all()); got != 2 {
					t.Fatalf("%d NOTIFYs, want 2 (nothing after the failure)", got)
				}
			})
		})
	}
}
