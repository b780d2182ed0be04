package sqlwatch

import (
	"context"
	"fmt"
)

// Incremental reads (docs/stores.md#sql-servers): when the fingerprint moved,
// a server table with a modification column (Table.Modified) is first read
// only where that column is at or after the newest value seen minus
// incrementalSlack (one scan in the server, but few rows decoded and sent).
// Deletes are invisible to it, so when the row count or hash sum of the state
// still differs from the server's, an index-only scan of the keys finds the
// keys gone. If the state's rows and hash sum then still differ from the
// server's aggregate (an UPDATE that left last_modified alone, a row inserted
// with an old time), the watcher falls back to a full read at once. All of it
// runs in one REPEATABLE READ transaction, so the aggregate and the rows
// describe the same state of the table.

func mapHas(m map[string]struct{}, k string) bool {
	_, ok := m[k]
	return ok
}

// incrementalSlack covers last_modified's 1 s resolution and writers whose
// commits land out of order with their timestamps.
const incrementalSlack = 2e9 // 2 s

// incremental brings the state up to date from the rows that changed and
// returns the server's fingerprint; ok is false when only a full read can
// (the state may then be partly updated: the full read replaces it).
func (w *Watcher) incremental(ctx context.Context, p Partial) (fp string, ok bool, err error) {
	st := &w.snap
	if w.cfg.FullReads || st.modIdx < 0 || !st.hashed || st.maxMod.Kind == Null {
		return "", false, nil
	}
	cond, ok := p.Since(w.table.Modified, &st.maxMod, incrementalSlack)
	if !ok {
		return "", false, nil
	}
	qctx, cancel := w.queryContext(ctx)
	defer cancel()
	w.polls.Add(1)
	st.beginStep()
	exact := true
	var rows, sum int64
	err = p.Consistent(qctx, func() error {
		var err error
		if rows, sum, err = p.Aggregate(qctx); err != nil {
			return err
		}
		if err := p.Where(qctx, cond, func(row []Value) { st.merge(row, false, w) }); err != nil {
			return err
		}
		if n, s := st.aggregate(); n == rows && s == sum {
			return nil
		}
		present := make(map[string]struct{}, rows)
		err = p.Keys(qctx, func(k []byte) {
			if !st.known(k) {
				exact = false // a row the modification time did not show
			}
			present[string(k)] = struct{}{}
		})
		if err != nil || !exact {
			return err
		}
		var gone []string
		for i := range int32(len(st.rows)) {
			if k := st.rawOf(i); !mapHas(present, k) {
				gone = append(gone, k)
			}
		}
		for k := range st.bad {
			if _, ok := present[k]; !ok {
				gone = append(gone, k)
			}
		}
		for _, k := range gone {
			st.forget(k)
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("reading changes of %s: %w", w.table.Name, err)
	}
	if n, s := st.aggregate(); !exact || n != rows || s != sum {
		st.abandonStep()
		return "", false, nil
	}
	return fmt.Sprintf("%d,%d,", rows, sum), true, nil
}
