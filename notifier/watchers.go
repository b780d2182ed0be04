package notifier

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/render"
	"github.com/regbridge/regbridge/substore"
)

// Watcher information (RFC 3857, RFC 3858): every reg and presence
// subscription is recorded as a watcher of its AOR when it starts and
// when it ends; reg.winfo and presence.winfo subscribers of that AOR
// receive the changes as partial documents and the whole list as full
// ones. The record lives in a WatcherStore: in this process by default,
// in Redis when several instances share subscriptions, so that a watcher
// on one instance shows up to a winfo subscriber on any.

// WatcherStore records watching subscriptions and signals their changes
// (substore.LocalWatchers, substore.Redis).
type WatcherStore interface {
	AddWatcher(ctx context.Context, w substore.Watcher) error
	RefreshWatcher(ctx context.Context, w substore.Watcher) error
	EndWatcher(ctx context.Context, w substore.Watcher, event string) error
	ListWatchers(ctx context.Context, aor string) ([]substore.Watcher, uint64, error)
	// FollowWatchers hands changes made anywhere to sink until ctx ends.
	FollowWatchers(ctx context.Context, sink func(substore.WatcherChange)) error
}

// DefaultWinfoExpires is the watcher information packages' default
// subscription duration (RFC 3857 4.4).
const DefaultWinfoExpires = 3600 * time.Second

// SetWatcherStore replaces the in-process watcher record with a shared
// one; call it before Run and RunWatchers.
func (n *Notifier) SetWatcherStore(ws WatcherStore) { n.watchers = ws }

// RunWatchers follows the watcher changes of every instance until ctx
// ends (with the in-process record there is nothing to follow).
func (n *Notifier) RunWatchers(ctx context.Context) error {
	return n.watchers.FollowWatchers(ctx, n.watcherChanged)
}

// Watchers lists the current watchers of aor, of every package, oldest
// first.
func (n *Notifier) Watchers(ctx context.Context, aor string) ([]substore.Watcher, error) {
	list, _, err := n.watchers.ListWatchers(ctx, bridge.CanonicalAOR(aor))
	if err != nil {
		return nil, err
	}
	slices.SortFunc(list, compareWatchers)
	return list, nil
}

func compareWatchers(a, b substore.Watcher) int {
	return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.ID, b.ID))
}

// watcherID is a watcher's id in documents: derived from the dialog, so
// stable for the subscription's life on every instance, and revealing
// nothing of the dialog.
func watcherID(dialogID string) string {
	sum := sha256.Sum256([]byte(dialogID))
	return "w" + hex.EncodeToString(sum[:8])
}

// watched reports whether s is listed as a watcher: reg and presence
// subscriptions, not winfo ones (regbridge serves no winfo of winfo), and
// not politely blocked ones (refused by policy, vector 66 of the winfo
// conformance list). Without the winfo packages nothing is recorded.
func (n *Notifier) watched(s *subscription) bool {
	if !n.recordsWatchers(s) {
		return false
	}
	_, neutral := n.neutral.Load(s.id)
	return !neutral
}

// recordsWatchers reports whether subscriptions like s are recorded at
// all: reg and presence ones, while the winfo packages are served.
func (n *Notifier) recordsWatchers(s *subscription) bool {
	return n.cfg.Winfo && s.pkg.watched == nil
}

// watcherOf is the record of s; identity, when known, is the watcher's
// authenticated (or asserted) identity, better than its From.
func watcherOf(s *subscription, identity string) substore.Watcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	uri := identity
	if uri == "" {
		uri = s.d.remoteURI
	}
	return substore.Watcher{
		ID: watcherID(s.id), Package: s.pkg.name, AOR: s.canonical,
		URI: uri, DisplayName: s.d.remoteName,
		Since: time.Now(), Expires: s.expiresAt,
	}
}

// watchStarted records a new subscription as a watcher (after its 200).
func (n *Notifier) watchStarted(s *subscription, identity string) {
	if !n.watched(s) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := n.watchers.AddWatcher(ctx, watcherOf(s, identity)); err != nil {
		n.log.Warn("recording watcher failed", "aor", s.aor, "err", err)
	}
}

// watchRefreshed records a refreshed subscription's new expiry.
func (n *Notifier) watchRefreshed(s *subscription) {
	if !n.watched(s) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := n.watchers.RefreshWatcher(ctx, watcherOf(s, "")); err != nil {
		n.log.Info("refreshing watcher failed", "aor", s.aor, "err", err)
	}
}

