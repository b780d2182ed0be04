package feed

import (
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/regbridge/regbridge/bridge"
)

// Limits of the SSE hub, each with its reason.
const (
	// DefaultClientBuffer is how many events one SSE client may be behind
	// before it is dropped: a burst of a few hundred changes (a registrar
	// restart) fits; a client that stopped reading does not hold memory.
	DefaultClientBuffer = 256
	// DefaultMaxClients bounds concurrent SSE streams, and so the hub's
	// memory (clients x buffer x event size).
	DefaultMaxClients = 512
	// heartbeat keeps idle streams alive through proxies that cut silent
	// connections (commonly after 30-60 s).
	heartbeat = 15 * time.Second
	// writeTimeout ends a stream whose client stopped reading; its buffer
	// fills meanwhile and Publish drops it anyway.
	writeTimeout = 10 * time.Second
	// retryMillis is the reconnection delay the stream tells EventSource.
	retryMillis = "2000"
)

// Hub fans the bridge's changes out to Server-Sent Events clients. It is a
// bridge.Publisher and an http.Handler serving the text/event-stream.
type Hub struct {
	log        *slog.Logger
	buffer     int
	maxClients int

	// clientsMu guards clients and closed.
	clientsMu sync.Mutex
	clients   map[*client]struct{}
	closed    bool
	done      chan struct{} // closed by Close: every stream ends
	closeOnce sync.Once

	nClients atomic.Int64
	queued   atomic.Uint64
	dropped  atomic.Uint64
}

// client is one SSE stream. Only Publish sends on ch, under clientsMu.
type client struct {
	ch     chan []byte
	kicked chan struct{} // closed when the hub drops the client
}

var _ bridge.Publisher = (*Hub)(nil)

// NewHub returns a hub whose clients may fall buffer events behind before
// they are dropped (0: DefaultClientBuffer).
func NewHub(buffer int, log *slog.Logger) *Hub {
	if buffer <= 0 {
		buffer = DefaultClientBuffer
	}
	return &Hub{
		log:        log.With("component", "sse"),
		buffer:     buffer,
		maxClients: DefaultMaxClients,
		clients:    make(map[*client]struct{}),
		done:       make(chan struct{}),
	}
}

// Publish queues the change's contact events to every client
// (bridge.Publisher). It never blocks: a client without room for the
// whole change is dropped, so that no client sees half of one.
func (h *Hub) Publish(c bridge.Change) {
	if h.nClients.Load() == 0 {
		return // nobody listens: do not even encode
	}
	frames := encode(&c)
	h.clientsMu.Lock()
	defer h.clientsMu.Unlock()
	for cl := range h.clients {
		if cap(cl.ch)-len(cl.ch) < len(frames) {
			h.kick(cl)
			continue
		}
		for _, f := range frames {
			cl.ch <- f // room checked above; only Publish sends
		}
		h.queued.Add(uint64(len(frames)))
	}
}

// kick drops a client that fell behind. Called with clientsMu held.
func (h *Hub) kick(cl *client) {
	delete(h.clients, cl)
	h.nClients.Add(-1)
	close(cl.kicked)
	h.dropped.Add(1)
}

// Close ends every stream and refuses new ones; call it when the HTTP
// server shuts down (streams never become idle by themselves).
func (h *Hub) Close() {
	h.closeOnce.Do(func() {
		h.clientsMu.Lock()
		h.closed = true
		h.clientsMu.Unlock()
		close(h.done)
	})
}

// HubStats is what the hub counted.
type HubStats struct {
	// Clients is the number of connected streams; Queued counts events
	// queued to clients; Dropped counts clients dropped for falling
	// behind.
	Clients         int
	Queued, Dropped uint64
}

// Stats returns the hub's counters.
func (h *Hub) Stats() HubStats {
	return HubStats{Clients: int(h.nClients.Load()), Queued: h.queued.Load(), Dropped: h.dropped.Load()}
}

func (h *Hub) add() (*client, bool) {
	h.clientsMu.Lock()
	defer h.clientsMu.Unlock()
	if h.closed || len(h.clients) >= h.maxClients {
		return nil, false
	}
	cl := &client{ch: make(chan []byte, h.buffer), kicked: make(chan struct{})}
	h.clients[cl] = struct{}{}
	h.nClients.Add(1)
	return cl, true
}

func (h *Hub) remove(cl *client) {
	h.clientsMu.Lock()
	defer h.clientsMu.Unlock()
	if _, ok := h.clients[cl]; ok {
		delete(h.clients, cl)
		h.nClients.Add(-1)
	}
}

// ServeHTTP streams events as text/event-stream: one message per contact
// event, its data the Event as JSON, until the client leaves, falls behind
// or the hub closes. Comments (": ping") keep idle streams alive.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cl, ok := h.add()
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"event stream unavailable: too many clients or shutting down"}` + "\n"))
		return
	}
	defer h.remove(cl)
	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	write := func(p []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(p); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: " + retryMillis + "\n: connected\n\n")) {
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	var buf []byte
	for {
		select {
		case <-r.Context().Done():
			return
		case <-h.done:
			return
		case <-cl.kicked:
			h.log.Info("SSE client dropped: too slow", "remote", r.RemoteAddr)
			write([]byte("event: dropped\ndata: {\"error\":\"client fell behind; events were lost, reload the state\"}\n\n"))
			return
		case <-tick.C:
			if !write([]byte(": ping\n\n")) {
				return
			}
		case f := <-cl.ch:
			// Send what is queued in one flush.
			buf = appendFrame(buf[:0], f)
			for more := true; more && len(buf) < 64<<10; {
				select {
				case f := <-cl.ch:
					buf = appendFrame(buf, f)
				default:
					more = false
				}
			}
			if !write(buf) {
				return
			}
		}
	}
}

// appendFrame appends one SSE message. JSON from encoding/json has no raw
// newlines, so the data fits one data: line.
func appendFrame(buf, data []byte) []byte {
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	return append(buf, '\n', '\n')
}
