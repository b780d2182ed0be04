package sqlwatch

import (
	"errors"

	"github.com/regbridge/regbridge/source"
)

// Incremental changes to snapshotState: rows read by key or by
// modification time are merged into the last snapshot, and what changed
// is collected in changed and deleted for a non-Full batch.

// recycleCap is the largest batch array kept for reuse.
const recycleCap = 4096

// recycle empties a reused batch array for the next batch, and lets a
// large one go: a burst (a million bindings written at once) must not
// keep its array for the life of the process.
func recycle(cs []source.Contact) []source.Contact {
	if cap(cs) > recycleCap {
		return nil
	}
	clear(cs)
	return cs[:0]
}

// beginStep starts collecting a non-Full batch.
func (st *snapshotState) beginStep() {
	st.changed = recycle(st.changed)
	st.deleted = st.deleted[:0]
	clear(st.merged) // keys merged by key in this step
	st.stepSynced, st.synced = st.synced, false
}

// abandonStep is called when a step's changes will not be delivered and
// a full read follows instead: the rows it merged are marked for decoding
// (their contacts never reached the sink), so that read may still send
// only what changed. Keys it dropped need nothing: a Full batch names
// every row the table holds.
func (st *snapshotState) abandonStep() {
	for i := range st.changed {
		if j, ok := st.lookupString(st.raw(st.changed[i].Key)); ok {
			st.rows[j].sum = 0
		}
	}
	st.synced = st.stepSynced
}

// merge reads one row (the table's columns, then its hash when
// st.hashed) into the state, decoding it when it is new or changed. byKey
// says the row was read by key, so that every row of its key is in the
// same read (bad rows of the key were dropped before); otherwise it was
// read by modification time.
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
	i, known := st.lookup(st.keyBuf)
	var err error
	if byKey {
		if _, dup := st.merged[string(st.keyBuf)]; dup {
			err = errDuplicateKey
		}
	}
	sum := st.rowSum(row)
	if err == nil && known && st.rows[i].sum == sum {
		// Unchanged (a read by modification time overlaps the last one).
		st.rows[i].srv = h
		if byKey {
			st.merged[st.rows[i].key] = struct{}{}
		} else {
			delete(st.bad, st.rows[i].key)
		}
		return
	}
	var c source.Contact
	if err == nil {
		err = w.layout.Decode(row, &c)
	}
	if err == nil && c.Key != string(st.keyBuf) {
		err = errKeyChanged // read by key: the key column must be the key
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
		st.merged[c.Key] = struct{}{}
	} else {
		delete(st.bad, c.Key) // the key's row is good now
	}
	st.changed = append(st.changed, c)
	if known {
		st.rows[i].sum, st.rows[i].srv = sum, h
		return
	}
	st.rows = append(st.rows, rowState{key: c.Key, sum: sum, srv: h})
	st.indexAdd(int32(len(st.rows) - 1))
}

// errKeyChanged marks a row whose decoded key differs from its key
// column's text: the state finds rows by that text.
var errKeyChanged = errors.New("decoded key differs from the key column")

// remove drops rows[i] (swapping the last row into its place) and
// records its key as deleted.
func (st *snapshotState) remove(i int32) {
	key := st.rows[i].key
	st.indexDel(i)
	last := int32(len(st.rows) - 1)
	if i != last {
		st.rows[i] = st.rows[last]
		st.indexMove(last, i)
		st.moveSeen(last, i) // a verifying reconcile's marks follow the row
	} else {
		st.clearSeen(i)
	}
	st.rows[last] = rowState{}
	st.rows = st.rows[:last]
	delete(st.raws, key)
	st.deleted = append(st.deleted, key)
}

// forget drops key from the state: its good row (recorded as deleted)
// and its bad rows.
func (st *snapshotState) forget(key string) {
	if i, ok := st.lookupString(key); ok {
		st.remove(i)
	}
	delete(st.bad, key)
}

// aggregate is the fingerprint of what the state believes the table
// holds: rows and hash sum, as Partial.Aggregate computes it.
func (st *snapshotState) aggregate() (rows, sum int64) {
	rows = int64(len(st.rows))
	for i := range st.rows {
		sum += st.rows[i].srv
	}
	for _, b := range st.bad {
		rows += b.n
		sum += b.sum
	}
	return rows, sum
}

// known reports whether the state has a row (good or bad) with key.
func (st *snapshotState) known(key []byte) bool {
	if _, ok := st.lookup(key); ok {
		return true
	}
	_, ok := st.bad[string(key)]
	return ok
}

// batch is the non-Full batch collected since beginStep.
func (st *snapshotState) batch() source.Batch {
	return source.Batch{Contacts: st.changed, Deleted: st.deleted}
}

// compactStep leaves in the step's batch the last version of each key
// still present, and the deletion of each key gone: a transaction (or a
// catch-up) may change one row several times.
func (st *snapshotState) compactStep() {
	if len(st.changed)+len(st.deleted) < 2 {
		return
	}
	present := func(k string) bool { _, ok := st.lookupString(st.raw(k)); return ok }
	seen := make(map[string]struct{}, len(st.changed)+len(st.deleted))
	keep := make([]bool, len(st.changed))
	for i := len(st.changed) - 1; i >= 0; i-- {
		k := st.changed[i].Key
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			keep[i] = present(k)
		}
	}
	out := st.changed[:0]
	for i := range st.changed {
		if keep[i] {
			out = append(out, st.changed[i])
		}
	}
	clear(st.changed[len(out):])
	st.changed = out
	clear(seen)
	del := st.deleted[:0]
	for _, k := range st.deleted {
		if _, dup := seen[k]; !dup && !present(k) {
			seen[k] = struct{}{}
			del = append(del, k)
		}
	}
	st.deleted = del
}
