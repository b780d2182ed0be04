package main

// The watchers: one subscriber record per subscription, grouped into lanes
// (one socket each), and what happens when a response or NOTIFY arrives.
// Checking happens here, as each NOTIFY comes: version continuity (RFC 3680
// 4.1: +1 per document), duplicates, and which store changes the NOTIFY
// reports, recorded as (change, arrival) samples resolved into latencies at
// the end.

import "bytes"

// Subscription phases.
const (
	subIdle    uint8 = iota
	subPending       // SUBSCRIBE sent; waiting for its 2xx and the first NOTIFY
	subActive
	subFailed  // no 2xx, or no first NOTIFY, in time
	subEnded   // the server terminated it while we still wanted it
	subLeaving // our Expires: 0 is sent
	subGone    // terminated after we asked to leave, or at the server's shutdown
)

// subscriber is one subscription's state, guarded by its lane's subsMu.
type subscriber struct {
	aor        int32
	phase      uint8
	tries      uint8 // transmissions of the pending SUBSCRIBE
	answered   bool  // the pending SUBSCRIBE got its final response
	gotFirst   bool
	haveNotify bool
	watched    bool   // active when the changes began: it must see them all
	gapped     bool   // a document's version was not the previous + 1
	cseq       uint32 // of our last SUBSCRIBE
	sentAt     int64  // ns since t0: first transmission of the pending SUBSCRIBE
	lastTx     int64
	notifyCSeq uint32 // of the last NOTIFY
	version    uint32 // the version the next document must have
	seen       int64  // the highest change number seen for the AOR's contact; -1 none
	status     int    // failing final response
	toTag      string // the notifier's tag
	target     string // the notifier's Contact: Request-URI of in-dialog SUBSCRIBEs
}

// sample says the subscriber learned of change seq at `at` microseconds
// after t0 (directly, or through a later change to the same contact).
type sample struct{ seq, at uint32 }

// tally counts what the lane's readers saw.
type tally struct {
	Notifies        uint64 `json:"notifies"`         // NOTIFYs answered 200, retransmissions not counted
	ChangeNotifies  uint64 `json:"change_notifies"`  // ... of which reported a change written during the run
	Retransmits     uint64 `json:"retransmits"`      // NOTIFY retransmissions before the teardown, answered again
	EndRetransmits  uint64 `json:"end_retransmits"`  // ... during the teardown (unsubscribe or server shutdown)
	Duplicates      uint64 `json:"duplicates"`       // a change reported again in a partial document
	VersionGaps     uint64 `json:"version_gaps"`     // a document whose version is not the previous + 1
	Coalesced       uint64 `json:"coalesced"`        // changes superseded by a later one before being reported
	UnexpectedFull  uint64 `json:"unexpected_full"`  // full-state documents after the first during changes
	UnexpectedEvent uint64 `json:"unexpected_event"` // contact events other than registered/refreshed/created
	WrongAOR        uint64 `json:"wrong_aor"`        // a document about another AOR
	WrongChange     uint64 `json:"wrong_change"`     // a cseq that is no change of this AOR
	BadMessages     uint64 `json:"bad_messages"`     // unparseable SIP or reginfo
	Unknown         uint64 `json:"unknown_dialog"`   // NOTIFYs for no subscription of ours (481)
	Stale           uint64 `json:"stale_cseq"`       // NOTIFY CSeq lower than the last (500)
	SendErrors      uint64 `json:"send_errors"`
	Ended           uint64 `json:"ended_by_server"` // subscriptions the server terminated during the run
}

func (t *tally) add(o *tally) {
	t.Notifies += o.Notifies
	t.ChangeNotifies += o.ChangeNotifies
	t.Retransmits += o.Retransmits
	t.EndRetransmits += o.EndRetransmits
	t.Duplicates += o.Duplicates
	t.VersionGaps += o.VersionGaps
	t.Coalesced += o.Coalesced
	t.UnexpectedFull += o.UnexpectedFull
	t.UnexpectedEvent += o.UnexpectedEvent
	t.WrongAOR += o.WrongAOR
	t.WrongChange += o.WrongChange
	t.BadMessages += o.BadMessages
	t.Unknown += o.Unknown
	t.Stale += o.Stale
	t.SendErrors += o.SendErrors
	t.Ended += o.Ended
}

