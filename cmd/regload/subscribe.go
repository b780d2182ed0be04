package main

// Sending SUBSCRIBEs: the initial ones at a bounded rate with a bounded
// number outstanding, the Expires: 0 ones at the end, and their UDP
// retransmissions (RFC 3261 17.1.2.2, a non-INVITE client transaction:
// Timer E from T1 doubling to T2, given up at Timer F, 64*T1).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/regbridge/regbridge/source"
)

// sipTimers are the RFC 3261 timers of the SUBSCRIBE transactions.
type sipTimers struct {
	t1, t2 time.Duration
}

// f is Timer F: how long a SUBSCRIBE waits for its final response.
func (t sipTimers) f() time.Duration { return 64 * t.t1 }

// defaultTimers are RFC 3261's defaults (tests shorten them).
var defaultTimers = sipTimers{t1: 500 * time.Millisecond, t2: 4 * time.Second}

// retransmitTick is how often pending SUBSCRIBEs are looked at (at most).
const retransmitTick = 50 * time.Millisecond

// errServerSilent cancels the subscribe phase when the server has sent
// nothing for Timer F while SUBSCRIBEs were outstanding.
var errServerSilent = errors.New("server silent")

// subscribeAll subscribes every watcher and waits until each is active or
// has failed. It returns early, without error, when ctx ends. It fails when
// the server sends nothing at all for Timer F while SUBSCRIBEs are
// outstanding: every SUBSCRIBE then times out, and waiting out each window
// of them in turn would take subscriptions/window times Timer F.
func (r *runner) subscribeAll(ctx context.Context) error {
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	begin := r.since()
	stop := r.startRetransmitter(ctx, func(now int64) {
		if r.pending.Load() > 0 && now-r.lastHeard(begin) > int64(r.timers.f()) {
			cancel(errServerSilent)
		}
	})
	defer stop()
	var buf []byte
	start := time.Now()
	sent := 0
	for i := range r.subs {
		select {
		case r.window <- struct{}{}:
		case <-ctx.Done():
			return r.subscribeError(parent, ctx, sent, begin)
		}
		if !waitUntil(ctx, start.Add(time.Duration(float64(i)/r.cfg.subscribeRate*float64(time.Second)))) {
			return r.subscribeError(parent, ctx, sent, begin)
		}
		l := r.lanes[i%len(r.lanes)]
		l.subsMu.Lock()
		s := &r.subs[i]
		now := r.since()
		s.phase, s.cseq, s.tries, s.answered = subPending, 1, 1, false
		s.sentAt, s.lastTx = now, now
		r.pending.Add(1)
		buf = r.appendSubscribe(buf[:0], l, i, s, int(r.cfg.expires/time.Second))
		l.subsMu.Unlock()
		l.send(buf)
		sent++
	}
	// The retransmitter settles every SUBSCRIBE within Timer F; the
	// deadline only makes the bound explicit.
	deadline := time.Now().Add(r.timers.f() + time.Second)
	for r.pending.Load() > 0 && time.Now().Before(deadline) && source.Sleep(ctx, 10*time.Millisecond) {
	}
	return r.subscribeError(parent, ctx, sent, begin)
}

// subscribeError is subscribeAll's result once it stops: nil, or when ctx
// was cancelled for the server's silence (and not parent, for Ctrl-C), an
// error naming the server.
func (r *runner) subscribeError(parent, ctx context.Context, sent int, begin int64) error {
	if parent.Err() != nil || !errors.Is(context.Cause(ctx), errServerSilent) {
		return nil
	}
	server := r.cfg.network + "://" + r.cfg.serverAddr.String()
	f := r.timers.f()
	if r.lastHeard(begin) == begin {
		return fmt.Errorf("no answer from the SIP server at %s: none of the %d SUBSCRIBEs sent was answered within %v (RFC 3261 Timer F); is regbridge listening there?",
			server, sent, f)
	}
	return fmt.Errorf("the SIP server at %s stopped answering: nothing received for %v with %d of %d SUBSCRIBEs still outstanding",
		server, f, r.pending.Load(), sent)
}

