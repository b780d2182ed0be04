package feed

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
)

// Webhook headers. The signature lets a receiver check that the body came
// from a regbridge holding the shared secret: it is
// "sha256=" + hex(HMAC-SHA256(secret, raw request body)).
const (
	HeaderSignature = "X-Regbridge-Signature"
	HeaderEvent     = "X-Regbridge-Event"
	// HeaderDelivery is unique per event and the same on every retry of
	// it, so a receiver can drop duplicates.
	HeaderDelivery = "X-Regbridge-Delivery"
)

// Retry policy, each with its reason.
const (
	// backoffMin is the first retry delay; it doubles per attempt.
	backoffMin = 500 * time.Millisecond
	// backoffMax caps the delay, so a receiver back from an outage gets
	// events again within half a minute.
	backoffMax = 30 * time.Second
	// maxAttempts gives up on one event after about a minute of retries
	// (0.5+1+2+4+8+16+30 s): later events must not wait forever behind it.
	maxAttempts = 8
)

// Webhooks POSTs every contact event to each configured URL as JSON. It
// is a bridge.Publisher; Run delivers, one sender per URL, in order.
type Webhooks struct {
	log     *slog.Logger
	secret  []byte
	client  *http.Client
	targets []*target
	agent   string

	// Retry policy (tests shorten it).
	backoffMin, backoffMax time.Duration
	maxAttempts            int
}

type target struct {
	url string // as configured: may hold credentials, never logged
	// name is "#<index> <scheme>://<host>", for logs: the path and query
	// may be secret too (many services put the key there).
	name  string
	index int // from 1, in configuration order
	host  string
	queue chan delivery

	delivered, failed, dropped, retries atomic.Uint64
}

type delivery struct {
	body  []byte
	event string
}

var _ bridge.Publisher = (*Webhooks)(nil)

// NewWebhooks returns the webhooks of cfg (none when cfg has no URLs);
// userAgent names regbridge and its version in each POST.
func NewWebhooks(cfg Config, userAgent string, log *slog.Logger) (*Webhooks, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w := &Webhooks{
		log:    log.With("component", "webhook"),
		secret: []byte(cfg.Secret),
		client: &http.Client{
			Timeout: cfg.Timeout,
			// A redirected POST would turn into a GET: treat it as the
			// receiver's answer instead.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		agent:       userAgent,
		backoffMin:  backoffMin,
		backoffMax:  backoffMax,
		maxAttempts: maxAttempts,
	}
	for i, raw := range cfg.targets() {
		u, _ := url.Parse(raw) // validated
		w.targets = append(w.targets, &target{
			url:   raw,
			name:  fmt.Sprintf("#%d %s://%s", i+1, u.Scheme, u.Host),
			index: i + 1,
			host:  u.Host,
			queue: make(chan delivery, cfg.Queue),
		})
	}
	return w, nil
}

// Len returns the number of configured URLs.
func (w *Webhooks) Len() int { return len(w.targets) }

// Publish queues the change's contact events for every URL
// (bridge.Publisher). It never blocks: an event that does not fit a
// URL's queue is dropped for that URL and counted.
func (w *Webhooks) Publish(c bridge.Change) {
	if len(w.targets) == 0 {
		return
	}
	evs := Events(&c)
	for i := range evs {
		body, err := jsonLine(&evs[i])
		if err != nil {
			continue
		}
		d := delivery{body: body, event: evs[i].Event}
		for _, t := range w.targets {
			select {
			case t.queue <- d:
			default:
				t.dropped.Add(1)
			}
		}
	}
}

// Run delivers queued events until ctx ends, then waits for its senders.
// Events still queued at that moment are lost (counted as dropped).
func (w *Webhooks) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, t := range w.targets {
		wg.Go(func() { w.send(ctx, t) })
	}
	wg.Wait()
	return nil
}

