package substore

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// legacyContacts are contacts record values as releases before versioned
// formats wrote them (format 0: source.Contact marshalled as it was),
// copied byte for byte.
var legacyContacts = map[string]string{
	"ruid-1": `{"Key":"ruid-1","AOR":"sip:alice@example.com","URI":"sip:alice@192.0.2.10:5060;transport=tcp","Expires":"2026-12-07T04:00:00.5Z","Q":0.5,"CallID":"c1@pc","CSeq":42,"Modified":"2026-12-07T03:00:00Z","UserAgent":"Phone/1.0","Instance":"\u003curn:uuid:00000000-0000-1000-8000-000A95A0E128\u003e","RegID":1,"Received":"sip:198.51.100.1:5060","Path":"\u003csip:edge.example.com;lr\u003e","Socket":"tcp:192.0.2.1:5060","Administrative":true}`,
	"ruid-2": `{"Key":"ruid-2","AOR":"sip:bob@example.com","URI":"sip:bob@h","Expires":"0001-01-01T00:00:00Z","Q":-1,"CallID":"","CSeq":0,"Modified":"0001-01-01T00:00:00Z","UserAgent":"","Instance":"","RegID":0,"Received":"","Path":"","Socket":"","Administrative":false}`,
}

// legacyWant is what legacyContacts hold.
var legacyWant = map[string]source.Contact{
	"ruid-1": {Key: "ruid-1", AOR: "sip:alice@example.com", URI: "sip:alice@192.0.2.10:5060;transport=tcp",
		Expires: time.Date(2026, 12, 7, 4, 0, 0, 500000000, time.UTC), Q: 0.5, CallID: "c1@pc", CSeq: 42,
		Modified: time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC), UserAgent: "Phone/1.0",
		Instance: "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", RegID: 1, Received: "sip:198.51.100.1:5060",
		Path: "<sip:edge.example.com;lr>", Socket: "tcp:192.0.2.1:5060", Administrative: true},
	"ruid-2": {Key: "ruid-2", AOR: "sip:bob@example.com", URI: "sip:bob@h", Q: -1},
}

func sameContact(a, b source.Contact) bool {
	ea, eb, ma, mb := a.Expires, b.Expires, a.Modified, b.Modified
	a.Expires, b.Expires, a.Modified, b.Modified = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return a == b && ea.Equal(eb) && ma.Equal(mb)
}

// TestDecodeContactFormats: format 0 and format 1 values read as the same
// contact; a value of a newer format is refused, not misread.
func TestDecodeContactFormats(t *testing.T) {
	for key, js := range legacyContacts {
		want := legacyWant[key]
		got, err := DecodeContact([]byte(js))
		if err != nil || !sameContact(got, want) {
			t.Errorf("format 0 %s: %+v %v, want %+v", key, got, err, want)
		}
		rec := contactRecordOf(&want)
		v1, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(v1), `{"v":1,"key":`) {
			t.Errorf("format 1 value %s", v1)
		}
		if got, err := DecodeContact(v1); err != nil || !sameContact(got, want) {
			t.Errorf("format 1 %s: %+v %v, want %+v", key, got, err, want)
		}
	}
	if _, err := DecodeContact([]byte(`{"v":2,"key":"k"}`)); err == nil {
		t.Error("format 2 read")
	}
}

// TestContactsUpgradeInPlace: a contacts record written by the code
// before versioned formats is read by this one, mixed with values it
// writes itself; what it rewrites is in the current format.
func TestContactsUpgradeInPlace(t *testing.T) {
	rdb, prefix := testRedis(t)
	ctx := context.Background()
	st := newStore(rdb, prefix, "a", time.Second)
	for k, js := range legacyContacts {
		if err := rdb.HSet(ctx, st.contactsKey(), k, js).Err(); err != nil {
			t.Fatal(err)
		}
	}
	fresh := source.Contact{Key: "ruid-3", AOR: "sip:carol@example.com", URI: "sip:carol@h", Q: 1, CSeq: 7}
	if err := st.WriteContacts(ctx, []source.Contact{fresh}, nil); err != nil {
		t.Fatal(err)
	}
	got, err := st.LoadContacts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]source.Contact{"ruid-3": fresh}
	for k, c := range legacyWant {
		want[k] = c
	}
	if len(got) != len(want) {
		t.Fatalf("loaded %d contacts, want %d: %+v", len(got), len(want), got)
	}
	for _, c := range got {
		if !sameContact(c, want[c.Key]) {
			t.Errorf("%s: %+v, want %+v", c.Key, c, want[c.Key])
		}
	}
	if err := st.WriteContacts(ctx, got, nil); err != nil {
		t.Fatal(err)
	}
	for k := range want {
		js, err := rdb.HGet(ctx, st.contactsKey(), k).Result()
		if err != nil || !strings.HasPrefix(js, `{"v":1,`) {
			t.Errorf("%s rewritten as %s (%v)", k, js, err)
		}
	}
}

// TestRecordFormat: subscription records and watchers carry "v":1, and a
// value written without it (before formats were versioned) still reads.
func TestRecordFormat(t *testing.T) {
	r := rec("s1")
	js, err := encodeV1(r)
	if err != nil || !strings.HasPrefix(string(js), `{"v":1,"call_id":`) {
		t.Fatalf("record %s %v", js, err)
	}
	var back Record
	if err := decodeV1(js, &back); err != nil || back.Target != r.Target || !back.Expires.Equal(r.Expires) {
		t.Fatalf("record round trip: %+v %v", back, err)
	}
	old := `{"call_id":"c","local_tag":"l","remote_tag":"r","local_uri":"sip:a@x","remote_uri":"sip:w@x","target":"sip:w@h","remote_cseq":1,"transport":"UDP","source":"127.0.0.1:5070","contact":"<sip:rb@h>","package":"reg","event":"reg","aor":"sip:a@x","expires":"2026-12-07T04:00:00Z"}`
	if err := decodeV1([]byte(old), &back); err != nil || back.CallID != "c" || back.Contact != "<sip:rb@h>" {
		t.Fatalf("record without v: %+v %v", back, err)
	}
	if err := decodeV1([]byte(`{"v":9}`), &back); err == nil {
		t.Error("record of format 9 read")
	}
	w := Watcher{ID: "w1", Package: "reg", AOR: "sip:a@x", URI: "sip:w@x", Since: time.Unix(1, 0).UTC(), Expires: time.Unix(2, 0).UTC()}
	js, err = encodeV1(&w)
	if err != nil || !strings.HasPrefix(string(js), `{"v":1,"id":"w1"`) {
		t.Fatalf("watcher %s %v", js, err)
	}
	var wb Watcher
	if err := decodeV1(js, &wb); err != nil || wb != w {
		t.Fatalf("watcher round trip: %+v %v", wb, err)
	}
	if err := decodeV1([]byte(`{"id":"w2","package":"reg","aor":"sip:a@x","uri":"sip:w@x","since":"2026-12-07T03:00:00Z","expires":"2026-12-07T04:00:00Z"}`), &wb); err != nil || wb.ID != "w2" {
		t.Fatalf("watcher without v: %+v %v", wb, err)
	}
}