// lastHeard is when (ns since t0) anything last arrived from the server,
// or begin when nothing has since then.
func (r *runner) lastHeard(begin int64) int64 {
	t := begin
	for _, l := range r.lanes {
		t = max(t, l.heard.Load())
	}
	return t
}

// unsubscribeAll ends every active subscription with Expires: 0 and waits,
// at most until deadline, for the final NOTIFYs.
func (r *runner) unsubscribeAll(ctx context.Context, deadline time.Time) {
	stop := r.startRetransmitter(ctx, nil)
	defer stop()
	var buf []byte
	start := time.Now()
	sent := 0
	for i := range r.subs {
		l := r.lanes[i%len(r.lanes)]
		l.subsMu.Lock()
		s := &r.subs[i]
		if s.phase != subActive {
			l.subsMu.Unlock()
			continue
		}
		now := r.since()
		s.phase, s.tries, s.answered = subLeaving, 1, false
		s.cseq++
		s.sentAt, s.lastTx = now, now
		r.leaving.Add(1)
		buf = r.appendSubscribe(buf[:0], l, i, s, 0)
		l.subsMu.Unlock()
		l.send(buf)
		sent++
		if !waitUntil(ctx, start.Add(time.Duration(float64(sent)/r.cfg.subscribeRate*float64(time.Second)))) {
			return
		}
	}
	for r.leaving.Load() > 0 && time.Now().Before(deadline) && source.Sleep(ctx, 10*time.Millisecond) {
	}
}

// appendSubscribe builds the SUBSCRIBE of subscriber i (l.subsMu held).
func (r *runner) appendSubscribe(dst []byte, l *lane, i int, s *subscriber, expires int) []byte {
	req := subscribeReq{
		transport: l.proto, local: l.local, run: r.run, idx: i,
		user: r.users[s.aor], domain: r.cfg.domain,
		cseq: s.cseq, expires: expires,
	}
	if s.phase == subLeaving {
		req.toTag, req.target = s.toTag, s.target
	}
	return appendSubscribe(dst, &req)
}

// startRetransmitter runs the SUBSCRIBE timers until the returned stop is
// called; each round starts with check (when not nil), given the time.
func (r *runner) startRetransmitter(ctx context.Context, check func(now int64)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(min(retransmitTick, r.timers.t1))
		defer t.Stop()
		var buf []byte
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if check != nil {
				check(r.since()) // first: the settling below frees window places
			}
			for _, l := range r.lanes {
				buf = r.retransmit(l, buf)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// retransmit resends the lane's unanswered UDP SUBSCRIBEs that are due and
// gives up on those past Timer F, or waiting that long for a first NOTIFY.
func (r *runner) retransmit(l *lane, buf []byte) []byte {
	l.subsMu.Lock()
	defer l.subsMu.Unlock()
	now := r.since()
	for i := l.id; i < len(r.subs); i += len(r.lanes) {
		s := &r.subs[i]
		if s.phase != subPending && s.phase != subLeaving {
			continue
		}
		if now-s.sentAt > int64(r.timers.f()) {
			s.status = 408
			if s.phase == subPending {
				r.settle(l, s, subFailed, now)
			} else {
				s.phase = subGone
				r.leaving.Add(-1)
			}
			continue
		}
		if s.answered || l.udp == nil {
			continue
		}
		interval := min(r.timers.t1<<(s.tries-1), r.timers.t2)
		if now-s.lastTx < int64(interval) {
			continue
		}
		s.tries++
		s.lastTx = now
		expires := int(r.cfg.expires / time.Second)
		if s.phase == subLeaving {
			expires = 0
		}
		buf = r.appendSubscribe(buf[:0], l, i, s, expires)
		l.send(buf)
	}
	return buf
}

// waitUntil sleeps until t; false if ctx ended first.
func waitUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	return source.Sleep(ctx, d)
}