// Run stages, for classifying what arrives.
const (
	stageSubscribe int32 = iota
	stageChanges
	stageTeardown
)

// handle processes one message received on lane l at `at` ns after t0.
func (r *runner) handle(l *lane, data []byte, at int64) {
	l.heard.Store(at) // something answers, even if not as it should
	m := &l.m
	if err := parse(data, m); err != nil {
		l.subsMu.Lock()
		l.tally.BadMessages++
		l.subsMu.Unlock()
		return
	}
	idx := dialogIndex(m.callID, r.run)
	if idx < 0 || idx >= len(r.subs) || idx%len(r.lanes) != l.id {
		if m.request && !bytes.Equal(m.method, []byte("ACK")) {
			l.answer(m, 481, "Call/Transaction Does Not Exist")
			l.subsMu.Lock()
			l.tally.Unknown++
			l.subsMu.Unlock()
		}
		return
	}
	if !m.request {
		r.onResponse(l, idx, m, at)
		return
	}
	if !bytes.Equal(m.method, []byte("NOTIFY")) {
		if !bytes.Equal(m.method, []byte("ACK")) {
			l.answer(m, 405, "Method Not Allowed")
		}
		return
	}
	l.tag = appendTag(l.tag[:0], r.run, idx)
	if !bytes.Equal(m.toTag, l.tag) {
		l.answer(m, 481, "Call/Transaction Does Not Exist")
		l.subsMu.Lock()
		l.tally.Unknown++
		l.subsMu.Unlock()
		return
	}
	r.onNotify(l, idx, m, at)
}

// onResponse takes a final response to one of our SUBSCRIBEs.
func (r *runner) onResponse(l *lane, idx int, m *message, at int64) {
	if m.status < 200 || !bytes.Equal(m.cseqM, []byte("SUBSCRIBE")) {
		return
	}
	l.subsMu.Lock()
	defer l.subsMu.Unlock()
	s := &r.subs[idx]
	if m.cseq != s.cseq || s.answered {
		return // a retransmitted or stale response
	}
	s.answered = true
	ok := m.status < 300
	switch s.phase {
	case subPending:
		if !ok {
			s.status = m.status
			r.settle(l, s, subFailed, at)
			return
		}
		if s.toTag == "" {
			s.toTag = string(m.toTag)
		}
		if len(m.contact) > 0 {
			s.target = string(m.contact)
		}
		if s.gotFirst {
			r.settle(l, s, subActive, at)
		}
	case subLeaving:
		if !ok {
			// 481: it is gone already. Anything else: stop waiting.
			s.status = m.status
			s.phase = subGone
			r.leaving.Add(-1)
		}
	}
}

// settle ends the pending phase of s (called with l.subsMu held).
func (r *runner) settle(l *lane, s *subscriber, phase uint8, at int64) {
	s.phase = phase
	if phase == subActive {
		l.firsts = append(l.firsts, uint32(max(0, at-s.sentAt)/1000))
	}
	r.pending.Add(-1)
	select {
	case <-r.window:
	default:
	}
}

