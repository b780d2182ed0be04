package notifier

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// A panic in a goroutine that nothing recovers ends the process, and with
// it every subscription held in memory and every NOTIFY in flight: one
// bad request or one bad contact must not do that. The goroutines that
// serve strangers' requests (sipgo's per request, ours per UDP
// SUBSCRIBE) and those that deliver NOTIFYs recover: the panic is logged
// with its stack and counted (Counters.HandlerPanics, DeliveryPanics), and
// the notifier goes on serving.

// recovering wraps a SIP request handler: after a panic the request gets
// 500 (RFC 3261 21.5.1) unless it was answered already.
func (n *Notifier) recovering(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			n.stats.HandlerPanics.Add(1)
			callID := ""
			if c := req.CallID(); c != nil {
				callID = c.Value()
			}
			n.log.Error("panic in SIP request handler; answered 500", "method", string(req.Method),
				"call_id", callID, "err", fmt.Errorf("panic: %v", v), "stack", string(debug.Stack()))
			if req.IsAck() {
				return
			}
			if req.Method == sip.SUBSCRIBE {
				n.obs.SubscribeAnswered(500)
			}
			_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "Server Internal Error", nil))
		}()
		h(req, tx)
	}
}

// deliverRecovering is deliver with a panic recovered. The subscription,
// whose delivery this goroutine owns, ends with a final NOTIFY without
// state (what panicked was most likely making its document); if that
// one panics too, it is removed.
func (n *Notifier) deliverRecovering(ctx context.Context, s *subscription, bufs *deliveryBufs) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		n.stats.DeliveryPanics.Add(1)
		*bufs = deliveryBufs{} // possibly half-written
		e, ok := n.endBare(s, bareRetryAfter)
		if !ok {
			n.log.Error("panic delivering NOTIFY; subscription removed", "aor", s.aor,
				"err", fmt.Errorf("panic: %v", v), "stack", string(debug.Stack()))
			n.remove(s)
			return
		}
		n.log.Error("panic delivering NOTIFY; subscription ends", "aor", s.aor, "reason", string(e.reason),
			"err", fmt.Errorf("panic: %v", v), "stack", string(debug.Stack()))
		n.enqueue(s) // still claimed: the final NOTIFY is next
	}()
	n.deliver(ctx, s, bufs)
}

// bareRetryAfter is the retry-after of a subscription ended because its
// documents cannot reach the subscriber (too large for any transport it
// takes, or a panic making them): long enough that re-subscribing, each
// time into the same failure, is no loop; short enough that the
// subscriber is back soon after the cause is gone.
const bareRetryAfter = 600 * time.Second

// endBare makes the next NOTIFY of s, whose delivery the caller owns, its
// final one without state: with the reason already decided, else
// probation with retryAfter (RFC 6665 4.1.3: ended, try again later).
// false when s is removed already, or when its final NOTIFY without
// state is what failed.
func (n *Notifier) endBare(s *subscription, retryAfter time.Duration) (*ending, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || (s.final != nil && s.final.bare) {
		return nil, false
	}
	e := ending{reason: ReasonProbation, retryAfter: uint32(retryAfter / time.Second), bare: true}
	if s.final != nil {
		e = *s.final
		e.bare = true
	}
	s.final = &e
	return &e, true
}
