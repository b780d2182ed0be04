package sourcetest

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// WaitTimeout bounds every Eventually. Generous on purpose: the suite runs
// under -race on shared, busy machines; a passing wait returns at once.
const WaitTimeout = 20 * time.Second

// Eventually polls cond every few milliseconds until it holds, and fails
// the test naming what it waited for when WaitTimeout passes first.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", WaitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Unavailable ends a test that needs a service it cannot reach. Under
// CI set (where every service runs) that is a failure; elsewhere the test
// is skipped. hint says how to start the service.
func Unavailable(t testing.TB, service string, err error, hint string) {
	t.Helper()
	msg := fmt.Sprintf("%s unreachable: %v (start it: %s)", service, err, hint)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; required when CI is set")
	}
	t.Skip(msg)
}

// Pick turns a fuzzed selector into one of the value kinds a database
// driver can return for a column: NULL, text, a float, an integer or
// bytes.
func Pick(kind uint8, s string, f float64, i int64) any {
	switch kind % 5 {
	case 0:
		return nil
	case 1:
		return s
	case 2:
		return f
	case 3:
		return i
	default:
		return []byte(s)
	}
}
