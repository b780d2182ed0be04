package redis

import (
	"context"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/source"
)

const (
	// scanCount is SCAN's COUNT hint: large enough that a snapshot of
	// 10^5 keys takes about a hundred round trips, small enough that each
	// call stays well under a millisecond of server time.
	scanCount = 1000
	// readBatch is how many HGETALLs go in one pipeline.
	readBatch = 500
	// maxLoggedBad caps the memory that keeps bad entries from being
	// logged again at every snapshot.
	maxLoggedBad = 10000
)

// snapshot reads every binding and delivers a Full batch.
func (w *Watcher) snapshot(ctx context.Context, rdb *goredis.Client, sink source.Sink) error {
	w.polls.Add(1)
	seenAt := time.Now()
	keys, err := w.scan(ctx, rdb)
	if err != nil {
		return fmt.Errorf("scanning %s: %w", w.pattern, err)
	}
	w.bad.begin()
	w.contacts = w.contacts[:0]
	err = w.read(ctx, rdb, keys, nil)
	w.bad.end(err == nil)
	if err != nil {
		return err
	}
	err = sink.Apply(ctx, source.Batch{Full: true, Contacts: w.contacts, SeenAt: seenAt})
	w.release()
	if err != nil {
		return &sinkError{err}
	}
	w.lastFull.Store(time.Now().UnixNano())
	return nil
}

// changes reads the given keys and delivers what it found as a non-Full
// batch: present and valid entries as Contacts, missing or bad ones as
// Deleted.
func (w *Watcher) changes(ctx context.Context, rdb *goredis.Client, sink source.Sink, keys []string, seenAt time.Time) error {
	w.polls.Add(1)
	w.contacts = w.contacts[:0]
	w.deleted = w.deleted[:0]
	if err := w.read(ctx, rdb, keys, &w.deleted); err != nil {
		return err
	}
	if len(w.contacts) == 0 && len(w.deleted) == 0 {
		return nil
	}
	w.checkClock(time.Now())
	err := sink.Apply(ctx, source.Batch{Contacts: w.contacts, Deleted: w.deleted, SeenAt: seenAt})
	w.release()
	if err != nil {
		return &sinkError{err}
	}
	return nil
}

// release drops the strings a shorter batch would keep alive in the tail of
// the reused arrays. Only what earlier batches filled is cleared, not the
// whole capacity: after a snapshot that is 10^5 contacts, and clearing
// them (with GC write barriers) after every change read of a few hundred
// cost more than the read itself.
func (w *Watcher) release() {
	clear(w.contacts[len(w.contacts):max(w.filled, len(w.contacts))])
	clear(w.deleted[len(w.deleted):max(w.filledDeleted, len(w.deleted))])
	w.filled, w.filledDeleted = len(w.contacts), len(w.deleted)
}

// sinkError is a batch the sink refused: not a store outage, the batch is
// simply read again (as a Full one) at the next tick.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return "sink: " + e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// scan lists the bindings' keys. SCAN may return a key twice; the set
// keeps one.
func (w *Watcher) scan(ctx context.Context, rdb *goredis.Client) ([]string, error) {
	seen := make(map[string]struct{})
	var keys []string
	var cursor uint64
	for {
		batch, next, err := rdb.Scan(ctx, cursor, w.pattern, scanCount).Result()
		if err != nil {
			return nil, err
		}
		for _, k := range batch {
			if _, dup := seen[k]; !dup {
				seen[k] = struct{}{}
				keys = append(keys, k)
			}
		}
		if next == 0 {
			return keys, nil
		}
		cursor = next
	}
}

