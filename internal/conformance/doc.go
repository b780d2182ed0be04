// Package conformance is the conformance suite every source adapter runs
// against its real store (docs/design.md#tests-and-ci: real parts, not
// mocks).
// It is test support: production packages never import it.
//
// # Plugging an adapter in
//
// The adapter's own test implements Harness for one real store and calls
// Run from a test function:
//
//	func TestConformance(t *testing.T) {
//		conformance.Run(t, &myHarness{...})
//	}
//
// Run calls the harness's methods from the test goroutine only, one
// subtest at a time (subtests are never parallel), in this order per
// subtest:
//
//  1. NewSource(t): make a fresh, empty store area for this subtest (its
//     own table, database, file or key prefix, dropped in t.Cleanup) and
//     return an adapter pointed at it, not yet running. Configure it for
//     tests: a poll interval of tens of milliseconds and a retry backoff
//     capped well under a second, or the outage cases take long.
//  2. Insert, Update, Delete and InsertBad write rows into that area in the
//     store's native format, exactly as the registrar writes them (column
//     types, time encoding, NULLs, key format). They are called before the
//     adapter runs and while it runs, including during an outage: write
//     through your own connection, never through the path Break cuts.
//  3. Break makes the store really unreachable or failing for the adapter
//     (not for the harness's writes); Restore undoes it. For a server, put
//     the adapter behind a sourcetest.Proxy and cut it; for a file, move it away or
//     lock it.
//
// A harness whose store cannot keep every Row field also implements
// Limiter (Asterisk keeps no CSeq).
//
// # What the suite checks
//
// Each subtest starts the adapter's Run with a sink that is a real
// bridge.Bridge (whose clock runs too) plus a recorder, so it checks both
// the batches (first one Full, SeenAt set, no duplicate keys, fields
// decoded exactly, the expiry instant to the second) and the RFC 3680
// events they cause: create, refresh, shorten, delete, every event rule
// of bridge/bridgetest (the table the bridge's own tests apply to it
// directly), expiry passing while
// the row stays, a permanent binding, a bad row skipped and counted
// (Stats().Skipped) while the others survive, and outages: Stats().Up goes
// false during one and true after it, a fresh Full batch follows recovery
// and carries the changes made meanwhile, and the bridge reports exactly
// the real differences (nothing for an unchanged store, unregistered for a
// binding deleted during the outage, one expired, at its expiry instant,
// for one whose expiry passed during it). Run must return nil after its
// context is cancelled. The adapter must implement source.Reporter.
//
// Helpers for adapter tests that need no bridge live in source/sourcetest:
// Proxy (a TCP proxy to cut a server connection), Unavailable (skip, or
// fail when CI is set, when a service is missing) and Eventually.
//
// This package imports both source and bridge: conformance means
// "produces the right events", and only the real bridge can say that. It
// sits outside source/ so that imports below source/ follow the data
// (store -> source -> bridge); only _test.go files import it.
package conformance
