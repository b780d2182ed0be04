package feed

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// eventually polls cond until it holds, failing the test after 5 s.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// change builds a change of one AOR with n registered contacts.
func change(seq uint64, n int) bridge.Change {
	now := time.Now()
	c := bridge.Change{Seq: seq, AOR: "sip:alice@example.com", RegID: "r1", State: bridge.RegActive, At: now, SeenAt: now}
	for i := range n {
		c.Contacts = append(c.Contacts, bridge.ContactView{
			Contact: source.Contact{Key: "k", URI: "sip:alice@192.0.2.1", Expires: now.Add(time.Hour), CallID: "c", CSeq: uint32(i)},
			ID:      "c1", State: bridge.ContactActive, Event: bridge.EventRegistered,
		})
	}
	return c
}

func TestEvents(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		view bridge.ContactView
		want string
	}{
		{
			name: "active with expiry",
			view: bridge.ContactView{Contact: source.Contact{URI: "sip:a@192.0.2.1", Expires: at.Add(90 * time.Second), CallID: "cid", CSeq: 3, UserAgent: `<x> & "y"`, Q: 0.5, Socket: "TCP:192.0.2.9:5060"},
				ID: "c1", State: bridge.ContactActive, Event: bridge.EventRefreshed},
			want: `{"seq":7,"aor":"sip:a@example.com","registration_id":"r1","registration_state":"active","contact_id":"c1","uri":"sip:a@192.0.2.1","state":"active","event":"refreshed","expires":90,"expires_at":"2026-01-02T03:05:35Z","q":0.5,"call_id":"cid","cseq":3,"user_agent":"\u003cx\u003e \u0026 \"y\"","socket":"TCP:192.0.2.9:5060","transport":"tcp","time":"2026-01-02T03:04:05Z"}`,
		},
		{
			name: "permanent has no expires",
			view: bridge.ContactView{Contact: source.Contact{URI: "sip:a@192.0.2.1", Q: -1}, ID: "c1", State: bridge.ContactActive, Event: bridge.EventCreated},
			want: `{"seq":7,"aor":"sip:a@example.com","registration_id":"r1","registration_state":"active","contact_id":"c1","uri":"sip:a@192.0.2.1","state":"active","event":"created","transport":"udp","time":"2026-01-02T03:04:05Z"}`,
		},
		{
			name: "probation carries retry_after, no expires",
			view: bridge.ContactView{Contact: source.Contact{URI: "sips:a@192.0.2.1", Expires: at.Add(time.Hour), Q: -1}, ID: "c1", State: bridge.ContactTerminated, Event: bridge.EventProbation, RetryAfter: 30},
			want: `{"seq":7,"aor":"sip:a@example.com","registration_id":"r1","registration_state":"active","contact_id":"c1","uri":"sips:a@192.0.2.1","state":"terminated","event":"probation","retry_after":30,"transport":"tls","time":"2026-01-02T03:04:05Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := bridge.Change{Seq: 7, AOR: "sip:a@example.com", RegID: "r1", State: bridge.RegActive, At: at, Contacts: []bridge.ContactView{tt.view}}
			got := encode(&c)
			if len(got) != 1 || string(got[0]) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// newHubServer serves a hub over HTTP until the test ends (streams are
// closed first: the server waits for them).
func newHubServer(t *testing.T, buffer int) (*Hub, *httptest.Server) {
	hub := NewHub(buffer, quiet)
	srv := httptest.NewServer(hub)
	t.Cleanup(srv.Close)
	t.Cleanup(hub.Close)
	return hub, srv
}

// sseReader reads data: lines of an event stream.
type sseReader struct {
	t    *testing.T
	res  *http.Response
	msgs chan string
}

func openSSE(t *testing.T, url string) *sseReader {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	r := &sseReader{t: t, res: res, msgs: make(chan string, 100)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(r.msgs)
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			line := sc.Text()
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				r.msgs <- data
			} else if strings.HasPrefix(line, "event: ") {
				r.msgs <- line
			}
		}
	}()
	t.Cleanup(func() { cancel(); res.Body.Close(); <-done })
	return r
}

func (r *sseReader) next() string {
	r.t.Helper()
	select {
	case m, ok := <-r.msgs:
		if !ok {
			r.t.Fatal("stream ended")
		}
		return m
	case <-time.After(5 * time.Second):
		r.t.Fatal("no SSE message within 5s")
	}
	return ""
}

// TestHubStreamsBridgeChanges feeds a real bridge and reads the stream.
func TestHubStreamsBridgeChanges(t *testing.T) {
	hub, srv := newHubServer(t, 0)
	br := bridge.New(quiet)
	br.Subscribe(hub)
	ctx := t.Context()
	if err := br.Apply(ctx, source.Batch{Full: true}); err != nil {
		t.Fatal(err)
	}
	r := openSSE(t, srv.URL)
	eventually(t, func() bool { return hub.Stats().Clients == 1 }, "client connected")

	c := source.Contact{Key: "uloc-1", AOR: "sip:alice@example.com", URI: "sip:alice@192.0.2.10", Expires: time.Now().Add(time.Hour), CallID: "c1", CSeq: 1}
	br.Apply(ctx, source.Batch{Contacts: []source.Contact{c}})
	br.Apply(ctx, source.Batch{Deleted: []string{"uloc-1"}})

	for _, want := range []struct{ event, state, reg string }{
		{"registered", "active", "active"},
		{"unregistered", "terminated", "terminated"},
	} {
		var e Event
		if err := json.Unmarshal([]byte(r.next()), &e); err != nil {
			t.Fatal(err)
		}
		if e.Event != want.event || e.State != want.state || e.RegistrationState != want.reg || e.AOR != c.AOR || e.URI != c.URI || e.ContactID == "" {
			t.Errorf("got %+v, want %s/%s/%s", e, want.event, want.state, want.reg)
		}
	}
}

// TestHubDropsSlowClient: a client that does not read is dropped when its
// buffer is full; Publish returns at once and the others keep receiving.
func TestHubDropsSlowClient(t *testing.T) {
	hub := NewHub(4, quiet)
	defer hub.Close()
	slow, _ := hub.add()
	fast, _ := hub.add()
	for i := range 10 {
		start := time.Now()
		hub.Publish(change(uint64(i), 1))
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Publish blocked for %v", d)
		}
		<-fast.ch // the fast client keeps up
	}
	select {
	case <-slow.kicked:
	default:
		t.Fatal("slow client not dropped")
	}
	select {
	case <-fast.kicked:
		t.Fatal("fast client dropped")
	default:
	}
	if st := hub.Stats(); st.Dropped != 1 || st.Clients != 1 {
		t.Errorf("stats %+v, want 1 dropped, 1 client", st)
	}
	// A change that does not fit whole drops the client rather than
	// sending half of it.
	hub.Publish(change(11, 5))
	select {
	case <-fast.kicked:
	default:
		t.Fatal("client without room for a whole change not dropped")
	}
	if len(fast.ch) != 0 {
		t.Errorf("%d events of a partial change queued", len(fast.ch))
	}
}

// TestHubSlowClientOverHTTP: the stream of a dropped client ends with an
// event: dropped message.
func TestHubSlowClientOverHTTP(t *testing.T) {
	hub, srv := newHubServer(t, 1)
	r := openSSE(t, srv.URL)
	eventually(t, func() bool { return hub.Stats().Clients == 1 }, "client connected")
	hub.Publish(change(1, 3)) // three events, room for one
	if m := r.next(); m != "event: dropped" {
		t.Fatalf("got %q, want the dropped notice", m)
	}
	if hub.Stats().Dropped != 1 {
		t.Errorf("dropped %d", hub.Stats().Dropped)
	}
}

func TestHubClose(t *testing.T) {
	hub, srv := newHubServer(t, 0)
	r := openSSE(t, srv.URL)
	eventually(t, func() bool { return hub.Stats().Clients == 1 }, "client connected")
	hub.Close()
	select {
	case _, ok := <-r.msgs:
		if ok {
			t.Fatal("message after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open after Close")
	}
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after Close: %d, want 503", res.StatusCode)
	}
	eventually(t, func() bool { return hub.Stats().Clients == 0 }, "clients gone")
}

func TestHubMaxClients(t *testing.T) {
	hub, srv := newHubServer(t, 0)
	hub.maxClients = 1
	openSSE(t, srv.URL)
	res, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("second client: %d, want 503", res.StatusCode)
	}
}