// onNotify answers and checks one NOTIFY for subscription idx.
func (r *runner) onNotify(l *lane, idx int, m *message, at int64) {
	l.subsMu.Lock()
	defer l.subsMu.Unlock()
	s := &r.subs[idx]
	t := &l.tally
	if s.phase == subIdle {
		l.answer(m, 481, "Subscription Does Not Exist")
		t.Unknown++
		return
	}
	if s.haveNotify && m.cseq <= s.notifyCSeq {
		if m.cseq == s.notifyCSeq {
			l.answer(m, 200, "OK")
			if r.stage.Load() == stageTeardown {
				t.EndRetransmits++
			} else {
				t.Retransmits++
			}
		} else {
			l.answer(m, 500, "CSeq Out Of Order")
			t.Stale++
		}
		return
	}
	// Answer first: the notifier holds the dialog until it has the 200.
	l.answer(m, 200, "OK")
	s.haveNotify, s.notifyCSeq = true, m.cseq
	t.Notifies++
	sec := int(at / 1e9)
	for len(l.perSec) <= sec {
		l.perSec = append(l.perSec, 0)
	}
	l.perSec[sec]++
	if s.toTag == "" {
		s.toTag = string(m.fromTag) // the NOTIFY overtook the 200 (RFC 6665 4.1.2.4)
	}
	if s.target == "" && len(m.contact) > 0 {
		s.target = string(m.contact)
	}
	terminated := bytes.HasPrefix(bytes.TrimSpace(m.subs), []byte("terminated"))

	d := &l.doc
	if err := scanReginfo(m.body, d); err != nil {
		t.BadMessages++
	} else {
		if d.version != s.version {
			t.VersionGaps++
			s.gapped = true
		}
		s.version = d.version + 1
		if !r.isOurAOR(d.aor, int(s.aor)) {
			t.WrongAOR++
		} else {
			if s.gotFirst && d.full && r.stage.Load() == stageChanges && !terminated {
				t.UnexpectedFull++
			}
			r.learn(l, s, d, at)
		}
	}
	if !s.gotFirst {
		s.gotFirst = true
		if s.phase == subPending && s.answered {
			r.settle(l, s, subActive, at)
		}
	}
	if terminated {
		switch s.phase {
		case subPending:
			r.settle(l, s, subFailed, at)
		case subActive:
			if r.stage.Load() == stageTeardown {
				s.phase = subGone
			} else {
				s.phase = subEnded
				t.Ended++
			}
		case subLeaving:
			s.phase = subGone
			r.leaving.Add(-1)
		}
	}
}

// learn records what document d says about the changes of s's AOR.
func (r *runner) learn(l *lane, s *subscriber, d *reginfo, at int64) {
	t := &l.tally
	aors := int64(r.cfg.aors)
	reported := false
	for _, c := range d.contacts[:d.ncontact] {
		switch string(c.event) {
		case "registered", "refreshed", "created":
		default:
			t.UnexpectedEvent++
		}
		k := c.cseq
		if k < 0 {
			continue
		}
		if k > 0 && (k-1)%aors != int64(s.aor) {
			t.WrongChange++
			continue
		}
		if k <= s.seen {
			if !d.full && k > 0 {
				t.Duplicates++
			}
			continue
		}
		// Every change to this AOR after the last one seen, up to k, is
		// now known to the subscriber: k itself, and those it superseded.
		j := int64(s.aor) + 1 // the AOR's first change
		if from := s.seen + 1; from > j {
			j += (from - j + aors - 1) / aors * aors
		}
		us := uint32(at / 1000)
		for ; j <= k; j += aors {
			if j < k {
				t.Coalesced++
			}
			l.samples = append(l.samples, sample{seq: uint32(j), at: us})
		}
		s.seen = k
		if k > 0 {
			reported = true
		}
	}
	if reported {
		t.ChangeNotifies++
	}
}

// isOurAOR reports whether v is "sip:<user of AOR a>@<domain>".
func (r *runner) isOurAOR(v []byte, a int) bool {
	rest, ok := bytes.CutPrefix(v, []byte("sip:rl"))
	if !ok {
		return false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(r.run)); !ok || len(rest) < 2 || rest[0] != 'u' {
		return false
	}
	at := bytes.IndexByte(rest, '@')
	if at < 0 {
		return false
	}
	n, ok := atoi(rest[1:at], 1<<31)
	return ok && int(n) == a && string(rest[at+1:]) == r.cfg.domain
}
