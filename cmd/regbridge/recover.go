package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sync/atomic"
)

// httpPanics counts panics recovered in HTTP handlers
// (regbridge_panics_total{where="http"}).
var httpPanics atomic.Uint64

// recoverHTTP answers 500 to a request whose handler panicked, logs the
// panic with its stack under component http, and counts it. net/http
// would recover too, but only by closing the connection, with a line in
// the server's error log and no count. http.ErrAbortHandler, the way a
// handler ends a response on purpose, is passed on.
func recoverHTTP(h http.Handler, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			httpPanics.Add(1)
			log.Error("panic in HTTP handler; answered 500", "component", "http", "method", r.Method,
				"path", r.URL.Path, "err", fmt.Errorf("panic: %v", v), "stack", string(debug.Stack()))
			http.Error(w, "internal server error", http.StatusInternalServerError)
		}()
		h.ServeHTTP(w, r)
	})
}
