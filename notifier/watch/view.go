package watch

import (
	"maps"
	"slices"
)

// View is a subscriber's reconstruction of registration state from the
// documents of one subscription (RFC 3680 sections 4.8 and 5.2): one table
// per registration id, one row per contact id. The zero View is empty and
// ready to use; it is not safe for concurrent use.
type View struct {
	versionCounter
	regs map[string]*viewRegistration
}

// versionCounter counts one subscription's documents (RFC
// 3680 4.8, RFC 3858 4.3: the same rules).
type versionCounter struct {
	started bool
	version uint32
}

// step applies the version rules to a document with version v, full or
// partial: whether to process it, and whether documents were missed.
func (vs *versionCounter) step(v uint32, full bool) (applied, needRefresh bool) {
	if vs.started {
		switch {
		case v == vs.version+1:
		case v > vs.version+1 && v > vs.version:
			needRefresh = !full
		default:
			return false, false
		}
	} else {
		needRefresh = !full
	}
	vs.started, vs.version = true, v
	return true, needRefresh
}

type viewRegistration struct {
	aor, state string
	contacts   map[string]Contact
}

// Apply folds one document into the view and reports whether it was
// processed and whether the subscriber should send a refresh SUBSCRIBE to
// obtain full state.
//
// Version rules (RFC 3680 section 4.8): the first document sets the local
// version; afterwards a document with version local+1 is processed, one
// with a higher version is processed too but, when it is partial, asks for
// a refresh because documents were missed; a version equal to or lower than
// the local one (a duplicate or a stale document) is ignored. A first
// document that is partial is processed and asks for a refresh as well,
// since the state it builds on was never seen.
//
// A full document replaces every table; a partial one creates missing
// tables and rows (matched by registration id and contact id) and
// overwrites the rows it names. Contacts reported terminated are dropped
// from the tables once applied (section 4.8 allows removing them at any
// time); the document itself still carries them.
func (v *View) Apply(doc *Reginfo) (applied bool, needRefresh bool) {
	if doc == nil {
		return false, false
	}
	if applied, needRefresh = v.step(doc.Version, doc.State == StateFull); !applied {
		return false, false
	}

	if doc.State == StateFull || v.regs == nil {
		v.regs = make(map[string]*viewRegistration, len(doc.Registrations))
	}
	for _, r := range doc.Registrations {
		t := v.regs[r.ID]
		if t == nil {
			t = &viewRegistration{contacts: make(map[string]Contact, len(r.Contacts))}
			v.regs[r.ID] = t
		}
		t.aor, t.state = r.AOR, r.State
		for _, c := range r.Contacts {
			if c.State == "terminated" {
				delete(t.contacts, c.ID)
				continue
			}
			t.contacts[c.ID] = c
		}
	}
	return true, needRefresh
}

// Version returns the local version and whether any document was applied.
func (v *View) Version() (uint32, bool) { return v.version, v.started }

// Registrations returns the reconstructed state, registrations ordered by
// id and contacts by id. The contacts share their Params maps and numeric
// pointers with the documents they came from.
func (v *View) Registrations() []Registration {
	out := make([]Registration, 0, len(v.regs))
	for _, id := range slices.Sorted(maps.Keys(v.regs)) {
		t := v.regs[id]
		r := Registration{AOR: t.aor, ID: id, State: t.state}
		for _, cid := range slices.Sorted(maps.Keys(t.contacts)) {
			r.Contacts = append(r.Contacts, t.contacts[cid])
		}
		out = append(out, r)
	}
	return out
}

// Reset empties the view, as for a new subscription.
func (v *View) Reset() { *v = View{} }
