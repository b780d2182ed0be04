package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/httpapi"
	"github.com/regbridge/regbridge/notifier"
	"github.com/regbridge/regbridge/notifier/render"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// readyCheck is one condition of /readyz.
type readyCheck struct {
	name string // what is missing, as /readyz reports it
	ok   func() bool
	// why, when set, adds the cause to name (a store misconfiguration).
	why func() string
}

// allReady reports whether every check holds: /readyz would answer 200.
func allReady(checks []readyCheck) bool {
	for _, c := range checks {
		if !c.ok() {
			return false
		}
	}
	return true
}

// httpParts is what the HTTP listener serves besides the health
// endpoints.
type httpParts struct {
	// ready are the conditions of /readyz, all of which must hold.
	ready []readyCheck
	// detail adds lines to /readyz's answer (informative: they never
	// make it fail), such as the replication slot's lag.
	detail func() []string
	// metrics serves /metrics (nil: not built in).
	metrics http.Handler
	// api serves /v1 and the live view at / (nil: neither).
	api http.Handler
	// pprof serves the Go profiler at /debug/pprof/ (REGBRIDGE_PPROF),
	// behind the admin token when one is set.
	pprof bool
	token string
	// log records panics recovered in handlers (nil: discarded).
	log *slog.Logger
}

// newHTTPHandler serves the health endpoints: /healthz says the process
// is alive, /readyz that every readiness condition holds (Kubernetes
// probes); then /metrics and, for everything else, the API.
func newHTTPHandler(p httpParts) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		var missing []string
		for _, c := range p.ready {
			if !c.ok() {
				name := c.name
				if c.why != nil {
					if why := c.why(); why != "" {
						name += ": " + why
					}
				}
				missing = append(missing, name)
			}
		}
		var lines []string
		if p.detail != nil {
			lines = p.detail()
		}
		if len(missing) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", strings.Join(missing, "; "))
		} else {
			fmt.Fprintln(w, "ok")
		}
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
	})
	if p.metrics != nil {
		mux.Handle("GET /metrics", p.metrics)
	}
	if p.pprof {
		prof := http.NewServeMux()
		prof.HandleFunc("/debug/pprof/", pprof.Index)
		prof.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		prof.HandleFunc("/debug/pprof/profile", pprof.Profile)
		prof.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		prof.HandleFunc("/debug/pprof/trace", pprof.Trace)
		mux.Handle("/debug/pprof/", requireToken(p.token, prof))
	}
	if p.api != nil {
		mux.Handle("/", p.api)
	}
	log := p.log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return recoverHTTP(mux, log)
}

// requireToken guards h with the admin bearer token when one is set.
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="regbridge"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveHTTP runs srv on ln until ctx ends, then shuts it down. Streams
// (SSE) end through srv.RegisterOnShutdown.
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "component", "http", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serving HTTP: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		// A client still mid-request after the grace time: cut it.
		log.Warn("HTTP requests cut at shutdown", "component", "http", "err", err)
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving HTTP: %w", err)
	}
	return nil
}

// readiness lists what /readyz requires: the first snapshot loaded, the
// SIP listeners up, the store answering (when the adapter reports it),
// and the process not shutting down (so a load balancer stops sending
// work first).
func readiness(ctx context.Context, br *bridge.Bridge, src source.Source, sipUp *atomic.Bool) []readyCheck {
	checks := []readyCheck{
		{name: "shutting down", ok: func() bool { return ctx.Err() == nil }},
		{name: "contact store not loaded yet", ok: br.Ready},
		{name: "SIP listeners not up", ok: sipUp.Load},
	}
	if rep, ok := src.(source.Reporter); ok {
		checks = append(checks, readyCheck{name: "contact store unreachable", ok: func() bool { return rep.Stats().Up },
			why: func() string { return rep.Stats().Problem }})
	}
	return checks
}

// slotLagger is a source that reads a replication slot (sqlwatch under
// cdc=logical): its lag goes to /metrics and /readyz.
type slotLagger interface {
	SlotLag() (sqlwatch.SlotLag, bool)
}

// readyDetail is what /readyz adds below its verdict: the slot's lag,
// when the source has one.
func readyDetail(src source.Source) func() []string {
	sl, ok := src.(slotLagger)
	if !ok {
		return nil
	}
	return func() []string {
		lag, ok := sl.SlotLag()
		if !ok {
			return nil
		}
		return []string{fmt.Sprintf("replication slot %s lag: %d bytes, %.1f s", lag.Slot, lag.Bytes, lag.Seconds)}
	}
}

// watchersOf adapts the notifier's watcher list to the API's: every
// watcher it lists is active (regbridge decides authorization before it
// answers a SUBSCRIBE, so none is pending).
func watchersOf(nt *notifier.Notifier) func(context.Context, string) ([]httpapi.Watcher, error) {
	return func(ctx context.Context, aor string) ([]httpapi.Watcher, error) {
		list, err := nt.Watchers(ctx, aor)
		if err != nil {
			return nil, err
		}
		out := make([]httpapi.Watcher, len(list))
		for i, w := range list {
			out[i] = httpapi.Watcher{
				ID: w.ID, Package: w.Package, URI: w.URI, DisplayName: w.DisplayName,
				Status: string(render.WatcherActive), Event: string(render.WatcherSubscribe),
				Since: w.Since.UTC(), ExpiresAt: w.Expires.UTC(),
			}
		}
		return out, nil
	}
}
