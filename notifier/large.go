package notifier

import (
	"context"
	"errors"
	"fmt"

	"github.com/emiago/sipgo/sip"
)

// A NOTIFY too large for a UDP datagram (a full document of an AOR with
// many long contacts) goes over TCP instead, as RFC 3261 18.1.1 asks of a
// request over the path MTU: to the host and port it would have gone to
// over UDP, where a UA that listens on both takes it. regbridge keeps
// UDP, with IP fragmentation, up to the largest datagram rather than
// RFC 3261's 1300 bytes: most subscribers over UDP (phones) listen on
// UDP only, and a TCP attempt per multi-contact document would cost each
// of them a refused connection, or behind a firewall that drops it, a
// wait of up to Timer F.
//
// When TCP fails too, the subscription ends with a final NOTIFY the
// subscriber can receive: Subscription-State terminated;reason=probation
// with a retry-after, and a document without state (reginfo: an empty
// partial document that keeps the version sequence; presence: no body).
// RFC 6665 4.1.3 gives probation the meaning wanted: ended, try again
// later, not before retry-after. deactivated would make the subscriber
// re-subscribe at once into the same document (a loop); rejected,
// noresource and giveup would say its authorization or the resource is
// the problem, and tell it not to come back.

// udpMaxPayload is the largest UDP payload IPv4 carries (65535 bytes
// less the IP and UDP headers); sendto refuses a larger one (EMSGSIZE).
const udpMaxPayload = 65535 - 20 - 8

// viaRoom is what the top Via adds to a NOTIFY measured without it.
const viaRoom = 200

// errTooLarge wraps the failure of a NOTIFY too large for UDP to go over
// TCP.
var errTooLarge = errors.New("NOTIFY too large for UDP and not taken over TCP")

// tooLargeForUDP reports whether the NOTIFY of j with body goes over UDP
// to hop h and does not fit a datagram. Only a large body costs a
// measurement.
func tooLargeForUDP(j *job, h *hop, body []byte, extra []string) bool {
	if h.transport != "UDP" || len(body) < udpMaxPayload-16<<10 {
		return false
	}
	return len(appendNotify(nil, j, h, via{}, body, extra...))+viaRoom > udpMaxPayload
}

// sendLarge runs the NOTIFY transaction of job j over TCP to where hop h
// leads over UDP. A failure to carry it is errTooLarge.
func (n *Notifier) sendLarge(ctx context.Context, j *job, h hop, body []byte, extra ...string) (*sip.Response, error) {
	h.transport = "TCP"
	req, err := n.buildNotify(j, &h, body, extra...)
	if err != nil {
		return nil, err
	}
	// A connection that a firewall drops would otherwise wait as long as
	// the kernel tries.
	ctx, cancel := context.WithTimeout(ctx, sip.Timer_F)
	defer cancel()
	res, err := n.doer.Do(ctx, req)
	switch {
	case err == nil && res == nil:
		err = errNoResponse
	case err == nil && res.StatusCode == 513:
		// Message Too Large (RFC 3261 21.5.14): its TCP takes no more.
		err = fmt.Errorf("subscriber answered %d %s", res.StatusCode, res.Reason)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errTooLarge, err)
	}
	n.stats.LargeOverTCP.Add(1)
	return res, nil
}

// endLarge ends s because its NOTIFY j reached the subscriber over no
// transport: the next NOTIFY is the final one, without state, so it fits
// a datagram. false when j was that NOTIFY already (finish removes s).
func (n *Notifier) endLarge(s *subscription, j *job, err error) bool {
	e, ok := n.endBare(s, bareRetryAfter)
	if !ok {
		return false
	}
	if !s.pkg.presence && !s.stored {
		// The subscriber never saw j's document: the final one takes its
		// version, so the sequence has no gap.
		s.mu.Lock()
		s.version = j.doc.Version
		s.mu.Unlock()
	}
	n.stats.LargeEnded.Add(1)
	n.log.Warn("NOTIFY too large for UDP and not taken over TCP; subscription ended",
		"aor", s.aor, "call_id", j.d.callID, "reason", string(e.reason), "err", err)
	return true
}
