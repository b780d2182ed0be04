package watch

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// examples are the RFCs' own example documents (rfc*.xml), documents
// built to the RFCs' rules (constructed/) and documents the schemas
// reject (negative/).
const examples = "../../testdata/examples"

func readExample(t testing.TB, name string) []byte {
	t.Helper()
	return readIn(t, examples, name)
}

// readIn returns the file dir/name, failing t when it cannot.
func readIn(t testing.TB, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return b
}

func u64(v uint64) *uint64 { return &v }

func eqU64(a, b *uint64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func TestParseReginfoExamples(t *testing.T) {
	const instance = `"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"`
	tests := []struct {
		file    string
		version uint32
		state   string
		regs    []Registration
	}{
		{
			file: "rfc3680-s5.3-reginfo-full.xml", version: 0, state: StateFull,
			regs: []Registration{{AOR: "sip:user@example.com", ID: "as9", State: "active", Contacts: []Contact{
				{ID: "76", State: "active", Event: "registered", URI: "sip:user@pc887.example.com", DurationRegistered: u64(7322), Q: "0.8"},
				{ID: "77", State: "terminated", Event: "expired", URI: "sip:user@university.edu", DurationRegistered: u64(3600), Q: "0.5"},
			}}},
		},
		{
			file: "rfc3680-s6-msg3-notify-init-full.xml", version: 0, state: StateFull,
			regs: []Registration{{AOR: "sip:joe@example.com", ID: "a7", State: "init"}},
		},
		{
			file: "rfc3680-s6-msg7-notify-partial.xml", version: 1, state: StatePartial,
			regs: []Registration{{AOR: "sip:joe@example.com", ID: "a7", State: "active", Contacts: []Contact{
				{ID: "76", State: "active", Event: "registered", URI: "sip:joe@pc34.example.com", DurationRegistered: u64(0)},
			}}},
		},
		{
			file: "rfc5628-s7-reginfo-gruu.xml", version: 0, state: StateFull,
			regs: []Registration{{AOR: "sip:user@example.com", ID: "as9", State: "active", Contacts: []Contact{{
				ID: "76", State: "active", Event: "registered", URI: "sip:user@192.0.2.1",
				DurationRegistered: u64(36001), Expires: u64(3599), CallID: "1j9FpLxk3uxtm8tn@192.0.2.1", CSeq: u64(54321), Q: "0.8",
				Params:   map[string]string{"+sip.instance": instance},
				PubGRUU:  "sip:user@example.com;gr=hha9s8d-999a",
				TempGRUU: "sip:8ffkas08af7fasklzi9@example.com;gr", TempGRUUFirstCSeq: u64(54301),
			}}}},
		},
		{
			// E.51: the <uri> text is folded over lines and must be trimmed.
			file: "rfc5628-s8.2-notify-implicit-registration.xml", version: 1, state: StateFull,
			regs: []Registration{
				{AOR: "sip:user_aor_1@example.net", ID: "a7", State: "active", Contacts: []Contact{{
					ID: "92", State: "active", Event: "registered", URI: "sip:ua.example.com",
					DurationRegistered: u64(1), Expires: u64(3599), CallID: "faif9a@ua.example.com", CSeq: u64(23001),
					Params:   map[string]string{"+sip.instance": instance},
					PubGRUU:  "sip:user_aor_1@example.net;gr=hha9s8d-999a",
					TempGRUU: "sip:8ffkas08af7fasklzi9@example.net;gr", TempGRUUFirstCSeq: u64(54301),
				}}},
				{AOR: "sip:user_aor_2@example.net", ID: "a8", State: "active", Contacts: []Contact{{
					ID: "93", State: "active", Event: "created", URI: "sip:ua.example.com",
					DurationRegistered: u64(1), Expires: u64(3599), CallID: "faif9a@ua.example.com", CSeq: u64(23001),
					Params:   map[string]string{"+sip.instance": instance},
					PubGRUU:  "sip:user_aor_2@example.net;gr=hha9s8d-999b",
					TempGRUU: "sip:07hcovy36vp6vngvbia@example.net;gr", TempGRUUFirstCSeq: u64(54301),
				}}},
				{AOR: "sip:+358504821437@example.net;user=phone", ID: "a9", State: "active", Contacts: []Contact{{
					ID: "94", State: "active", Event: "created", URI: "sip:ua.example.com",
					DurationRegistered: u64(1), Expires: u64(3599), CallID: "faif9a@ua.example.com", CSeq: u64(23001),
					Params:   map[string]string{"+sip.instance": instance},
					PubGRUU:  "sip:+358504821437@example.net;user=phone;gr=hha9s8d-999c",
					TempGRUU: "sip:h99egjbv17fe8ibvlka@example.net;gr", TempGRUUFirstCSeq: u64(54301),
				}}},
			},
		},
		{
			file: "constructed/reginfo-full-display-name-params.xml", version: 0, state: StateFull,
			regs: []Registration{{AOR: "sip:joe@example.com", ID: "a7", State: "active", Contacts: []Contact{{
				ID: "c-1", State: "active", Event: "registered", URI: "sip:joe@198.51.100.7:5060;transport=tcp",
				Expires: u64(3580), DurationRegistered: u64(20), Q: "1.0", CallID: "abc@host", CSeq: u64(2),
				DisplayName: "Joe's Desk Phone",
				Params: map[string]string{
					"+sip.instance": `"<urn:uuid:00000000-0000-1000-8000-000000000001>"`,
					"reg-id":        "1",
					"video":         "",
				},
			}}}},
		},
		{
			file: "constructed/reginfo-partial-probation.xml", version: 3, state: StatePartial,
			regs: []Registration{{AOR: "sip:joe@example.com", ID: "a7", State: "terminated", Contacts: []Contact{
				{ID: "76", State: "terminated", Event: "probation", RetryAfter: u64(600), URI: "sip:joe@pc34.example.com"},
			}}},
		},
		{
			file: "constructed/reginfo-partial-shortened.xml", version: 2, state: StatePartial,
			regs: []Registration{{AOR: "sip:joe@example.com", ID: "a7", State: "active", Contacts: []Contact{
				{ID: "76", State: "active", Event: "shortened", Expires: u64(30), DurationRegistered: u64(1800),
					CallID: "88askjda9@pc34.example.com", CSeq: u64(9977), URI: "sip:joe@pc34.example.com"},
			}}},
		},
		{
			file: "constructed/reginfo-partial-unregistered.xml", version: 4, state: StatePartial,
			regs: []Registration{{AOR: "sip:joe@example.com", ID: "a7", State: "terminated", Contacts: []Contact{
				{ID: "76", State: "terminated", Event: "unregistered", CallID: "88askjda9@pc34.example.com", CSeq: u64(9980),
					URI: "sip:joe@pc34.example.com"},
			}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			doc, err := ParseReginfo(readExample(t, tc.file))
			if err != nil {
				t.Fatalf("ParseReginfo: %v", err)
			}
			if doc.Version != tc.version || doc.State != tc.state {
				t.Errorf("version/state = %d/%q, want %d/%q", doc.Version, doc.State, tc.version, tc.state)
			}
			if !slices.EqualFunc(doc.Registrations, tc.regs, equalRegistration) {
				t.Errorf("registrations:\n got  %+v\n want %+v", doc.Registrations, tc.regs)
			}
		})
	}
}

func equalRegistration(a, b Registration) bool {
	return a.AOR == b.AOR && a.ID == b.ID && a.State == b.State && slices.EqualFunc(a.Contacts, b.Contacts, equalContact)
}

func equalContact(a, b Contact) bool {
	if len(a.Params) != len(b.Params) {
		return false
	}
	for k, v := range a.Params {
		if w, ok := b.Params[k]; !ok || w != v {
			return false
		}
	}
	return a.ID == b.ID && a.State == b.State && a.Event == b.Event && a.URI == b.URI &&
		eqU64(a.Expires, b.Expires) && eqU64(a.RetryAfter, b.RetryAfter) &&
		eqU64(a.DurationRegistered, b.DurationRegistered) && a.Q == b.Q && a.CallID == b.CallID &&
		eqU64(a.CSeq, b.CSeq) && a.PubGRUU == b.PubGRUU && a.DisplayName == b.DisplayName &&
		a.TempGRUU == b.TempGRUU && eqU64(a.TempGRUUFirstCSeq, b.TempGRUUFirstCSeq)
}

// The negative corpus fails schema validation. The parser refuses what a
// subscriber cannot apply and tolerates the rest (receivers are lenient).
func TestParseReginfoNegative(t *testing.T) {
	tests := []struct {
		file    string
		wantErr string // "" = accepted
	}{
		{"negative/reginfo-missing-version.xml", "missing version"},
		{"negative/reginfo-negative-version.xml", "version"},
		{"negative/reginfo-bad-state.xml", "state"},
		{"negative/registration-missing-id.xml", "without id"},
		{"negative/contact-missing-uri.xml", "without uri"},
		{"negative/contact-expires-not-integer.xml", "expires"},
		{"negative/pidf-bad-basic.xml", "root element"},
		{"negative/pidf-missing-entity.xml", "root element"},
		{"negative/contact-bad-event.xml", ""},
		{"negative/contact-display-name-before-uri.xml", ""},
		{"negative/contact-state-init.xml", ""},
		{"negative/gruu-pub-missing-uri.xml", ""},
		{"negative/gruu-temp-missing-first-cseq.xml", ""},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			_, err := ParseReginfo(readExample(t, tc.file))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ParseReginfo: %v, want success", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("ParseReginfo succeeded, want error containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("ParseReginfo: %v, want error containing %q", err, tc.wantErr)
			case err != nil && !errors.Is(err, ErrInvalidReginfo):
				t.Fatalf("error %v does not wrap ErrInvalidReginfo", err)
			}
		})
	}
}

