package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/feed"
	"github.com/regbridge/regbridge/source"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// testAPI is an API over a real bridge loaded with contacts.
type testAPI struct {
	br    *bridge.Bridge
	hub   *feed.Hub
	level *slog.LevelVar
	srv   *httptest.Server
	deps  Deps
}

const testToken = "t0ken-for-tests"

func contact(key, aor, uri string) source.Contact {
	return source.Contact{Key: key, AOR: aor, URI: uri, Expires: time.Now().Add(time.Hour), CallID: "call-" + key, CSeq: 1, Q: -1, UserAgent: "phone <1>"}
}

// newTestAPI starts the API; edit adjusts its configuration and deps.
func newTestAPI(t *testing.T, token string, edit func(*Deps)) *testAPI {
	t.Helper()
	ta := &testAPI{br: bridge.New(quiet), hub: feed.NewHub(0, quiet), level: new(slog.LevelVar)}
	ta.br.Subscribe(ta.hub)
	err := ta.br.Apply(t.Context(), source.Batch{Full: true, Contacts: []source.Contact{
		contact("k-a1", "sip:alice@example.com", "sip:alice@192.0.2.1"),
		contact("k-a2", "sip:alice@example.com", "sip:alice@192.0.2.2"),
		contact("k-b", "sip:bob@example.com", "sip:bob@192.0.2.3"),
		contact("k-c", "sip:carol@example.org", "sip:carol@192.0.2.4"),
		contact("k-d", "sip:dave@example.com", "sip:dave@192.0.2.5"),
		contact("k-e", "sip:erin@example.com", "sip:erin@192.0.2.6"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	ta.deps = Deps{Registrations: ta.br, Ready: ta.br.Ready, Events: ta.hub, Level: ta.level}
	if edit != nil {
		edit(&ta.deps)
	}
	ta.srv = httptest.NewServer(New(Config{AdminToken: token}, ta.deps, quiet))
	t.Cleanup(ta.srv.Close)
	t.Cleanup(ta.hub.Close)
	return ta
}

// do sends a request with the test token (when set) and decodes the JSON
// answer into out (when not nil).
func (ta *testAPI) do(t *testing.T, method, path, token, body string, out any) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, ta.srv.URL+path, rd)
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
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, res.StatusCode, raw, err)
		}
	}
	if res.StatusCode >= 400 && !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Errorf("%s %s: error %d is not JSON: %q", method, path, res.StatusCode, raw)
	}
	if res.StatusCode >= 400 {
		var e errorBody
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			t.Errorf("%s %s: error body %q has no error field", method, path, raw)
		}
	}
	return res
}

func contactIDs(t *testing.T, ta *testAPI, aor string) []string {
	t.Helper()
	reg, _ := ta.br.Lookup(aor)
	var ids []string
	for _, c := range reg.Contacts {
		ids = append(ids, c.ID)
	}
	return ids
}

func TestAuth(t *testing.T) {
	tests := []struct {
		name       string
		configured string
		path       string
		header     string
		want       int
	}{
		{name: "no token configured", path: "/v1/registrations", want: 200},
		{name: "missing token", configured: testToken, path: "/v1/registrations", want: 401},
		{name: "wrong token", configured: testToken, path: "/v1/registrations", header: "Bearer nope", want: 401},
		{name: "token prefix is not the token", configured: testToken, path: "/v1/registrations", header: "Bearer " + testToken[:5], want: 401},
		{name: "wrong scheme", configured: testToken, path: "/v1/registrations", header: "Basic " + testToken, want: 401},
		{name: "right token", configured: testToken, path: "/v1/registrations", header: "Bearer " + testToken, want: 200},
		{name: "scheme is case-insensitive", configured: testToken, path: "/v1/subscriptions", header: "bearer " + testToken, want: 200},
		{name: "query token refused outside events", configured: testToken, path: "/v1/registrations?access_token=" + testToken, want: 401},
		{name: "openapi is protected too", configured: testToken, path: "/v1/openapi.json", want: 401},
		{name: "unknown /v1 path needs the token first", configured: testToken, path: "/v1/nope", want: 401},
		{name: "unknown /v1 path with token", configured: testToken, path: "/v1/nope", header: "Bearer " + testToken, want: 404},
		{name: "live view is public", configured: testToken, path: "/", want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta := newTestAPI(t, tt.configured, nil)
			req, _ := http.NewRequest("GET", ta.srv.URL+tt.path, nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.want, body)
			}
			if tt.want == 401 {
				if res.Header.Get("WWW-Authenticate") == "" || !strings.Contains(string(body), `"error"`) {
					t.Errorf("401 without WWW-Authenticate or JSON error: %s", body)
				}
				if strings.Contains(string(body), testToken) {
					t.Error("401 body echoes the token")
				}
			}
		})
	}
}

