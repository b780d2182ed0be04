package notifier

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/siptest"
)

// TestLeanServerTxContract pins what the parts of sip.ServerTransaction
// that the notifier does not use report to a handler that does use them:
// Done is already closed (a handler waiting on it does not hang), Err is
// nil, Acks is nil, OnTerminate and OnCancel register nothing (false, and
// the callback never runs), and Terminate forgets the transaction, so a
// retransmission reaches the handler again as a new request.
func TestLeanServerTxContract(t *testing.T) {
	var terminated, cancelled atomic.Int32
	var terminate atomic.Bool
	checked := make(chan error, 4)
	h := newUDPSrvHarness(t, func(req *sip.Request, tx sip.ServerTransaction) {
		checked <- func() error {
			select {
			case <-tx.Done():
			case <-time.After(time.Second):
				return fmt.Errorf("Done() is not closed")
			}
			if err := tx.Err(); err != nil {
				return fmt.Errorf("Err() = %v, want nil", err)
			}
			if tx.Acks() != nil {
				return fmt.Errorf("Acks() is not nil")
			}
			if tx.OnTerminate(func(string, error) { terminated.Add(1) }) {
				return fmt.Errorf("OnTerminate registered a callback")
			}
			if tx.OnCancel(func(*sip.Request) { cancelled.Add(1) }) {
				return fmt.Errorf("OnCancel registered a callback")
			}
			return nil
		}()
		answer200(req, tx)
		if terminate.Load() {
			tx.Terminate()
		}
	})
	msg := h.subscribe("z9hG4bKlean1", ";rport")
	exchange := func(what string) {
		t.Helper()
		h.send(t, msg)
		if res := readDatagram(h.peer, 2*time.Second); !bytes.HasPrefix(res, []byte("SIP/2.0 200 OK\r\n")) {
			t.Fatalf("%s: response %q", what, res)
		}
	}
	exchange("first request")
	if err := <-checked; err != nil {
		t.Fatal(err)
	}
	// Without Terminate a retransmission is answered from the table.
	exchange("retransmission")
	if c := h.calls.Load(); c != 1 {
		t.Fatalf("handler ran %d times for a retransmission, want 1", c)
	}

	terminate.Store(true)
	msg = h.subscribe("z9hG4bKlean2", ";rport")
	exchange("request that terminates")
	if err := <-checked; err != nil {
		t.Fatal(err)
	}
	siptest.Eventually(t, func() bool { return h.t.len() == 1 }, "terminated transaction forgotten, the answered one kept")
	exchange("retransmission after Terminate")
	if err := <-checked; err != nil {
		t.Fatal(err)
	}
	if c := h.calls.Load(); c != 3 {
		t.Fatalf("handler ran %d times, want 3 (a retransmission after Terminate is new)", c)
	}
	if terminated.Load() != 0 || cancelled.Load() != 0 {
		t.Errorf("callbacks ran: %d OnTerminate, %d OnCancel", terminated.Load(), cancelled.Load())
	}
}
