package sqlwatch

import (
	"context"
	"fmt"
	"time"
)

// A watcher configured for cdc=trigger polls while the triggers are
// missing. `regbridge cdc install` run against it later must take effect
// without a restart, so the polling session looks for the triggers again
// now and then and, once they are there, ends so that the next session
// (opened at once) reads the change feed.

// captureRecheck is how often a polling session looks for the triggers
// (besides every reconcile): one connection and one catalogue query,
// only while cdc=trigger is configured and not installed.
const captureRecheck = 10 * time.Second

// errCaptureReady ends a polling session whose triggers appeared; Run
// reopens at once, without an outage.
var errCaptureReady = fmt.Errorf("change capture triggers installed: %w", ErrReopen)

// captureAppeared reports whether the triggers that a polling session
// under cdc=trigger lacked are installed now.
func (w *Watcher) captureAppeared(ctx context.Context) bool {
	if w.cfg.CDC != CDCTrigger || w.cdcRunning {
		return false
	}
	c, ok := w.dialect.(Capturer)
	if !ok {
		return false
	}
	qctx, cancel := w.queryContext(ctx)
	defer cancel()
	f, err := c.OpenFeed(qctx, &w.table, &w.cfg)
	if err != nil {
		return false // still missing, or the store is down: the poll says
	}
	f.Close()
	w.log.Info("change capture triggers found; switching from polling to the change feed")
	return true
}
