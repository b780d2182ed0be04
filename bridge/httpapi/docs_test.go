package httpapi

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestOpenAPICoversEveryRoute: the hand-written document names every
// endpoint the API serves, and every $ref in it resolves.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	a := New(Config{}, Deps{}, quiet)
	for _, rt := range a.routes() {
		if _, ok := doc.Paths[rt.path][strings.ToLower(rt.method)]; !ok {
			t.Errorf("openapi.json does not describe %s %s", rt.method, rt.path)
		}
	}
	// The endpoints served outside this package are described too.
	for _, p := range []string{"/", "/healthz", "/readyz", "/metrics"} {
		if _, ok := doc.Paths[p]["get"]; !ok {
			t.Errorf("openapi.json does not describe GET %s", p)
		}
	}
	var whole any
	json.Unmarshal(openAPI, &whole)
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if k == "$ref" {
					if !resolves(whole, x.(string)) {
						t.Errorf("$ref %s does not resolve", x)
					}
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(whole)
}

func resolves(doc any, ref string) bool {
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return false
	}
	cur := doc
	for part := range strings.SplitSeq(path, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return false
		}
		if cur, ok = m[part]; !ok {
			return false
		}
	}
	return true
}

func TestOpenAPIServed(t *testing.T) {
	ta := newTestAPI(t, testToken, nil)
	res := ta.do(t, "GET", "/v1/openapi.json", testToken, "", nil)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("status %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

func TestLiveViewPage(t *testing.T) {
	ta := newTestAPI(t, testToken, nil)
	res, err := http.Get(ta.srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	csp := res.Header.Get("Content-Security-Policy")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(string(body), "EventSource") || res.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("status %d, headers %v", res.StatusCode, res.Header)
	}
	for _, want := range []string{"script-src 'sha256-", "style-src 'sha256-", "connect-src 'self'", "default-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(string(body), "innerHTML") {
		t.Error("the page uses innerHTML: store values are untrusted, use textContent")
	}
	// Only / is the page: other paths outside /v1 are plain 404s.
	res, err = http.Get(ta.srv.URL + "/index.html")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Errorf("/index.html: %d", res.StatusCode)
	}
}

func TestCheckListen(t *testing.T) {
	tests := []struct {
		name  string
		token string
		addr  string
		ok    bool
	}{
		{name: "loopback v4", addr: "127.0.0.1:9065", ok: true},
		{name: "loopback v4 other", addr: "127.0.0.2:9065", ok: true},
		{name: "loopback v6", addr: "[::1]:9065", ok: true},
		{name: "localhost", addr: "localhost:9065", ok: true},
		{name: "every address", addr: "0.0.0.0:9065"},
		{name: "every address, empty host", addr: ":9065"},
		{name: "every v6 address", addr: "[::]:9065"},
		{name: "a LAN address", addr: "192.0.2.1:9065"},
		{name: "a host name", addr: "regbridge.example.com:9065"},
		{name: "every address with a token", token: "x", addr: "0.0.0.0:9065", ok: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{AdminToken: tt.token}
			err := cfg.CheckListen(tt.addr)
			if (err == nil) != tt.ok {
				t.Fatalf("CheckListen(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
			}
			if err != nil && (!strings.Contains(err.Error(), "REGBRIDGE_ADMIN_TOKEN") || !strings.Contains(err.Error(), "REGBRIDGE_HTTP_LISTEN")) {
				t.Errorf("error %q does not name both variables", err)
			}
		})
	}
}
