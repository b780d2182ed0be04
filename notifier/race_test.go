package notifier

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/substore"
)

// Orderings of a SUBSCRIBE's handler against what may happen meanwhile,
// each forced through a test hook (Notifier.hooks) instead of timing.

// pause installs a hook in h: the first call to reach it signals
// reached and waits until release is called (at the latest when the test
// ends, so no handler is left waiting).
func pause(t *testing.T, h interface{ Store(*func()) }) (reached chan struct{}, release func()) {
	reached, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	f := func() {
		first := false
		once.Do(func() { first = true; close(reached) })
		if first {
			<-proceed
		}
	}
	h.Store(&f)
	var closeOnce sync.Once
	release = func() { closeOnce.Do(func() { close(proceed) }) }
	t.Cleanup(release)
	return reached, release
}

// TestSubscribeDuringShutdown: a SUBSCRIBE whose handler passed the
// shutdown check before shutdown took its list of subscriptions to end,
// and goes on after, is refused with 503 (or, had it been added in time,
// would get its final NOTIFY): never a subscription that gets no final
// NOTIFY and holds the drain to its limit.
func TestSubscribeDuringShutdown(t *testing.T) {
	const drain = 3 * time.Second
	h := newHarness(t, Config{Drain: drain}, tAlice)
	a := siptest.New(t, "udp", h.addr("udp"))
	a.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"))
	next(t, a)
	// a holds its answer to the final NOTIFY, so the drain (and the
	// listeners) wait while b's handler goes on.
	holdA := make(chan struct{})
	a.Answer(func(i int) int {
		if i == 1 {
			<-holdA
		}
		return 200
	})
	var holdOnce sync.Once
	releaseA := func() { holdOnce.Do(func() { close(holdA) }) }
	t.Cleanup(releaseA)

	reached, proceed := pause(t, &h.n.hooks.beforeAdd)
	b := siptest.New(t, "udp", h.addr("udp"))
	resB := make(chan *sip.Response, 1)
	go func() { resB <- b.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")) }()
	<-reached

	start := time.Now()
	stopped := make(chan struct{})
	go func() { defer close(stopped); h.stop(t) }()
	if n := next(t, a); n.SubscriptionState != "terminated;reason=deactivated" {
		t.Fatalf("a's NOTIFY at shutdown: %q", n.SubscriptionState)
	}
	// Shutdown has its list now; b's handler goes on.
	proceed()
	res := <-resB
	switch res.StatusCode {
	case 503:
	case 200:
		// Then b must be ended like every other subscription.
		var last siptest.Notify
		for last.SubscriptionState == "" || last.SubscriptionState[:6] == "active" {
			last = b.NextWithin(time.Second)
		}
		if last.SubscriptionState != "terminated;reason=deactivated" {
			t.Errorf("b's last NOTIFY: %q", last.SubscriptionState)
		}
	default:
		t.Fatalf("b's SUBSCRIBE during shutdown: %d", res.StatusCode)
	}
	releaseA()
	<-stopped
	if took := time.Since(start); took > drain/2 {
		t.Fatalf("shutdown took %v: the drain waited for a subscription it was not ending", took)
	}
}

// TestRefreshRightAfterAnswer: a subscriber that refreshes, or ends, its
// subscription the moment it has the 200 finds it (not 481), even while
// the handler that sent the 200 has not finished.
func TestRefreshRightAfterAnswer(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	p := siptest.New(t, "udp", h.addr("udp"))
	reached, proceed := pause(t, &h.n.hooks.answered)
	res := make(chan *sip.Response, 1)
	go func() { res <- p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")) }()
	<-reached
	if r := <-res; r.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", r.StatusCode)
	}
	if r := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "600")); r.StatusCode != 200 {
		t.Fatalf("refresh right after the 200: %d %s", r.StatusCode, r.Reason)
	}
	proceed()
	n := next(t, p)
	p.Check(n, 0, "full", "active")
	if got := siptest.ExpiresParam(n.SubscriptionState); got > 600 {
		t.Fatalf("first NOTIFY %q, want the refreshed expiry", n.SubscriptionState)
	}
	if r := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Expires", "0")); r.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d", r.StatusCode)
	}
	p.Check(next(t, p), 1, "full", "terminated")
}

// failingTx is a server transaction whose Respond fails after keeping
// the response.
type failingTx struct {
	sip.ServerTransaction
	res *sip.Response
}

func (f *failingTx) Respond(res *sip.Response) error {
	f.res = res
	return errors.New("connection gone")
}

// aliceNotifier is a notifier (not run) over a bridge holding one
// contact of alice.
func aliceNotifier(t *testing.T) *Notifier {
	t.Helper()
	br := bridge.New(testLog())
	n, err := New(Config{Listen: ListenAddrs{{"udp", "127.0.0.1:0"}}}, br, testLog())
	if err != nil {
		t.Fatal(err)
	}
	br.Subscribe(n)
	if err := br.Apply(t.Context(), source.Batch{Full: true, Contacts: []source.Contact{fresh(tAlice)}}); err != nil {
		t.Fatal(err)
	}
	return n
}

