// Package render writes the documents the notifier sends, as pure
// functions of their inputs and an explicit now (no I/O, no locks):
// application/reginfo+xml (RFC 3680 section 5, with the RFC 5628
// gruuinfo extension), application/pidf+xml derived from registration
// state (RFC 3863, as RFC 3680 section 3.2 suggests) and
// application/watcherinfo+xml (RFC 3858). Every string from a contact
// store or a SUBSCRIBE is escaped, so each document stays well-formed and
// schema-valid whatever the input holds (invariant 2 in docs/design.md).
//
// The renderers append to a caller's buffer and do not allocate when it
// has room; the notifier reuses one buffer per delivery worker.
package render
