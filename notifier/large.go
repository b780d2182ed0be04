package notifier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// A NOTIFY of a UDP dialog larger than udpPathMTULimit (a full document
// with a few contacts) goes over TCP to the host and port it would have
// gone to over UDP, as RFC 3261 18.1.1 asks: a UA that listens on both
// (Kamailio, most proxies) takes it there, unfragmented and
// congestion-controlled, and answers on that connection. The TCP
// connection gets largeConnectTimeout to open. When it is refused, reset
// or does not open in time, or TCP carries no answer, the NOTIFY goes over
// UDP as before (IP fragments it; RFC 3261 lets an element fall back so),
// and the destination is remembered for tcpRefusalTTL so that a UDP-only
// phone costs one refused connection per ten minutes, not one per
// document. A destination that took TCP is tried over TCP every time.
//
// A NOTIFY that does not fit a UDP datagram either, when TCP did not carry
// it, ends the subscription with a final NOTIFY the subscriber can
// receive: Subscription-State terminated;reason=probation with a
// retry-after, and a document without state (reginfo: an empty partial
// document that keeps the version sequence; presence: no body). RFC 6665
// 4.1.3 gives probation the meaning wanted: ended, try again later, not
// before retry-after. deactivated would make the subscriber re-subscribe
// at once into the same document (a loop); rejected, noresource and
// giveup would say its authorization or the resource is the problem, and
// tell it not to come back.

// udpPathMTULimit is the size above which a NOTIFY of a UDP dialog goes
// over TCP first. RFC 3261 18.1.1 sets 1300 bytes when the path MTU is
// unknown, as it always is to a subscriber: a 1500-byte Ethernet MTU less
// room for tunnels and headers, so that the message is not fragmented
// (a lost fragment loses the whole message, and many NATs and firewalls
// drop fragments).
const udpPathMTULimit = 1300

// largeConnectTimeout bounds the TCP connection attempt of a large NOTIFY:
// long enough for one SYN retransmission, short enough that a firewall
// that drops the SYN delays the document by seconds, not Timer F.
const largeConnectTimeout = 2 * time.Second

// tcpRefusalTTL is how long a destination that did not take a large
// NOTIFY over TCP gets its large NOTIFYs over UDP without a new attempt;
// tcpRefusalMax bounds how many such destinations are remembered (about
// 100 bytes each).
const (
	tcpRefusalTTL = 10 * time.Minute
	tcpRefusalMax = 16384
)

// udpMaxPayload is the largest UDP payload IPv4 carries (65535 bytes
// less the IP and UDP headers); sendto refuses a larger one (EMSGSIZE).
const udpMaxPayload = 65535 - 20 - 8

// viaRoom is what the top Via adds, at most, to a NOTIFY measured
// without it.
const viaRoom = 200

// errOverMTU stops a UDP NOTIFY larger than the limit it was sent with
// before anything is written.
var errOverMTU = errors.New("NOTIFY larger than the UDP path MTU limit")

// errTooLarge wraps the failure of a NOTIFY too large for UDP to go over
// TCP.
var errTooLarge = errors.New("NOTIFY too large for UDP and not taken over TCP")

// errTCPRemembered is why a large NOTIFY skipped TCP.
var errTCPRemembered = errors.New("destination recently took no TCP")

// tooLargeForUDP reports whether the NOTIFY of j with body goes over UDP
// to hop h and does not fit a datagram. Only a large body costs a
// measurement.
func tooLargeForUDP(j *job, h *hop, body []byte, extra []string) bool {
	if h.transport != "UDP" || len(body) < udpMaxPayload-16<<10 {
		return false
	}
	return len(appendNotify(nil, j, h, via{}, body, extra...))+viaRoom > udpMaxPayload
}

