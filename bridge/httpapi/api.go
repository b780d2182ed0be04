package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/vocab"
)

// maxBody bounds request bodies: every request body of this API is a
// small JSON object.
const maxBody = 4 << 10

// Registrations is what the API reads and changes in the bridge
// (*bridge.Bridge implements it).
type Registrations interface {
	List(prefix, after string, limit int) []bridge.Registration
	Lookup(aor string) (bridge.Registration, uint64)
	Act(aor, contactID string, ev bridge.Event, retryAfter uint32) (bridge.ContactView, error)
}

// Subscription describes one live subscription (the notifier's view,
// adapted by the caller, who sets ExpiresAt; the API fills in Expires
// when it answers).
type Subscription = vocab.Subscription

// Deps are the parts the API reads and drives.
type Deps struct {
	// Registrations is the bridge (required).
	Registrations Registrations
	// Ready reports whether the bridge has loaded the store; until then
	// registration reads answer 503. Nil: always ready.
	Ready func() bool
	// Subscriptions lists the live subscriptions. Nil: none.
	Subscriptions func() []Subscription
	// Watchers lists the watchers of an AOR, on every instance. Nil: 404.
	Watchers func(ctx context.Context, aor string) ([]Watcher, error)
	// Events serves GET /v1/events (a feed.Hub). Nil: 404.
	Events http.Handler
	// Level is the process log level that /v1/log-level reads and sets.
	// Nil: 404.
	Level *slog.LevelVar
}

// API serves /v1 and the live view.
type API struct {
	deps     Deps
	log      *slog.Logger
	tokenSum *[sha256.Size]byte // nil: no token configured
	mux      *http.ServeMux
}

// route is one endpoint; the table drives both the mux and the test that
// checks the OpenAPI document covers every endpoint.
type route struct {
	method, path string
	handler      http.HandlerFunc
	// queryToken accepts the token as ?access_token= (EventSource).
	queryToken bool
}

// New returns the API. cfg.AdminToken, when set, is required on /v1.
func New(cfg Config, deps Deps, log *slog.Logger) *API {
	a := &API{deps: deps, log: log.With("component", "http"), mux: http.NewServeMux()}
	if cfg.AdminToken != "" {
		sum := sha256.Sum256([]byte(cfg.AdminToken))
		a.tokenSum = &sum
	}
	for _, rt := range a.routes() {
		a.mux.Handle(rt.method+" "+rt.path, a.guard(rt.handler, rt.queryToken))
	}
	a.mux.HandleFunc("GET /{$}", a.serveLiveView)
	return a
}

func (a *API) routes() []route {
	return []route{
		{method: "GET", path: "/v1/registrations", handler: a.listRegistrations},
		{method: "GET", path: "/v1/registrations/{aor}", handler: a.getRegistration},
		{method: "GET", path: "/v1/registrations/{aor}/watchers", handler: a.listWatchers},
		{method: "POST", path: "/v1/registrations/{aor}/contacts/{id}/deactivate", handler: a.act(bridge.EventDeactivated)},
		{method: "POST", path: "/v1/registrations/{aor}/contacts/{id}/probation", handler: a.act(bridge.EventProbation)},
		{method: "POST", path: "/v1/registrations/{aor}/contacts/{id}/reject", handler: a.act(bridge.EventRejected)},
		{method: "GET", path: "/v1/subscriptions", handler: a.listSubscriptions},
		{method: "GET", path: "/v1/events", handler: a.events, queryToken: true},
		{method: "GET", path: "/v1/log-level", handler: a.getLogLevel},
		{method: "POST", path: "/v1/log-level", handler: a.setLogLevel},
		{method: "GET", path: "/v1/openapi.json", handler: serveOpenAPI},
	}
}

// ServeHTTP routes a request. Requests no route matches get a JSON error
// (404, or 405 with Allow) instead of the mux's plain text.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h, pattern := a.mux.Handler(r)
	if pattern != "" {
		a.mux.ServeHTTP(w, r) // sets the path values Handler does not
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/v1/") && r.URL.Path != "/v1" {
		h.ServeHTTP(w, r) // redirects and the plain 404 outside the API
		return
	}
	if !a.authorized(r, false) {
		a.unauthorized(w)
		return
	}
	rec := &statusRecorder{header: w.Header()}
	h.ServeHTTP(rec, r) // sets Allow on a 405
	code := rec.code
	if code < 400 {
		code = http.StatusNotFound
	}
	writeError(w, code, strings.ToLower(http.StatusText(code)))
}

// statusRecorder keeps the status a handler chose and discards its body.
type statusRecorder struct {
	header http.Header
	code   int
}

func (s *statusRecorder) Header() http.Header         { return s.header }
func (s *statusRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (s *statusRecorder) WriteHeader(code int)        { s.code = code }

// guard enforces the admin token.
func (a *API) guard(h http.HandlerFunc, queryToken bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r, queryToken) {
			a.unauthorized(w)
			return
		}
		h(w, r)
	})
}

// authorized compares the presented token with the configured one in
// constant time (hashing both first, so that not even the length leaks).
func (a *API) authorized(r *http.Request, queryToken bool) bool {
	if a.tokenSum == nil {
		return true
	}
	var got string
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, cred, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return false
		}
		got = strings.TrimSpace(cred)
	} else if queryToken {
		got = r.URL.Query().Get("access_token")
	}
	return a.tokenMatches(got)
}

// tokenMatches reports whether got is the configured token.
func (a *API) tokenMatches(got string) bool {
	if got == "" {
		return false
	}
	sum := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(sum[:], a.tokenSum[:]) == 1
}

func (a *API) unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="regbridge"`)
	writeError(w, http.StatusUnauthorized, "missing or wrong bearer token (REGBRIDGE_ADMIN_TOKEN)")
}

// errorBody is every error response: {"error": "..."}.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nobody to tell
}

// decodeBody reads a request body strictly into v: JSON only, one
// object, no unknown fields, at most maxBody bytes. An empty body leaves
// v as it is when optional.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &httpError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
		}
	}
	body := http.MaxBytesReader(w, r.Body, maxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.Is(err, io.EOF) && optional:
			return nil
		case errors.Is(err, io.EOF):
			return &httpError{http.StatusBadRequest, "request body is empty: want a JSON object"}
		case errors.As(err, &tooBig):
			return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", maxBody)}
		default:
			return &httpError{http.StatusBadRequest, "invalid JSON body: " + err.Error()}
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &httpError{http.StatusBadRequest, "invalid JSON body: want exactly one object"}
	}
	return nil
}

// httpError is an error with the status code it answers.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func writeErr(w http.ResponseWriter, err error) {
	var he *httpError
	if errors.As(err, &he) {
		writeError(w, he.code, he.msg)
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}
