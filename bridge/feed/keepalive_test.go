package feed

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// lockedRecorder is a ResponseWriter a test may read while the stream
// writes to it.
type lockedRecorder struct {
	mu  sync.Mutex
	rec *httptest.ResponseRecorder
}

func (l *lockedRecorder) Header() http.Header { return l.rec.Header() }
func (l *lockedRecorder) WriteHeader(code int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rec.WriteHeader(code)
}
func (l *lockedRecorder) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.Write(p)
}
func (l *lockedRecorder) Flush() {}
func (l *lockedRecorder) body() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rec.Body.String()
}

// TestHubKeepAlive: an idle stream gets a comment line every heartbeat,
// however long it lasts (the HTTP server's write timeout does not apply to
// it: each write sets its own deadline), and no event frames.
func TestHubKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hub := NewHub(0, quiet)
		ctx, cancel := context.WithCancel(t.Context())
		req := httptest.NewRequestWithContext(ctx, "GET", "/v1/events", nil)
		w := &lockedRecorder{rec: httptest.NewRecorder()}
		done := make(chan struct{})
		go func() { defer close(done); hub.ServeHTTP(w, req) }()
		time.Sleep(10*heartbeat + heartbeat/2)
		synctest.Wait()
		body := w.body()
		if n := strings.Count(body, ": ping\n\n"); n != 10 {
			t.Errorf("%d keep-alive comments in %v, want 10:\n%s", n, 10*heartbeat+heartbeat/2, body)
		}
		if strings.Contains(body, "data:") {
			t.Errorf("frames on an idle stream:\n%s", body)
		}
		cancel()
		<-done
		hub.Close()
	})
}
