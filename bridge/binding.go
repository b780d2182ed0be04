package bridge

import (
	"strings"
	"time"

	"github.com/regbridge/regbridge/source"
)

// binding is one active contact as the bridge keeps it: compact, because
// there may be millions (issue: a million contacts in well under 1 GiB).
// Times are Unix seconds and nanoseconds instead of time.Time (24 bytes
// each), the contact id and the AOR text are derived instead of stored,
// the event is a small number, the per-binding strings share one
// allocation and user agents are interned. The
// ContactView consumers see is built from it on demand (view), only for
// changes and reads, never on the unchanged path of a snapshot. The
// strings of a view point into the binding's: building one allocates only
// the contact id.
type binding struct {
	aor *aorState
	// key is the store key, the string the source decoded (sqlwatch's
	// state shares it).
	key string
	// text holds URI, Call-ID, instance, received and Path back to back,
	// one allocation instead of five; ends are the ends of the first four.
	text      string
	ends      [4]uint32
	userAgent string // interned
	socket    string // interned: a registrar has a handful
	// Expires, Modified and Since as split returns them.
	expSec, modSec, sinceSec int64
	expNs, modNs, sinceNs    int32
	q                        float32
	cseq, regID              uint32
	gen                      uint32 // full-snapshot sweep generation
	event                    eventCode
	admin                    bool
	dead                     bool // terminated (for the expiry heap)
}

func (bd *binding) uri() string      { return bd.text[:bd.ends[0]] }
func (bd *binding) callID() string   { return bd.text[bd.ends[0]:bd.ends[1]] }
func (bd *binding) instance() string { return bd.text[bd.ends[1]:bd.ends[2]] }
func (bd *binding) received() string { return bd.text[bd.ends[2]:bd.ends[3]] }
func (bd *binding) path() string     { return bd.text[bd.ends[3]:] }

// setText packs c's per-binding strings into text, allocating only when
// one of them changed (a refresh usually changes numbers alone).
func (bd *binding) setText(c *source.Contact) {
	if bd.text != "" && bd.uri() == c.URI && bd.callID() == c.CallID && bd.instance() == c.Instance &&
		bd.received() == c.Received && bd.path() == c.Path {
		return
	}
	var sb strings.Builder
	sb.Grow(len(c.URI) + len(c.CallID) + len(c.Instance) + len(c.Received) + len(c.Path))
	for i, s := range [...]string{c.URI, c.CallID, c.Instance, c.Received} {
		sb.WriteString(s)
		bd.ends[i] = uint32(sb.Len())
	}
	sb.WriteString(c.Path)
	bd.text = sb.String()
}

// eventCode is an Event as a byte.
type eventCode uint8

// codeOf is ev's code: its index in Events.
func codeOf(ev Event) eventCode {
	if i := ev.Index(); i >= 0 {
		return eventCode(i)
	}
	return 0
}

// split is t as Unix seconds and nanoseconds; the zero Time stays
// recognisable (its seconds are those of year 1).
func split(t time.Time) (int64, int32) { return t.Unix(), int32(t.Nanosecond()) }

// join is the inverse of split, in UTC (the zero Time comes back as the
// zero Time).
func join(sec int64, ns int32) time.Time { return time.Unix(sec, int64(ns)).UTC() }

func sameTime(sec int64, ns int32, t time.Time) bool {
	return sec == t.Unix() && ns == int32(t.Nanosecond())
}

// zeroSec is split's seconds of the zero Time.
var zeroSec = time.Time{}.Unix()

// permanent reports whether the binding never expires.
func (bd *binding) permanent() bool { return bd.expSec == zeroSec && bd.expNs == 0 }

// expiresAt is the expiry in Unix nanoseconds (the expiry heap's unit).
func (bd *binding) expiresAt() int64 { return join(bd.expSec, bd.expNs).UnixNano() }

// aorText is the AOR as the store wrote it for this binding.
func (bd *binding) aorText() string {
	if t, ok := bd.aor.textOf(bd); ok {
		return t
	}
	return bd.aor.aor
}

// contact is the binding as the source reported it.
func (bd *binding) contact() source.Contact {
	return source.Contact{
		Key:            bd.key,
		AOR:            bd.aorText(),
		URI:            bd.uri(),
		Expires:        join(bd.expSec, bd.expNs),
		Q:              bd.q,
		CallID:         bd.callID(),
		CSeq:           bd.cseq,
		Modified:       join(bd.modSec, bd.modNs),
		UserAgent:      bd.userAgent,
		Instance:       bd.instance(),
		RegID:          bd.regID,
		Received:       bd.received(),
		Path:           bd.path(),
		Socket:         bd.socket,
		Administrative: bd.admin,
	}
}

// view is the binding as consumers see it (active).
func (bd *binding) view() ContactView {
	return ContactView{
		Contact: bd.contact(),
		ID:      contactID(bd.aor.key(), bd.key, bd.uri()),
		State:   ContactActive,
		Event:   Events[bd.event],
		Since:   join(bd.sinceSec, bd.sinceNs),
	}
}

// equal reports whether c is what the binding holds (c.Key is its key).
func (bd *binding) equal(c *source.Contact) bool {
	return bd.uri() == c.URI && sameTime(bd.expSec, bd.expNs, c.Expires) &&
		bd.callID() == c.CallID && bd.cseq == c.CSeq && bd.q == c.Q &&
		sameTime(bd.modSec, bd.modNs, c.Modified) && bd.userAgent == c.UserAgent &&
		bd.instance() == c.Instance && bd.regID == c.RegID &&
		bd.received() == c.Received && bd.path() == c.Path &&
		bd.admin == c.Administrative && bd.aorText() == c.AOR && bd.socket == c.Socket
}

// set makes the binding hold c. The key stays (same text; its string is
// the one the source and the key index share).
func (b *Bridge) set(bd *binding, c *source.Contact) {
	bd.aor.setText(bd, c.AOR)
	bd.setText(c)
	bd.userAgent = b.intern(c.UserAgent)
	bd.socket = b.intern(c.Socket)
	bd.expSec, bd.expNs = split(c.Expires)
	bd.modSec, bd.modNs = split(c.Modified)
	bd.q, bd.cseq, bd.regID, bd.admin = c.Q, c.CSeq, c.RegID, c.Administrative
}

// maxInterned bounds the intern table: user agents come from strangers,
// and past this many distinct ones a binding keeps its own.
const maxInterned = 4096

// intern returns the table's copy of s: user agents repeat across
// thousands of bindings.
func (b *Bridge) intern(s string) string {
	if s == "" {
		return ""
	}
	if t, ok := b.interned[s]; ok {
		return t
	}
	if len(b.interned) < maxInterned {
		b.interned[s] = s
	}
	return s
}
