// Package sourcetest holds helpers for source adapter tests that need
// nothing above source/: Proxy (a TCP proxy to cut a server connection),
// Unavailable (skip, or fail when CI is set, when a service is missing),
// Eventually and Pick. It is test support: production packages never
// import it. The conformance suite, which runs an adapter into a real
// bridge, is internal/conformance.
package sourcetest
