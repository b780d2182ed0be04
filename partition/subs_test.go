package partition_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/partition"
	"github.com/regbridge/regbridge/partition/clustertest"
	"github.com/regbridge/regbridge/substore"
)

// TestSubs runs the partitioned subscription store on the local Redis.
func TestSubs(t *testing.T) {
	rdb, prefix := localRedis(t)
	testSubsStore(t, rdb, prefix+":store")
	testSubsLeases(t, rdb, prefix+":leases")
	testSubsInbox(t, rdb, prefix+":inbox")
	testSubsInboxTrim(t, rdb, prefix+":trim")
}

// testSubsInboxTrim: an owner polling its inbox trims it, every
// inboxTrimEvery polls, to what it has not consumed: the entries before
// its position go (whole nodes of the stream), none after it.
func testSubsInboxTrim(t *testing.T, rdb redis.UniversalClient, prefix string) {
	ctx := context.Background()
	m, err := partition.NewMap(prefix, 8)
	if err != nil {
		t.Fatal(err)
	}
	o := partition.NewOwner(rdb, m, "a", time.Minute, quiet)
	s := partition.NewSubs(rdb, m, o, "a", quiet)
	const p, n = 2, 500
	key := m.Key(p, "subin")
	for i := range n {
		if err := s.Save(ctx, newRec(s, aorIn(m, p, i%7), "t"+strconv.Itoa(i)), true); err != nil {
			t.Fatal(err)
		}
	}
	pos := map[int]string{p: "0-0"}
	got := 0
	for range 50 { // inboxTrimEvery
		in, err := s.PollInbox(ctx, pos, 1000)
		if err != nil {
			t.Fatal(err)
		}
		got += len(in[p])
	}
	if got != n {
		t.Fatalf("polled %d entries, want %d", got, n)
	}
	if l := rdb.XLen(ctx, key).Val(); l >= n/2 {
		t.Errorf("inbox holds %d of %d consumed entries after the trim, want fewer than %d", l, n, n/2)
	}
	// One more write after the trim is still there for the next poll.
	if err := s.Save(ctx, newRec(s, aorIn(m, p, 0), "after"), true); err != nil {
		t.Fatal(err)
	}
	if in, err := s.PollInbox(ctx, pos, 1000); err != nil || len(in[p]) != 1 {
		t.Errorf("poll after the trim: %v, %v; want the one new entry", in, err)
	}
}

// TestClusterSubs runs the same on a local Redis Cluster: every script's
// keys must share a slot, or Cluster refuses it (CROSSSLOT).
func TestClusterSubs(t *testing.T) {
	c := clustertest.Start(t)
	testSubsStore(t, c.Client(), "store")
	testSubsLeases(t, c.Client(), "leases")
	testSubsInbox(t, c.Client(), "inbox")
}

// callLog counts a client's round trips and records the keys of what it
// sent, for checking that one store call is one round trip on one slot.
type callLog struct {
	mu    sync.Mutex
	trips int
	keys  []string
}

func (h *callLog) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *callLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add(cmd)
		return next(ctx, cmd)
	}
}
func (h *callLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.add(cmds...)
		return next(ctx, cmds)
	}
}

// add records one round trip carrying cmds.
func (h *callLog) add(cmds ...redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trips++
	for _, cmd := range cmds {
		a := cmd.Args()
		switch strings.ToLower(cmd.Name()) {
		case "eval", "evalsha":
			n, _ := a[2].(int)
			for _, k := range a[3 : 3+n] {
				h.keys = append(h.keys, fmt.Sprint(k))
			}
		default:
			if len(a) > 1 {
				h.keys = append(h.keys, fmt.Sprint(a[1]))
			}
		}
	}
}

func (h *callLog) reset() {
	h.mu.Lock()
	h.trips, h.keys = 0, nil
	h.mu.Unlock()
}

