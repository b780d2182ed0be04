package notifier

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readSIP reads one SIP message from a stream: its start line and headers
// (canonical names) and its body.
func readSIP(t *testing.T, c net.Conn, r *bufio.Reader) (string, textproto.MIMEHeader, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	tp := textproto.NewReader(r)
	start, err := tp.ReadLine()
	if err != nil {
		t.Fatalf("reading a SIP message: %v", err)
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("reading headers after %q: %v", start, err)
	}
	n, _ := strconv.Atoi(hdr.Get("Content-Length"))
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatalf("reading a %d-byte body: %v", n, err)
	}
	return start, hdr, string(body)
}

// answerNotify answers a NOTIFY read from c.
func answerNotify(t *testing.T, c net.Conn, hdr textproto.MIMEHeader) {
	t.Helper()
	res := "SIP/2.0 200 OK\r\n"
	for _, k := range []string{"Via", "From", "To", "Call-Id", "Cseq"} {
		for _, v := range hdr.Values(k) {
			res += k + ": " + v + "\r\n"
		}
	}
	if _, err := c.Write([]byte(res + "Content-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
}

// TestNotifyAfterConnectionLost: a TCP subscriber whose connection is gone
// (it closed an idle one, as Kamailio does after 120 s) gets the next
// NOTIFY on a new connection to its Contact, not to the source port of the
// old connection, which nothing listens on.
func TestNotifyAfterConnectionLost(t *testing.T) {
	h := newHarness(t, Config{}, tAlice)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", h.addr("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().String()
	fmt.Fprintf(c, "SUBSCRIBE sip:alice@example.com SIP/2.0\r\n"+
		"Via: SIP/2.0/TCP %s;branch=z9hG4bK-flow-1\r\n"+
		"From: <sip:proxy@example.com>;tag=flow1\r\nTo: <sip:alice@example.com>\r\n"+
		"Call-ID: flow-1@test\r\nCSeq: 1 SUBSCRIBE\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:proxy@%s;transport=tcp>\r\nEvent: reg\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
		local, ln.Addr())
	r := bufio.NewReader(c)
	if start, _, _ := readSIP(t, c, r); !strings.HasPrefix(start, "SIP/2.0 200") {
		t.Fatalf("SUBSCRIBE answered %q", start)
	}
	start, hdr, body := readSIP(t, c, r)
	if !strings.HasPrefix(start, "NOTIFY ") || !strings.Contains(body, `version="0"`) {
		t.Fatalf("first NOTIFY: %q\n%s", start, body)
	}
	answerNotify(t, c, hdr)
	c.Close()
	// The server side of the closed connection is dropped once sipgo
	// reads the end of the stream; give it a moment by waiting for the
	// pool to forget it.
	deadline := time.Now().Add(5 * time.Second)
	for h.n.hasConnection("TCP", local) {
		if time.Now().After(deadline) {
			t.Fatal("sipgo still holds the closed connection")
		}
		time.Sleep(10 * time.Millisecond)
	}

	other := tAlice
	other.Key, other.URI, other.CallID = "uloc-2", "sip:alice@192.0.2.11:5060", "c2"
	apply(t, h, fresh(other))
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	c2, err := ln.Accept()
	if err != nil {
		t.Fatalf("no connection to the Contact: %v", err)
	}
	defer c2.Close()
	start, hdr, body = readSIP(t, c2, bufio.NewReader(c2))
	if !strings.HasPrefix(start, "NOTIFY sip:proxy@"+ln.Addr().String()) || !strings.Contains(body, `version="1"`) || hdr.Get("Call-Id") != "flow-1@test" {
		t.Fatalf("NOTIFY after the connection was lost: %q %v\n%s", start, hdr, body)
	}
	answerNotify(t, c2, hdr)
}
