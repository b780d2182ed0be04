package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// xmlDoc is encoding/xml's reading of the same attributes, the reference.
type xmlDoc struct {
	Version string `xml:"version,attr"`
	State   string `xml:"state,attr"`
	Regs    []struct {
		AOR      string `xml:"aor,attr"`
		Contacts []struct {
			State string `xml:"state,attr"`
			Event string `xml:"event,attr"`
			CSeq  string `xml:"cseq,attr"`
		} `xml:"contact"`
	} `xml:"registration"`
}

// bodies are the project's golden reginfo documents (rendered by
// regbridge, hostile input included) and the NOTIFY bodies in testdata.
func bodies(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	files, _ := filepath.Glob("../../testdata/reginfo/*.xml")
	for _, f := range files {
		if base := filepath.Base(f); strings.HasPrefix(base, "pidf") || strings.HasPrefix(base, "winfo") {
			continue // presence and watcher-information documents, not reginfo
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	for name, data := range fixtures(t) {
		var m message
		if parse(data, &m) == nil && len(m.body) > 0 && m.body[0] == '<' {
			out[name] = m.body
		}
	}
	if len(out) < 3 {
		t.Fatalf("only %d reginfo documents found", len(out))
	}
	return out
}

func TestScanReginfoAgreesWithEncodingXML(t *testing.T) {
	for name, body := range bodies(t) {
		t.Run(name, func(t *testing.T) {
			var want xmlDoc
			if err := xml.Unmarshal(body, &want); err != nil {
				t.Fatal(err)
			}
			var d reginfo
			if err := scanReginfo(body, &d); err != nil {
				t.Fatalf("scanReginfo: %v", err)
			}
			if strconv.FormatUint(uint64(d.version), 10) != want.Version || d.full != (want.State == "full") {
				t.Errorf("version %d full %v, want %s %s", d.version, d.full, want.Version, want.State)
			}
			if d.nreg != len(want.Regs) {
				t.Fatalf("%d registrations, want %d", d.nreg, len(want.Regs))
			}
			var contacts []contactInfo
			for _, r := range want.Regs {
				for _, c := range r.Contacts {
					n := int64(-1)
					if c.CSeq != "" {
						v, _ := strconv.ParseUint(c.CSeq, 10, 32)
						n = int64(v)
					}
					contacts = append(contacts, contactInfo{state: []byte(c.State), event: []byte(c.Event), cseq: n})
				}
			}
			if len(want.Regs) > 0 && !xmlTextEqual(d.aor, want.Regs[0].AOR) {
				t.Errorf("aor %q, want %q", d.aor, want.Regs[0].AOR)
			}
			if d.ncontact != min(len(contacts), maxContacts) {
				t.Fatalf("%d contacts, want %d", d.ncontact, len(contacts))
			}
			for i, c := range d.contacts[:d.ncontact] {
				w := contacts[i]
				if string(c.state) != string(w.state) || string(c.event) != string(w.event) || c.cseq != w.cseq {
					t.Errorf("contact %d: %s %s %d, want %s %s %d", i, c.state, c.event, c.cseq, w.state, w.event, w.cseq)
				}
			}
		})
	}
}

// xmlTextEqual compares a raw attribute value with its decoded form.
func xmlTextEqual(raw []byte, decoded string) bool {
	var v struct {
		A string `xml:"a,attr"`
	}
	if err := xml.Unmarshal([]byte(`<x a="`+string(raw)+`"/>`), &v); err != nil {
		return false
	}
	return v.A == decoded
}

func TestScanReginfoRejects(t *testing.T) {
	for name, body := range map[string]string{
		"empty":       "",
		"not reginfo": `<presence version="1"/>`,
		"no version":  `<reginfo state="full"/>`,
		"bad state":   `<reginfo version="1" state="odd"/>`,
		"bad cseq":    `<reginfo version="1" state="full"><registration aor="a"><contact cseq="x"/></registration></reginfo>`,
		"unclosed":    `<reginfo version="1" state="full"`,
	} {
		var d reginfo
		if err := scanReginfo([]byte(body), &d); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzScanReginfo(f *testing.F) {
	for _, b := range bodies(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var d reginfo
		_ = scanReginfo(body, &d)
	})
}