// oneTrip runs call and checks that it made one round trip (by the
// client and by s.RoundTrips) whose keys all lie in partition p's slot.
func (h *callLog) oneTrip(t *testing.T, s *partition.Subs, m *partition.Map, p int, what string, call func() error) error {
	t.Helper()
	h.reset()
	before := s.RoundTrips()
	err := call()
	h.mu.Lock()
	defer h.mu.Unlock()
	if got := s.RoundTrips() - before; got != 1 {
		t.Errorf("%s: RoundTrips grew by %d, want 1", what, got)
	}
	if h.trips != 1 {
		t.Errorf("%s: the client made %d round trips, want 1", what, h.trips)
	}
	want := partition.Slot(m.Key(p, "x"))
	for _, k := range h.keys {
		if partition.Slot(k) != want {
			t.Errorf("%s: key %s is in slot %d, not partition %d's %d", what, k, partition.Slot(k), p, want)
		}
	}
	if len(h.keys) == 0 {
		t.Errorf("%s: no keys recorded", what)
	}
	return err
}

// aorIn returns an AOR of partition p (the n-th such).
func aorIn(m *partition.Map, p, n int) string {
	for i := 0; ; i++ {
		aor := "sip:u" + strconv.Itoa(i) + "@example.com"
		if m.Of(bridge.CanonicalAOR(aor)) == p {
			if n == 0 {
				return aor
			}
			n--
		}
	}
}

var subExp = time.Now().Add(time.Hour).UTC().Truncate(time.Second)

// newRec is a subscription to aor with a dialog id made the way the
// notifier makes it, its local tag from s.DialogTag.
func newRec(s *partition.Subs, aor, callID string) *substore.Record {
	tag := s.DialogTag(bridge.CanonicalAOR(aor))
	return &substore.Record{
		ID: callID + "\x00" + tag + "\x00rt-" + callID, CallID: callID, LocalTag: tag, RemoteTag: "rt-" + callID,
		LocalURI: aor, RemoteURI: "sip:watcher@example.com", Target: "sip:watcher@10.0.0.9:5060",
		Routes: []string{"<sip:lb@10.0.0.1;lr>"}, RemoteCSeq: 7, Transport: "UDP", Source: "10.0.0.9:5060",
		Contact: "<sip:rb@10.0.0.2>", Package: "reg", Event: "reg", AOR: aor, Expires: subExp,
		LocalCSeq: 100, Version: 3,
	}
}

// sameRec compares two records, counters and owner included.
func sameRec(t *testing.T, what string, got, want *substore.Record) {
	t.Helper()
	g, w := *got, *want
	if !g.Expires.Equal(w.Expires) {
		t.Errorf("%s: expires %v, want %v", what, g.Expires, w.Expires)
	}
	g.Expires, w.Expires = time.Time{}, time.Time{}
	if fmt.Sprintf("%#v", g) != fmt.Sprintf("%#v", w) {
		t.Errorf("%s:\n got %#v\nwant %#v", what, g, w)
	}
}

// lastInbox is the last entry of partition p's inbox.
func lastInbox(t *testing.T, rdb redis.Cmdable, m *partition.Map, p int) map[string]any {
	t.Helper()
	msgs, err := rdb.XRevRangeN(context.Background(), m.Key(p, "subin"), "+", "-", 1).Result()
	if err != nil || len(msgs) == 0 {
		t.Fatalf("partition %d's inbox: %v, %d entries", p, err, len(msgs))
	}
	return msgs[0].Values
}