func TestEventsAccessToken(t *testing.T) {
	tests := []struct {
		name  string
		query string
		want  int
	}{
		{name: "right query token", query: "?access_token=" + url.QueryEscape(testToken), want: 200},
		{name: "wrong query token", query: "?access_token=nope", want: 401},
		{name: "none", want: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta := newTestAPI(t, testToken, nil)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", ta.srv.URL+"/v1/events"+tt.query, nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.want)
			}
		})
	}
}

func TestListRegistrations(t *testing.T) {
	ta := newTestAPI(t, "", nil)
	tests := []struct {
		name     string
		query    string
		wantAORs []string
		wantNext string
		wantCode int
	}{
		{name: "all", query: "", wantAORs: []string{"sip:alice@example.com", "sip:bob@example.com", "sip:carol@example.org", "sip:dave@example.com", "sip:erin@example.com"}},
		{name: "first page", query: "?limit=2", wantAORs: []string{"sip:alice@example.com", "sip:bob@example.com"}, wantNext: "sip:bob@example.com"},
		{name: "second page", query: "?limit=2&after=sip:bob@example.com", wantAORs: []string{"sip:carol@example.org", "sip:dave@example.com"}, wantNext: "sip:dave@example.com"},
		{name: "last page is exact", query: "?limit=1&after=sip:dave@example.com", wantAORs: []string{"sip:erin@example.com"}},
		{name: "prefix", query: "?prefix=sip:c", wantAORs: []string{"sip:carol@example.org"}},
		{name: "prefix scheme is case-insensitive", query: "?prefix=SIP:d", wantAORs: []string{"sip:dave@example.com"}},
		{name: "prefix with host is canonicalised", query: "?prefix=" + url.QueryEscape("sip:bob@EXAMPLE"), wantAORs: []string{"sip:bob@example.com"}},
		{name: "no match", query: "?prefix=tel:", wantAORs: []string{}},
		{name: "limit 0", query: "?limit=0", wantCode: 400},
		{name: "limit too large", query: "?limit=1001", wantCode: 400},
		{name: "limit not a number", query: "?limit=ten", wantCode: 400},
		{name: "max limit", query: "?limit=1000", wantAORs: []string{"sip:alice@example.com", "sip:bob@example.com", "sip:carol@example.org", "sip:dave@example.com", "sip:erin@example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var page registrationPage
			res := ta.do(t, "GET", "/v1/registrations"+tt.query, "", "", &page)
			want := cmpOr(tt.wantCode, 200)
			if res.StatusCode != want {
				t.Fatalf("status %d, want %d", res.StatusCode, want)
			}
			if want != 200 {
				return
			}
			got := []string{}
			for _, r := range page.Registrations {
				got = append(got, r.AOR)
			}
			if strings.Join(got, ",") != strings.Join(tt.wantAORs, ",") || page.Next != tt.wantNext {
				t.Errorf("got %v next %q, want %v next %q", got, page.Next, tt.wantAORs, tt.wantNext)
			}
		})
	}
	// Following next from the start visits every AOR once.
	var all []string
	after := ""
	for range 10 {
		var page registrationPage
		ta.do(t, "GET", "/v1/registrations?limit=2&after="+url.QueryEscape(after), "", "", &page)
		for _, r := range page.Registrations {
			all = append(all, r.AOR)
		}
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if len(all) != 5 {
		t.Errorf("paging visited %v", all)
	}
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func TestGetRegistration(t *testing.T) {
	ta := newTestAPI(t, "", nil)
	tests := []struct {
		name     string
		aor      string
		want     int
		contacts int
	}{
		{name: "known", aor: "sip:alice@example.com", want: 200, contacts: 2},
		{name: "escaped", aor: url.PathEscape("sip:alice@example.com"), want: 200, contacts: 2},
		{name: "host case does not matter", aor: "sip:bob@EXAMPLE.com", want: 200, contacts: 1},
		{name: "without sip:", aor: "alice@example.com", want: 200, contacts: 2},
		{name: "scheme in upper case", aor: "SIP:bob@example.com", want: 200, contacts: 1},
		{name: "unknown", aor: "sip:nobody@example.com", want: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reg Registration
			res := ta.do(t, "GET", "/v1/registrations/"+tt.aor, "", "", &reg)
			if res.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.want)
			}
			if tt.want != 200 {
				return
			}
			if len(reg.Contacts) != tt.contacts || reg.State != "active" || reg.ID == "" || !strings.HasPrefix(reg.AOR, "sip:") {
				t.Fatalf("registration %+v", reg)
			}
			c := reg.Contacts[0]
			if c.ID == "" || c.Key == "" || c.State != "active" || c.Event != "registered" || c.Expires == nil || *c.Expires < 3590 || c.ExpiresAt == nil || c.Q != nil || c.UserAgent != "phone <1>" {
				t.Errorf("contact %+v", c)
			}
		})
	}
}

