package sqlwatch

import (
	"context"
	"encoding/binary"
	"errors"
	"hash/maphash"
	"math"
	"strings"

	"github.com/regbridge/regbridge/source"
)

// snapshotState is what one watcher keeps between reads. It does not keep
// the contacts: the sink (the bridge) holds the decoded ones, and keeping
// them here too doubled the memory per contact (issue: a million contacts
// in well under 1 GiB). Per good row it keeps the key, a 64-bit hash of
// every column read and the server's watched-column hash; a row whose
// hash is unchanged is not decoded again, and a KeyedSink is only told
// its key.
type snapshotState struct {
	// rows are the good rows of the table as last read (their keys are
	// the decoded contacts' own strings, shared with the sink); index
	// finds them by the text of the key column.
	rows  []rowState
	index keyIndex
	// raws maps the keys of rows whose key column's text differs from the
	// decoded key (an AstDB key is a prefix plus the contact id) to that
	// text, which is what index finds rows by.
	raws map[string]string
	// seen marks, during a full read, the rows (by position) read so far.
	seen []uint64
	// seed and hash compute rowState.sum.
	seed maphash.Seed
	hash maphash.Hash
	// synced is true when the sink holds exactly the contacts that rows
	// describe (it accepted the last batch): only then may a full read
	// send it the changed rows alone (KeyedSink). types are the column
	// types of the last session: a layout decodes by them, so when they
	// change every row is decoded again.
	synced bool
	types  []string
	// full is the complete Full batch of a read that decodes every row
	// (the first one, for a sink that is not a KeyedSink, and Snapshot).
	full   []source.Contact
	keyBuf []byte
	// badLogged holds the keys of bad rows seen (and logged) in the last
	// snapshot, badSeen those of the snapshot being read; swapped after
	// each. A bad row is logged when it first appears, not every poll.
	badLogged, badSeen map[string]struct{}
	badCapped          bool

	// Incremental state (state.go). hashed is set per session: rows carry
	// their watched-column hash after the table's columns (Partial); bad
	// holds the rows skipped, by raw key, so that rows and hash sum of the
	// whole table are known.
	hashed       bool
	bad, badNext map[string]badRows
	// modIdx is the index of Table.Modified (-1: none); maxMod the
	// largest value of it seen, owned (maxModBuf).
	modIdx    int
	maxMod    Value
	maxModBuf []byte
	// changed and deleted are the batch being built: the decoded rows
	// that are new or changed, and the keys gone (non-Full batches only).
	// merged holds the keys read by key in the current step.
	changed []source.Contact
	deleted []string
	merged  map[string]struct{}
	// stepSynced is synced as it was when the current step began.
	stepSynced bool
}

// rowState is one good row: its key, the hash of every column read (sum,
// never 0; 0 marks a row that must be decoded at the next read) and the
// server's hash of the watched columns (srv, Partial sessions only).
type rowState struct {
	key string
	sum uint64
	srv int64
}

// badRows are the skipped rows sharing one raw key.
type badRows struct{ n, sum int64 }

func (s *snapshotState) init(modIdx int) {
	s.modIdx = modIdx
	s.seed = maphash.MakeSeed()
	s.hash.SetSeed(s.seed)
	s.bad = make(map[string]badRows)
	s.badNext = make(map[string]badRows)
	s.raws = make(map[string]string)
	s.merged = make(map[string]struct{})
	s.badLogged = make(map[string]struct{})
	s.badSeen = make(map[string]struct{})
}

// errDuplicateKey marks a row whose key an earlier row of the same
// snapshot already had (a table without the registrar's UNIQUE index).
var errDuplicateKey = errors.New("duplicate key: an earlier row has the same one")

// rowSum hashes the values of row with the state's seed.
func (st *snapshotState) rowSum(row []Value) uint64 { return rowSum(&st.hash, row) }

// rowSum hashes the values of row: kind and content of each, so that any
// change of what Decode sees changes the sum (up to 64-bit collisions).
// Hashes with the same seed agree (the verifying reconcile relies on it).
func rowSum(h *maphash.Hash, row []Value) uint64 {
	h.Reset()
	var b [17]byte
	for i := range row {
		v := &row[i]
		b[0] = byte(v.Kind)
		n := 1
		switch v.Kind {
		case Int:
			binary.LittleEndian.PutUint64(b[1:], uint64(v.Int))
			n = 9
		case Float:
			binary.LittleEndian.PutUint64(b[1:], math.Float64bits(v.Float))
			n = 9
		case Text:
			binary.LittleEndian.PutUint64(b[1:], uint64(len(v.Bytes)))
			n = 9
		case Time:
			binary.LittleEndian.PutUint64(b[1:], uint64(v.Time.Unix()))
			binary.LittleEndian.PutUint64(b[9:], uint64(v.Time.Nanosecond()))
			n = 17
		}
		h.Write(b[:n])
		if v.Kind == Text {
			h.Write(v.Bytes)
		}
	}
	if s := h.Sum64(); s != 0 {
		return s
	}
	return 1
}

