package sqlwatch

import (
	"errors"

	"github.com/regbridge/regbridge/source"
)

// Incremental changes to snapshotState: rows read by key or by
// modification time are merged into the last snapshot, and what changed
// is collected in changed and deleted for a non-Full batch.

// beginStep starts collecting a non-Full batch.
func (st *snapshotState) beginStep() {
	clear(st.changed)
	st.changed = st.changed[:0]
	st.deleted = st.deleted[:0]
	clear(st.next) // keys merged by key in this step
}

// merge decodes one row (the table's columns, then its hash when
// st.hashed) into the state. byKey says the row was read by key, so that
// every row of its key is in the same read (bad rows of the key were
// dropped before); otherwise it was read by modification time.
func (st *snapshotState) merge(all []Value, byKey bool, w *Watcher) {
	ncol := len(w.table.Columns)
	row := all[:ncol]
	var h int64
	if st.hashed {
		h, _ = intValue(&all[ncol])
	}
	if st.modIdx >= 0 && laterValue(&row[st.modIdx], &st.maxMod) {
		st.maxModBuf = append(st.maxModBuf[:0], row[st.modIdx].Bytes...)
		st.maxMod = row[st.modIdx]
		st.maxMod.Bytes, st.maxMod.str = st.maxModBuf, ""
	}
	st.keyBuf = row[w.table.Key].AppendText(st.keyBuf[:0])
	i, known := st.idx[string(st.keyBuf)]
	var p *source.Contact
	if known {
		p = &st.cur[i]
	}
	var c source.Contact
	err := w.layout.Decode(row, p, &c)
	if err == nil && c.Key != string(st.keyBuf) {
		err = errKeyChanged
	}
	if err == nil && byKey {
		if _, dup := st.next[c.Key]; dup {
			err = errDuplicateKey
		}
	}
	if err != nil {
		w.skipped.Add(1)
		key := logKey(row, w.table.LogKey, w.table.Columns)
		if _, ok := st.badLogged[key]; !ok && len(st.badLogged) < maxLoggedBadRows {
			st.badLogged[key] = struct{}{}
			w.log.Warn("skipping bad row", "key", key, "err", err)
		}
		if known && !errors.Is(err, errDuplicateKey) {
			st.remove(i) // the good row turned bad: gone, as in a full read
		}
		b := st.bad[string(st.keyBuf)]
		if byKey {
			b = badRows{b.n + 1, b.sum + h}
		} else {
			b = badRows{1, h}
		}
		st.bad[string(st.keyBuf)] = b
		return
	}
	if byKey {
		st.next[c.Key] = 0
	} else {
		delete(st.bad, c.Key) // the key's row is good now
	}
	if known {
		if c != st.cur[i] {
			st.changed = append(st.changed, c)
		}
		st.cur[i], st.hashes[i] = c, h
		return
	}
	st.idx[c.Key] = len(st.cur)
	st.cur = append(st.cur, c)
	st.hashes = append(st.hashes, h)
	st.changed = append(st.changed, c)
}

// errKeyChanged marks a row whose decoded key differs from its key
// column's text: such a layout cannot be merged by key.
var errKeyChanged = errors.New("decoded key differs from the key column")

// remove drops cur[i] (swapping the last contact into its place) and
// records its key as deleted.
func (st *snapshotState) remove(i int) {
	key := st.cur[i].Key
	last := len(st.cur) - 1
	st.cur[i], st.hashes[i] = st.cur[last], st.hashes[last]
	st.idx[st.cur[i].Key] = i
	st.cur[last] = source.Contact{}
	st.cur, st.hashes = st.cur[:last], st.hashes[:last]
	delete(st.idx, key)
	st.deleted = append(st.deleted, key)
}

// forget drops key from the state: its good contact (recorded as
// deleted) and its bad rows.
func (st *snapshotState) forget(key string) {
	if i, ok := st.idx[key]; ok {
		st.remove(i)
	}
	delete(st.bad, key)
}

// aggregate is the fingerprint of what the state believes the table
// holds: rows and hash sum, as Partial.Aggregate computes it.
func (st *snapshotState) aggregate() (rows, sum int64) {
	rows = int64(len(st.cur))
	for _, h := range st.hashes {
		sum += h
	}
	for _, b := range st.bad {
		rows += b.n
		sum += b.sum
	}
	return rows, sum
}

// known reports whether the state has a row (good or bad) with key.
func (st *snapshotState) known(key []byte) bool {
	if _, ok := st.idx[string(key)]; ok {
		return true
	}
	_, ok := st.bad[string(key)]
	return ok
}

// batch is the non-Full batch collected since beginStep.
func (st *snapshotState) batch() source.Batch {
	return source.Batch{Contacts: st.changed, Deleted: st.deleted}
}
