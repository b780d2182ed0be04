package substore

import (
	"context"
	"sync"
)

// Memory is the single-process store: the same contract as Redis, for
// embedding and tests. regbridge's notifier does not use it by default:
// with REGBRIDGE_STATE=memory its own maps are the store and a NOTIFY
// costs no store call at all.
type Memory struct {
	me string

	// recsMu guards recs.
	recsMu sync.Mutex
	recs   map[string]Record
}

// NewMemory returns an empty store for instance me.
func NewMemory(me string) *Memory { return &Memory{me: me, recs: make(map[string]Record)} }

// Save stores rec as this instance's.
func (m *Memory) Save(_ context.Context, rec *Record, create bool) error {
	m.recsMu.Lock()
	defer m.recsMu.Unlock()
	old, ok := m.recs[rec.ID]
	switch {
	case ok && old.Owner != m.me:
		return ErrNotOwner
	case !ok && !create:
		return ErrNotFound
	}
	r := *rec
	r.Owner = m.me
	if ok {
		r.LocalCSeq, r.Version = old.LocalCSeq, old.Version
	}
	m.recs[rec.ID] = r
	rec.Owner = m.me
	return nil
}

// Take makes this instance the owner of id.
func (m *Memory) Take(_ context.Context, id string) (*Record, bool, error) {
	m.recsMu.Lock()
	defer m.recsMu.Unlock()
	r, ok := m.recs[id]
	if !ok {
		return nil, false, ErrNotFound
	}
	was := r.Owner == m.me
	r.Owner = m.me
	m.recs[id] = r
	return &r, was, nil
}

// Delete removes id if this instance owns it.
func (m *Memory) Delete(_ context.Context, id string) error {
	m.recsMu.Lock()
	defer m.recsMu.Unlock()
	if r, ok := m.recs[id]; ok && r.Owner == m.me {
		delete(m.recs, id)
	}
	return nil
}

// Advance takes the next CSeq and version of id.
func (m *Memory) Advance(_ context.Context, id string) (uint32, uint32, error) {
	m.recsMu.Lock()
	defer m.recsMu.Unlock()
	r, ok := m.recs[id]
	if !ok || r.Owner != m.me {
		return 0, 0, ErrNotOwner
	}
	r.LocalCSeq++
	r.Version++
	m.recs[id] = r
	return r.LocalCSeq, r.Version - 1, nil
}

// Beat, Release and Claim: one process has no peers.
func (m *Memory) Beat(context.Context) error    { return nil }
func (m *Memory) Release(context.Context) error { return nil }
func (m *Memory) Claim(context.Context, int) ([]*Record, error) {
	return nil, nil
}

// Recover returns nothing: a process's memory does not survive it.
func (m *Memory) Recover(context.Context) ([]*Record, bool, error) { return nil, true, nil }