func TestParseReginfoEdges(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr bool
		check   func(t *testing.T, d *Reginfo)
	}{
		{name: "empty", body: "", wantErr: true},
		{name: "not xml", body: "hello", wantErr: true},
		{name: "truncated", body: `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full"><registration`, wantErr: true},
		{name: "version over 32 bits", body: `<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="4294967296" state="full"/>`, wantErr: true},
		{name: "wrong namespace", body: `<reginfo xmlns="urn:example" version="0" state="full"/>`, wantErr: true},
		{
			name: "no namespace accepted",
			body: `<reginfo version="7" state="partial"><registration aor="sip:a@b" id="r" state="active"/></reginfo>`,
			check: func(t *testing.T, d *Reginfo) {
				if d.Version != 7 || len(d.Registrations) != 1 {
					t.Errorf("got %+v", d)
				}
			},
		},
		{
			name: "unknown namespaces ignored",
			body: `<r:reginfo xmlns:r="urn:ietf:params:xml:ns:reginfo" xmlns:x="urn:x" version="0" state="full" x:extra="1">
				<x:registration aor="sip:evil@b" id="x"/>
				<r:registration aor="sip:a@b" id="r1" state="active">
					<r:contact id="c" state="active" event="registered" x:expires="soon">
						<x:uri>sip:wrong@b</x:uri>
						<r:uri> sip:a@192.0.2.1 <x:note>ignored</x:note></r:uri>
						<x:contact id="nested"/>
					</r:contact>
				</r:registration>
			</r:reginfo>`,
			check: func(t *testing.T, d *Reginfo) {
				if len(d.Registrations) != 1 || d.Registrations[0].ID != "r1" {
					t.Fatalf("registrations %+v", d.Registrations)
				}
				cs := d.Registrations[0].Contacts
				if len(cs) != 1 || cs[0].URI != "sip:a@192.0.2.1" || cs[0].Expires != nil {
					t.Errorf("contacts %+v", cs)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ParseReginfo([]byte(tc.body))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("ParseReginfo succeeded: %+v", d)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseReginfo: %v", err)
			}
			tc.check(t, d)
		})
	}
}

