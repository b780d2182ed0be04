package feed

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// receiver is a webhook endpoint for tests. answer decides each response
// (from 0); it may block.
type receiver struct {
	srv *httptest.Server

	mu   sync.Mutex
	reqs []received
	n    atomic.Int64
}

type received struct {
	body             []byte
	sig, event, id   string
	agent, mediatype string
}

func newReceiver(t *testing.T, answer func(i int) int) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, received{body: body, sig: req.Header.Get(HeaderSignature), event: req.Header.Get(HeaderEvent),
			id: req.Header.Get(HeaderDelivery), agent: req.Header.Get("User-Agent"), mediatype: req.Header.Get("Content-Type")})
		r.mu.Unlock()
		i := int(r.n.Add(1)) - 1
		w.WriteHeader(answer(i))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) got() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.reqs...)
}

// startWebhooks runs webhooks for urls with a fast retry policy until the
// test ends.
func startWebhooks(t *testing.T, cfg Config) *Webhooks {
	t.Helper()
	w, err := NewWebhooks(cfg, "regbridge/test", quiet)
	if err != nil {
		t.Fatal(err)
	}
	w.backoffMin, w.backoffMax, w.maxAttempts = time.Millisecond, 5*time.Millisecond, 4
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("webhooks did not stop within 5s")
		}
	})
	return w
}

func TestWebhookSignature(t *testing.T) {
	secret := "s3cret"
	rcv := newReceiver(t, func(int) int { return 204 })
	w := startWebhooks(t, Config{URLs: []string{rcv.srv.URL + "/hook"}, Secret: secret})
	w.Publish(change(1, 2))
	eventually(t, func() bool { return w.Stats()[0].Delivered == 2 }, "two deliveries")
	got := rcv.got()
	for i, r := range got {
		// Verify as a receiver would: HMAC of the raw body, constant time.
		if !hmac.Equal([]byte(r.sig), []byte(Sign([]byte(secret), r.body))) || !strings.HasPrefix(r.sig, "sha256=") || len(r.sig) != len("sha256=")+64 {
			t.Errorf("request %d: signature %q does not verify", i, r.sig)
		}
		var e Event
		if err := json.Unmarshal(r.body, &e); err != nil || e.Event != "registered" || e.AOR != "sip:alice@example.com" {
			t.Errorf("request %d: body %s (%v)", i, r.body, err)
		}
		if r.event != "registered" || r.id == "" || r.agent != "regbridge/test" || r.mediatype != "application/json" {
			t.Errorf("request %d: headers %+v", i, r)
		}
	}
	if got[0].id == got[1].id {
		t.Error("two events share a delivery id")
	}
	// A tampered body does not verify.
	if hmac.Equal([]byte(got[0].sig), []byte(Sign([]byte(secret), append(got[0].body, ' ')))) {
		t.Error("signature does not depend on the body")
	}
}

func TestWebhookNoSecretNoSignature(t *testing.T) {
	rcv := newReceiver(t, func(int) int { return 200 })
	w := startWebhooks(t, Config{URLs: []string{rcv.srv.URL}})
	w.Publish(change(1, 1))
	eventually(t, func() bool { return w.Stats()[0].Delivered == 1 }, "delivery")
	if sig := rcv.got()[0].sig; sig != "" {
		t.Errorf("signature %q without a secret", sig)
	}
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name                        string
		answers                     []int
		delivered, failed, attempts uint64
	}{
		{name: "5xx then success", answers: []int{500, 503, 200}, delivered: 1, attempts: 3},
		{name: "429 is retried", answers: []int{429, 200}, delivered: 1, attempts: 2},
		{name: "4xx is final", answers: []int{400}, failed: 1, attempts: 1},
		{name: "redirect is final", answers: []int{302}, failed: 1, attempts: 1},
		{name: "gives up after max attempts", answers: []int{500, 500, 500, 500, 500}, failed: 1, attempts: 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t, func(i int) int { return tt.answers[min(i, len(tt.answers)-1)] })
			w := startWebhooks(t, Config{URLs: []string{rcv.srv.URL}})
			w.Publish(change(1, 1))
			eventually(t, func() bool {
				st := w.Stats()[0]
				return st.Delivered+st.Failed == 1
			}, "delivery settled")
			st := w.Stats()[0]
			if st.Delivered != tt.delivered || st.Failed != tt.failed || st.Retries != tt.attempts-1 {
				t.Errorf("stats %+v, want delivered %d failed %d retries %d", st, tt.delivered, tt.failed, tt.attempts-1)
			}
			got := rcv.got()
			if uint64(len(got)) != tt.attempts {
				t.Fatalf("%d attempts, want %d", len(got), tt.attempts)
			}
			for _, r := range got {
				if r.id != got[0].id || string(r.body) != string(got[0].body) {
					t.Error("a retry changed the delivery id or body")
				}
			}
		})
	}
}

