package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestHTTPPanic: a handler that panics gets its request answered 500
// over a real connection, the panic is counted, and the server goes on
// serving.
func TestHTTPPanic(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/boom" {
			panic("injected in an HTTP handler")
		}
		io.WriteString(w, "fine")
	})
	srv := httptest.NewServer(newHTTPHandler(httpParts{api: api}))
	defer srv.Close()
	before := httpPanics.Load()
	get := func(path string) int {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer res.Body.Close()
		io.Copy(io.Discard, res.Body)
		return res.StatusCode
	}
	if code := get("/v1/boom"); code != 500 {
		t.Fatalf("GET /v1/boom: %d, want 500", code)
	}
	if got := httpPanics.Load() - before; got != 1 {
		t.Fatalf("%d HTTP panics counted, want 1", got)
	}
	for _, path := range []string{"/v1/fine", "/healthz"} {
		if code := get(path); code != 200 {
			t.Fatalf("GET %s after the panic: %d", path, code)
		}
	}
}
