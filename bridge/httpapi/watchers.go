package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/regbridge/regbridge/bridge/vocab"
)

// Watcher is one subscription watching an AOR, in the vocabulary's
// terms (the caller sets ExpiresAt; the API fills in Expires).
type Watcher = vocab.Watcher

// watchersTimeout bounds the read of a shared watcher record.
const watchersTimeout = 5 * time.Second

func (a *API) listWatchers(w http.ResponseWriter, r *http.Request) {
	if a.deps.Watchers == nil {
		writeError(w, http.StatusNotFound, "watcher information not served")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), watchersTimeout)
	defer cancel()
	aor := pathAOR(r)
	list, err := a.deps.Watchers(ctx, aor)
	if err != nil {
		a.log.Warn("listing watchers failed", "aor", aor, "err", err)
		writeError(w, http.StatusServiceUnavailable, "watcher record unavailable: "+err.Error())
		return
	}
	if list == nil {
		list = []Watcher{}
	}
	now := time.Now()
	for i := range list {
		left := vocab.SecondsLeft(list[i].ExpiresAt, now)
		list[i].Expires = &left
	}
	writeJSON(w, http.StatusOK, struct {
		AOR      string    `json:"aor"`
		Count    int       `json:"count"`
		Watchers []Watcher `json:"watchers"`
	}{aor, len(list), list})
}
