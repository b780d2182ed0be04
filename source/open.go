package source

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options are what every adapter is configured with besides its URL.
type Options struct {
	// Domain completes an AOR the store keeps without a domain part.
	Domain string
	// PollInterval is how often the store is checked for changes; zero
	// keeps the adapter's default.
	PollInterval time.Duration
	// Log receives the adapter's records; nil discards them.
	Log *slog.Logger
}

// Scheme is one URL scheme a store adapter reads, as the adapter
// registers it (Register).
type Scheme struct {
	// Name is the scheme, lower case ("kamailio+mysql").
	Name string
	// Params are the URL query parameters the scheme takes, for advice
	// that rewrites a URL (a parameter the new scheme lacks is dropped).
	Params []string
	// Open reads the URL, every part of it the adapter's own, and builds
	// the adapter. It does no I/O and holds nothing until Run, so calling
	// it only to validate a URL is fine. Its errors never repeat the URL,
	// which may hold a password.
	Open func(u *url.URL, o Options) (Source, error)
	// Table describes the SQL table the scheme reads; nil for a store
	// that has none.
	Table *Table
}

// Table is what a SQL scheme reads, for `regbridge schema` and for
// start-up advice when a table turns out to be another registrar's.
type Table struct {
	// What names it in a sentence: "a Kamailio usrloc table".
	What string
	// Default is the registrar's default table name.
	Default string
	// Columns are the columns read; a table having them all is one the
	// scheme can read.
	Columns []string
	// Schema is the DDL creating the table under the given name, as the
	// registrar's own scripts create it.
	Schema func(table string) ([]string, error)
}

var registry struct {
	sync.RWMutex
	schemes []Scheme
}

// Register adds schemes to those Open knows, in the order listed (the
// order error messages name them). It panics on a scheme registered twice:
// registrations are static (source/stores).
func Register(schemes ...Scheme) {
	registry.Lock()
	defer registry.Unlock()
	for _, s := range schemes {
		if s.Name != strings.ToLower(s.Name) || s.Open == nil {
			panic("source: bad registration of scheme " + s.Name)
		}
		if slices.ContainsFunc(registry.schemes, func(o Scheme) bool { return o.Name == s.Name }) {
			panic("source: scheme " + s.Name + " registered twice")
		}
		registry.schemes = append(registry.schemes, s)
	}
}

// Schemes are the registered schemes, in registration order.
func Schemes() []Scheme {
	registry.RLock()
	defer registry.RUnlock()
	return slices.Clone(registry.schemes)
}

// Lookup returns the registered scheme named name (any case).
func Lookup(name string) (Scheme, bool) {
	name = strings.ToLower(name)
	for _, s := range Schemes() {
		if s.Name == name {
			return s, true
		}
	}
	return Scheme{}, false
}

// SchemeNames lists the registered scheme names for messages.
func SchemeNames() string {
	var names []string
	for _, s := range Schemes() {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

// Open builds the adapter a store URL names, dispatching on its scheme to
// the adapter registered for it. It does no I/O.
func Open(raw string, o Options) (Source, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %w", err)
	}
	if u.Scheme == "" {
		return nil, fmt.Errorf("%q has no scheme; supported: %s", raw, SchemeNames())
	}
	s, ok := Lookup(u.Scheme)
	if !ok {
		return nil, fmt.Errorf("unsupported scheme %q; supported: %s", u.Scheme, SchemeNames())
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	o.Log = o.Log.With("source", s.Name)
	return s.Open(u, o)
}

// Built is an adapter constructor's result as Open returns it: never a
// Source holding a nil pointer.
func Built[S Source](s S, err error) (Source, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}