func doc(version uint32, state string, regs ...Registration) *Reginfo {
	return &Reginfo{Version: version, State: state, Registrations: regs}
}

func reg(id, state string, contacts ...Contact) Registration {
	return Registration{AOR: "sip:" + id + "@example.com", ID: id, State: state, Contacts: contacts}
}

func contact(id, state string) Contact {
	return Contact{ID: id, State: state, Event: "registered", URI: "sip:" + id + "@192.0.2.1"}
}

// viewIDs renders a view as "reg:contact,contact;reg:..." for comparison.
func viewIDs(v *View) string {
	var b strings.Builder
	for i, r := range v.Registrations() {
		if i > 0 {
			b.WriteString(";")
		}
		b.WriteString(r.ID + "=" + r.State + ":")
		for j, c := range r.Contacts {
			if j > 0 {
				b.WriteString(",")
			}
			b.WriteString(c.ID)
		}
	}
	return b.String()
}

func TestViewApply(t *testing.T) {
	type step struct {
		doc         *Reginfo
		applied     bool
		needRefresh bool
		view        string
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "in order",
			steps: []step{
				{doc(0, StateFull, reg("a", "active", contact("c1", "active"))), true, false, "a=active:c1"},
				{doc(1, StatePartial, reg("a", "active", contact("c2", "active"))), true, false, "a=active:c1,c2"},
				{doc(2, StatePartial, reg("a", "active", contact("c1", "terminated"))), true, false, "a=active:c2"},
			},
		},
		{
			// E.47: versions 0, 1, 3: document 3 is processed, then a refresh.
			name: "gap processed and asks for refresh",
			steps: []step{
				{doc(0, StateFull, reg("a", "active", contact("c1", "active"))), true, false, "a=active:c1"},
				{doc(1, StatePartial, reg("a", "active", contact("c2", "active"))), true, false, "a=active:c1,c2"},
				{doc(3, StatePartial, reg("a", "active", contact("c3", "active"))), true, true, "a=active:c1,c2,c3"},
				{doc(4, StatePartial, reg("a", "active", contact("c4", "active"))), true, false, "a=active:c1,c2,c3,c4"},
			},
		},
		{
			// E.48: a lower version is ignored; so is a duplicate.
			name: "stale and duplicate ignored",
			steps: []step{
				{doc(5, StateFull, reg("a", "active", contact("c1", "active"))), true, false, "a=active:c1"},
				{doc(4, StatePartial, reg("a", "active", contact("c9", "active"))), false, false, "a=active:c1"},
				{doc(5, StatePartial, reg("a", "active", contact("c9", "active"))), false, false, "a=active:c1"},
				{doc(3, StateFull), false, false, "a=active:c1"},
				{doc(6, StatePartial, reg("a", "active", contact("c2", "active"))), true, false, "a=active:c1,c2"},
			},
		},
		{
			// E.48: a full document after partials rebuilds the tables.
			name: "full flushes",
			steps: []step{
				{doc(0, StateFull, reg("a", "active", contact("c1", "active")), reg("b", "active", contact("c2", "active"))), true, false, "a=active:c1;b=active:c2"},
				{doc(1, StatePartial, reg("a", "active", contact("c3", "active"))), true, false, "a=active:c1,c3;b=active:c2"},
				{doc(2, StateFull, reg("a", "active", contact("c4", "active"))), true, false, "a=active:c4"},
			},
		},
		{
			// E.49: a partial document with an unknown registration id.
			name: "partial creates table",
			steps: []step{
				{doc(0, StateFull, reg("a", "init")), true, false, "a=init:"},
				{doc(1, StatePartial, reg("b", "active", contact("c1", "active"))), true, false, "a=init:;b=active:c1"},
				{doc(2, StatePartial, reg("b", "terminated", contact("c1", "terminated"))), true, false, "a=init:;b=terminated:"},
			},
		},
		{
			name: "full with a gap needs no refresh",
			steps: []step{
				{doc(0, StateFull, reg("a", "init")), true, false, "a=init:"},
				{doc(9, StateFull, reg("a", "active", contact("c1", "active"))), true, false, "a=active:c1"},
			},
		},
		{
			name: "first document partial asks for refresh",
			steps: []step{
				{doc(3, StatePartial, reg("a", "active", contact("c1", "active"))), true, true, "a=active:c1"},
				{doc(4, StatePartial, reg("a", "active", contact("c2", "active"))), true, false, "a=active:c1,c2"},
			},
		},
		{
			name: "version wraps",
			steps: []step{
				{doc(4294967295, StateFull, reg("a", "init")), true, false, "a=init:"},
				{doc(0, StatePartial, reg("a", "active", contact("c1", "active"))), true, false, "a=active:c1"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var v View
			for i, s := range tc.steps {
				applied, need := v.Apply(s.doc)
				if applied != s.applied || need != s.needRefresh {
					t.Errorf("step %d (version %d): applied=%v needRefresh=%v, want %v %v", i, s.doc.Version, applied, need, s.applied, s.needRefresh)
				}
				if got := viewIDs(&v); got != s.view {
					t.Errorf("step %d: view %q, want %q", i, got, s.view)
				}
			}
		})
	}
}

