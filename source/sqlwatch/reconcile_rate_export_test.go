package sqlwatch

import (
	"context"
	"net/url"
	"time"
)

// PagedScan and ParseReconcileRate are reconcile_rate.go's pagedScan and
// parseReconcileRate for the real-server tests of package sqlwatch_test.
func PagedScan(ctx context.Context, p Partial, col string, key, rate int, fn func(row []Value)) error {
	return pagedScan(ctx, p, col, key, rate, 10*time.Second, fn)
}

func ParseReconcileRate(own url.Values) (int, error) { return parseReconcileRate(own) }
