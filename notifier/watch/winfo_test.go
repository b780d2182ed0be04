package watch

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdata holds the RFC 3858 example and regbridge's own winfo golden
// documents.
const testdata = "../../testdata"

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	return readIn(t, testdata, name)
}

// TestParseWatcherinfoExample reads the RFC 3858 section 5 example.
func TestParseWatcherinfoExample(t *testing.T) {
	d, err := ParseWatcherinfo(readTestdata(t, "schema/rfc3858-s5-watcherinfo.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != 0 || d.State != StateFull || len(d.Lists) != 1 {
		t.Fatalf("document %+v", d)
	}
	l := d.Lists[0]
	if l.Resource != "sip:professor@example.net" || l.Package != "presence" || len(l.Watchers) != 2 {
		t.Fatalf("list %+v", l)
	}
	a, b := l.Watchers[0], l.Watchers[1]
	if a.ID != "8ajksjda7s" || a.Status != "active" || a.Event != "approved" || a.URI != "sip:userA@example.net" ||
		!eqU64(a.DurationSubscribed, u64(509)) || a.Expiration != nil || a.DisplayName != "" {
		t.Errorf("first watcher %+v", a)
	}
	if b.ID != "hh8juja87s997-ass7" || b.Status != "pending" || b.Event != "subscribe" || b.URI != "sip:userB@example.org" ||
		b.DisplayName != "Mr. Subscriber" || b.DurationSubscribed != nil {
		t.Errorf("second watcher %+v", b)
	}
}

// TestParseWatcherinfoGolden reads every watcherinfo document regbridge's
// writer produced for its golden files, the hostile one included.
func TestParseWatcherinfoGolden(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testdata, "reginfo", "winfo-*.xml"))
	if len(files) < 5 {
		t.Fatalf("found %d winfo golden files", len(files))
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		d, err := ParseWatcherinfo(b)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		if strings.Contains(f, "hostile") && !strings.Contains(d.Lists[0].Watchers[0].DisplayName, "a<b>&c\"d'e]]>f") {
			t.Errorf("hostile display name read back as %q", d.Lists[0].Watchers[0].DisplayName)
		}
	}
}

func TestParseWatcherinfoNegative(t *testing.T) {
	for name, body := range map[string]string{
		"reginfo root":      `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full"/>`,
		"no version":        `<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" state="full"/>`,
		"negative version":  `<watcherinfo version="-1" state="full"/>`,
		"bad state":         `<watcherinfo version="0" state="some"/>`,
		"list without pkg":  `<watcherinfo version="0" state="full"><watcher-list resource="sip:a@b"/></watcherinfo>`,
		"watcher no id":     `<watcherinfo version="0" state="full"><watcher-list resource="r" package="reg"><watcher status="active">sip:x@y</watcher></watcher-list></watcherinfo>`,
		"watcher no status": `<watcherinfo version="0" state="full"><watcher-list resource="r" package="reg"><watcher id="1">sip:x@y</watcher></watcher-list></watcherinfo>`,
		"bad expiration":    `<watcherinfo version="0" state="full"><watcher-list resource="r" package="reg"><watcher id="1" status="active" expiration="soon">sip:x@y</watcher></watcher-list></watcherinfo>`,
	} {
		t.Run(name, func(t *testing.T) {
			d, err := ParseWatcherinfo([]byte(body))
			if err == nil || d != nil {
				t.Fatalf("accepted: %+v", d)
			}
			if !errors.Is(err, ErrInvalidWatcherinfo) {
				t.Errorf("error %v does not wrap ErrInvalidWatcherinfo", err)
			}
		})
	}
	if _, err := ParseWatcherinfo([]byte(`<watcherinfo version="0" state="full"><watcher-list`)); err == nil {
		t.Error("truncated document accepted")
	}
}

// TestWatcherViewApply: full state replaces, partial state adds and
// removes (terminated watchers leave), and the version rules are those of
// the reg package: stale documents ignored, a gap asks for a refresh.
func TestWatcherViewApply(t *testing.T) {
	doc := func(v uint32, state string, ws ...Watcher) *Watcherinfo {
		return &Watcherinfo{Version: v, State: state, Lists: []WatcherList{{Resource: "sip:a@b", Package: "reg", Watchers: ws}}}
	}
	w := func(id, status string) Watcher { return Watcher{ID: id, Status: status, URI: "sip:" + id + "@x"} }
	ids := func(v *WatcherView) string {
		var out []string
		for _, l := range v.Lists() {
			for _, x := range l.Watchers {
				out = append(out, x.ID)
			}
		}
		return strings.Join(out, ",")
	}
	var v WatcherView
	steps := []struct {
		doc          *Watcherinfo
		applied, ref bool
		want         string
	}{
		{doc(0, StateFull, w("a", "active"), w("b", "active")), true, false, "a,b"},
		{doc(1, StatePartial, w("c", "active")), true, false, "a,b,c"},
		{doc(2, StatePartial, w("a", "terminated")), true, false, "b,c"},
		{doc(2, StatePartial, w("d", "active")), false, false, "b,c"}, // duplicate
		{doc(4, StatePartial, w("e", "active")), true, true, "b,c,e"}, // gap
		{doc(5, StateFull, w("z", "active")), true, false, "z"},
	}
	for i, st := range steps {
		applied, ref := v.Apply(st.doc)
		if applied != st.applied || ref != st.ref || ids(&v) != st.want {
			t.Fatalf("step %d: applied %v refresh %v view %q, want %v %v %q", i, applied, ref, ids(&v), st.applied, st.ref, st.want)
		}
	}
}

func FuzzParseWatcherinfo(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "reginfo", "winfo-*.xml"))
	files = append(files, filepath.Join(testdata, "schema", "rfc3858-s5-watcherinfo.xml"))
	fuzzParser(f, files, ParseWatcherinfo, func(d *Watcherinfo) string {
		var v WatcherView
		v.Apply(d)
		v.Apply(d)
		_ = v.Lists()
		return d.State
	})
}
