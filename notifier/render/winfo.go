package render

// Rendering of application/watcherinfo+xml documents: RFC 3858 (format,
// schema section 4) for the watcher information template package of RFC
// 3857. A pure function of its inputs and an explicit now; no I/O.

import (
	"strconv"
	"time"
)

// ContentTypeWatcherinfo is the media type of watcher information
// documents (RFC 3858 section 7.1).
const ContentTypeWatcherinfo = "application/watcherinfo+xml"

const nsWatcherinfo = "urn:ietf:params:xml:ns:watcherinfo"

// WatcherStatus is a watcher's subscription state (RFC 3857 3.2.1).
type WatcherStatus string

// Statuses regbridge reports. It decides authorization before answering
// a SUBSCRIBE, so a watcher is never pending or waiting: it is active
// from its 200 OK until it ends.
const (
	WatcherActive     WatcherStatus = "active"
	WatcherTerminated WatcherStatus = "terminated"
)

// WatcherEvent is the event that moved a watcher into its status (RFC
// 3857 3.2.1): "subscribe" for a subscription accepted at once, and for an
// ended one the Subscription-State reason it ended with (the two RFCs use
// the same names).
type WatcherEvent string

// WatcherSubscribe is the event of a watcher whose SUBSCRIBE was accepted.
const WatcherSubscribe WatcherEvent = "subscribe"

// WatcherEntry is one <watcher> element.
type WatcherEntry struct {
	ID          string
	URI         string // the watcher's identity: element content
	DisplayName string
	Status      WatcherStatus
	Event       WatcherEvent
	// Since, when known, gives duration-subscribed; Expires, when the
	// watcher is active, gives expiration (seconds left).
	Since, Expires time.Time
}

// WatcherList is one <watcher-list>: the watchers of one resource's
// subscriptions to one package.
type WatcherList struct {
	Resource string
	Package  string
	Watchers []WatcherEntry
}

// WatcherDoc is one watcherinfo document (RFC 3858 section 3).
type WatcherDoc struct {
	// Version counts the subscription's documents from 0, one more per
	// NOTIFY (RFC 3858 4.3).
	Version uint32
	// Full selects state="full" (every current watcher) rather than
	// state="partial" (only the watchers that changed).
	Full  bool
	Lists []WatcherList
}

// AppendWatcherinfo appends the application/watcherinfo+xml document to
// dst. now is used for duration-subscribed and expiration. Every string is
// escaped: watcher URIs and display names come from strangers' SUBSCRIBEs.
func AppendWatcherinfo(dst []byte, doc WatcherDoc, now time.Time) []byte {
	dst = append(dst, xmlDecl...)
	dst = append(dst, `<watcherinfo xmlns="`+nsWatcherinfo+`"`...)
	dst = appendVersionState(dst, doc.Version, doc.Full, len(doc.Lists) == 0)
	if len(doc.Lists) == 0 {
		return dst
	}
	for i := range doc.Lists {
		dst = appendWatcherList(dst, &doc.Lists[i], now)
	}
	return append(dst, "</watcherinfo>\n"...)
}

func appendWatcherList(dst []byte, l *WatcherList, now time.Time) []byte {
	dst = append(dst, `  <watcher-list resource="`...)
	dst = appendAttr(dst, l.Resource)
	dst = append(dst, `" package="`...)
	dst = appendAttr(dst, l.Package)
	if len(l.Watchers) == 0 {
		return append(dst, "\"/>\n"...)
	}
	dst = append(dst, "\">\n"...)
	for i := range l.Watchers {
		dst = appendWatcher(dst, &l.Watchers[i], now)
	}
	return append(dst, "  </watcher-list>\n"...)
}

func appendWatcher(dst []byte, w *WatcherEntry, now time.Time) []byte {
	dst = append(dst, `    <watcher id="`...)
	dst = appendAttr(dst, w.ID)
	dst = append(dst, `" status="`...)
	dst = appendAttr(dst, string(w.Status))
	dst = append(dst, `" event="`...)
	dst = appendAttr(dst, string(w.Event))
	dst = append(dst, '"')
	if w.DisplayName != "" {
		dst = append(dst, ` display-name="`...)
		dst = appendAttr(dst, w.DisplayName)
		dst = append(dst, '"')
	}
	if !w.Since.IsZero() {
		dst = append(dst, ` duration-subscribed="`...)
		dst = strconv.AppendUint(dst, wholeSeconds(now.Sub(w.Since)), 10)
		dst = append(dst, '"')
	}
	// expiration says how long the subscription has left: meaningless
	// once it ended.
	if w.Status == WatcherActive && !w.Expires.IsZero() {
		dst = append(dst, ` expiration="`...)
		dst = strconv.AppendUint(dst, wholeSeconds(w.Expires.Sub(now)), 10)
		dst = append(dst, '"')
	}
	dst = append(dst, '>')
	dst = appendText(dst, w.URI)
	return append(dst, "</watcher>\n"...)
}
