package notifier

import (
	"fmt"
	"net"
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
	t.Run("IPv6 subscriber", func(t *testing.T) {
		// Only a machine without ::1 excuses this: there the kernel has
		// no route to answer with.
		if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
			t.Skipf("no IPv6 loopback on this machine: %v", err)
		} else {
			c.Close()
		}
		if got, want := n.contactFor("UDP", "[::1]:40000", false), "<sip:regbridge@[::1]:5065>"; got != want {
			t.Fatalf("Contact %s, want %s", got, want)
		}
	})

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
