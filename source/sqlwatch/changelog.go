package sqlwatch

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The changelog feed of cdc=trigger, the same for MySQL/MariaDB and
// PostgreSQL: triggers append (seq, tbl, op, k, ts) to Changelog; the feed
// reads it by sequence number every ChangelogPoll (a range read on the
// primary key) and prunes rows it has read once they are
// ChangelogRetention old (docs/stores.md#change-capture-cdctrigger). The
// registrar's transactions only insert a row: nothing in them waits for
// another transaction's commit.

// Changelog is the table the triggers write.
const Changelog = "regbridge_changelog"

const (
	// prunePeriod is how often read changelog rows are pruned.
	prunePeriod = 10 * time.Second
	// pruneChunk bounds one DELETE (short locks on a table the
	// registrar's transactions insert into), pruneChunks one pruning.
	pruneChunk  = 1000
	pruneChunks = 20
	// holeWait is how long a missing sequence number holds the read
	// position back: AUTO_INCREMENT and PostgreSQL sequences hand out
	// numbers at INSERT, not at COMMIT, so a row may appear behind rows
	// already read (a transaction committing late). After holeWait the
	// number is taken as rolled back.
	holeWait = time.Second
)

// changelogSQL are a dialect's queries of the changelog; each takes one
// argument, a sequence number.
type changelogSQL struct {
	// next reads (seq, tbl, k) after $1 in order, at most maxFeedKeys.
	next string
	// max is the highest seq (0 when empty); it takes no argument.
	max string
	// prune deletes at most pruneChunk rows up to seq $1 older than the
	// retention.
	prune string
}

// changelogFeed reads the changelog rows of one table. Every row up to
// low has been read (or its number was skipped for longer than holeWait);
// seen holds the numbers read above low, last is the highest.
type changelogFeed struct {
	db         *sql.DB
	q          changelogSQL
	table      string
	poll, keep time.Duration
	low, last  uint64
	seen       map[uint64]struct{}
	holeSince  time.Time
	pruned     time.Time
}

// openChangelogFeed starts f at the changelog's newest row; it closes db
// when that fails.
func openChangelogFeed(ctx context.Context, db *sql.DB, q changelogSQL, t *Table, cfg *Config) (Feed, error) {
	f := &changelogFeed{db: db, q: q, table: t.Name, poll: cfg.ChangelogPoll, keep: cfg.ChangelogRetention,
		pruned: time.Now(), seen: make(map[uint64]struct{})}
	var err error
	if f.last, err = f.max(ctx); err != nil {
		db.Close()
		return nil, err
	}
	f.low = f.last
	return f, nil
}

func (f *changelogFeed) max(ctx context.Context) (uint64, error) {
	var n uint64
	err := f.db.QueryRowContext(ctx, f.q.max).Scan(&n)
	return n, err
}

// Next waits one ChangelogPoll and reads the changelog rows after the
// last one read (no keys: nothing new).
func (f *changelogFeed) Next(ctx context.Context) ([]string, bool, error) {
	t := time.NewTimer(f.poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case <-t.C:
	}
	keys, err := f.read(ctx)
	if err != nil || len(keys) > 0 {
		return keys, false, err
	}
	// Nothing new. A changelog emptied by hand, or a sequence restarted
	// below our position, may hide changes: report a gap.
	max, err := f.max(ctx)
	if err != nil {
		return nil, false, err
	}
	if max < f.last {
		f.low, f.last = max, max
		clear(f.seen)
		return nil, true, nil
	}
	if time.Since(f.pruned) >= min(prunePeriod, f.keep) {
		if err := f.prune(ctx); err != nil {
			return nil, false, err
		}
	}
	return nil, false, nil
}

func (f *changelogFeed) read(ctx context.Context) ([]string, error) {
	rows, err := f.db.QueryContext(ctx, f.q.next, f.low)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []string
	low, hole := f.low, false
	for rows.Next() {
		var seq uint64
		var tbl, k string
		if err := rows.Scan(&seq, &tbl, &k); err != nil {
			return nil, err
		}
		switch {
		case !hole && seq == low+1:
			low = seq
		default:
			hole = true
		}
		f.last = max(f.last, seq)
		if _, ok := f.seen[seq]; ok {
			continue
		}
		f.seen[seq] = struct{}{}
		if tbl == f.table {
			keys = append(keys, k)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	switch {
	case !hole:
		f.holeSince = time.Time{}
	case f.holeSince.IsZero():
		f.holeSince = time.Now()
	case time.Since(f.holeSince) >= holeWait:
		low, f.holeSince = f.last, time.Time{}
	}
	f.low = low
	for seq := range f.seen {
		if seq <= low {
			delete(f.seen, seq)
		}
	}
	return keys, nil
}

// prune deletes read rows older than the retention, in small chunks.
func (f *changelogFeed) prune(ctx context.Context) error {
	f.pruned = time.Now()
	for range pruneChunks {
		res, err := f.db.ExecContext(ctx, f.q.prune, f.low)
		if err != nil {
			return fmt.Errorf("pruning %s: %w", Changelog, err)
		}
		if n, _ := res.RowsAffected(); n < pruneChunk {
			break
		}
	}
	return nil
}

func (f *changelogFeed) Close() error { return f.db.Close() }