func TestNotReady(t *testing.T) {
	ta := newTestAPI(t, "", func(d *Deps) { d.Ready = func() bool { return false } })
	for _, path := range []string{"/v1/registrations", "/v1/registrations/sip:alice@example.com"} {
		res := ta.do(t, "GET", path, "", "", nil)
		if res.StatusCode != 503 || res.Header.Get("Retry-After") == "" {
			t.Errorf("%s: %d %q, want 503 with Retry-After", path, res.StatusCode, res.Header.Get("Retry-After"))
		}
	}
}

func TestSubscriptions(t *testing.T) {
	exp := time.Now().Add(10 * time.Minute).UTC()
	ta := newTestAPI(t, "", func(d *Deps) {
		d.Subscriptions = func() []Subscription {
			return []Subscription{
				{AOR: "sip:bob@example.com", Event: "reg", Transport: "tcp", CallID: "2", ExpiresAt: exp, Version: 3},
				{AOR: "sip:alice@example.com", Event: "reg", Transport: "udp", CallID: "1", ExpiresAt: exp, Version: -1},
			}
		}
	})
	var got struct {
		Count         int            `json:"count"`
		Subscriptions []Subscription `json:"subscriptions"`
	}
	if res := ta.do(t, "GET", "/v1/subscriptions", "", "", &got); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if got.Count != 2 || got.Subscriptions[0].AOR != "sip:alice@example.com" || got.Subscriptions[1].Version != 3 ||
		!got.Subscriptions[0].ExpiresAt.Equal(exp) || got.Subscriptions[0].Expires < 598 || got.Subscriptions[0].Expires > 600 {
		t.Errorf("got %+v", got)
	}
	empty := newTestAPI(t, "", nil)
	var none struct {
		Subscriptions []Subscription `json:"subscriptions"`
	}
	raw := empty.do(t, "GET", "/v1/subscriptions", "", "", &none)
	if raw.StatusCode != 200 || none.Subscriptions == nil {
		t.Errorf("no subscriptions: want an empty list, got %+v", none)
	}
}