// watchEnded records that s ended: with the reason of its final NOTIFY,
// or, when it was removed because a NOTIFY failed (the subscriber is
// gone), with timeout.
func (n *Notifier) watchEnded(s *subscription) {
	if !n.recordsWatchers(s) {
		return
	}
	w := watcherOf(s, "")
	event := ReasonTimeout
	s.mu.Lock()
	if s.final != nil {
		event = s.final.reason
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := n.watchers.EndWatcher(ctx, w, string(event)); err != nil {
		n.log.Warn("recording the end of a watcher failed", "aor", s.aor, "err", err)
	}
}

// winfoPending holds a winfo subscription's watcher changes not yet sent,
// one per watcher (the latest).
type winfoPending struct {
	changes []substore.WatcherChange
}

// watcherChanged takes a watcher change (from this instance or, through
// the shared store, another) to the winfo subscriptions of its AOR. Like
// Publish it only coalesces and schedules.
func (n *Notifier) watcherChanged(c substore.WatcherChange) {
	if c.Resync {
		n.resyncWinfo()
		return
	}
	n.subsMu.RLock()
	defer n.subsMu.RUnlock()
	for _, s := range n.byAOR[c.Watcher.AOR] {
		if s.pkg.watched != nil && s.pkg.watched.name == c.Watcher.Package && s.offerWatcher(c) {
			n.enqueue(s)
		}
	}
}

// resyncWinfo makes every winfo subscription send full state now:
// changes may have been lost.
func (n *Notifier) resyncWinfo() {
	n.subsMu.RLock()
	defer n.subsMu.RUnlock()
	for _, s := range n.subs {
		if s.pkg.watched == nil {
			continue
		}
		s.mu.Lock()
		s.full = s.full || s.final == nil
		claimed := s.claim()
		s.mu.Unlock()
		if claimed {
			n.enqueue(s)
		}
	}
}

// offerWatcher merges a watcher change into a winfo subscription's
// pending set.
func (s *subscription) offerWatcher(c substore.WatcherChange) (schedule bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || s.final != nil {
		return false
	}
	if s.winfo == nil {
		s.winfo = &winfoPending{}
	}
	p := s.winfo
	i := slices.IndexFunc(p.changes, func(x substore.WatcherChange) bool { return x.Watcher.ID == c.Watcher.ID })
	if i >= 0 {
		p.changes[i] = c
	} else {
		p.changes = append(p.changes, c)
	}
	return s.claim()
}

// nextWinfo is next for a winfo subscription: full state (the AOR's
// watchers of the watched package) when new, refreshed or ending, the
// pending changes otherwise.
func (n *Notifier) nextWinfo(s *subscription) (job, bool) {
	now := time.Now()
	s.mu.Lock()
	pending := s.winfo != nil && len(s.winfo.changes) > 0
	if s.done || !(s.full || s.final != nil || pending) {
		s.inFlight = false
		s.mu.Unlock()
		return job{}, false
	}
	if !s.full && s.final == nil && n.cfg.MinInterval > 0 {
		if wait := s.lastSent.Add(n.cfg.MinInterval).Sub(now); wait > 0 {
			n.throttle(s, wait)
			s.mu.Unlock()
			return job{}, false
		}
	}
	withState := s.final == nil || s.final.reason.revealsState()
	needFull := s.full || s.final != nil || s.resync
	s.mu.Unlock()

	var list []substore.Watcher
	var seq uint64
	if _, neutral := n.neutral.Load(s.id); needFull && withState && !neutral {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		var err error
		list, seq, err = n.watchers.ListWatchers(ctx, s.canonical)
		cancel()
		if err != nil {
			n.log.Warn("reading watchers failed; NOTIFY postponed", "aor", s.aor, "err", err)
			s.mu.Lock()
			defer s.mu.Unlock()
			if !s.done {
				n.throttle(s, storeRetry)
			}
			return job{}, false
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	wl := render.WatcherList{Resource: s.aor, Package: s.pkg.watched.name}
	doc := &render.WatcherDoc{Full: needFull && withState}
	switch {
	case !withState:
		// Like reginfo: an empty partial document keeps the version
		// sequence and reveals nothing.
		s.winfo = nil
	case needFull:
		for _, w := range list {
			if w.Package == wl.Package {
				wl.Watchers = append(wl.Watchers, entryOf(w, ""))
			}
		}
		slices.SortFunc(wl.Watchers, func(a, b render.WatcherEntry) int {
			return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.ID, b.ID))
		})
		if s.winfo != nil {
			// Changes the list already contains are not sent again.
			s.winfo.changes = slices.DeleteFunc(s.winfo.changes, func(c substore.WatcherChange) bool { return c.Seq <= seq })
		}
		s.full, s.resync = false, false
	default:
		for _, c := range s.winfo.changes {
			wl.Watchers = append(wl.Watchers, entryOf(c.Watcher, c.Ended))
		}
		s.winfo = nil
	}
	doc.Lists = []render.WatcherList{wl}
	doc.Version = s.version
	s.version++
	s.d.localCSeq++
	j := job{final: s.final, event: s.event, contentType: s.pkg.contentType, winfo: doc}
	j.d = s.d
	j.remain = s.remaining(now)
	s.lastSent = now
	return j, true
}

// entryOf is a watcher as a document shows it: active, or terminated
// with the event that ended it.
func entryOf(w substore.Watcher, ended string) render.WatcherEntry {
	e := render.WatcherEntry{ID: w.ID, URI: w.URI, DisplayName: w.DisplayName, Since: w.Since, Expires: w.Expires,
		Status: render.WatcherActive, Event: render.WatcherSubscribe}
	if ended != "" {
		e.Status, e.Event = render.WatcherTerminated, render.WatcherEvent(ended)
	}
	return e
}
