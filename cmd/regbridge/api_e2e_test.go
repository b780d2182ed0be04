package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge/feed"
	"github.com/regbridge/regbridge/notifier/siptest"
)

const e2eToken = "e2e-admin-token-1234"

// call makes an API request to s and decodes the JSON answer into out.
func (s *server) call(t *testing.T, method, path, token, body string, out any) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, "http://"+s.http+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %q: %v", method, path, res.StatusCode, raw, err)
		}
	}
	return res.StatusCode
}

// eventStream follows GET /v1/events.
type eventStream struct {
	t      *testing.T
	events chan feed.Event
	// data has each message's data as sent, while there is room.
	data chan []byte
}

func openEvents(t *testing.T, s *server, token string) *eventStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := "http://" + s.http + "/v1/events"
	if token != "" {
		u += "?access_token=" + url.QueryEscape(token)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != 200 {
		cancel()
		res.Body.Close()
		t.Fatalf("GET /v1/events: %d", res.StatusCode)
	}
	es := &eventStream{t: t, events: make(chan feed.Event, 100), data: make(chan []byte, 100)}
	done := make(chan struct{})
	connected := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(res.Body)
		first := true
		for sc.Scan() {
			line := sc.Bytes()
			if first && bytes.HasPrefix(line, []byte(": connected")) {
				first = false
				close(connected)
			}
			data, ok := bytes.CutPrefix(line, []byte("data: "))
			if !ok {
				continue
			}
			var e feed.Event
			if err := json.Unmarshal(data, &e); err != nil {
				t.Errorf("event %q: %v", data, err)
				continue
			}
			es.events <- e
			select {
			case es.data <- bytes.Clone(data):
			default:
			}
		}
	}()
	t.Cleanup(func() { cancel(); res.Body.Close(); <-done })
	select {
	case <-connected:
	case <-time.After(5 * time.Second):
		t.Fatal("event stream did not start")
	}
	return es
}

func (es *eventStream) next() feed.Event {
	es.t.Helper()
	select {
	case e := <-es.events:
		return e
	case <-time.After(5 * time.Second):
		es.t.Fatal("no event within 5s")
	}
	return feed.Event{}
}

// TestEventStreamFromRows: rows written as Kamailio writes them come out
// of /v1/events as JSON contact events with reginfo's event names.
func TestEventStreamFromRows(t *testing.T) {
	s := startServer(t, "", map[string]string{"REGBRIDGE_ADMIN_TOKEN": e2eToken})
	es := openEvents(t, s, e2eToken)

	s.insert(t, "uloc-1", "alice", "sip:alice@192.0.2.10:5060", time.Now().Add(time.Hour), "call-1", 1)
	e := es.next()
	if e.AOR != "sip:alice@example.com" || e.Event != "registered" || e.State != "active" || e.RegistrationState != "active" ||
		e.URI != "sip:alice@192.0.2.10:5060" || e.ContactID == "" || e.Expires == nil || *e.Expires < 3590 || e.Time.IsZero() {
		t.Fatalf("registered: %+v", e)
	}
	s.exec(t, `UPDATE location SET cseq = 2, expires = julianday('now', '+2 hours') WHERE ruid = 'uloc-1'`)
	if e2 := es.next(); e2.Event != "refreshed" || e2.ContactID != e.ContactID {
		t.Fatalf("refreshed: %+v", e2)
	}
	s.exec(t, `DELETE FROM location WHERE ruid = 'uloc-1'`)
	if e3 := es.next(); e3.Event != "unregistered" || e3.State != "terminated" || e3.RegistrationState != "terminated" {
		t.Fatalf("unregistered: %+v", e3)
	}
}

// TestAdminActionsNotify: each operator action reaches a real SIP
// subscriber as the matching RFC 3680 event, and shows in the API.
func TestAdminActionsNotify(t *testing.T) {
	tests := []struct {
		name, action, body string
		event, retryAfter  string
	}{
		{name: "deactivate", action: "deactivate", event: "deactivated"},
		{name: "probation", action: "probation", body: `{"retry_after": 90}`, event: "probation", retryAfter: "90"},
		{name: "reject", action: "reject", body: `{}`, event: "rejected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, "", map[string]string{"REGBRIDGE_ADMIN_TOKEN": e2eToken})
			aor := "sip:alice@example.com"
			p := siptest.New(t, "udp", s.sip)
			if res := p.Subscribe(aor, siptest.Header("Event", "reg")); res.StatusCode != 200 {
				t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
			}
			p.Next() // full state, empty
			s.insert(t, "uloc-1", "alice", "sip:alice@192.0.2.10:5060", time.Now().Add(time.Hour), "call-1", 1)
			s.insert(t, "uloc-2", "alice", "sip:alice@192.0.2.11:5060", time.Now().Add(time.Hour), "call-2", 1)
			ids := map[string]string{} // uri -> contact id
			for len(ids) < 2 {
				for _, c := range p.Next().Doc.Registrations[0].Contacts {
					ids[c.URI] = c.ID
				}
			}
			var reg struct {
				Contacts []struct{ ID, URI string } `json:"contacts"`
			}
			if code := s.call(t, "GET", "/v1/registrations/"+aor, e2eToken, "", &reg); code != 200 || len(reg.Contacts) != 2 {
				t.Fatalf("GET registration: %d %+v", code, reg)
			}
			target := ids["sip:alice@192.0.2.10:5060"]
			if code := s.call(t, "POST", "/v1/registrations/"+aor+"/contacts/"+target+"/"+tt.action, "", tt.body, nil); code != 401 {
				t.Fatalf("action without token: %d, want 401", code)
			}
			var res struct {
				Event, Registrar string
				Contact          struct{ ID, State string }
			}
			if code := s.call(t, "POST", "/v1/registrations/"+aor+"/contacts/"+target+"/"+tt.action, e2eToken, tt.body, &res); code != 200 {
				t.Fatalf("action: %d %+v", code, res)
			}
			if res.Event != tt.event || res.Contact.ID != target || res.Contact.State != "terminated" ||
				res.Registrar != "notify-only" {
				t.Errorf("action response %+v", res)
			}
			n := p.Next()
			c := contactOf(t, n)
			if c.ID != target || c.State != "terminated" || c.Event != tt.event || c.RetryAfter != tt.retryAfter {
				t.Fatalf("NOTIFY after %s: %s", tt.action, n.Req.Body())
			}
			if st := n.Doc.Registrations[0].State; st != "active" {
				t.Errorf("registration state %s, want active (one contact left)", st)
			}
			// The same contact again: it is gone.
			if code := s.call(t, "POST", "/v1/registrations/"+aor+"/contacts/"+target+"/"+tt.action, e2eToken, tt.body, nil); code != 404 {
				t.Errorf("second action: %d, want 404", code)
			}
			if code := s.call(t, "GET", "/v1/registrations/"+aor, e2eToken, "", &reg); code != 200 || len(reg.Contacts) != 1 {
				t.Errorf("after the action: %d %+v", code, reg)
			}
			p.None(200 * time.Millisecond) // a notify-only store's unchanged row is not announced again
		})
	}
}

