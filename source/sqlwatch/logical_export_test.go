package sqlwatch

import "testing"

// SetSlotLagSQL makes the watchers read a slot's lag with q (which must
// answer as slotLagSQL does) until the test ends: the real-server tests
// of package sqlwatch_test use it to make that query wait.
func SetSlotLagSQL(t testing.TB, q string) {
	old := slotLagSQL
	slotLagSQL = q
	t.Cleanup(func() { slotLagSQL = old })
}
