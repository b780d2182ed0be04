package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHTTPStalledClientsClosed: 50 clients over real TCP send a request's
// headers and part of its body, then stall. Each connection is closed
// within the read timeout (plus scheduling slack); an idle kept-alive
// connection is closed after the idle timeout; and the event stream, which
// sets its own write deadlines, outlives both the read and the write
// timeout and still delivers events.
func TestHTTPStalledClientsClosed(t *testing.T) {
	const timeout = time.Second
	s := startServer(t, "", map[string]string{
		"REGBRIDGE_HTTP_READ_TIMEOUT":  timeout.String(),
		"REGBRIDGE_HTTP_WRITE_TIMEOUT": timeout.String(),
		"REGBRIDGE_HTTP_IDLE_TIMEOUT":  timeout.String(),
	})
	es := openEvents(t, s, "")

	const clients = 50
	start := time.Now()
	var wg sync.WaitGroup
	held := make(chan string, clients)
	for i := range clients {
		c, err := net.Dial("tcp", s.http)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "POST /v1/log-level HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"level\":", s.http)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The server may answer 400 before closing; what matters is
			// that it closes. A connection still open after 5 timeouts is
			// held.
			c.SetReadDeadline(start.Add(5 * timeout))
			if _, err := io.Copy(io.Discard, c); err != nil {
				held <- fmt.Sprintf("client %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	close(held)
	var stuck []string
	for h := range held {
		stuck = append(stuck, h)
	}
	elapsed := time.Since(start)
	t.Logf("%d of %d stalled clients still held after %v", len(stuck), clients, elapsed.Round(time.Millisecond))
	if len(stuck) > 0 {
		t.Fatalf("%d of %d stalled clients held:\n%s", len(stuck), clients, strings.Join(stuck, "\n"))
	}
	if elapsed > timeout+2*time.Second {
		t.Errorf("stalled clients closed after %v, want within %v plus slack", elapsed, timeout)
	}

	// A kept-alive connection with no next request is closed.
	c, err := net.Dial("tcp", s.http)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", s.http)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET /healthz: %v", err)
	}
	io.Copy(io.Discard, res.Body)
	idle := time.Now()
	c.SetReadDeadline(idle.Add(5 * timeout))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle kept-alive connection: %v, want it closed (EOF)", err)
	}
	if d := time.Since(idle); d > timeout+2*time.Second {
		t.Errorf("idle connection closed after %v, want about %v", d, timeout)
	}

	// The event stream opened before all this is still open, past the
	// read and the write timeout, and delivers.
	s.insert(t, "uloc-1", "alice", "sip:alice@192.0.2.10:5060", time.Now().Add(time.Hour), "call-1", 1)
	if e := es.next(); e.Event != "registered" {
		t.Fatalf("event stream after %v: %+v", time.Since(start), e)
	}
}