func TestViewFromExamples(t *testing.T) {
	var v View
	for _, f := range []string{"rfc3680-s6-msg3-notify-init-full.xml", "rfc3680-s6-msg7-notify-partial.xml"} {
		d, err := ParseReginfo(readExample(t, f))
		if err != nil {
			t.Fatal(err)
		}
		if applied, need := v.Apply(d); !applied || need {
			t.Fatalf("%s: applied=%v needRefresh=%v", f, applied, need)
		}
	}
	if got := viewIDs(&v); got != "a7=active:76" {
		t.Errorf("view %q", got)
	}
	if ver, ok := v.Version(); !ok || ver != 1 {
		t.Errorf("version %d %v", ver, ok)
	}
	v.Reset()
	if _, ok := v.Version(); ok || len(v.Registrations()) != 0 {
		t.Error("Reset left state behind")
	}
}

func FuzzParseReginfo(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(examples, "*.xml"))
	more, _ := filepath.Glob(filepath.Join(examples, "*", "*.xml"))
	f.Add([]byte(`<reginfo version="0" state="full"><registration aor="a" id="r"><contact id="c"><uri>x</uri></contact></registration></reginfo>`))
	fuzzParser(f, append(files, more...), ParseReginfo, func(d *Reginfo) string {
		var v View
		v.Apply(d)
		v.Apply(d)
		_ = v.Registrations()
		return d.State
	})
}

// fuzzParser fuzzes parse from the seed files: a document comes back
// only without an error, in state full or partial, and use (which
// applies it to a view) does not panic; use returns the document's state.
func fuzzParser[D any](f *testing.F, seeds []string, parse func([]byte) (*D, error), use func(*D) string) {
	for _, name := range seeds {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		d, err := parse(body)
		if err != nil {
			if d != nil {
				t.Fatal("document returned with an error")
			}
			return
		}
		if st := use(d); st != StateFull && st != StatePartial {
			t.Fatalf("state %q accepted", st)
		}
	})
}
