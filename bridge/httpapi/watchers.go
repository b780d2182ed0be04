package httpapi

import (
	"context"
	"net/http"
	"time"
)

// Watcher is one subscription watching an AOR (RFC 3857 watcher
// information: what a reg.winfo or presence.winfo subscriber sees).
type Watcher struct {
	ID          string    `json:"id"`
	Package     string    `json:"package"`
	URI         string    `json:"uri"`
	DisplayName string    `json:"display_name,omitempty"`
	Status      string    `json:"status"`
	Event       string    `json:"event"`
	Since       time.Time `json:"since"`
	Expires     time.Time `json:"expires"`
}

// watchersTimeout bounds the read of a shared watcher record.
const watchersTimeout = 5 * time.Second

func (a *API) listWatchers(w http.ResponseWriter, r *http.Request) {
	if a.deps.Watchers == nil {
		writeError(w, http.StatusNotFound, "watcher information not served")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), watchersTimeout)
	defer cancel()
	aor := r.PathValue("aor")
	list, err := a.deps.Watchers(ctx, aor)
	if err != nil {
		a.log.Warn("listing watchers failed", "aor", aor, "err", err)
		writeError(w, http.StatusServiceUnavailable, "watcher record unavailable: "+err.Error())
		return
	}
	if list == nil {
		list = []Watcher{}
	}
	writeJSON(w, http.StatusOK, struct {
		AOR      string    `json:"aor"`
		Count    int       `json:"count"`
		Watchers []Watcher `json:"watchers"`
	}{aor, len(list), list})
}
