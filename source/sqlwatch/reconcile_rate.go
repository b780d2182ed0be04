package sqlwatch

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Paced reconciles (docs/stores.md#paced-reconciles). The verifying
// reconcile beside a change feed (verify.go) reads the whole table in one
// query: on a busy MariaDB with a million rows that read slowed the
// registrar's own writes for as long as it ran. With reconcile_rate= it
// reads the table in pages instead, in key order: each page one short
// query on the key's index for the keys after the last one of the page
// before ("keyset paging": no OFFSET, no snapshot held between pages), and
// it pauses between pages so that no more than the rate is read per
// second on average. Every row present for the whole scan is read exactly
// once (keys only grow from page to page); a row inserted or deleted
// meanwhile is read at most once, and the feed re-reads it anyway.

// ReconcileRateParam is the source URL parameter that paces the reconcile.
const ReconcileRateParam = "reconcile_rate"

// reconcilePages is how many pages a second a paced scan aims at; a page
// holds rate/reconcilePages rows, within minPage..maxPage.
const (
	reconcilePages = 10
	minPage        = 100
	maxPage        = 5000
)

// parseReconcileRate reads reconcile_rate= (rows per second, a positive
// integer); 0 when absent.
func parseReconcileRate(own url.Values) (int, error) {
	v := own.Get(ReconcileRateParam)
	if !own.Has(ReconcileRateParam) {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < minPage || n > 100_000_000 {
		return 0, fmt.Errorf("%s=%q is not a number of rows per second from %d up (such as 50000); leave it out to read the whole table in one query", ReconcileRateParam, v, minPage)
	}
	if own.Get("cdc") == "" {
		return 0, fmt.Errorf("%s paces the reconcile beside a change feed: add cdc=%s or cdc=%s, or leave it out", ReconcileRateParam, CDCTrigger, CDCLogical)
	}
	return n, nil
}

// scanContext bounds a verifying scan: by the query timeout when it is one
// query; a paced scan bounds each page instead, and may take longer.
func (w *Watcher) scanContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if w.cfg.ReconcileRate > 0 {
		return context.WithCancel(ctx)
	}
	return w.queryContext(ctx)
}

// scanRows reads every row for a verifying reconcile: in pages at
// ReconcileRate when it is set and the session can read parts of the
// table, else in one query.
func (w *Watcher) scanRows(ctx context.Context, s Session, fn func(row []Value)) error {
	p, ok := s.(Partial)
	if w.cfg.ReconcileRate <= 0 || !ok {
		return s.Snapshot(ctx, fn)
	}
	return pagedScan(ctx, p, w.table.Columns[w.table.Key], w.table.Key, w.cfg.ReconcileRate, w.cfg.QueryTimeout, fn)
}

// pagedScan reads the table through p in pages in order of column col
// (the key, at index key of each row), at most rate rows per second on
// average, calling fn for every row; each page must come within timeout.
func pagedScan(ctx context.Context, p Partial, col string, key, rate int, timeout time.Duration, fn func(row []Value)) error {
	page := min(max(rate/reconcilePages, minPage), maxPage)
	order := " ORDER BY " + p.Quote(col) + " LIMIT " + strconv.Itoa(page)
	start, read := time.Now(), 0
	var last []byte
	after := ""
	for {
		cond := "1=1"
		if read > 0 {
			cond = p.Quote(col) + " > '" + after + "'"
		}
		n := 0
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := p.Where(pctx, cond+order, func(row []Value) {
			n++
			last = row[key].AppendText(last[:0])
			fn(row)
		})
		cancel()
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		read += n
		if n < page {
			return nil
		}
		if after = string(last); !SafeKey(after) {
			// Not quotable as a literal: the reconcile fails and the
			// watcher reads the whole table instead (verify.go).
			return fmt.Errorf("key %.40q cannot be paged; %s needs keys SafeKey accepts", after, ReconcileRateParam)
		}
		if d := time.Duration(float64(read)/float64(rate)*float64(time.Second)) - time.Since(start); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
}
