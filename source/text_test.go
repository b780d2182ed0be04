package source

import (
	"testing"
	"unicode/utf8"
)

func TestPrintable(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"uloc-5f3a-1", true},
		{"sip:alice@example.com", true},
		{"sip:jörg@例え.jp", true},
		{"", true},
		{"with space", false},
		{"tab\there", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"bad\xffutf8", false},
		{"truncated\xe4\xbe", false},
		{"replacement\uFFFDchar", true},
	} {
		if got := Printable(tt.in); got != tt.want {
			t.Errorf("Printable(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if got := Printable([]byte(tt.in)); got != tt.want {
			t.Errorf("Printable([]byte(%q)) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestValidURI(t *testing.T) {
	for in, want := range map[string]bool{
		"sip:alice@192.0.2.1:5060;transport=tcp": true,
		"SIPS:bob@example.com":                   true,
		"tel:+15551234":                          true,
		"http://example.com":                     false,
		"sip:":                                   false,
		"alice@example.com":                      false,
		"sip:a b@example.com":                    false,
		"":                                       false,
	} {
		if got := ValidURI(in); got != want {
			t.Errorf("ValidURI(%q) = %v, want %v", in, got, want)
		}
		if got := ValidURI([]byte(in)); got != want {
			t.Errorf("ValidURI([]byte(%q)) = %v, want %v", in, got, want)
		}
	}
}

func TestAppendAOR(t *testing.T) {
	for _, tt := range []struct{ user, dom, fallback, want string }{
		{"alice", "example.com", "other.org", "sip:alice@example.com"},
		{"alice", "", "example.com", "sip:alice@example.com"},
		{"alice", "", "", "sip:alice"},
		{"alice@example.com", "", "other.org", "sip:alice@example.com"},
	} {
		if got := string(AppendAOR(nil, tt.user, tt.dom, tt.fallback)); got != tt.want {
			t.Errorf("AppendAOR(%q, %q, %q) = %q, want %q", tt.user, tt.dom, tt.fallback, got, tt.want)
		}
		if got := string(AppendAOR(nil, []byte(tt.user), []byte(tt.dom), tt.fallback)); got != tt.want {
			t.Errorf("AppendAOR bytes = %q, want %q", got, tt.want)
		}
	}
}

func TestParseUint(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"4294967295", 1<<32 - 1, true},
		{"18446744073709551615", 1<<64 - 1, true},
		{"00000000000000000007", 7, true},
		{"18446744073709551616", 0, false},
		{"99999999999999999999", 0, false},
		{"000000000000000000007", 0, false}, // 21 digits
		{"", 0, false},
		{"+1", 0, false},
		{"-1", 0, false},
		{"1 ", 0, false},
		{"0x1", 0, false},
	} {
		got, ok := ParseUint(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseUint(%q) = %d, %v, want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		if got, ok := ParseUint([]byte(tt.in)); got != tt.want || ok != tt.ok {
			t.Errorf("ParseUint([]byte(%q)) = %d, %v, want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestPrintableAllocs(t *testing.T) {
	b := []byte("sip:jörg@例え.jp;transport=tcp")
	if n := testing.AllocsPerRun(100, func() { Printable(b); ValidURI(b) }); n != 0 {
		t.Fatalf("%v allocations per call, want 0", n)
	}
}

func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"sip:a@b", "a\xffb", "ü", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := utf8.ValidString(s)
		for i := 0; i < len(s); i++ {
			if s[i] <= ' ' || s[i] == 0x7f {
				want = false
			}
		}
		if got := Printable(s); got != want {
			t.Fatalf("Printable(%q) = %v, want %v", s, got, want)
		}
	})
}
