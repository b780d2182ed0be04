package notifier

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/render/xmlcheck"
	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// rawSubscribe builds a SUBSCRIBE by hand so that tests can break it in
// ways no SIP stack would.
func rawSubscribe(local, ruri, extra string, callID int) string {
	return fmt.Sprintf("SUBSCRIBE %s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-hostile-%d;rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:mallory@example.com>;tag=m%d\r\n"+
		"To: <sip:alice@example.com>\r\n"+
		"Call-ID: hostile-%d@example.com\r\n"+
		"CSeq: 1 SUBSCRIBE\r\n"+
		"Contact: <sip:mallory@%s>\r\n"+
		"%s"+
		"Content-Length: 0\r\n\r\n", ruri, local, callID, callID, callID, local, extra)
}

// rawPeer is a hand-rolled UDP subscriber: it answers every NOTIFY with
// 200 (echoing the headers RFC 3261 8.2.6.2 copies) and hands every
// response's status line to exchange.
type rawPeer struct {
	conn      *net.UDPConn
	responses chan string
	raw       chan string // every response in full, for tests that parse them
}

func newRawPeer(t *testing.T) *rawPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{conn: conn, responses: make(chan string, 4096), raw: make(chan string, 4096)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg := string(buf[:n])
			line, rest, _ := strings.Cut(msg, "\r\n")
			if strings.HasPrefix(line, "SIP/2.0 ") {
				select {
				case p.responses <- strings.TrimPrefix(line, "SIP/2.0 "):
				default:
				}
				select {
				case p.raw <- msg:
				default:
				}
				continue
			}
			if strings.HasPrefix(line, "NOTIFY ") {
				var b strings.Builder
				b.WriteString("SIP/2.0 200 OK\r\n")
				for _, h := range strings.Split(rest, "\r\n") {
					name, _, _ := strings.Cut(h, ":")
					switch strings.ToLower(strings.TrimSpace(name)) {
					case "via", "v", "from", "f", "to", "t", "call-id", "i", "cseq":
						b.WriteString(h + "\r\n")
					}
				}
				b.WriteString("Content-Length: 0\r\n\r\n")
				conn.WriteToUDP([]byte(b.String()), from)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return p
}

// exchange sends one datagram and returns the status line of the first
// response, or "" when none comes within d.
func (p *rawPeer) exchange(to string, msg string, d time.Duration) string {
	addr, _ := net.ResolveUDPAddr("udp", to)
	if _, err := p.conn.WriteToUDP([]byte(msg), addr); err != nil {
		return "write failed: " + err.Error()
	}
	select {
	case r := <-p.responses:
		<-p.raw
		return r
	case <-time.After(d):
		return ""
	}
}

// TestHostileInput tries malformed and malicious SUBSCRIBEs over a real
// socket. Each gets a clear answer (or, where the message cannot be
// parsed as SIP at all, none), creates no subscription, and a well-behaved
// subscriber on the same server is served normally afterwards; the
// goroutine count returns to where it was.
func TestHostileInput(t *testing.T) {
	hostileContact := tAlice
	hostileContact.Key, hostileContact.URI = "uloc-x", `sip:x@192.0.2.9;a="<b>&'c'"`
	hostileContact.UserAgent = "\x00\x01<script>&amp;\"'\xff\xfe"
	h := newHarness(t, Config{}, tAlice, hostileContact)
	raw := newRawPeer(t)
	local := raw.conn.LocalAddr().String()
	server := h.addr("udp")
	baseline := runtime.NumGoroutine()

	tests := []struct {
		name string
		msg  string
		want string // status code prefix; "" means no response expected
	}{
		{"negative Expires", rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\nExpires: -5\r\n", 1), "400"},
		{"huge Expires", rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\nExpires: 99999999999999\r\n", 2), "400"},
		{"Expires not a number", rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\nExpires: 1e3\r\n", 3), "400"},
		{"duplicated Event", rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\nEvent: reg\r\n", 4), "489"},
		{"Event list", rawSubscribe(local, "sip:alice@example.com", "Event: reg, presence\r\n", 5), "489"},
		{"Event with a thousand parameters", rawSubscribe(local, "sip:alice@example.com", "Event: reg"+strings.Repeat(";p=1", 1000)+"\r\nExpires: 0\r\n", 6), "200"},
		{"oversized header (40 KB, over the read buffer)", rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\nX-Junk: "+strings.Repeat("A", 40000)+"\r\n", 7), ""},
		{"SQL in the AOR", rawSubscribe(local, "sip:'%3B%20DROP%20TABLE%20location%3B--@example.com", "Event: reg\r\nExpires: 0\r\n", 8), "200"},
		{"XML in the AOR", rawSubscribe(local, "sip:a%3Cb%3E%26@example.com", "Event: reg\r\nExpires: 0\r\n", 9), "200"},
		{"garbage request line", "SUBSCRIBE\r\n\r\n", ""},
		{"binary noise", "\x00\xff\x13\x37" + strings.Repeat("\x00", 100), ""},
		{"no Call-ID", strings.Replace(rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\n", 10), "Call-ID: hostile-10@example.com\r\n", "", 1), "400"},
		{"body without a type we read", strings.Replace(rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\nContent-Type: application/x-evil\r\n", 11), "Content-Length: 0\r\n\r\n", "Content-Length: 5\r\n\r\nhello", 1), "415"},
		{"Contact missing", strings.Replace(rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\n", 12), "Contact: <sip:mallory@"+local+">\r\n", "", 1), "400"},
	}
	var table strings.Builder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := raw.exchange(server, tt.msg, 500*time.Millisecond)
			fmt.Fprintf(&table, "| %s | %s |\n", tt.name, orNone(got))
			if tt.want == "" && got != "" || !strings.HasPrefix(got, tt.want) {
				t.Fatalf("response %q, want %q", got, orNone(tt.want))
			}
		})
	}

	// A flood from one source: answered (limits live in the guards; here
	// none are configured). UDP may drop some of the flood in the socket
	// buffers, but every answer that comes is a well-formed 489 to one of
	// the flood's requests, each answered once, and the flooded socket is
	// served normally afterwards.
	const flood = 2000
	start := time.Now()
	addr, _ := net.ResolveUDPAddr("udp", server)
	for i := range flood {
		raw.conn.WriteToUDP([]byte(rawSubscribe(local, "sip:alice@example.com", "Event: presence-nope\r\n", 1000+i)), addr)
	}
	answered := map[string]bool{}
	for quiet := false; !quiet; {
		select {
		case msg := <-raw.raw:
			<-raw.responses
			m, err := sip.ParseMessage([]byte(msg))
			res, ok := m.(*sip.Response)
			if err != nil || !ok {
				t.Fatalf("answer to the flood is not a SIP response (%v):\n%s", err, msg)
			}
			id := res.CallID().Value()
			var n int
			if _, err := fmt.Sscanf(id, "hostile-%d@example.com", &n); err != nil || n < 1000 || n >= 1000+flood {
				t.Fatalf("answer to a request the flood did not send: Call-ID %q", id)
			}
			if res.StatusCode != 489 {
				t.Fatalf("flood request %s answered %d %s, want 489", id, res.StatusCode, res.Reason)
			}
			if answered[id] {
				t.Fatalf("flood request %s answered twice", id)
			}
			answered[id] = true
		case <-time.After(time.Second):
			quiet = true
		}
	}
	if len(answered) == 0 {
		t.Fatalf("none of %d flood requests answered", flood)
	}
	if got := raw.exchange(server, rawSubscribe(local, "sip:alice@example.com", "Event: reg\r\nExpires: 0\r\n", 9000), 2*time.Second); !strings.HasPrefix(got, "200") {
		t.Fatalf("the flooded socket after the flood: %q, want a 200 to a fetch", orNone(got))
	}
	fmt.Fprintf(&table, "| flood of %d bad SUBSCRIBEs in %v | %d answered 489, none twice; the socket is then served |\n",
		flood, time.Since(start).Round(time.Millisecond), len(answered))

	// A well-behaved subscriber is served normally, and sees the hostile
	// store values escaped in a document that validates.
	p := siptest.New(t, "tcp", h.addr("tcp"))
	if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("normal SUBSCRIBE after the hostile ones: %d", res.StatusCode)
	}
	n := p.Next()
	if len(n.Doc.Registrations[0].Contacts) != 2 {
		t.Fatalf("full state: %s", n.Req.Body())
	}
	xmlcheck.Validate(t, xmlcheck.Reginfo, n.Req.Body())
	h.br.Apply(t.Context(), source.Batch{Full: true, Contacts: []source.Contact{tAlice}})
	p.Next()

	// Nothing was left behind by the hostile requests: only the fetches
	// (Expires 0) and the normal subscription ever existed.
	siptest.Eventually(t, func() bool { return h.n.Count() == 1 }, "only the normal subscription left")
	siptest.EventuallyWithin(t, 40*time.Second, func() bool { return runtime.NumGoroutine() <= baseline+20 },
		fmt.Sprintf("goroutines back near %d", baseline))
	t.Logf("hostile inputs and outcomes:\n| input | response |\n|---|---|\n%s", table.String())
}

func orNone(s string) string {
	if s == "" {
		return "(no response)"
	}
	return s
}
