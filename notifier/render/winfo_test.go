package render

import (
	"bytes"
	"encoding/xml"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
)

func bobWatcher(mod ...func(*WatcherEntry)) WatcherEntry {
	w := WatcherEntry{
		ID: "w8ajksjda7s", URI: "sip:bob@example.com", Status: WatcherActive, Event: WatcherSubscribe,
		Since: renderNow.Add(-509 * time.Second), Expires: renderNow.Add(3091 * time.Second),
	}
	for _, m := range mod {
		m(&w)
	}
	return w
}

// TestAppendWatcherinfoGolden renders the documents a winfo subscriber
// receives (RFC 3858 section 3): full state listing the active watchers,
// partial state with one that started or ended, an empty list, and
// hostile watcher identities, each compared with its golden file (which
// TestGoldenFilesValidate checks against watcherinfo.xsd).
func TestAppendWatcherinfoGolden(t *testing.T) {
	carol := bobWatcher(func(w *WatcherEntry) {
		w.ID, w.URI, w.DisplayName = "w2", "sip:carol@example.org", "Carol C."
		w.Since = renderNow.Add(-5 * time.Second)
	})
	list := func(ws ...WatcherEntry) []WatcherList {
		return []WatcherList{{Resource: testAOR, Package: "reg", Watchers: ws}}
	}
	tests := []struct {
		name string
		doc  WatcherDoc
	}{
		{"winfo-full", WatcherDoc{Version: 0, Full: true, Lists: list(bobWatcher(), carol)}},
		{"winfo-full-empty", WatcherDoc{Version: 0, Full: true, Lists: list()}},
		{"winfo-partial-active", WatcherDoc{Version: 1, Lists: list(carol)}},
		{"winfo-partial-terminated", WatcherDoc{Version: 2, Lists: list(bobWatcher(func(w *WatcherEntry) {
			w.Status, w.Event = WatcherTerminated, WatcherEvent("timeout")
		}))}},
		{"winfo-presence", WatcherDoc{Version: 7, Full: true, Lists: []WatcherList{{Resource: testAOR, Package: "presence", Watchers: []WatcherEntry{carol}}}}},
		{"winfo-hostile", WatcherDoc{Version: 3, Lists: []WatcherList{{Resource: hostileAOR, Package: "reg", Watchers: []WatcherEntry{
			bobWatcher(func(w *WatcherEntry) { w.ID, w.URI, w.DisplayName = hostileText, hostileURI, hostileText }),
		}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendWatcherinfo(nil, tt.doc, renderNow)
			checkWellFormed(t, got)
			checkGolden(t, tt.name, got)
		})
	}
}

// winfoFuzzInput is one FuzzAppendWatcherinfo input; the seeds also run
// through xmllint in TestWinfoFuzzSeedsValidate.
type winfoFuzzInput struct {
	resource, pkg, id, uri, name string
	version                      uint32
	sinceSec, expiresSec         int64
	sel                          uint8
}

var winfoFuzzSeeds = []winfoFuzzInput{
	{testAOR, "reg", "w1", "sip:bob@example.com", "Bob", 0, 20, 600, 0x80},
	{hostileAOR, hostileText, hostileText, hostileURI, hostileText, 1, -5, -5, 0x07},
	{"", "", "", "", "", 1 << 31, 0, 0, 0xff},
	{"sip:\u00e9@\u4f8b.jp", "\x00", "\xff", "sip:a&amp;b@h", "\r\n]]>", 9, 1 << 40, -(1 << 40), 0x03},
}

// watcherEvents are the RFC 3857 events regbridge reports.
var watcherEvents = []WatcherEvent{WatcherSubscribe, "timeout", "deactivated", "probation", "rejected", "noresource", "giveup"}

func (in winfoFuzzInput) document() WatcherDoc {
	w := WatcherEntry{ID: in.id, URI: in.uri, DisplayName: in.name, Status: WatcherActive, Event: WatcherSubscribe}
	if ev := watcherEvents[int(in.sel&0x0f)%len(watcherEvents)]; ev != WatcherSubscribe {
		w.Status, w.Event = WatcherTerminated, ev
	}
	if in.sinceSec != 0 {
		w.Since = renderNow.Add(-time.Duration(in.sinceSec%(1<<30)) * time.Second)
	}
	if in.expiresSec != 0 {
		w.Expires = renderNow.Add(time.Duration(in.expiresSec%(1<<30)) * time.Second)
	}
	other := bobWatcher()
	return WatcherDoc{Version: in.version, Full: in.sel&0x80 != 0, Lists: []WatcherList{
		{Resource: in.resource, Package: in.pkg, Watchers: []WatcherEntry{w, other}},
	}}
}

// FuzzAppendWatcherinfo: whatever the watcher identities hold (they come
// from strangers' SUBSCRIBEs), the document is well-formed XML, reads back
// as the escapers' replacement of the input, and keeps the RFC 3858 rules
// regbridge follows (expiration only on active watchers).
func FuzzAppendWatcherinfo(f *testing.F) {
	for _, s := range winfoFuzzSeeds {
		f.Add(s.resource, s.pkg, s.id, s.uri, s.name, s.version, s.sinceSec, s.expiresSec, s.sel)
	}
	f.Fuzz(func(t *testing.T, resource, pkg, id, uri, name string, version uint32, sinceSec, expiresSec int64, sel uint8) {
		in := winfoFuzzInput{resource, pkg, id, uri, name, version, sinceSec, expiresSec, sel}
		doc := in.document()
		got := AppendWatcherinfo(nil, doc, renderNow)
		checkWellFormed(t, got)
		var x siptest.Watcherinfo
		if err := xml.Unmarshal(got, &x); err != nil {
			t.Fatalf("decoding: %v\n%s", err, got)
		}
		if len(x.Lists) != 1 || len(x.Lists[0].Watchers) != 2 {
			t.Fatalf("structure lost:\n%s", got)
		}
		l, w := x.Lists[0], x.Lists[0].Watchers[0]
		norm := func(s string) string { // what XML parsing does to CR LF in text
			return string(bytes.ReplaceAll([]byte(xmlSafe(s)), []byte("\r\n"), []byte("\n")))
		}
		if l.Resource != xmlSafe(resource) || l.Package != xmlSafe(pkg) || w.ID != xmlSafe(id) || w.DisplayName != xmlSafe(name) {
			t.Errorf("attributes read back as %q %q %q %q", l.Resource, l.Package, w.ID, w.DisplayName)
		}
		if w.URI != xmlSafe(uri) && w.URI != norm(uri) {
			t.Errorf("watcher URI read back as %q, want %q", w.URI, xmlSafe(uri))
		}
		if (w.Expiration != "") != (doc.Lists[0].Watchers[0].Status == WatcherActive && expiresSec != 0) {
			t.Errorf("expiration %q on a %s watcher", w.Expiration, w.Status)
		}
		if want := map[bool]string{true: "full", false: "partial"}[doc.Full]; x.State != want {
			t.Errorf("state %q, want %q", x.State, want)
		}
	})
}

// TestWinfoFuzzSeedsValidate runs the fuzz seeds through xmllint.
func TestWinfoFuzzSeedsValidate(t *testing.T) {
	for _, s := range winfoFuzzSeeds {
		doc := AppendWatcherinfo(nil, s.document(), renderNow)
		checkWellFormed(t, doc)
		validateXML(t, schemaWatcherinfo, doc)
	}
}

// TestAppendWatcherinfoAllocs holds the writer to zero allocations once
// dst has grown to the document's size.
func TestAppendWatcherinfoAllocs(t *testing.T) {
	doc := winfoFuzzSeeds[0].document()
	dst := AppendWatcherinfo(nil, doc, renderNow)
	if n := testing.AllocsPerRun(100, func() { dst = AppendWatcherinfo(dst[:0], doc, renderNow) }); n != 0 {
		t.Errorf("AppendWatcherinfo: %v allocs/op, want 0", n)
	}
}
