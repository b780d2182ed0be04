package main

// Sending SUBSCRIBEs: the initial ones at a bounded rate with a bounded
// number outstanding, the Expires: 0 ones at the end, and their UDP
// retransmissions (RFC 3261 17.1.2.2: T1 doubling to T2, given up after
// 64*T1).

import (
	"context"
	"time"
)

const (
	timerT1 = 500 * time.Millisecond
	timerT2 = 4 * time.Second
	timerB  = 64 * timerT1
	// retransmitTick is how often pending SUBSCRIBEs are looked at.
	retransmitTick = 50 * time.Millisecond
)

// subscribeAll subscribes every watcher and waits until each is active or
// has failed. It returns early when ctx ends.
func (r *runner) subscribeAll(ctx context.Context) {
	stop := r.startRetransmitter(ctx)
	defer stop()
	var buf []byte
	start := time.Now()
	for i := range r.subs {
		select {
		case r.window <- struct{}{}:
		case <-ctx.Done():
			return
		}
		if !waitUntil(ctx, start.Add(time.Duration(float64(i)/r.cfg.subscribeRate*float64(time.Second)))) {
			return
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
	}
	// The retransmitter settles every SUBSCRIBE within Timer B; the
	// deadline only makes the bound explicit.
	deadline := time.Now().Add(timerB + time.Second)
	for r.pending.Load() > 0 && time.Now().Before(deadline) && sleepCtx(ctx, 10*time.Millisecond) {
	}
}

// unsubscribeAll ends every active subscription with Expires: 0 and waits,
// at most until deadline, for the final NOTIFYs.
func (r *runner) unsubscribeAll(ctx context.Context, deadline time.Time) {
	stop := r.startRetransmitter(ctx)
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
	for r.leaving.Load() > 0 && time.Now().Before(deadline) && sleepCtx(ctx, 10*time.Millisecond) {
	}
}

// appendSubscribe builds the SUBSCRIBE of subscriber i (l.subsMu held).
func (r *runner) appendSubscribe(dst []byte, l *lane, i int, s *subscriber, expires int) []byte {
	req := subscribeReq{
		transport: "UDP", local: l.local, run: r.run, idx: i,
		user: r.users[s.aor], domain: r.cfg.domain,
		cseq: s.cseq, expires: expires,
	}
	if l.tcp != nil {
		req.transport = "TCP"
	}
	if s.phase == subLeaving {
		req.toTag, req.target = s.toTag, s.target
	}
	return appendSubscribe(dst, &req)
}

// startRetransmitter runs the SUBSCRIBE timers until the returned stop is
// called.
func (r *runner) startRetransmitter(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(retransmitTick)
		defer t.Stop()
		var buf []byte
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, l := range r.lanes {
				buf = r.retransmit(l, buf)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// retransmit resends the lane's unanswered UDP SUBSCRIBEs that are due and
// gives up on those past Timer B, or waiting that long for a first NOTIFY.
func (r *runner) retransmit(l *lane, buf []byte) []byte {
	l.subsMu.Lock()
	defer l.subsMu.Unlock()
	now := r.since()
	for i := l.id; i < len(r.subs); i += len(r.lanes) {
		s := &r.subs[i]
		if s.phase != subPending && s.phase != subLeaving {
			continue
		}
		if now-s.sentAt > int64(timerB) {
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
		interval := min(timerT1<<(s.tries-1), timerT2)
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
	return sleepCtx(ctx, d)
}

// sleepCtx sleeps for d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