func (w *Webhooks) send(ctx context.Context, t *target) {
	w.log.Info("delivering events", "webhook", t.name)
	for {
		select {
		case <-ctx.Done():
			w.abandon(t, 0)
			return
		case d := <-t.queue:
			if ctx.Err() != nil { // select picks at random when both are ready
				w.abandon(t, 1)
				return
			}
			w.deliver(ctx, t, d)
		}
	}
}

// abandon counts the events left at shutdown (taken: already dequeued).
func (w *Webhooks) abandon(t *target, taken int) {
	if left := len(t.queue) + taken; left > 0 {
		t.dropped.Add(uint64(left))
		w.log.Warn("events not delivered at shutdown", "webhook", t.name, "count", left)
	}
}

// deliver POSTs one event, retrying with capped exponential backoff.
func (w *Webhooks) deliver(ctx context.Context, t *target, d delivery) {
	id := rand.Text()
	sig := w.sign(d.body)
	wait := w.backoffMin
	for attempt := 1; ; attempt++ {
		retry, hint, err := w.post(ctx, t, d, id, sig)
		if err == nil {
			t.delivered.Add(1)
			return
		}
		if !retry || attempt >= w.maxAttempts || ctx.Err() != nil {
			t.failed.Add(1)
			w.log.Warn("webhook delivery failed", "webhook", t.name, "event", d.event, "attempts", attempt, "err", err)
			return
		}
		t.retries.Add(1)
		w.log.Debug("webhook delivery retried", "webhook", t.name, "attempt", attempt, "err", err)
		delay := wait
		if hint > delay {
			delay = min(hint, w.backoffMax)
		}
		if !source.Sleep(ctx, delay) {
			t.failed.Add(1)
			return
		}
		wait = min(wait*2, w.backoffMax)
	}
}

// post makes one attempt. retry says whether another may succeed; hint is
// the receiver's Retry-After, if any.
func (w *Webhooks) post(ctx context.Context, t *target, d delivery, id, sig string) (retry bool, hint time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(d.body))
	if err != nil {
		return false, 0, errors.New("building request failed")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", w.agent)
	req.Header.Set(HeaderEvent, d.event)
	req.Header.Set(HeaderDelivery, id)
	if sig != "" {
		req.Header.Set(HeaderSignature, sig)
	}
	res, err := w.client.Do(req)
	if err != nil {
		// url.Error repeats the URL, which may hold credentials: keep
		// only the cause.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return true, 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	switch code := res.StatusCode; {
	case code >= 200 && code < 300:
		return false, 0, nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
			hint = time.Duration(s) * time.Second
		}
		return true, hint, fmt.Errorf("status %d", code)
	default:
		return false, 0, fmt.Errorf("status %d", code)
	}
}

// sign returns the signature header value of body, "" without a secret.
func (w *Webhooks) sign(body []byte) string {
	if len(w.secret) == 0 {
		return ""
	}
	return Sign(w.secret, body)
}

// Sign returns "sha256=" + hex(HMAC-SHA256(secret, body)), the
// X-Regbridge-Signature value; receivers compute it the same way and
// compare in constant time (hmac.Equal).
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// WebhookStats is what was counted for one URL.
type WebhookStats struct {
	// Index is the URL's position in REGBRIDGE_WEBHOOK_URLS, from 1, and
	// Host its host: the rest of a URL may be secret.
	Index int
	Host  string
	// Queued is the number of events waiting now.
	Queued int
	// Delivered and Failed count events (Failed: given up after retries
	// or refused with a 4xx), Dropped events that found the queue full,
	// Retries repeated attempts.
	Delivered, Failed, Dropped, Retries uint64
}

// Stats returns the counters of every URL, in configuration order.
func (w *Webhooks) Stats() []WebhookStats {
	out := make([]WebhookStats, len(w.targets))
	for i, t := range w.targets {
		out[i] = WebhookStats{
			Index: t.index, Host: t.host, Queued: len(t.queue),
			Delivered: t.delivered.Load(), Failed: t.failed.Load(),
			Dropped: t.dropped.Load(), Retries: t.retries.Load(),
		}
	}
	return out
}
