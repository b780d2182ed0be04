package httpapi

import (
	_ "embed"
	"log/slog"
	"net/http"
	"strings"
)

func (a *API) events(w http.ResponseWriter, r *http.Request) {
	if a.deps.Events == nil {
		writeError(w, http.StatusNotFound, "event stream not configured")
		return
	}
	a.deps.Events.ServeHTTP(w, r)
}

// logLevel is the body of the log-level endpoints.
type logLevel struct {
	Level    string `json:"level"`
	Previous string `json:"previous,omitempty"`
}

func (a *API) getLogLevel(w http.ResponseWriter, r *http.Request) {
	if a.deps.Level == nil {
		writeError(w, http.StatusNotFound, "log level not adjustable")
		return
	}
	writeJSON(w, http.StatusOK, logLevel{Level: levelName(a.deps.Level.Level())})
}

func (a *API) setLogLevel(w http.ResponseWriter, r *http.Request) {
	if a.deps.Level == nil {
		writeError(w, http.StatusNotFound, "log level not adjustable")
		return
	}
	var req logLevel
	if err := decodeBody(w, r, &req, false); err != nil {
		writeErr(w, err)
		return
	}
	if req.Previous != "" {
		writeError(w, http.StatusBadRequest, "previous is read-only")
		return
	}
	lvl, ok := ParseLevel(req.Level)
	if !ok {
		writeError(w, http.StatusBadRequest, "level must be debug, info, warn or error")
		return
	}
	prev := a.deps.Level.Level()
	a.deps.Level.Set(lvl)
	a.log.Warn("log level changed", "level", levelName(lvl), "previous", levelName(prev), "by", "api")
	writeJSON(w, http.StatusOK, logLevel{Level: levelName(lvl), Previous: levelName(prev)})
}

// ParseLevel reads debug, info, warn (or warning) and error.
func ParseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

func levelName(l slog.Level) string { return strings.ToLower(l.String()) }

//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
