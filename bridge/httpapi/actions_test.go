package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge/feed"
	"github.com/regbridge/regbridge/source"
)

func TestActions(t *testing.T) {
	tests := []struct {
		name        string
		action      string
		body        string
		contentType string
		contact     string // "" = the first of alice's contacts
		want        int
		wantEvent   string
		wantReg     string
		wantErr     string
	}{
		{name: "deactivate without body", action: "deactivate", want: 200, wantEvent: "deactivated", wantReg: "notify-only"},
		{name: "deactivate with empty object", action: "deactivate", body: "{}", want: 200, wantEvent: "deactivated", wantReg: "notify-only"},
		{name: "reject", action: "reject", want: 200, wantEvent: "rejected", wantReg: "notify-only"},
		{name: "probation", action: "probation", body: `{"retry_after": 120}`, want: 200, wantEvent: "probation", wantReg: "notify-only"},
		{name: "probation without retry_after", action: "probation", want: 400, wantErr: "retry_after"},
		{name: "probation with zero retry_after", action: "probation", body: `{"retry_after": 0}`, want: 400, wantErr: "retry_after"},
		{name: "probation with negative retry_after", action: "probation", body: `{"retry_after": -1}`, want: 400, wantErr: "invalid JSON"},
		{name: "retry_after on reject", action: "reject", body: `{"retry_after": 5}`, want: 400, wantErr: "probation only"},
		{name: "unknown field", action: "deactivate", body: `{"reason": "x"}`, want: 400, wantErr: "unknown field"},
		{name: "two objects", action: "deactivate", body: `{} {}`, want: 400, wantErr: "exactly one"},
		{name: "not JSON", action: "deactivate", body: `retry=1`, want: 400, wantErr: "invalid JSON"},
		{name: "wrong content type", action: "deactivate", body: `{}`, contentType: "text/plain", want: 415},
		{name: "too large", action: "probation", body: `{"retry_after": 1` + strings.Repeat(" ", maxBody) + `}`, want: 413},
		{name: "unknown contact", action: "deactivate", contact: "nope", want: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ta := newTestAPI(t, testToken, nil)
			id := tt.contact
			if id == "" {
				id = contactIDs(t, ta, "sip:alice@example.com")[0]
			}
			path := "/v1/registrations/sip:alice@example.com/contacts/" + id + "/" + tt.action
			req, _ := http.NewRequest("POST", ta.srv.URL+path, strings.NewReader(tt.body))
			req.Header.Set("Authorization", "Bearer "+testToken)
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			} else if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tt.want, raw)
			}
			if tt.want != 200 {
				var e errorBody
				if json.Unmarshal(raw, &e) != nil || !strings.Contains(e.Error, tt.wantErr) {
					t.Errorf("error body %s, want one mentioning %q", raw, tt.wantErr)
				}
				if len(contactIDs(t, ta, "sip:alice@example.com")) != 2 {
					t.Error("a refused action changed the bridge")
				}
				return
			}
			var ar actResponse
			if err := json.Unmarshal(raw, &ar); err != nil {
				t.Fatal(err)
			}
			if ar.Event != tt.wantEvent || ar.Registrar != tt.wantReg || ar.Contact.ID != id || ar.Contact.State != "terminated" || ar.Contact.Event != tt.wantEvent {
				t.Errorf("response %s", raw)
			}
			if tt.wantEvent == "probation" && ar.Contact.RetryAfter != 120 {
				t.Errorf("retry_after %d", ar.Contact.RetryAfter)
			}
			if ids := contactIDs(t, ta, "sip:alice@example.com"); len(ids) != 1 || ids[0] == id {
				t.Errorf("contacts left %v", ids)
			}
		})
	}
}

// TestEventsStream reads the API's SSE endpoint while the bridge changes.
func TestEventsStream(t *testing.T) {
	ta := newTestAPI(t, testToken, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ta.srv.URL+"/v1/events?access_token="+testToken, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	deadline := time.Now().Add(5 * time.Second)
	for ta.hub.Stats().Clients == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	ta.br.Apply(t.Context(), source.Batch{Contacts: []source.Contact{contact("k-f", "sip:frank@example.com", "sip:frank@192.0.2.9")}})
	id := contactIDs(t, ta, "sip:alice@example.com")[0]
	ta.do(t, "POST", "/v1/registrations/sip:alice@example.com/contacts/"+id+"/probation", testToken, `{"retry_after":30}`, nil)

	lines := make(chan string)
	go func() {
		defer close(lines)
		buf := make([]byte, 0, 4096)
		one := make([]byte, 1)
		for {
			if _, err := res.Body.Read(one); err != nil {
				return
			}
			if one[0] != '\n' {
				buf = append(buf, one[0])
				continue
			}
			if data, ok := bytes.CutPrefix(buf, []byte("data: ")); ok {
				select {
				case lines <- string(data):
				case <-ctx.Done():
					return
				}
			}
			buf = buf[:0]
		}
	}()
	for _, want := range []struct{ aor, event, state string }{
		{"sip:frank@example.com", "registered", "active"},
		{"sip:alice@example.com", "probation", "terminated"},
	} {
		select {
		case line := <-lines:
			var e feed.Event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatal(err)
			}
			if e.AOR != want.aor || e.Event != want.event || e.State != want.state {
				t.Errorf("got %s, want %+v", line, want)
			}
			if want.event == "probation" && (e.RetryAfter != 30 || e.ContactID != id) {
				t.Errorf("probation event %s", line)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", want.event)
		}
	}
	cancel()
}
