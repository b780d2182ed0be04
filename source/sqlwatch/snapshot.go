package sqlwatch

import (
	"context"
	"errors"
	"strings"

	"github.com/regbridge/regbridge/source"
)

// snapshotState is what one watcher keeps between snapshots so that a
// steady-state read allocates next to nothing: two Contact arrays used in
// turn (the sink must not keep the one it was given), an index of the last
// snapshot by key (to reuse its strings and to spot duplicate keys), and
// the bad-row log dedup sets.
type snapshotState struct {
	cur, spare []source.Contact
	// idx maps key -> position in cur; next is built during a read and
	// becomes idx after it. Keys are the contacts' own strings.
	idx, next map[string]int
	row       []Value
	keyBuf    []byte
	// badLogged holds the keys of bad rows seen (and logged) in the last
	// snapshot, badSeen those of the snapshot being read; swapped after
	// each. A bad row is logged when it first appears, not every poll.
	badLogged, badSeen map[string]struct{}
	badCapped          bool

	// Incremental state (state.go). hashed is set per session: rows carry
	// their watched-column hash after the table's columns (Partial);
	// hashes parallels cur, bad holds the rows skipped, by raw key, so
	// that rows and hash sum of the whole table are known.
	hashed              bool
	hashes, spareHashes []int64
	bad, badNext        map[string]badRows
	// modIdx is the index of Table.Modified (-1: none); maxMod the
	// largest value of it seen, owned (maxModBuf).
	modIdx    int
	maxMod    Value
	maxModBuf []byte
	// changed and deleted are the non-Full batch being built.
	changed []source.Contact
	deleted []string
}

// badRows are the skipped rows sharing one raw key.
type badRows struct{ n, sum int64 }

func (s *snapshotState) init(cols, modIdx int) {
	s.modIdx = modIdx
	s.bad = make(map[string]badRows)
	s.badNext = make(map[string]badRows)
	s.idx = make(map[string]int)
	s.next = make(map[string]int)
	s.row = make([]Value, cols)
	s.badLogged = make(map[string]struct{})
	s.badSeen = make(map[string]struct{})
}

// errDuplicateKey marks a row whose key an earlier row of the same
// snapshot already had (a table without the registrar's UNIQUE index).
var errDuplicateKey = errors.New("duplicate key: an earlier row has the same one")

// read takes one snapshot from s into cur. On error cur keeps the last
// good snapshot.
func (st *snapshotState) read(ctx context.Context, s Session, w *Watcher) error {
	prev := st.cur
	next := st.spare[:0]
	nextHash := st.spareHashes[:0]
	clear(st.next)
	clear(st.badSeen)
	clear(st.badNext)
	key := w.table.Key
	ncol := len(w.table.Columns)
	var maxMod Value
	err := s.Snapshot(ctx, func(all []Value) {
		row := all[:ncol]
		var h int64
		if st.hashed {
			h, _ = intValue(&all[ncol])
		}
		if st.modIdx >= 0 && laterValue(&row[st.modIdx], &maxMod) {
			maxMod = row[st.modIdx]
			st.maxModBuf = append(st.maxModBuf[:0], maxMod.Bytes...)
			maxMod.Bytes, maxMod.str = st.maxModBuf, ""
		}
		st.keyBuf = row[key].AppendText(st.keyBuf[:0])
		var p *source.Contact
		if i, ok := st.idx[string(st.keyBuf)]; ok {
			p = &prev[i]
		}
		next = append(next, source.Contact{})
		c := &next[len(next)-1]
		err := w.layout.Decode(row, p, c)
		if err == nil {
			if _, dup := st.next[c.Key]; dup {
				err = errDuplicateKey
			}
		}
		if err != nil {
			*c = source.Contact{}
			next = next[:len(next)-1]
			st.skip(row, err, w)
			b := st.badNext[string(st.keyBuf)]
			st.badNext[string(st.keyBuf)] = badRows{b.n + 1, b.sum + h}
			return
		}
		st.next[c.Key] = len(next) - 1
		nextHash = append(nextHash, h)
	})
	if err != nil {
		clear(next[:cap(next)])
		st.spare = next[:0]
		st.spareHashes = nextHash[:0]
		return err
	}
	st.hashes, st.spareHashes = nextHash, st.hashes[:0]
	st.bad, st.badNext = st.badNext, st.bad
	st.maxMod = maxMod
	// Drop the strings that the reused array's tail still holds.
	clear(next[len(next):cap(next)])
	st.cur, st.spare = next, prev[:0]
	st.idx, st.next = st.next, st.idx
	st.badLogged, st.badSeen = st.badSeen, st.badLogged
	if len(st.badLogged) < maxLoggedBadRows {
		st.badCapped = false
	}
	return nil
}

// skip counts a bad row and logs it unless it was in the previous
// snapshot too.
func (st *snapshotState) skip(row []Value, why error, w *Watcher) {
	w.skipped.Add(1)
	key := logKey(row, w.table.LogKey, w.table.Columns)
	if _, ok := st.badSeen[key]; ok {
		return
	}
	if len(st.badSeen) >= maxLoggedBadRows {
		if !st.badCapped {
			st.badCapped = true
			w.log.Warn("too many bad rows; further ones are skipped without a log line", "limit", maxLoggedBadRows)
		}
		return
	}
	st.badSeen[key] = struct{}{}
	if _, ok := st.badLogged[key]; !ok {
		w.log.Warn("skipping bad row", "key", key, "err", why)
	}
}

// logKey names a row in the log: "column=value" for the first of cols
// with a non-empty value, truncated (the dedup set must stay small).
func logKey(row []Value, cols []int, names []string) string {
	for _, i := range cols {
		b := row[i].AppendText(nil)
		if len(b) == 0 {
			continue
		}
		if len(b) > maxLogKeyLen {
			b = b[:maxLogKeyLen]
		}
		return names[i] + "=" + strings.ToValidUTF8(string(b), "?")
	}
	return "(no key)"
}