// read fetches keys with pipelined HGETALLs and decodes them into
// w.contacts. When deleted is not nil, keys that are gone or hold no
// valid binding are appended to it (a change read); otherwise they are
// left out (a snapshot, where absence says the same).
func (w *Watcher) read(ctx context.Context, rdb *goredis.Client, keys []string, deleted *[]string) error {
	defer w.noteFilled()
	for len(keys) > 0 {
		n := min(len(keys), readBatch)
		chunk := keys[:n]
		keys = keys[n:]
		cmds, err := rdb.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, k := range chunk {
				p.HGetAll(ctx, k)
			}
			return nil
		})
		if len(cmds) != len(chunk) {
			return fmt.Errorf("reading %d entries: %w", len(chunk), err)
		}
		// A WRONGTYPE reply is one bad key (something else stored under
		// the prefix); any other error (network, LOADING, NOPERM) means
		// the read as a whole failed and is retried.
		for _, cmd := range cmds {
			if err := cmd.Err(); err != nil && !goredis.HasErrorPrefix(err, "WRONGTYPE") {
				return fmt.Errorf("reading %d entries: %w", len(chunk), err)
			}
		}
		for i, cmd := range cmds {
			w.decode(chunk[i], cmd.(*goredis.MapStringStringCmd), deleted)
		}
	}
	return nil
}

// noteFilled records how far the reused arrays hold entries, also after
// a read that failed half-way, for release.
func (w *Watcher) noteFilled() {
	w.filled = max(w.filled, len(w.contacts))
	w.filledDeleted = max(w.filledDeleted, len(w.deleted))
}

// decode handles one HGETALL answer.
func (w *Watcher) decode(key string, cmd *goredis.MapStringStringCmd, deleted *[]string) {
	fields, err := cmd.Result()
	if err != nil {
		// Only WRONGTYPE gets here (read checked the rest).
		w.skip(key, fmt.Errorf("%w: %v", errBadEntry, err), deleted)
		return
	}
	if len(fields) == 0 { // HGETALL of a missing key
		w.bad.forget(key)
		if deleted != nil {
			*deleted = append(*deleted, key[len(w.prefix):])
		}
		return
	}
	w.contacts = append(w.contacts, source.Contact{})
	c := &w.contacts[len(w.contacts)-1]
	suffix := key[len(w.prefix):]
	if w.cfg.Layout == LayoutGeneric {
		err = decodeGeneric(suffix, fields, c)
	} else {
		err = decodeKamailio(suffix, fields, w.cfg.Location, w.cfg.Domain, c)
	}
	if err != nil {
		w.contacts = w.contacts[:len(w.contacts)-1]
		w.skip(key, err, deleted)
		return
	}
	w.bad.forget(key)
}

// skip counts a bad entry, logs it the first time it is seen bad, and for
// a change read reports it gone: whatever it was, it is no usable binding
// now.
func (w *Watcher) skip(key string, why error, deleted *[]string) {
	w.skipped.Add(1)
	if w.bad.mark(key) {
		w.log.Warn("skipping entry", "key", logKey(key), "err", why)
	}
	if deleted != nil {
		*deleted = append(*deleted, key[len(w.prefix):])
	}
}

// logKey truncates a key for the log (keys are untrusted and unbounded).
func logKey(k string) string {
	const maxKeyLen = 128
	if len(k) > maxKeyLen {
		return k[:maxKeyLen]
	}
	return k
}

// badLog remembers which keys were logged as bad, so that a bad entry is
// logged when it first appears rather than at every snapshot. A snapshot
// rebuilds the set (begin/end), so entries that were fixed or deleted are
// forgotten; change reads add and remove single keys.
type badLog struct {
	logged, seen map[string]struct{}
	inSnapshot   bool
	capped       bool
}

func newBadLog() badLog {
	return badLog{logged: make(map[string]struct{}), seen: make(map[string]struct{})}
}

func (b *badLog) begin() {
	clear(b.seen)
	b.inSnapshot = true
}

// end closes a snapshot; a snapshot that failed half-way keeps the
// previous set.
func (b *badLog) end(complete bool) {
	b.inSnapshot = false
	if !complete {
		return
	}
	b.logged, b.seen = b.seen, b.logged
	if len(b.logged) < maxLoggedBad {
		b.capped = false
	}
}

// mark records key as bad and reports whether to log it.
func (b *badLog) mark(key string) bool {
	_, before := b.logged[key]
	set := b.logged
	if b.inSnapshot {
		set = b.seen
	}
	if len(set) >= maxLoggedBad {
		if b.capped {
			return false
		}
		b.capped = true
		return true // the caller's line is the last one until the set shrinks
	}
	set[key] = struct{}{}
	return !before
}

// forget records key as good or gone.
func (b *badLog) forget(key string) {
	if !b.inSnapshot {
		delete(b.logged, key)
	}
}
