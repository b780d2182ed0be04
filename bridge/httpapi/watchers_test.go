package httpapi

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWatchers: GET /v1/registrations/{aor}/watchers hands the AOR as
// written to the lister and returns its watchers; an empty list is a
// list, a lister failure 503, and no lister 404.
func TestWatchers(t *testing.T) {
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var asked string
	ta := newTestAPI(t, "", func(d *Deps) {
		d.Watchers = func(_ context.Context, aor string) ([]Watcher, error) {
			asked = aor
			switch aor {
			case "sip:alice@example.com":
				return []Watcher{{ID: "w1", Package: "reg", URI: "sip:as@example.com", DisplayName: "AS <1>",
					Status: "active", Event: "subscribe", Since: since, ExpiresAt: since.Add(time.Hour)}}, nil
			case "sip:down@example.com":
				return nil, errors.New("redis: connection refused")
			}
			return nil, nil
		}
	})
	var got struct {
		AOR      string    `json:"aor"`
		Count    int       `json:"count"`
		Watchers []Watcher `json:"watchers"`
	}
	if res := ta.do(t, "GET", "/v1/registrations/sip:alice@example.com/watchers", "", "", &got); res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if asked != "sip:alice@example.com" || got.AOR != asked || got.Count != 1 || got.Watchers[0].DisplayName != "AS <1>" || !got.Watchers[0].Since.Equal(since) {
		t.Errorf("asked %q, got %+v", asked, got)
	}
	got.Watchers = nil
	if res := ta.do(t, "GET", "/v1/registrations/sip:nobody@example.com/watchers", "", "", &got); res.StatusCode != 200 || got.Watchers == nil || got.Count != 0 {
		t.Errorf("nobody watching: status %d, %+v: want an empty list", res.StatusCode, got)
	}
	if res := ta.do(t, "GET", "/v1/registrations/sip:down@example.com/watchers", "", "", nil); res.StatusCode != 503 {
		t.Errorf("lister failing: status %d, want 503", res.StatusCode)
	}
	if res := newTestAPI(t, "", nil).do(t, "GET", "/v1/registrations/sip:alice@example.com/watchers", "", "", nil); res.StatusCode != 404 {
		t.Errorf("no lister: status %d, want 404", res.StatusCode)
	}
}
