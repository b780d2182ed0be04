package watch

import (
	"encoding/xml"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// NamespaceWatcherinfo is the RFC 3858 section 4 namespace.
const NamespaceWatcherinfo = "urn:ietf:params:xml:ns:watcherinfo"

// ErrInvalidWatcherinfo is wrapped by every error ParseWatcherinfo returns
// for a document that is well-formed XML but not a usable watcherinfo
// document.
var ErrInvalidWatcherinfo = errors.New("invalid watcherinfo document")

// Watcherinfo is a parsed application/watcherinfo+xml document (RFC 3858
// section 3): what a reg.winfo or presence.winfo subscriber receives.
type Watcherinfo struct {
	Version uint32
	// State is StateFull or StatePartial.
	State string
	Lists []WatcherList
}

// WatcherList is one <watcher-list>: the watchers of one resource's
// subscriptions to one package.
type WatcherList struct {
	Resource, Package string
	Watchers          []Watcher
}

// Watcher is one <watcher> element. Optional numeric attributes are nil
// when absent.
type Watcher struct {
	ID, Status, Event, URI, DisplayName string
	Expiration, DurationSubscribed      *uint64
}

// ParseWatcherinfo parses an application/watcherinfo+xml body, ignoring
// elements and attributes of other namespaces (RFC 3858 section 4). It
// rejects documents a subscriber cannot apply: a missing or non-32-bit
// version, a state other than full or partial, a watcher-list without
// resource or package, a watcher without id or status, and numeric
// attributes that are not unsigned integers. The watcher URI is trimmed
// (xs:anyURI collapses whitespace).
func ParseWatcherinfo(body []byte) (*Watcherinfo, error) {
	p, head, err := openDocument(body, "watcherinfo", NamespaceWatcherinfo, ErrInvalidWatcherinfo)
	if err != nil {
		return nil, err
	}
	doc := &Watcherinfo{Version: head.version, State: head.state}
	err = p.children(func(el xml.StartElement) error {
		if el.Name.Space != p.ns || el.Name.Local != "watcher-list" {
			return p.dec.Skip()
		}
		l, err := p.watcherList(el)
		doc.Lists = append(doc.Lists, l)
		return err
	})
	if err != nil {
		return nil, err
	}
	return doc, nil
}

func (p *parser) watcherList(el xml.StartElement) (WatcherList, error) {
	var l WatcherList
	var ok1, ok2 bool
	l.Resource, ok1 = attr(el, "resource")
	l.Package, ok2 = attr(el, "package")
	if !ok1 || !ok2 {
		return l, fmt.Errorf("%w: watcher-list without resource or package", ErrInvalidWatcherinfo)
	}
	l.Resource = strings.TrimSpace(l.Resource)
	err := p.children(func(child xml.StartElement) error {
		if child.Name.Space != p.ns || child.Name.Local != "watcher" {
			return p.dec.Skip()
		}
		var w Watcher
		var ok bool
		if w.ID, ok = attr(child, "id"); !ok || w.ID == "" {
			return fmt.Errorf("%w: watcher without id", ErrInvalidWatcherinfo)
		}
		if w.Status, ok = attr(child, "status"); !ok || w.Status == "" {
			return fmt.Errorf("%w: watcher %q without status", ErrInvalidWatcherinfo, w.ID)
		}
		w.Event, _ = attr(child, "event")
		w.DisplayName, _ = attr(child, "display-name")
		for _, n := range []struct {
			name string
			dst  **uint64
		}{{"expiration", &w.Expiration}, {"duration-subscribed", &w.DurationSubscribed}} {
			v, err := uintAttr(child, n.name)
			if err != nil {
				return fmt.Errorf("%w: watcher %q: %s is not an unsigned integer", ErrInvalidWatcherinfo, w.ID, n.name)
			}
			*n.dst = v
		}
		uri, err := p.text()
		w.URI = strings.TrimSpace(uri)
		l.Watchers = append(l.Watchers, w)
		return err
	})
	return l, err
}

// WatcherView is a winfo subscriber's reconstruction of the watcher
// lists (RFC 3858 4.3, 4.4): one table per (resource, package), one row
// per watcher id; terminated watchers leave the table once applied. The
// zero WatcherView is empty and ready to use.
type WatcherView struct {
	versionCounter
	lists map[[2]string]map[string]Watcher
}

// Apply folds one document into the view, with the version rules of
// View.Apply: whether it was processed, and whether the subscriber should
// refresh to obtain full state.
func (v *WatcherView) Apply(doc *Watcherinfo) (applied, needRefresh bool) {
	if doc == nil {
		return false, false
	}
	if applied, needRefresh = v.step(doc.Version, doc.State == StateFull); !applied {
		return false, false
	}
	if doc.State == StateFull || v.lists == nil {
		v.lists = make(map[[2]string]map[string]Watcher)
	}
	for _, l := range doc.Lists {
		key := [2]string{l.Resource, l.Package}
		t := v.lists[key]
		if t == nil {
			t = make(map[string]Watcher)
			v.lists[key] = t
		}
		for _, w := range l.Watchers {
			if w.Status == "terminated" {
				delete(t, w.ID)
				continue
			}
			t[w.ID] = w
		}
	}
	return true, needRefresh
}

// Lists returns the reconstructed lists, ordered by resource and package,
// watchers by id.
func (v *WatcherView) Lists() []WatcherList {
	keys := slices.SortedFunc(maps.Keys(v.lists), func(a, b [2]string) int {
		return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1])
	})
	out := make([]WatcherList, 0, len(keys))
	for _, k := range keys {
		l := WatcherList{Resource: k[0], Package: k[1]}
		for _, id := range slices.Sorted(maps.Keys(v.lists[k])) {
			l.Watchers = append(l.Watchers, v.lists[k][id])
		}
		out = append(out, l)
	}
	return out
}
