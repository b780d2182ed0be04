package httpapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
)

// liveView is the page at /: one file of HTML, CSS and JavaScript with no
// build step. It reads GET /v1/registrations once and then follows
// GET /v1/events.
//
//go:embed liveview.html
var liveView []byte

// liveViewCSP allows exactly the page's own inline script and style (by
// hash) and requests to this origin: contact URIs and user agents on the
// page come from the store and are untrusted.
var liveViewCSP = "default-src 'none'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
	"script-src " + inlineHash(liveView, "<script>", "</script>") + "; " +
	"style-src " + inlineHash(liveView, "<style>", "</style>")

// inlineHash returns the CSP source expression ('sha256-...') of the text
// between the first open and close tags of page.
func inlineHash(page []byte, open, close string) string {
	_, rest, ok := bytes.Cut(page, []byte(open))
	if !ok {
		panic("liveview.html has no " + open)
	}
	body, _, ok := bytes.Cut(rest, []byte(close))
	if !ok {
		panic("liveview.html has no " + close)
	}
	sum := sha256.Sum256(body)
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

func serveLiveView(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", liveViewCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	// The page may be opened as /?token=...: never send that URL on.
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(liveView)
}
