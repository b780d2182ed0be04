package notifier

import (
	"fmt"
	"strings"
	"testing"
)

// TestContactOnWildcardListener: a listener on 0.0.0.0 or :: gives a
// Contact with the address that routes to the subscriber, asked of the
// kernel once per subscriber address while it is cached.
func TestContactOnWildcardListener(t *testing.T) {
	n := &Notifier{bound: []ListenAddr{{"udp", "0.0.0.0:5065"}, {"udp", "[::]:5065"}}}
	dials := 0
	n.localRoutes.dial = func(source string) (string, error) {
		dials++
		return dialRoute(source)
	}
	for range 3 {
		if got, want := n.contactFor("UDP", "127.0.0.1:40000", false), "<sip:regbridge@127.0.0.1:5065>"; got != want {
			t.Fatalf("IPv4 subscriber: Contact %s, want %s", got, want)
		}
	}
	if dials != 1 {
		t.Errorf("%d route lookups for one subscriber address, want 1", dials)
	}
	if got := n.contactFor("UDP", "[::1]:40000", false); got != "<sip:regbridge@[::1]:5065>" {
		if strings.Contains(got, "[::]") {
			t.Fatalf("IPv6 subscriber: Contact %s names the wildcard", got)
		}
		t.Logf("IPv6 subscriber: %s (no IPv6 loopback route here?)", got)
	}

	// The cache starts over when full instead of growing.
	for i := range routeCacheMax + 10 {
		if _, ok := n.localRoutes.local(fmt.Sprintf("127.%d.%d.1:1", i/256, i%256)); !ok {
			t.Fatalf("no route to 127.%d.%d.1", i/256, i%256)
		}
	}
	n.localRoutes.mu.Lock()
	size := len(n.localRoutes.m)
	n.localRoutes.mu.Unlock()
	if size > routeCacheMax || size < 10 {
		t.Errorf("route cache holds %d entries after %d addresses, want 10 to %d", size, routeCacheMax+10, routeCacheMax)
	}
}
