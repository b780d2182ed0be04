package siptest

import (
	"net"
	"testing"
)

// ListenPair binds a UDP socket and a TCP listener on one port of ip that
// is free for both, as a phone that takes large requests over TCP at its
// UDP address does (RFC 3261 18.1.1). A port the kernel picks for UDP can
// be in use over TCP (another process's outgoing connection, say), so
// ports are tried until one fits.
func ListenPair(t testing.TB, ip string) (*net.UDPConn, net.Listener) {
	t.Helper()
	var last error
	for range 50 {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc.(*net.UDPConn), ln
		}
		pc.Close()
		last = err
	}
	t.Fatalf("no port of %s free for both UDP and TCP: %v", ip, last)
	return nil, nil
}