// aliceSubscribe is an initial SUBSCRIBE to alice's reg events over UDP
// from 127.0.0.1:5060, for calling onSubscribe directly.
func aliceSubscribe(callID string) *sip.Request {
	uri := sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}
	req := sip.NewRequest(sip.SUBSCRIBE, uri)
	from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "watcher", Host: "127.0.0.1"}, Params: sip.NewParams()}
	from.Params.Add("tag", "from-tag")
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: uri, Params: sip.NewParams()})
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.SUBSCRIBE})
	req.AppendHeader(sip.NewHeader("Contact", "<sip:watcher@127.0.0.1:5060>"))
	req.AppendHeader(sip.NewHeader("Event", "reg"))
	req.SetTransport("UDP")
	req.SetSource("127.0.0.1:5060")
	return req
}

// TestAnswerFailureForgetsStored: when the 200 to a SUBSCRIBE cannot be
// sent after the subscription was saved to the shared store, the stored
// record goes too, so that no instance NOTIFYs a subscriber that never
// got a 200; its place under the limits is given back.
func TestAnswerFailureForgetsStored(t *testing.T) {
	n := aliceNotifier(t)
	st := substore.NewMemory("me")
	n.SetStore(st, time.Minute)
	g := guardsFromEnv(t, nil)
	n.SetGuards(g)

	req := aliceSubscribe("gone-call")
	tx := &failingTx{}
	n.onSubscribe(req, tx)
	if tx.res == nil || tx.res.StatusCode != 200 {
		t.Fatalf("response: %v, want a 200 that fails to leave", tx.res)
	}
	tag, _ := tx.res.To().Params.Get("tag")
	id := dialogID("gone-call", tag, "from-tag")
	if _, _, err := st.Take(t.Context(), id); !errors.Is(err, substore.ErrNotFound) {
		t.Fatalf("stored record after the 200 failed: err %v, want ErrNotFound", err)
	}
	if n.Count() != 0 || g.Limits.Active() != 0 {
		t.Fatalf("%d subscriptions, %d leases after the 200 failed, want 0, 0", n.Count(), g.Limits.Active())
	}
}

// servingStore is a partitioned store (Partitioned) whose serving of
// every AOR the test switches, keeping the last record saved.
type servingStore struct {
	*substore.Memory
	serves atomic.Bool
	mu     sync.Mutex
	saved  *substore.Record
}

func (g *servingStore) DialogTag(string) string { return "q3ZbW0k9aT1mXy7c.p0" }
func (g *servingStore) Owns(string) bool        { return g.serves.Load() }

func (g *servingStore) Save(ctx context.Context, rec *substore.Record, create bool) error {
	g.mu.Lock()
	cp := *rec
	g.saved = &cp
	g.mu.Unlock()
	return g.Memory.Save(ctx, rec, create)
}

// okTx is a server transaction whose Respond succeeds and keeps the
// response.
type okTx struct {
	sip.ServerTransaction
	res *sip.Response
}

func (o *okTx) Respond(res *sip.Response) error { o.res = res; return nil }

// TestSubscribeServedMeanwhile: a SUBSCRIBE for a partition served
// elsewhere is stored, answered and left to the partition's owner. When
// this instance starts serving the partition meanwhile and its inbox
// poll continues the record while the handler still holds its own copy
// (after the 200, before the handler drops it), Continue leaves the copy
// alone as known: the handler must then serve it, not drop it, or no
// instance ever sends its NOTIFYs.
func TestSubscribeServedMeanwhile(t *testing.T) {
	n := aliceNotifier(t)
	st := &servingStore{Memory: substore.NewMemory("me")}
	n.SetStore(st, time.Minute)
	poll := func() {
		// The partition is served here now, and its inbox poll brings
		// this very save.
		st.serves.Store(true)
		st.mu.Lock()
		rec := st.saved
		st.mu.Unlock()
		n.Continue([]*substore.Record{rec})
	}
	n.hooks.answered.Store(&poll)

	req := aliceSubscribe("served-call")
	tx := &okTx{}
	n.onSubscribe(req, tx)
	if tx.res == nil || tx.res.StatusCode != 200 {
		t.Fatalf("response: %v, want 200", tx.res)
	}
	tag, _ := tx.res.To().Params.Get("tag")
	if n.lookup(dialogID("served-call", tag, "from-tag")) == nil {
		t.Fatal("dropped after the 200 though this instance serves its partition now and its inbox poll left it to the handler's copy: nobody sends its NOTIFYs")
	}
}

// TestAddReplacesCopy: a second copy of one dialog made known (the
// handler's, after Continue adopted the same record from the store)
// replaces the first everywhere, so no change is sent twice.
func TestAddReplacesCopy(t *testing.T) {
	n := aliceNotifier(t)
	canonical := bridge.CanonicalAOR("sip:alice@example.com")
	a := &subscription{id: "d1", canonical: canonical}
	b := &subscription{id: "d1", canonical: canonical}
	if !n.add(a) || !n.add(b) {
		t.Fatal("add refused")
	}
	n.subsMu.RLock()
	list := n.byAOR[canonical]
	n.subsMu.RUnlock()
	if len(list) != 1 || list[0] != b || n.lookup("d1") != b {
		t.Fatalf("%d copies listed for the AOR, want only the second", len(list))
	}
	if !a.done {
		t.Error("the replaced copy is not done")
	}
}