// ownAll returns an Owner of instance id that holds every partition of
// m (its only member).
func ownAll(t *testing.T, rdb redis.Cmdable, m *partition.Map, id string) *partition.Owner {
	t.Helper()
	o := partition.NewOwner(rdb, m, id, time.Minute, quiet)
	if err := o.Round(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(o.Owned()) != m.Count() {
		t.Fatalf("%s holds %d of %d partitions", id, len(o.Owned()), m.Count())
	}
	return o
}

func testSubsStore(t *testing.T, rdb redis.UniversalClient, prefix string) {
	ctx := context.Background()
	h := &callLog{}
	rdb.AddHook(h)
	m, _ := partition.NewMap(prefix, 16)
	o := ownAll(t, rdb, m, "a")
	s := partition.NewSubs(rdb, m, o, "a", quiet)

	// Load the scripts, so that what is measured below is the calls'.
	s.Serve(5)
	warm := newRec(s, aorIn(m, 5, 1), "warm")
	for _, err := range []error{s.Save(ctx, warm, true), s.Save(ctx, warm, false)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Advance(ctx, warm.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, warm.ID); err != nil {
		t.Fatal(err)
	}
	s.Unserve(5) // taken in below, once Owns is checked without it

	aor := aorIn(m, 5, 0)
	p := 5
	rec := newRec(s, aor, "c1")
	if err := h.oneTrip(t, s, m, p, "Save (create)", func() error { return s.Save(ctx, rec, true) }); err != nil {
		t.Fatal(err)
	}
	want := *rec
	want.Owner = "a"
	var got *substore.Record
	var was bool
	err := h.oneTrip(t, s, m, p, "Take", func() (err error) { got, was, err = s.Take(ctx, rec.ID); return err })
	if err != nil {
		t.Fatal(err)
	}
	sameRec(t, "taken after create", got, &want)
	if !was {
		t.Error("Take: wasOwner false, but this instance holds the partition")
	}
	if s.Owns(bridge.CanonicalAOR(aor)) {
		t.Error("Owns: true for a held partition not taken in (Serve)")
	}
	s.Serve(p)
	if !s.Owns(bridge.CanonicalAOR(aor)) {
		t.Error("Owns: false for a held partition taken in")
	}
	ttl := rdb.PTTL(ctx, m.Key(p, "sub:"+rec.ID)).Val()
	if full := time.Until(subExp) + time.Minute; ttl > full+time.Second || ttl < full-10*time.Second {
		t.Errorf("record's TTL %v, want about %v (expiry plus a minute)", ttl, full)
	}
	if !rdb.SIsMember(ctx, m.Key(p, "subs"), rec.ID).Val() {
		t.Error("the id is not in the partition's set")
	}
	if e := lastInbox(t, rdb, m, p); e["id"] != rec.ID || e["op"] != "save" || e["from"] != "a" {
		t.Errorf("inbox entry after Save: %v", e)
	}

	// An update changes the dialog, never the counters.
	upd := *rec
	upd.Target, upd.RemoteCSeq, upd.LocalCSeq, upd.Version = "sip:watcher@10.0.0.10:5070", 8, 999, 999
	if err := h.oneTrip(t, s, m, p, "Save (update)", func() error { return s.Save(ctx, &upd, false) }); err != nil {
		t.Fatal(err)
	}
	got, _, err = s.Take(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	want.Target, want.RemoteCSeq = upd.Target, upd.RemoteCSeq
	sameRec(t, "taken after update", got, &want)

	// An update of a record that does not exist writes nothing.
	missing := newRec(s, aor, "c-missing")
	inboxLen := rdb.XLen(ctx, m.Key(p, "subin")).Val()
	if err := s.Save(ctx, missing, false); !errors.Is(err, substore.ErrNotFound) {
		t.Errorf("update of a missing record: %v, want ErrNotFound", err)
	}
	// A record whose dialog id does not name its AOR's partition is
	// refused before anything is written.
	legacy := *missing
	legacy.LocalTag = "3f2b8c1e-6a0d-4c55-9a3e-2b1f0c9d8e7a"
	legacy.ID = "c-legacy\x00" + legacy.LocalTag + "\x00rt"
	other := newRec(s, aorIn(m, 6, 0), "c-other")
	other.AOR = aor
	for _, bad := range []*substore.Record{&legacy, other} {
		if err := s.Save(ctx, bad, true); err == nil {
			t.Errorf("Save of %q under partition %d: no error", bad.ID, p)
		}
	}
	for _, id := range []string{missing.ID, legacy.ID, other.ID} {
		if rdb.Exists(ctx, m.Key(p, "sub:"+id), m.Key(6, "sub:"+id)).Val() != 0 || rdb.SIsMember(ctx, m.Key(p, "subs"), id).Val() {
			t.Errorf("a refused save wrote %q", id)
		}
	}
	if n := rdb.XLen(ctx, m.Key(p, "subin")).Val(); n != inboxLen {
		t.Errorf("refused saves added %d inbox entries", n-inboxLen)
	}

	// The fence takes the next CSeq and the version, from the counters
	// saved at creation.
	var cseq, ver uint32
	err = h.oneTrip(t, s, m, p, "Advance", func() (err error) { cseq, ver, err = s.Advance(ctx, rec.ID); return err })
	if err != nil || cseq != 101 || ver != 3 {
		t.Errorf("Advance: cseq %d, version %d, %v; want 101, 3", cseq, ver, err)
	}
	got, _, _ = s.Take(ctx, rec.ID)
	if got.LocalCSeq != 101 || got.Version != 4 {
		t.Errorf("after Advance the record has cseq %d, version %d; want 101, 4", got.LocalCSeq, got.Version)
	}

	if err := h.oneTrip(t, s, m, p, "Delete", func() error { return s.Delete(ctx, rec.ID) }); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Take(ctx, rec.ID); !errors.Is(err, substore.ErrNotFound) {
		t.Errorf("Take after Delete: %v, want ErrNotFound", err)
	}
	if rdb.SIsMember(ctx, m.Key(p, "subs"), rec.ID).Val() {
		t.Error("Delete left the id in the partition's set")
	}
	if e := lastInbox(t, rdb, m, p); e["id"] != rec.ID || e["op"] != "del" || e["from"] != "a" {
		t.Errorf("inbox entry after Delete: %v", e)
	}
	if _, _, err := s.Advance(ctx, rec.ID); !errors.Is(err, substore.ErrNotOwner) {
		t.Errorf("Advance of a deleted record: %v, want substore.ErrNotOwner", err)
	}
	for _, id := range []string{"no-tags", legacy.ID, "c\x00" + s.DialogTag("sip:x@y") + "x\x00r"} {
		if _, _, err := s.Take(ctx, id); !errors.Is(err, substore.ErrNotFound) {
			t.Errorf("Take(%q): %v, want ErrNotFound", id, err)
		}
	}

	// The notifier's lease methods are no-ops: the Owner does their work.
	if recs, alone, err := s.Recover(ctx); recs != nil || alone || err != nil {
		t.Errorf("Recover: %v, %v, %v", recs, alone, err)
	}
	if recs, err := s.Claim(ctx, 10); recs != nil || err != nil {
		t.Errorf("Claim: %v, %v", recs, err)
	}
	if s.Beat(ctx) != nil || s.Release(ctx) != nil {
		t.Error("Beat or Release failed")
	}
}

func testSubsLeases(t *testing.T, rdb redis.UniversalClient, prefix string) {
	ctx := context.Background()
	m, _ := partition.NewMap(prefix, 8)
	oa := ownAll(t, rdb, m, "a")
	a := partition.NewSubs(rdb, m, oa, "a", quiet)
	recs := make([]*substore.Record, m.Count())
	for p := range recs {
		a.Serve(p) // taken in, as the owner's follow loop does on a gain
		recs[p] = newRec(a, aorIn(m, p, 0), "l"+strconv.Itoa(p))
		if err := a.Save(ctx, recs[p], true); err != nil {
			t.Fatal(err)
		}
		if _, _, err := a.Advance(ctx, recs[p].ID); err != nil {
			t.Fatalf("partition %d: the holder's fence refused: %v", p, err)
		}
	}

	// An instance that holds no partition passes no fence, and asks
	// Redis nothing for it.
	ob := partition.NewOwner(rdb, m, "b", time.Minute, quiet)
	b := partition.NewSubs(rdb, m, ob, "b", quiet)
	before := b.RoundTrips()
	if _, _, err := b.Advance(ctx, recs[0].ID); !errors.Is(err, substore.ErrNotOwner) {
		t.Errorf("Advance without the partition: %v, want substore.ErrNotOwner", err)
	}
	if b.RoundTrips() != before {
		t.Error("Advance without the partition made a round trip")
	}
	if b.Owns(bridge.CanonicalAOR(recs[0].AOR)) {
		t.Error("Owns: true without the lease")
	}
	if got, was, err := b.Take(ctx, recs[0].ID); err != nil || was || got.Owner != "a" {
		t.Errorf("Take on a non-owner: owner %q, wasOwner %v, %v; want a, false", got.Owner, was, err)
	}

	// A lease lost behind the owner's back (it paused past it and another
	// instance took it): its fence is closed before it notices.
	lease := m.PartitionLease(0)
	if err := rdb.Set(ctx, lease.Key, "c/999", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Advance(ctx, recs[0].ID); !errors.Is(err, substore.ErrNotOwner) {
		t.Errorf("Advance after the lease was taken: %v, want substore.ErrNotOwner", err)
	}
	if got, _, _ := a.Take(ctx, recs[0].ID); got.Owner != "c" {
		t.Errorf("Take: owner %q, want the lease's holder c", got.Owner)
	}
	rdb.Del(ctx, lease.Key)
	oa.Round(ctx) // notices the loss
	if _, ok := oa.Holder(0); ok {
		t.Fatal("the owner still holds partition 0 after its renewal failed")
	}
	oa.Round(ctx) // acquires it again, under a new epoch
	if _, ok := oa.Holder(0); !ok {
		t.Fatal("the owner did not take partition 0 again")
	}
	if cseq, _, err := a.Advance(ctx, recs[0].ID); err != nil || cseq != 102 {
		t.Errorf("Advance under the new lease: cseq %d, %v; want 102", cseq, err)
	}

	// A hand-over: b joins and gets its share; a's fence closes on those
	// partitions, b's opens, and the counters continue.
	ob.Round(ctx) // joins; its share is still held by a
	oa.Round(ctx) // hands b's share over
	ob.Round(ctx) // takes it
	moved := 0
	for p, rec := range recs {
		_, byB := ob.Holder(p)
		_, byA := oa.Holder(p)
		if byA == byB {
			t.Fatalf("partition %d: held by a %v, by b %v", p, byA, byB)
		}
		if !byB {
			continue
		}
		moved++
		if _, _, err := a.Advance(ctx, rec.ID); !errors.Is(err, substore.ErrNotOwner) {
			t.Errorf("partition %d: the previous owner's fence passes: %v", p, err)
		}
		// Held, not taken in yet: no fence, for a passing reason (a
		// document now would lack the partition's contacts).
		if _, _, err := b.Advance(ctx, rec.ID); !errors.Is(err, partition.ErrNotServed) {
			t.Errorf("partition %d: the new owner's fence before Serve: %v, want ErrNotServed", p, err)
		}
		b.Serve(p)
		cseq, _, err := b.Advance(ctx, rec.ID)
		if err != nil || (p != 0 && cseq != 102) || (p == 0 && cseq != 103) {
			t.Errorf("partition %d: the new owner's fence: cseq %d, %v", p, cseq, err)
		}
		if got, was, err := b.Take(ctx, rec.ID); err != nil || !was || got.Owner != "b" {
			t.Errorf("partition %d: Take on the new owner: owner %q, wasOwner %v, %v", p, got.Owner, was, err)
		}
	}
	if moved != m.Count()/2 {
		t.Errorf("b took %d partitions of %d", moved, m.Count())
	}
}

func testSubsInbox(t *testing.T, rdb redis.UniversalClient, prefix string) {
	ctx := context.Background()
	m, _ := partition.NewMap(prefix, 8)
	oa := ownAll(t, rdb, m, "a")
	a := partition.NewSubs(rdb, m, oa, "a", quiet)
	x := partition.NewSubs(rdb, m, partition.NewOwner(rdb, m, "x", time.Minute, quiet), "x", quiet)
	const p, q = 3, 6

	recs, pos, err := a.Load(ctx, p)
	if err != nil || len(recs) != 0 || pos != "0-0" {
		t.Fatalf("Load of an empty partition: %d records, position %q, %v", len(recs), pos, err)
	}

	// x (any instance) stores subscriptions of partition p: live ones,
	// one past its expiry, one whose hash expired (id left in the set).
	var live []*substore.Record
	for i := range 3 {
		r := newRec(x, aorIn(m, p, i), "in"+strconv.Itoa(i))
		live = append(live, r)
	}
	expired := newRec(x, aorIn(m, p, 3), "expired")
	expired.Expires = time.Now().Add(-time.Second).UTC().Truncate(time.Second)
	gone := newRec(x, aorIn(m, p, 4), "gone")
	for _, r := range append(append([]*substore.Record{}, live...), expired, gone) {
		if err := x.Save(ctx, r, true); err != nil {
			t.Fatal(err)
		}
	}
	rdb.Del(ctx, m.Key(p, "sub:"+gone.ID))

	// Saves and deletes racing the load, right after it read the inbox
	// position: the inbox has them.
	racer := newRec(x, aorIn(m, p, 5), "racer")
	own := newRec(a, aorIn(m, p, 6), "own")
	partition.SetLoadHook(a, func() {
		for _, err := range []error{x.Save(ctx, racer, true), x.Delete(ctx, live[0].ID), a.Save(ctx, own, true)} {
			if err != nil {
				t.Error(err)
			}
		}
	})
	recs, pos, err = a.Load(ctx, p)
	partition.SetLoadHook(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*substore.Record{}
	for _, r := range recs {
		byID[r.ID] = r
	}
	for _, r := range live[1:] {
		w := *r
		w.Owner = "a"
		if got, ok := byID[r.ID]; !ok {
			t.Errorf("Load lost %s", r.CallID)
		} else {
			sameRec(t, "loaded", got, &w)
		}
	}
	if _, ok := byID[gone.ID]; ok {
		t.Errorf("Load returned %s, whose record is gone", gone.CallID)
	}
	// Past its expiry but stored: its final NOTIFY is still owed (an
	// unsubscribe answered while the partition had no owner).
	if _, ok := byID[expired.ID]; !ok {
		t.Errorf("Load left out %s, past its expiry but stored", expired.CallID)
	}
	if rdb.SIsMember(ctx, m.Key(p, "subs"), gone.ID).Val() {
		t.Error("Load left the id of a vanished hash in the set")
	}
	if !rdb.SIsMember(ctx, m.Key(p, "subs"), expired.ID).Val() {
		t.Error("Load removed the id of a record still stored (past expiry, inside its grace)")
	}

	// The inbox from Load's position: x's racing save and delete, and
	// this instance's own saves too, the one made before it served the
	// partition (a SUBSCRIBE it answered while taking the partition in)
	// and the one made once serving: the notifier tells them apart.
	a.Serve(p)
	served := newRec(a, aorIn(m, p, 7), "served")
	if err := a.Save(ctx, served, true); err != nil {
		t.Fatal(err)
	}
	at := map[int]string{p: pos, q: "0-0"}
	qrec := newRec(x, aorIn(m, q, 0), "q")
	if err := x.Save(ctx, qrec, true); err != nil {
		t.Fatal(err)
	}
	in, err := a.PollInbox(ctx, at, 100)
	if err != nil {
		t.Fatal(err)
	}
	wantP := []partition.InboxEntry{{ID: racer.ID, Op: "save", From: "x"}, {ID: live[0].ID, Op: "del", From: "x"},
		{ID: own.ID, Op: "save", From: "a"}, {ID: served.ID, Op: "save", From: "a"}}
	if fmt.Sprint(in[p]) != fmt.Sprint(wantP) {
		t.Errorf("inbox of partition %d: %q, want %q", p, in[p], wantP)
	}
	if wantQ := []partition.InboxEntry{{ID: qrec.ID, Op: "save", From: "x"}}; fmt.Sprint(in[q]) != fmt.Sprint(wantQ) {
		t.Errorf("inbox of partition %d: %q, want %q", q, in[q], wantQ)
	}
	lastP, _ := lastInbox(t, rdb, m, p)["id"].(string)
	if lastP != served.ID {
		t.Fatalf("the last inbox entry is %q, want the save made while serving", lastP)
	}
	msgs := rdb.XRevRangeN(ctx, m.Key(p, "subin"), "+", "-", 1).Val()
	if at[p] != msgs[0].ID {
		t.Errorf("position of partition %d is %s, want the save made while serving's %s (consumed)", p, at[p], msgs[0].ID)
	}
	if in, err := a.PollInbox(ctx, at, 100); err != nil || len(in) != 0 {
		t.Errorf("second poll: %v, %v; want nothing", in, err)
	}

	// count bounds each partition's read; the rest comes next time.
	for i := range 3 {
		if err := x.Save(ctx, newRec(x, aorIn(m, p, 7+i), "more"+strconv.Itoa(i)), true); err != nil {
			t.Fatal(err)
		}
	}
	if in, _ := a.PollInbox(ctx, at, 2); len(in[p]) != 2 {
		t.Errorf("poll with count 2: %d entries", len(in[p]))
	}
	if in, _ := a.PollInbox(ctx, at, 2); len(in[p]) != 1 {
		t.Errorf("next poll: %d entries, want the third", len(in[p]))
	}

	// Records: what the inbox named, a deleted one absent.
	got, err := a.Records(ctx, p, []string{racer.ID, live[0].ID, own.ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[racer.ID] == nil || got[own.ID] == nil {
		t.Errorf("Records: %d records, want racer and own", len(got))
	} else {
		w := *racer
		w.Owner = "a"
		sameRec(t, "Records", got[racer.ID], &w)
	}
	if _, _, err := a.Load(ctx, m.Count()); err == nil {
		t.Error("Load of a partition out of range: no error")
	}
}

// TestDialogTag checks that a dialog tag names its AOR's partition, for
// every partition, and that no other tag passes for one.
func TestDialogTag(t *testing.T) {
	const n = 300
	m, _ := partition.NewMap("tags", n)
	s := partition.NewSubs(nil, m, partition.NewOwner(nil, m, "a", time.Second, quiet), "a", quiet)
	seen := map[string]bool{}
	for p := range n {
		aor := aorIn(m, p, 0)
		tag := s.DialogTag(bridge.CanonicalAOR(aor))
		if seen[tag] {
			t.Fatalf("tag %q made twice", tag)
		}
		seen[tag] = true
		for _, c := range tag {
			// RFC 3261 25.1 token characters.
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-.!%*_+`'~", c)) {
				t.Fatalf("tag %q: %q is not a token character", tag, c)
			}
		}
		if got, ok := partition.PartitionOfTag(tag); !ok || got != p {
			t.Errorf("PartitionOfTag(%q) = %d, %v; want %d", tag, got, ok, p)
		}
		if got, ok := s.PartitionOfID("call@host\x00" + tag + "\x00remote"); !ok || got != p {
			t.Errorf("PartitionOfID with tag %q = %d, %v; want %d", tag, got, ok, p)
		}
	}
	good := s.DialogTag("sip:a@example.com")
	rnd := good[:16]
	for _, tag := range []string{
		"", "abc", rnd, rnd + ".p", rnd + ".px", rnd + ".p-1", rnd + ".p+1", rnd + ".p01", rnd + ".p1 ",
		rnd + ".p4096", rnd + ".p99999999999999999999",
		rnd[:15] + ".p1", rnd + "x.p1", "0123456789abcde-.p1", "0123456789abcdé.p1",
		"3f2b8c1e-6a0d-4c55-9a3e-2b1f0c9d8e7a", // sipgo's own tags (uuid)
	} {
		if p, ok := partition.PartitionOfTag(tag); ok {
			t.Errorf("PartitionOfTag(%q) = %d: accepted", tag, p)
		}
	}
	small, _ := partition.NewMap("tags", 4)
	ss := partition.NewSubs(nil, small, nil, "a", quiet)
	for _, id := range []string{
		"c\x00" + rnd + ".p4\x00r",     // partition out of this map's range
		"c\x00" + rnd + ".p1",          // no remote tag
		"c\x00r\x00" + rnd + ".p1",     // the partition in the remote tag
		"c\x00" + rnd + ".p1\x00r\x00", // one field too many
		rnd + ".p1",
	} {
		if p, ok := ss.PartitionOfID(id); ok {
			t.Errorf("PartitionOfID(%q) = %d: accepted", id, p)
		}
	}
	if p, ok := ss.PartitionOfID("c\x00" + rnd + ".p3\x00r"); !ok || p != 3 {
		t.Errorf("PartitionOfID of partition 3 of 4: %d, %v", p, ok)
	}
}