// TestAPIThroughServer: the API as the binary serves it: auth, listing,
// subscriptions, log level, the live view.
func TestAPIThroughServer(t *testing.T) {
	s := startServer(t, "", map[string]string{"REGBRIDGE_ADMIN_TOKEN": e2eToken})
	for _, path := range []string{"/v1/registrations", "/v1/subscriptions", "/v1/openapi.json", "/v1/log-level"} {
		if code := s.call(t, "GET", path, "", "", nil); code != 401 {
			t.Errorf("%s without token: %d", path, code)
		}
		if code := s.call(t, "GET", path, "wrong", "", nil); code != 401 {
			t.Errorf("%s with a wrong token: %d", path, code)
		}
		if code := s.call(t, "GET", path, e2eToken, "", nil); code != 200 {
			t.Errorf("%s: %d", path, code)
		}
	}
	for i, user := range []string{"u1", "u2", "u3"} {
		s.insert(t, "uloc-"+user, user, "sip:"+user+"@192.0.2.1", time.Now().Add(time.Hour), "c", i+1)
	}
	var page struct {
		Registrations []struct{ AOR string } `json:"registrations"`
		Next          string                 `json:"next"`
	}
	siptest.Eventually(t, func() bool {
		s.call(t, "GET", "/v1/registrations?limit=2", e2eToken, "", &page)
		return len(page.Registrations) == 2 && page.Next != ""
	}, "two of three AORs on the first page")
	p := siptest.New(t, "tcp", s.sip)
	p.Subscribe("sip:u1@example.com", siptest.Header("Event", "reg"))
	p.Next()
	var subs struct {
		Count         int `json:"count"`
		Subscriptions []struct {
			AOR, Transport string
			Version        int64
		} `json:"subscriptions"`
	}
	siptest.Eventually(t, func() bool {
		s.call(t, "GET", "/v1/subscriptions", e2eToken, "", &subs)
		return subs.Count == 1
	}, "one subscription listed")
	if sub := subs.Subscriptions[0]; sub.AOR != "sip:u1@example.com" || !strings.EqualFold(sub.Transport, "tcp") || sub.Version != 0 {
		t.Errorf("subscription %+v", sub)
	}
	res, err := http.Get("http://" + s.http + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Errorf("live view: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if strings.Contains(s.log.String(), e2eToken) {
		t.Error("the admin token reached the log")
	}
}

// TestWebhookFromRows: a row change reaches a webhook receiver as a
// signed JSON POST that verifies with the shared secret.
func TestWebhookFromRows(t *testing.T) {
	const secret = "webhook-secret"
	got := make(chan *http.Request, 10)
	bodies := make(chan []byte, 10)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- r
		bodies <- b
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	s := startServer(t, "", map[string]string{
		"REGBRIDGE_WEBHOOK_URLS":   rcv.URL + "/hook/path-secret",
		"REGBRIDGE_WEBHOOK_SECRET": secret,
	})
	s.insert(t, "uloc-1", "alice", "sip:alice@192.0.2.10:5060", time.Now().Add(time.Hour), "call-1", 1)
	var r *http.Request
	var body []byte
	select {
	case r = <-got:
		body = <-bodies
	case <-time.After(5 * time.Second):
		t.Fatal("no webhook POST within 5s")
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(r.Header.Get(feed.HeaderSignature)), []byte(want)) {
		t.Errorf("signature %q, want %q", r.Header.Get(feed.HeaderSignature), want)
	}
	var e feed.Event
	if err := json.Unmarshal(body, &e); err != nil || e.Event != "registered" || e.AOR != "sip:alice@example.com" {
		t.Errorf("body %s (%v)", body, err)
	}
	if r.Header.Get(feed.HeaderEvent) != "registered" || r.Method != http.MethodPost || r.URL.Path != "/hook/path-secret" {
		t.Errorf("request %s %s %v", r.Method, r.URL, r.Header)
	}
	for _, secretText := range []string{secret, "path-secret"} {
		if strings.Contains(s.log.String(), secretText) {
			t.Errorf("%q reached the log", secretText)
		}
	}
}
