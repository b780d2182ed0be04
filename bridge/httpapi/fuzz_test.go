package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/feed"
	"github.com/regbridge/regbridge/source"
)

// FuzzAPI sends arbitrary methods, paths, query strings, headers and
// bodies to the API as the HTTP server would hand them on. Every /v1
// answer is JSON (an error object from 400 on), a request without the
// configured token is refused, and a refused request changes nothing: not
// the registrations, not the log level.
func FuzzAPI(f *testing.F) {
	f.Add(uint8(0), "/v1/registrations?prefix=sip:alice&limit=2", "", "", true)
	f.Add(uint8(0), "/v1/registrations?after=sip:alice@example.com&limit=0", "", "", true)
	f.Add(uint8(0), "/v1/registrations/sip:alice@example.com", "", "", true)
	f.Add(uint8(1), "/v1/registrations/sip:alice@example.com/contacts/c1/probation", "application/json", `{"retry_after":300}`, true)
	f.Add(uint8(1), "/v1/registrations/sip:bob@example.com/contacts/x/deactivate", "", `{"retry_after":1}`, true)
	f.Add(uint8(1), "/v1/log-level", "application/json; charset=utf-8", `{"level":"debug"}`, true)
	f.Add(uint8(1), "/v1/log-level", "application/json", `{"level":"info","previous":"x"} {}`, false)
	f.Add(uint8(0), "/v1/subscriptions?limit=1&after=AAEC", "", "", true)
	f.Add(uint8(0), "/v1/events", "", "", true)
	f.Add(uint8(2), "/v1/openapi.json", "", "", true)
	f.Add(uint8(3), "/v1/../v1/%2e%2e/registrations", "text/plain", "\x00", true)
	f.Fuzz(func(t *testing.T, method uint8, target, ctype, body string, withToken bool) {
		methods := [...]string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}
		var raw bytes.Buffer
		fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: regbridge\r\n", methods[int(method)%len(methods)], target)
		if withToken {
			raw.WriteString("Authorization: Bearer " + testToken + "\r\n")
		}
		if ctype != "" {
			raw.WriteString("Content-Type: " + ctype + "\r\n")
		}
		fmt.Fprintf(&raw, "Content-Length: %d\r\n\r\n%s", len(body), body)
		req, err := http.ReadRequest(bufio.NewReader(&raw))
		if err != nil {
			return // the server answers 400 itself
		}

		br := bridge.New(quiet)
		if err := br.Apply(context.Background(), source.Batch{Full: true, Contacts: []source.Contact{
			contact("k-a1", "sip:alice@example.com", "sip:alice@192.0.2.1"),
			contact("k-b", "sip:bob@example.com", "sip:bob@192.0.2.3"),
		}}); err != nil {
			t.Fatal(err)
		}
		hub := feed.NewHub(0, quiet)
		defer hub.Close()
		level := new(slog.LevelVar)
		api := New(Config{AdminToken: testToken}, Deps{
			Registrations: br, Ready: br.Ready, Events: hub, Level: level,
			Subscriptions: func() []Subscription {
				return []Subscription{{AOR: "sip:alice@example.com", Event: "reg", CallID: "1"}, {AOR: "sip:bob@example.com", Event: "reg", CallID: "2"}}
			},
		}, quiet)
		state := func() string { return fmt.Sprintf("%+v %v", br.List("", "", 1000), level.Level()) }
		before := state()

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() { defer close(done); api.ServeHTTP(rec, req.WithContext(ctx)) }()
		select {
		case <-done:
		case <-time.After(100 * time.Millisecond):
			cancel() // the event stream runs until its client leaves
			<-done
		}
		code := rec.Code
		if code < 200 || code > 599 {
			t.Fatalf("status %d", code)
		}
		if strings.HasPrefix(req.URL.Path, "/v1/") && code >= 400 { // outside /v1: the live view and the mux's plain answers
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("%s %s: %d with Content-Type %q", req.Method, target, code, ct)
			}
			var e errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%s %s: %d body %q is not an error object", req.Method, target, code, rec.Body.Bytes())
			}
		}
		if !withToken && strings.HasPrefix(req.URL.Path, "/v1/") && code != http.StatusUnauthorized && code < 300 {
			t.Fatalf("%s %s without the token: %d", req.Method, target, code)
		}
		if code != http.StatusOK {
			if after := state(); after != before {
				t.Fatalf("%s %s refused with %d changed the state:\n%s\nwas\n%s", req.Method, target, code, after, before)
			}
		}
	})
}
