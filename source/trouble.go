package source

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
)

// Trouble remembers why a store is unreadable when retrying will not fix
// it (a missing table, refused credentials), for Stats.Problem. Adapters
// set it from their retry loop and clear it on an outage or recovery; it
// is safe for concurrent use (Stats runs on other goroutines).
type Trouble struct {
	why atomic.Pointer[string]
}

// Set records why and reports whether it differs from what was recorded,
// so that each cause is logged once.
func (t *Trouble) Set(why string) bool {
	old := t.why.Swap(&why)
	return old == nil || *old != why
}

// Clear forgets the cause.
func (t *Trouble) Clear() { t.why.Store(nil) }

// String is the cause, or "".
func (t *Trouble) String() string {
	if p := t.why.Load(); p != nil {
		return *p
	}
	return ""
}

// Failed records a failed session of an adapter's retry loop and logs it
// as the operator needs it: a permanent cause (problem) once per cause at
// error level, the first failure of an outage as a warning, later ones at
// debug. down is the loop's "already failing" flag. misconfigured and
// unreachable word the two cases ("redis misconfigured", "redis
// unreachable"); the debug line puts "still" after unreachable's first
// word ("redis still unreachable").
func (t *Trouble) Failed(log *slog.Logger, err error, problem string, permanent bool, down *bool, misconfigured, unreachable string) {
	switch {
	case permanent:
		*down = true
		if t.Set(problem) {
			log.Error(misconfigured+": "+problem+"; retrying", "err", err)
		}
	case !*down:
		*down = true
		t.Clear()
		log.Warn(unreachable+", retrying", "err", err)
	default:
		t.Clear() // an outage now, whatever it was before
		log.Debug(strings.Replace(unreachable, " ", " still ", 1), "err", err)
	}
}

// Sleep waits d (an adapter's retry backoff, a webhook's retry delay,
// regload's pacing) or until ctx ends; it reports whether d passed with
// ctx still live.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
