package sourcetest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to a store server so that a test can cut
// the adapter off for real: Break closes every open connection and makes
// new ones close as soon as they are accepted (the client sees EOF or a
// reset, as when the server goes away); Restore lets connections through
// again. Point the adapter at Addr and the harness's own writer straight
// at the server.
type Proxy struct {
	target string
	ln     net.Listener

	// connsMu guards conns, broken and refusing.
	connsMu  sync.Mutex
	conns    map[net.Conn]struct{}
	broken   bool
	refusing bool
	accepted int // client connections let through

	wg sync.WaitGroup
}

// NewProxy listens on a free loopback port and forwards to target
// (host:port). It stops in t.Cleanup.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &Proxy{target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the host:port to give the adapter.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Break cuts every connection and refuses new ones until Restore.
func (p *Proxy) Break() {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	p.broken = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (p *Proxy) Restore() {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	p.broken = false
}

// RefuseNew closes new connections as soon as they are accepted (on) or
// lets them through again (off); open connections are left alone, as
// when a server reaches its connection limit.
func (p *Proxy) RefuseNew(on bool) {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	p.refusing = on
}

// Accepted is the number of client connections let through so far.
func (p *Proxy) Accepted() int {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	return p.accepted
}

func (p *Proxy) close() {
	p.ln.Close()
	p.Break()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		if !p.admit(c) {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.forward(c)
	}
}

// track registers c unless the proxy is broken.
func (p *Proxy) track(c net.Conn) bool {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	if p.broken {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

// admit registers a new client connection unless the proxy is broken or
// refusing new ones.
func (p *Proxy) admit(c net.Conn) bool {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	if p.broken || p.refusing {
		return false
	}
	p.conns[c] = struct{}{}
	p.accepted++
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	delete(p.conns, c)
	c.Close()
}

func (p *Proxy) forward(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		server.Close()
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Either direction ending ends the pair, like a dropped link.
		dst.Close()
		src.Close()
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}