func (st *snapshotState) isSeen(i int32) bool {
	return int(i/64) < len(st.seen) && st.seen[i/64]&(1<<(i%64)) != 0
}
func (st *snapshotState) markSeen(i int32) {
	for int(i/64) >= len(st.seen) {
		st.seen = append(st.seen, 0)
	}
	st.seen[i/64] |= 1 << (i % 64)
}

// moveSeen gives position to the mark of position from, and clears
// from's (remove swaps the last row into a removed one's place).
func (st *snapshotState) moveSeen(from, to int32) {
	seen := st.isSeen(from)
	st.clearSeen(from)
	st.clearSeen(to)
	if seen {
		st.markSeen(to)
	}
}

func (st *snapshotState) clearSeen(i int32) {
	if int(i/64) < len(st.seen) {
		st.seen[i/64] &^= 1 << (i % 64)
	}
}

// read takes one snapshot from s into the state. With complete, every row
// is decoded into full (a Full batch of the whole table); otherwise only
// the new and changed rows are, into changed, for a KeyedSink. On error
// the state is not synced (the next read is complete).
func (st *snapshotState) read(ctx context.Context, s Session, w *Watcher, complete bool) error {
	st.synced = false
	clear(st.full)
	full := st.full[:0]
	st.changed = recycle(st.changed)
	st.deleted = st.deleted[:0]
	clear(st.seen)
	clear(st.badSeen)
	clear(st.badNext)
	key := w.table.Key
	ncol := len(w.table.Columns)
	var maxMod Value
	err := s.Snapshot(ctx, func(all []Value) {
		row := all[:ncol]
		var srv int64
		if st.hashed {
			srv, _ = intValue(&all[ncol])
		}
		if st.modIdx >= 0 && laterValue(&row[st.modIdx], &maxMod) {
			maxMod = row[st.modIdx]
			st.maxModBuf = append(st.maxModBuf[:0], maxMod.Bytes...)
			maxMod.Bytes, maxMod.str = st.maxModBuf, ""
		}
		st.keyBuf = row[key].AppendText(st.keyBuf[:0])
		sum := st.rowSum(row)
		i, known := st.lookup(st.keyBuf)
		var err error
		switch {
		case known && st.isSeen(i):
			err = errDuplicateKey
		case known && !complete && st.rows[i].sum == sum:
			st.markSeen(i) // unchanged: the sink has it
			return
		}
		var c source.Contact
		if err == nil {
			err = w.layout.Decode(row, &c)
		}
		if err == nil && c.Key != string(st.keyBuf) {
			switch raw, ok := st.raws[c.Key]; {
			case known && raw != string(st.keyBuf):
				err = errKeyChanged
			case !known && ok:
				err = errDuplicateKey // another key column text, same key
			}
		}
		if err != nil {
			// A known row that turned bad stays unseen: gone, as a delete.
			st.skip(row, err, w)
			b := st.badNext[string(st.keyBuf)]
			st.badNext[string(st.keyBuf)] = badRows{b.n + 1, b.sum + srv}
			return
		}
		if known {
			st.rows[i].sum, st.rows[i].srv = sum, srv
		} else {
			i = int32(len(st.rows))
			st.rows = append(st.rows, rowState{key: c.Key, sum: sum, srv: srv})
			if c.Key != string(st.keyBuf) {
				st.raws[c.Key] = string(st.keyBuf)
			}
			st.indexAdd(i)
		}
		st.markSeen(i)
		if complete {
			full = append(full, c)
		} else {
			st.changed = append(st.changed, c)
		}
	})
	st.full = full
	if err != nil {
		return err
	}
	// Rows not read are gone.
	j := int32(0)
	for i := range int32(len(st.rows)) {
		if !st.isSeen(i) {
			delete(st.raws, st.rows[i].key)
			continue
		}
		st.rows[j] = st.rows[i]
		j++
	}
	if int(j) < len(st.rows) {
		clear(st.rows[j:])
		st.rows = st.rows[:j]
		st.reindex(len(st.index.slots))
	}
	st.bad, st.badNext = st.badNext, st.bad
	st.maxMod = maxMod
	st.badLogged, st.badSeen = st.badSeen, st.badLogged
	if len(st.badLogged) < maxLoggedBadRows {
		st.badCapped = false
	}
	return nil
}

// raw is the key column's text of the row with key.
func (st *snapshotState) raw(key string) string {
	if len(st.raws) > 0 {
		if raw, ok := st.raws[key]; ok {
			return raw
		}
	}
	return key
}

// keys are the keys of the good rows, for KeyedSink.ApplyFull.
func (st *snapshotState) keys(yield func(string) bool) {
	for i := range st.rows {
		if !yield(st.rows[i].key) {
			return
		}
	}
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