// TestSubscriptionsPaged walks every page of a listing of 250
// subscriptions (some sharing an AOR or a Call-ID) and gets each exactly
// once, in order; the unpaged listing still answers all of them.
func TestSubscriptionsPaged(t *testing.T) {
	var all []Subscription
	for i := range 250 {
		all = append(all, Subscription{AOR: fmt.Sprintf("sip:u%d@example.com", i%40), Event: []string{"reg", "presence"}[i%2],
			CallID: fmt.Sprintf("c%d", i%7), Subscriber: fmt.Sprintf("sip:w%d@example.com", i)})
	}
	ta := newTestAPI(t, "", func(d *Deps) { d.Subscriptions = func() []Subscription { return slices.Clone(all) } })
	type page struct {
		Count         int            `json:"count"`
		Subscriptions []Subscription `json:"subscriptions"`
		Next          *string        `json:"next"`
	}
	var whole page
	if res := ta.do(t, "GET", "/v1/subscriptions", "", "", &whole); res.StatusCode != 200 || whole.Count != 250 || len(whole.Subscriptions) != 250 || whole.Next != nil {
		t.Fatalf("unpaged: status %d, count %d, %d listed, next %v", res.StatusCode, whole.Count, len(whole.Subscriptions), whole.Next)
	}
	var walked []Subscription
	pages := 0
	for after := ""; ; pages++ {
		var p page
		path := "/v1/subscriptions?limit=60"
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		if res := ta.do(t, "GET", path, "", "", &p); res.StatusCode != 200 {
			t.Fatalf("page %d: status %d", pages, res.StatusCode)
		}
		if p.Count != 250 || len(p.Subscriptions) > 60 {
			t.Fatalf("page %d: count %d, %d listed", pages, p.Count, len(p.Subscriptions))
		}
		walked = append(walked, p.Subscriptions...)
		if p.Next == nil {
			break
		}
		after = *p.Next
	}
	if pages != 4 || !slices.Equal(walked, whole.Subscriptions) {
		t.Fatalf("%d pages of %d subscriptions, want 5 pages of the unpaged listing", pages+1, len(walked))
	}
	for _, bad := range []string{"limit=0", "limit=1001", "limit=x", "after=%25%25"} {
		if res := ta.do(t, "GET", "/v1/subscriptions?"+bad, "", "", nil); res.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", bad, res.StatusCode)
		}
	}
}

func TestLogLevel(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		want      int
		wantLevel slog.Level
	}{
		{name: "debug", body: `{"level":"debug"}`, want: 200, wantLevel: slog.LevelDebug},
		{name: "upper case", body: `{"level":"WARN"}`, want: 200, wantLevel: slog.LevelWarn},
		{name: "error", body: `{"level":"error"}`, want: 200, wantLevel: slog.LevelError},
		{name: "unknown level", body: `{"level":"loud"}`, want: 400, wantLevel: slog.LevelInfo},
		{name: "unknown field", body: `{"level":"debug","for":"1m"}`, want: 400, wantLevel: slog.LevelInfo},
		{name: "previous is read-only", body: `{"level":"debug","previous":"info"}`, want: 400, wantLevel: slog.LevelInfo},
		{name: "empty body", body: "", want: 400, wantLevel: slog.LevelInfo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta := newTestAPI(t, "", nil)
			var got logLevel
			res := ta.do(t, "POST", "/v1/log-level", "", tt.body, &got)
			if res.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.want)
			}
			if ta.level.Level() != tt.wantLevel {
				t.Errorf("level %v, want %v", ta.level.Level(), tt.wantLevel)
			}
			if tt.want == 200 && (got.Previous != "info" || got.Level != levelName(tt.wantLevel)) {
				t.Errorf("response %+v", got)
			}
			var cur logLevel
			ta.do(t, "GET", "/v1/log-level", "", "", &cur)
			if cur.Level != levelName(tt.wantLevel) {
				t.Errorf("GET says %q", cur.Level)
			}
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	ta := newTestAPI(t, "", nil)
	res := ta.do(t, "DELETE", "/v1/registrations", "", "", nil)
	if res.StatusCode != 405 || !strings.Contains(res.Header.Get("Allow"), "GET") {
		t.Errorf("status %d Allow %q, want 405 with Allow: GET", res.StatusCode, res.Header.Get("Allow"))
	}
	res = ta.do(t, "GET", "/v1/registrations/sip:a@b/contacts/x/deactivate", "", "", nil)
	if res.StatusCode != 405 || !strings.Contains(res.Header.Get("Allow"), "POST") {
		t.Errorf("GET on an action: %d Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}
}
