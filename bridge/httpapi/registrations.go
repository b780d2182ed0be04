package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/regbridge/regbridge/bridge"
)

// Paging of GET /v1/registrations and /v1/subscriptions.
const (
	// defaultLimit keeps an unqualified listing small enough to read.
	defaultLimit = 100
	// maxLimit bounds one response (and the bridge's read lock time).
	maxLimit = 1000
	// removeTimeout bounds the registrar-side removal of an operator
	// action; the subscribers are notified before it starts.
	removeTimeout = 5 * time.Second
)

// Registration is one address-of-record in API responses.
type Registration struct {
	AOR      string    `json:"aor"`
	ID       string    `json:"id"`
	State    string    `json:"state"`
	Contacts []Contact `json:"contacts"`
}

// Contact is one binding in API responses: the store's values plus the
// bridge's id, state and last event.
type Contact struct {
	ID    string `json:"id"`
	Key   string `json:"key"`
	URI   string `json:"uri"`
	State string `json:"state"`
	Event string `json:"event"`
	// Expires is the seconds left (active, not permanent contacts).
	Expires   *int64     `json:"expires,omitempty"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Q         *float32   `json:"q,omitempty"`
	CallID    string     `json:"call_id,omitempty"`
	CSeq      uint32     `json:"cseq,omitempty"`
	UserAgent string     `json:"user_agent,omitempty"`
	Instance  string     `json:"instance,omitempty"`
	RegID     uint32     `json:"reg_id,omitempty"`
	Received  string     `json:"received,omitempty"`
	Path      string     `json:"path,omitempty"`
	// Socket is the registrar's receiving socket as the store has it;
	// Transport is derived from it, else from the URIs (see
	// contactTransport).
	Socket         string     `json:"socket,omitempty"`
	Transport      string     `json:"transport,omitempty"`
	Modified       *time.Time `json:"modified,omitempty"`
	Since          *time.Time `json:"since,omitempty"`
	RetryAfter     uint32     `json:"retry_after,omitempty"`
	Administrative bool       `json:"administrative,omitempty"`
}

func toRegistration(r *bridge.Registration, now time.Time) Registration {
	out := Registration{AOR: r.AOR, ID: r.ID, State: string(r.State), Contacts: make([]Contact, len(r.Contacts))}
	for i := range r.Contacts {
		out.Contacts[i] = toContact(&r.Contacts[i], now)
	}
	return out
}

func toContact(v *bridge.ContactView, now time.Time) Contact {
	c := Contact{
		ID: v.ID, Key: v.Key, URI: v.URI, State: string(v.State), Event: string(v.Event),
		CallID: v.CallID, CSeq: v.CSeq, UserAgent: v.UserAgent, Instance: v.Instance, RegID: v.RegID,
		Received: v.Received, Path: v.Path, RetryAfter: v.RetryAfter, Administrative: v.Administrative,
		Socket: v.Socket, Transport: contactTransport(v.Socket, v.Received, v.URI),
	}
	if v.State == bridge.ContactActive && !v.Permanent() {
		left := max(int64(v.Expires.Sub(now).Round(time.Second)/time.Second), 0)
		at := v.Expires.UTC()
		c.Expires, c.ExpiresAt = &left, &at
	}
	if v.Q >= 0 {
		q := v.Q
		c.Q = &q
	}
	c.Modified = timePtr(v.Modified)
	c.Since = timePtr(v.Since)
	return c
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

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
		page.Registrations = append(page.Registrations, toRegistration(&regs[i], now))
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
	reg, _ := a.deps.Registrations.Lookup(r.PathValue("aor"))
	if len(reg.Contacts) == 0 {
		writeError(w, http.StatusNotFound, "no active contacts for this address-of-record")
		return
	}
	writeJSON(w, http.StatusOK, toRegistration(&reg, time.Now()))
}

// actRequest is the optional body of an operator action.
type actRequest struct {
	RetryAfter uint32 `json:"retry_after"`
}

// Registrar outcomes of an operator action.
const (
	registrarRemoved    = "removed"     // the binding was deleted at the registrar
	registrarNotifyOnly = "notify-only" // the store cannot delete: subscribers were told
	registrarFailed     = "remove-failed"
)

// actResponse is the answer of an operator action.
type actResponse struct {
	AOR     string  `json:"aor"`
	Event   string  `json:"event"`
	Contact Contact `json:"contact"`
	// Registrar says what happened at the registrar: removed,
	// notify-only or remove-failed (then RemoveError says why).
	Registrar   string `json:"registrar"`
	RemoveError string `json:"remove_error,omitempty"`
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
		aor, id := r.PathValue("aor"), r.PathValue("id")
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
		res := actResponse{AOR: aor, Event: string(ev), Contact: toContact(&view, time.Now()), Registrar: registrarNotifyOnly}
		log := a.log.With("aor", aor, "event", string(ev), "contact", id)
		if a.deps.Remover != nil {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), removeTimeout)
			err := a.deps.Remover.Remove(ctx, view.Key)
			cancel()
			if err != nil {
				res.Registrar, res.RemoveError = registrarFailed, err.Error()
				log.Warn("operator action notified; removing the binding at the registrar failed", "err", err)
			} else {
				res.Registrar = registrarRemoved
			}
		}
		log.Info("operator action", "registrar", res.Registrar)
		writeJSON(w, http.StatusOK, res)
	}
}
