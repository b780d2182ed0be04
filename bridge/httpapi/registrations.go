package httpapi

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/vocab"
)

// Paging of GET /v1/registrations and /v1/subscriptions.
const (
	// defaultLimit keeps an unqualified listing small enough to read.
	defaultLimit = 100
	// maxLimit bounds one response (and the bridge's read lock time).
	maxLimit = 1000
)

// Registration and Contact are the vocabulary's: the same fields and
// types as the events, the webhooks and the commands' --json.
type (
	Registration = vocab.Registration
	Contact      = vocab.Contact
)

// registrationPage is the answer of GET /v1/registrations.
type registrationPage struct {
	Registrations []Registration `json:"registrations"`
	// Next is the after= value of the next page; absent on the last one.
	Next string `json:"next,omitempty"`
}

// notReady answers 503 until the bridge has loaded the store: before
// that, "no contacts" would be a lie.
func (a *API) notReady(w http.ResponseWriter) bool {
	if a.deps.Ready == nil || a.deps.Ready() {
		return false
	}
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, "registrations not loaded yet")
	return true
}

func (a *API) listRegistrations(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		writeErr(w, err)
		return
	}
	if a.notReady(w) {
		return
	}
	prefix := canonicalPrefix(q.Get("prefix"))
	regs := a.deps.Registrations.List(prefix, q.Get("after"), limit+1)
	page := registrationPage{Registrations: make([]Registration, 0, min(len(regs), limit))}
	if len(regs) > limit {
		regs = regs[:limit]
		page.Next = bridge.CanonicalAOR(regs[limit-1].AOR)
	}
	now := time.Now()
	for i := range regs {
		page.Registrations = append(page.Registrations, vocab.RegistrationOf(&regs[i], now))
	}
	writeJSON(w, http.StatusOK, page)
}

// parseLimit reads a limit= query value; empty is defaultLimit.
func parseLimit(s string) (int, error) {
	if s == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimit {
		return 0, &httpError{http.StatusBadRequest, "limit must be an integer from 1 to " + strconv.Itoa(maxLimit)}
	}
	return n, nil
}

// canonicalPrefix brings an AOR prefix to the form bridge.List compares:
// the canonical AOR, whose scheme and host are lower case. A prefix
// without "@" has no host yet, so only its scheme is lowered.
func canonicalPrefix(p string) string {
	if strings.Contains(p, "@") {
		return bridge.CanonicalAOR(p)
	}
	if scheme, rest, ok := strings.Cut(p, ":"); ok {
		return strings.ToLower(scheme) + ":" + rest
	}
	return p
}

func (a *API) getRegistration(w http.ResponseWriter, r *http.Request) {
	if a.notReady(w) {
		return
	}
	reg, _ := a.deps.Registrations.Lookup(pathAOR(r))
	if len(reg.Contacts) == 0 {
		writeError(w, http.StatusNotFound, "no active contacts for this address-of-record")
		return
	}
	writeJSON(w, http.StatusOK, vocab.RegistrationOf(&reg, time.Now()))
}

// pathAOR is the {aor} of a request's path. An AOR given without a
// scheme, as operators type it (alice@example.com), is the sip: one.
func pathAOR(r *http.Request) string {
	return bridge.WithScheme(r.PathValue("aor"))
}

// actRequest is the optional body of an operator action.
type actRequest struct {
	RetryAfter uint32 `json:"retry_after"`
}

// registrarNotifyOnly is what an operator action does at the registrar:
// nothing. regbridge never writes to the registrar's store; subscribers
// are told, and the binding stays until the device registers anew or it
// expires.
const registrarNotifyOnly = "notify-only"

// actResponse is the answer of an operator action.
type actResponse struct {
	AOR     string  `json:"aor"`
	Event   string  `json:"event"`
	Contact Contact `json:"contact"`
	// Registrar says what happened at the registrar: always notify-only.
	Registrar string `json:"registrar"`
}

// act ends one contact with ev (RFC 3680 4.7.1 operator events) and, where
// the store allows, removes the binding at the registrar.
func (a *API) act(ev bridge.Event) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req actRequest
		if err := decodeBody(w, r, &req, true); err != nil {
			writeErr(w, err)
			return
		}
		switch {
		case ev == bridge.EventProbation && req.RetryAfter == 0:
			writeError(w, http.StatusBadRequest, "probation needs retry_after: the seconds after which the device may register again")
			return
		case ev != bridge.EventProbation && req.RetryAfter != 0:
			writeError(w, http.StatusBadRequest, "retry_after applies to probation only")
			return
		}
		if a.notReady(w) {
			return
		}
		aor, id := pathAOR(r), r.PathValue("id")
		view, err := a.deps.Registrations.Act(aor, id, ev, req.RetryAfter)
		switch {
		case errors.Is(err, bridge.ErrNoContact):
			writeError(w, http.StatusNotFound, "no active contact "+strconv.Quote(id)+" for this address-of-record")
			return
		case errors.Is(err, bridge.ErrRetryAfter), errors.Is(err, bridge.ErrNotAdmin):
			writeError(w, http.StatusBadRequest, err.Error())
			return
		case err != nil:
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		res := actResponse{AOR: aor, Event: string(ev), Contact: vocab.ContactOf(&view, time.Now()), Registrar: registrarNotifyOnly}
		log := a.log.With("aor", aor, "event", string(ev), "contact", id)
		log.Info("operator action", "registrar", res.Registrar)
		writeJSON(w, http.StatusOK, res)
	}
}
