package digest

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestParseCredentials(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want credentials
		err  error
	}{
		{name: "typical",
			in:   `Digest username="alice", realm="example.com", nonce="n1", uri="sip:alice@example.com", response="abc", algorithm=SHA-256, cnonce="c1", qop=auth, nc=00000001`,
			want: credentials{username: "alice", realm: "example.com", nonce: "n1", uri: "sip:alice@example.com", response: "abc", algorithm: "SHA-256", cnonce: "c1", qop: "auth", nc: 1, hasNC: true}},
		{name: "names in any case, tabs, empty list elements, lower-case scheme",
			in:   "digest\tUserName=\"a\" ,, REALM=\"r\",Nonce=\"n\",URI=\"u\",Response=\"x\",",
			want: credentials{username: "a", realm: "r", nonce: "n", uri: "u", response: "x"}},
		{name: "escapes in quoted strings",
			in:   `Digest username="a\"b\\c", realm="r", nonce="n", uri="u", response="x"`,
			want: credentials{username: `a"b\c`, realm: "r", nonce: "n", uri: "u", response: "x"}},
		{name: "unknown parameters are ignored",
			in:   `Digest username="a", realm="r", nonce="n", uri="u", response="x", foo=bar, baz="q"`,
			want: credentials{username: "a", realm: "r", nonce: "n", uri: "u", response: "x"}},
		{name: "not digest", in: `Basic YWxhZGRpbjpvcGVuc2VzYW1l`, err: errNotDigest},
		{name: "scheme only", in: `Digest`, err: errMissing},
		{name: "missing response", in: `Digest username="a", realm="r", nonce="n", uri="u"`, err: errMissing},
		{name: "duplicate username", in: `Digest username="a", username="b", realm="r", nonce="n", uri="u", response="x"`, err: errDuplicate},
		{name: "duplicate in another case", in: `Digest realm="r", REALM="s", username="a", nonce="n", uri="u", response="x"`, err: errDuplicate},
		{name: "unterminated quote", in: `Digest username="a, realm="r"`, err: errMalformed},
		{name: "control character in quoted string", in: "Digest username=\"a\x00b\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\"", err: errMalformed},
		{name: "missing comma", in: `Digest username="a" realm="r"`, err: errMalformed},
		{name: "missing value", in: `Digest username=, realm="r"`, err: errMalformed},
		{name: "nc too short", in: `Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c", nc=1`, err: errBadNC},
		{name: "nc zero", in: `Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c", nc=00000000`, err: errBadNC},
		{name: "nc negative", in: `Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c", nc=-0000001`, err: errBadNC},
		{name: "nc quoted", in: `Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, cnonce="c", nc="00000001"`, err: errBadNC},
		{name: "qop without cnonce", in: `Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, nc=00000001`, err: errBadQOP},
		{name: "too long", in: "Digest username=\"" + strings.Repeat("a", maxHeaderLen) + "\"", err: errTooLong},
		{name: "too many params", in: "Digest " + strings.Repeat("x=y, ", maxParams+1), err: errMalformed},
		{name: "long username", in: `Digest username="` + strings.Repeat("a", 300) + `", realm="r", nonce="n", uri="u", response="x"`, err: errBadUserLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCredentials(tt.in)
			if err != tt.err {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// FuzzParseCredentials: no input panics, and whatever parses keeps the
// promises the checker relies on.
func FuzzParseCredentials(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := parseCredentials(in)
		if err != nil {
			return
		}
		if c.username == "" || c.realm == "" || c.nonce == "" || c.uri == "" || c.response == "" {
			t.Fatalf("parsed without a required field: %+v", c)
		}
		if c.qop != "" && (c.cnonce == "" || !c.hasNC || c.nc == 0) {
			t.Fatalf("qop without cnonce/nc: %+v", c)
		}
		for _, v := range []string{c.username, c.realm, c.nonce, c.uri, c.response, c.cnonce} {
			if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' }) {
				t.Fatalf("control character in a value: %q", v)
			}
		}
	})
}

// FuzzCheck sends a SUBSCRIBE with an arbitrary Authorization header:
// every outcome is a well-formed response of an expected code, never a
// panic and never an authentication.
func FuzzCheck(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	a := newAuth(f, Config{Realm: "example.com"}, testUsers, nil)
	base := subscribe(f, "sip:alice@example.com", "sip:alice@example.com")
	_, first := a.Check(f.Context(), base)
	nonce := challengeFor(f, first, MD5).Nonce
	f.Add(`Digest username="alice", realm="example.com", nonce="` + nonce + `", uri="sip:alice@example.com", response="00000000000000000000000000000000", qop=auth, cnonce="c", nc=00000001`)
	f.Fuzz(func(t *testing.T, auth string) {
		req := base.Clone()
		req.AppendHeader(sip.NewHeader("Authorization", auth))
		r, res := a.Check(t.Context(), req)
		if res == nil {
			t.Fatalf("authenticated %q by %q", r.Identity, auth)
		}
		switch res.StatusCode {
		case 401:
			if len(res.GetHeaders("WWW-Authenticate")) != 2 {
				t.Fatalf("401 with %d challenges", len(res.GetHeaders("WWW-Authenticate")))
			}
		case 400, 403:
		default:
			t.Fatalf("status %d for %q", res.StatusCode, auth)
		}
		if _, err := sip.ParseMessage([]byte(res.String())); err != nil {
			t.Fatalf("response does not parse back: %v\n%s", err, res.String())
		}
	})
}

var fuzzSeeds = []string{
	`Digest username="alice", realm="example.com", nonce="n", uri="sip:alice@example.com", response="x", algorithm=MD5, cnonce="c", qop=auth, nc=00000001`,
	`Digest username="alice", realm="example.com", nonce="n", uri="sip:alice@example.com", response="x"`,
	`Digest username=alice,realm=example.com,nonce=n,uri=sip:alice@example.com,response=x`,
	`Digest username="a\"b", realm="example.com"`,
	`Digest ,,,,`,
	`Digest username="`,
	`Basic abc`,
	`digest nc=ffffffff, qop=auth-int, algorithm=SHA-512-256, userhash=true`,
	"Digest username=\"\xff\xfe\", realm=\"example.com\", nonce=\"\x00\"",
	"",
}
