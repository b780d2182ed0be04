package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestPProf: the profiler is served only when enabled, and behind the
// admin token when one is set.
func TestPProf(t *testing.T) {
	for _, tt := range []struct {
		name   string
		parts  httpParts
		header string
		want   int
	}{
		{"off by default", httpParts{}, "", http.StatusNotFound},
		{"on without token", httpParts{pprof: true}, "", http.StatusOK},
		{"on with token, none sent", httpParts{pprof: true, token: "s3cret"}, "", http.StatusUnauthorized},
		{"on with token, wrong", httpParts{pprof: true, token: "s3cret"}, "Bearer nope", http.StatusUnauthorized},
		{"on with token, right", httpParts{pprof: true, token: "s3cret"}, "Bearer s3cret", http.StatusOK},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/debug/pprof/", nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			rec := httptest.NewRecorder()
			newHTTPHandler(tt.parts).ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d", rec.Code, tt.want)
			}
		})
	}
}