// TestWebhookSlowReceiver: while a receiver hangs, Publish still returns at
// once; the queue holds what fits and the rest is dropped and counted.
func TestWebhookSlowReceiver(t *testing.T) {
	release := make(chan struct{})
	rcv := newReceiver(t, func(i int) int {
		if i == 0 {
			<-release
		}
		return 200
	})
	fast := newReceiver(t, func(int) int { return 200 })
	w := startWebhooks(t, Config{URLs: []string{rcv.srv.URL, fast.srv.URL}, Queue: 2, Timeout: time.Minute})
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	w.Publish(change(1, 1))
	eventually(t, func() bool { return rcv.n.Load() == 1 }, "first POST in flight")
	start := time.Now()
	for i := range 10 {
		w.Publish(change(uint64(i+2), 1))
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Publish blocked for %v", d)
	}
	if st := w.Stats()[0]; st.Dropped != 8 || st.Queued != 2 {
		t.Errorf("slow URL: %+v, want 8 dropped and 2 queued", st)
	}
	// The other URL is not held up by the slow one (its own queue of 2
	// may have dropped some of the burst too).
	eventually(t, func() bool {
		st := w.Stats()[1]
		return st.Delivered >= 3 && st.Delivered+st.Dropped == 11 && st.Queued == 0
	}, "fast URL settled while the slow one hangs")
	close(release)
	eventually(t, func() bool { return w.Stats()[0].Delivered == 3 }, "slow URL delivered what it queued")
	// In order: the queued events are the first two after the held one.
	var seqs []uint64
	for _, r := range rcv.got() {
		var e Event
		json.Unmarshal(r.body, &e)
		seqs = append(seqs, e.Seq)
	}
	if len(seqs) != 3 || seqs[0] != 1 || seqs[1] != 2 || seqs[2] != 3 {
		t.Errorf("delivered seqs %v, want [1 2 3]", seqs)
	}
}

// TestWebhookTimeoutRetried: a receiver slower than the timeout counts as
// failing and is retried.
func TestWebhookTimeoutRetried(t *testing.T) {
	rcv := newReceiver(t, func(i int) int {
		if i == 0 {
			time.Sleep(300 * time.Millisecond)
		}
		return 200
	})
	w := startWebhooks(t, Config{URLs: []string{rcv.srv.URL}, Timeout: 50 * time.Millisecond})
	w.Publish(change(1, 1))
	eventually(t, func() bool { return w.Stats()[0].Delivered == 1 }, "delivered on retry")
	if st := w.Stats()[0]; st.Retries < 1 {
		t.Errorf("stats %+v, want a retry", st)
	}
}

// TestWebhookShutdown: Run returns promptly even while a POST hangs.
func TestWebhookShutdown(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	rcv := newReceiver(t, func(int) int { <-hang; return 200 })
	w, err := NewWebhooks(Config{URLs: []string{rcv.srv.URL}, Timeout: time.Minute}, "regbridge/test", quiet)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	w.Publish(change(1, 3))
	eventually(t, func() bool { return rcv.n.Load() == 1 }, "POST in flight")
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if st := w.Stats()[0]; st.Dropped != 2 || st.Failed != 1 {
		t.Errorf("stats %+v, want 2 dropped at shutdown and 1 failed", st)
	}
}

func TestWebhookConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "none", cfg: Config{}},
		{name: "two", cfg: Config{URLs: []string{"http://a/x", " https://b/y "}}},
		{name: "empty entries ignored", cfg: Config{URLs: []string{"", "http://a"}}},
		{name: "not http", cfg: Config{URLs: []string{"ftp://a"}}, wantErr: "REGBRIDGE_WEBHOOK_URLS"},
		{name: "credentials not echoed", cfg: Config{URLs: []string{"ftp://user:hunter2@a"}}, wantErr: "REGBRIDGE_WEBHOOK_URLS"},
		{name: "no host", cfg: Config{URLs: []string{"http:///x"}}, wantErr: "REGBRIDGE_WEBHOOK_URLS"},
		{name: "queue", cfg: Config{Queue: -1}, wantErr: "REGBRIDGE_WEBHOOK_QUEUE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewWebhooks(tt.cfg, "x", quiet)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one naming %s", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error leaks a password: %v", err)
			}
		})
	}
}

// TestWebhookLogsNoSecrets: a URL's credentials, path and query may be
// secret; failures are logged with the host only.
func TestWebhookLogsNoSecrets(t *testing.T) {
	rcv := newReceiver(t, func(int) int { return 403 })
	var logs strings.Builder
	var logsMu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logsMu.Lock()
		defer logsMu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	u := strings.Replace(rcv.srv.URL, "http://", "http://user:pw-secret@", 1) + "/path-secret?key=query-secret"
	w, err := NewWebhooks(Config{URLs: []string{u}, Secret: "hmac-secret"}, "x", log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	w.Publish(change(1, 1))
	eventually(t, func() bool { return w.Stats()[0].Failed == 1 }, "refused delivery")
	cancel()
	<-done
	logsMu.Lock()
	out := logs.String()
	logsMu.Unlock()
	if !strings.Contains(out, "webhook delivery failed") {
		t.Fatalf("failure not logged:\n%s", out)
	}
	for _, s := range []string{"pw-secret", "path-secret", "query-secret", "hmac-secret"} {
		if strings.Contains(out, s) {
			t.Errorf("log contains %q:\n%s", s, out)
		}
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