// sendLarge runs the NOTIFY transaction of job j, larger than
// udpPathMTULimit, to where the UDP hop h leads: over TCP unless the
// destination recently refused it, else over UDP. A NOTIFY that neither
// carries is errTooLarge.
func (n *Notifier) sendLarge(ctx context.Context, j *job, h hop, body []byte, extra ...string) (*sip.Response, error) {
	dest := h.dest
	if dest == "" {
		dest = hostPort(&h.ruri, "UDP")
	}
	tcpErr := errTCPRemembered
	if !n.noTCP.has(dest, time.Now()) {
		res, err := n.sendOverTCP(ctx, j, h, body, extra...)
		if err == nil {
			n.stats.LargeOverTCP.Add(1)
			return res, nil
		}
		if ctx.Err() != nil {
			return nil, err // shutting down: no second attempt
		}
		n.noTCP.add(dest, time.Now())
		n.log.Debug("large NOTIFY not taken over TCP; UDP instead", "dest", dest, "err", err)
		tcpErr = err
	}
	if tooLargeForUDP(j, &h, body, extra) {
		return nil, fmt.Errorf("%w: %w", errTooLarge, tcpErr)
	}
	res, err := n.sendTo(ctx, j, &h, body, 0, extra...)
	if errors.Is(err, syscall.EMSGSIZE) { // the kernel's limit is below ours
		return nil, fmt.Errorf("%w: %w", errTooLarge, err)
	}
	if err == nil {
		n.stats.LargeOverUDP.Add(1)
	}
	return res, err
}

// sendOverTCP runs the NOTIFY transaction of job j over TCP to where
// hop h leads over UDP.
func (n *Notifier) sendOverTCP(ctx context.Context, j *job, h hop, body []byte, extra ...string) (*sip.Response, error) {
	h.transport = "TCP"
	req, err := n.buildNotify(j, &h, body, extra...)
	if err != nil {
		return nil, err
	}
	n.tcpAttempts.Add(1)
	if err := n.connectTCP(ctx, req); err != nil {
		return nil, err
	}
	// A subscriber that accepts the connection and never answers costs
	// a transaction, not more.
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
	return res, err
}

// connectTCP opens (or finds) sipgo's connection for req within
// largeConnectTimeout, so that a refused, reset or silently dropped
// connection fails fast; the transaction that follows finds it in sipgo's
// pool. sipgo dials with the transaction's context, which has to last
// Timer F. Through another Doer (tests), the Doer dials.
func (n *Notifier) connectTCP(ctx context.Context, req *sip.Request) error {
	cd, ok := n.doer.(clientDoer)
	if !ok {
		return nil
	}
	probe := sip.NewRequest(req.Method, req.Recipient)
	probe.SetTransport(req.Transport())
	probe.SetDestination(req.Destination())
	probe.Laddr = req.Laddr
	if err := sipgo.ClientRequestAddVia(cd.c, probe); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, largeConnectTimeout)
	defer cancel()
	c, err := n.ua.TransportLayer().ClientRequestConnection(ctx, probe)
	if err != nil {
		return err
	}
	_, _ = c.TryClose() // the probe's reference; the pool keeps the connection
	return nil
}

// tcpRefusals remembers the destinations that took no large NOTIFY over
// TCP, each until tcpRefusalTTL has passed, at most tcpRefusalMax of them.
type tcpRefusals struct {
	mu    sync.Mutex
	until map[string]time.Time
}

func (r *tcpRefusals) has(dest string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.until[dest]
	if ok && !now.Before(t) {
		delete(r.until, dest)
		ok = false
	}
	return ok
}

func (r *tcpRefusals) add(dest string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.until == nil {
		r.until = make(map[string]time.Time)
	}
	if _, ok := r.until[dest]; !ok && len(r.until) >= tcpRefusalMax {
		for d, t := range r.until {
			if !now.Before(t) {
				delete(r.until, d)
			}
		}
		for d := range r.until { // still full: forget any one (a new attempt)
			if len(r.until) < tcpRefusalMax {
				break
			}
			delete(r.until, d)
		}
	}
	r.until[dest] = now.Add(tcpRefusalTTL)
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
