package notifier

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
)

// BenchmarkSubscriptionMemory reports the live heap one subscription costs
// once its SUBSCRIBE transaction is over
// (docs/performance.md#what-memory-costs: bytes per subscription), and what
// each SUBSCRIBE transaction holds until Timer J ends it (B/held-transaction:
// the cost of a burst, rate x 32 s of them). Each op is one subscription to
// its own AOR, made over loopback UDP by a raw subscriber that answers every
// NOTIFY. Run with -benchtime=20000x for a stable figure.
func BenchmarkSubscriptionMemory(b *testing.B) {
	br := bridge.New(testLog())
	n, err := New(Config{Listen: ListenAddrs{{"udp", "127.0.0.1:0"}}, Drain: 100 * time.Millisecond}, br, testLog())
	if err != nil {
		b.Fatal(err)
	}
	n.udpSrv.linger = time.Hour // held until the benchmark ends them
	br.Subscribe(n)
	if err := br.Apply(b.Context(), source.Batch{Full: true}); err != nil {
		b.Fatal(err)
	}
	if err := n.Listen(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() { cancel(); <-done }()

	server, _ := net.ResolveUDPAddr("udp", n.Addrs()[0].Addr)
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()
	peer.SetReadBuffer(udpBufferBytes)
	self := peer.LocalAddr().String()

	// The subscriber: answers NOTIFYs, counts 200s to SUBSCRIBE.
	accepted := make(chan struct{}, 1024)
	go func() {
		buf := make([]byte, 65535)
		for {
			k, from, err := peer.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m, err := sip.ParseMessage(bytes.Clone(buf[:k]))
			if err != nil {
				continue
			}
			switch m := m.(type) {
			case *sip.Request:
				res := sip.NewResponseFromRequest(m, 200, "OK", nil)
				peer.WriteToUDP([]byte(res.String()), from)
			case *sip.Response:
				if m.StatusCode == 200 {
					accepted <- struct{}{}
				}
			}
		}
	}()

	settle := func() uint64 {
		time.Sleep(200 * time.Millisecond) // the last NOTIFYs' 200s
		var ms runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := settle()
	b.ResetTimer()
	const window = 64
	inflight := 0
	for i := 0; i < b.N; i++ {
		msg := fmt.Sprintf("SUBSCRIBE sip:u%d@example.com SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;rport;branch=z9hG4bKmem%d\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:watcher%d@example.com>;tag=f%d\r\n"+
			"To: <sip:u%d@example.com>\r\n"+
			"Call-ID: mem%d@bench.invalid\r\n"+
			"CSeq: 1 SUBSCRIBE\r\n"+
			"Contact: <sip:watcher%d@%s>\r\n"+
			"Event: reg\r\nAccept: application/reginfo+xml\r\nExpires: 3600\r\n"+
			"Content-Length: 0\r\n\r\n", i, self, i, i, i, i, i, i, self)
		if _, err := peer.WriteToUDP([]byte(msg), server); err != nil {
			b.Fatal(err)
		}
		inflight++
		for inflight >= window {
			<-accepted
			inflight--
		}
	}
	for ; inflight > 0; inflight-- {
		select {
		case <-accepted:
		case <-time.After(10 * time.Second):
			b.Fatalf("%d SUBSCRIBEs unanswered", inflight)
		}
	}
	b.StopTimer()
	for end := time.Now().Add(5 * time.Second); n.Count() != b.N && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := n.Count(); got != b.N {
		b.Fatalf("%d subscriptions, want %d", got, b.N)
	}
	held := settle()
	if got := n.udpSrv.len(); got != b.N {
		b.Fatalf("%d SUBSCRIBE transactions held, want %d", got, b.N)
	}
	n.udpSrv.sweepAt(time.Now().Add(2 * time.Hour)) // Timer J, for all
	if got := n.udpSrv.len(); got != 0 {
		b.Fatalf("%d SUBSCRIBE transactions left after Timer J", got)
	}
	after := settle()
	b.ReportMetric(float64(after-before)/float64(b.N), "B/subscription")
	b.ReportMetric(float64(held-after)/float64(b.N), "B/held-transaction")
}
