package source

import "sync/atomic"

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
