package main

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// TestSIPLoggerSwaps: a logger sipgo took before a second serve installed
// its own (as a TCP reader outliving its server does) writes to the new
// one, with the attributes it added, and swapping while it logs is not a
// data race (run with -race).
func TestSIPLoggerSwaps(t *testing.T) {
	var first, second bytes.Buffer
	var mu sync.Mutex // guards both buffers
	logger := func(b *bytes.Buffer) *slog.Logger {
		return slog.New(slog.NewTextHandler(lockedWriter{&mu, b}, nil)).With("component", "sipgo")
	}
	setSIPLogger(logger(&first))
	taken := sip.DefaultLogger().With("caller", "TransportLayer")
	taken.Info("one")

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			taken.Debug("busy")
		}
	}()
	setSIPLogger(logger(&second))
	wg.Wait()
	taken.Info("two")

	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(first.String(), "msg=one component=sipgo caller=TransportLayer") {
		t.Errorf("first logger: %q", first.String())
	}
	if !strings.Contains(second.String(), "msg=two component=sipgo caller=TransportLayer") || strings.Contains(second.String(), "msg=one") {
		t.Errorf("second logger: %q", second.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
