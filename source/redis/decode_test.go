package redis

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

func mustZone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestDecodeKamailio(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	newYork := mustZone(t, "America/New_York")
	// The observed Kamailio 5.6.3 entry
	// (docs/stores.md#kamailios-db_redis-layout): 17 fields, written with
	// TZ=Europe/Berlin.
	observed := map[string]string{
		"ruid": "uloc-6741a3b2-5c1-1", "username": "alice", "contact": "sip:alice@192.0.2.10:5060;transport=udp",
		"expires": "2026-11-22 04:21:28", "q": "-1.000000", "callid": "a84b4c76e66710", "cseq": "314159",
		"last_modified": "2026-11-22 03:21:28", "flags": "0", "cflags": "0", "user_agent": "<&\"phone\">",
		"socket": "udp:192.0.2.1:5060", "reg_id": "0", "server_id": "0", "connection_id": "-1", "keepalive": "0", "partition": "0",
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := make(map[string]string, len(base)+len(kv)/2)
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<absent>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	tests := []struct {
		name    string
		key     string
		fields  map[string]string
		loc     *time.Location
		domain  string
		want    source.Contact
		wantErr string
	}{
		{
			name: "observed entry in Europe/Berlin", key: "uloc-6741a3b2-5c1-1", fields: observed, loc: berlin, domain: "example.com",
			want: source.Contact{
				Key: "uloc-6741a3b2-5c1-1", AOR: "sip:alice@example.com", URI: "sip:alice@192.0.2.10:5060;transport=udp",
				Expires: time.Date(2026, 11, 22, 3, 21, 28, 0, time.UTC), Modified: time.Date(2026, 11, 22, 2, 21, 28, 0, time.UTC),
				Q: -1, CallID: "a84b4c76e66710", CSeq: 314159, UserAgent: `<&"phone">`, Socket: "udp:192.0.2.1:5060",
			},
		},
		{
			name: "same text read as UTC is an hour later", key: "k", fields: observed, loc: time.UTC,
			want: source.Contact{
				Key: "k", AOR: "sip:alice", URI: "sip:alice@192.0.2.10:5060;transport=udp",
				Expires: time.Date(2026, 11, 22, 4, 21, 28, 0, time.UTC), Modified: time.Date(2026, 11, 22, 3, 21, 28, 0, time.UTC),
				Q: -1, CallID: "a84b4c76e66710", CSeq: 314159, UserAgent: `<&"phone">`, Socket: "udp:192.0.2.1:5060",
			},
		},
		{
			name: "summer time in New York", key: "k", loc: newYork,
			fields: with(observed, "expires", "2026-07-04 12:00:00", "last_modified", ""),
			want: source.Contact{
				Key: "k", AOR: "sip:alice", URI: observed["contact"], Expires: time.Date(2026, 7, 4, 16, 0, 0, 0, time.UTC),
				Q: -1, CallID: "a84b4c76e66710", CSeq: 314159, UserAgent: `<&"phone">`, Socket: "udp:192.0.2.1:5060",
			},
		},
		{
			name: "permanent in Berlin is 1970-01-01 01:00:00", key: "k", loc: berlin,
			fields: with(observed, "expires", "1970-01-01 01:00:00", "last_modified", "<absent>"),
			want:   source.Contact{Key: "k", AOR: "sip:alice", URI: observed["contact"], Q: -1, CallID: "a84b4c76e66710", CSeq: 314159, UserAgent: `<&"phone">`, Socket: "udp:192.0.2.1:5060"},
		},
		{
			name: "permanent in New York is 1969-12-31 19:00:00", key: "k", loc: newYork,
			fields: with(observed, "expires", "1969-12-31 19:00:00", "last_modified", "<absent>"),
			want:   source.Contact{Key: "k", AOR: "sip:alice", URI: observed["contact"], Q: -1, CallID: "a84b4c76e66710", CSeq: 314159, UserAgent: `<&"phone">`, Socket: "udp:192.0.2.1:5060"},
		},
		{
			name: "expires_type=1 epoch, zero-padded ints, use_domain=1, GRUU", key: "ulcx-1", loc: berlin, domain: "ignored.example",
			fields: with(observed, "expires", "1795000000", "last_modified", "0001794996400", "domain", "example.org",
				"q", "0.500000", "cseq", "0000000042", "instance", "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", "reg_id", "1",
				"received", "sip:198.51.100.7:5062", "path", "<sip:edge.example.org;lr>", "ruid", "ulcx-1"),
			want: source.Contact{
				Key: "ulcx-1", AOR: "sip:alice@example.org", URI: observed["contact"], Expires: time.Unix(1795000000, 0).UTC(),
				Modified: time.Unix(1794996400, 0).UTC(), Q: 0.5, CallID: "a84b4c76e66710", CSeq: 42, UserAgent: `<&"phone">`, Socket: "udp:192.0.2.1:5060",
				Instance: "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", RegID: 1, Received: "sip:198.51.100.7:5062",
				Path: "<sip:edge.example.org;lr>", Administrative: true,
			},
		},
		{
			name: "empty strings are NULLs", key: "k", loc: time.UTC,
			fields: with(observed, "received", "", "path", "", "domain", "", "q", "", "cseq", "", "reg_id", ""),
			want: source.Contact{
				Key: "k", AOR: "sip:alice", URI: observed["contact"], Expires: time.Date(2026, 11, 22, 4, 21, 28, 0, time.UTC),
				Modified: time.Date(2026, 11, 22, 3, 21, 28, 0, time.UTC), Q: -1, CallID: "a84b4c76e66710", UserAgent: `<&"phone">`, Socket: "udp:192.0.2.1:5060",
			},
		},
		{name: "empty key", key: "", fields: observed, loc: time.UTC, wantErr: "key"},
		{name: "key with a space", key: "a b", fields: observed, loc: time.UTC, wantErr: "key"},
		{name: "no username", key: "k", fields: with(observed, "username", "<absent>"), loc: time.UTC, wantErr: "username"},
		{name: "domain with a newline", key: "k", fields: with(observed, "domain", "a\nb"), loc: time.UTC, wantErr: "domain"},
		{name: "contact not a SIP URI", key: "k", fields: with(observed, "contact", "http://x"), loc: time.UTC, wantErr: "contact"},
		{name: "expires missing", key: "k", fields: with(observed, "expires", "<absent>"), loc: time.UTC, wantErr: "expires"},
		{name: "expires empty (NULL)", key: "k", fields: with(observed, "expires", ""), loc: time.UTC, wantErr: "expires"},
		{name: "impossible date", key: "k", fields: with(observed, "expires", "2026-02-30 10:00:00"), loc: time.UTC, wantErr: "expires"},
		{name: "negative epoch", key: "k", fields: with(observed, "expires", "-5"), loc: time.UTC, wantErr: "expires"},
		{name: "garbage last_modified", key: "k", fields: with(observed, "last_modified", "yesterday"), loc: time.UTC, wantErr: "last_modified"},
		{name: "q above 1", key: "k", fields: with(observed, "q", "1.500000"), loc: time.UTC, wantErr: "q"},
		{name: "negative cseq", key: "k", fields: with(observed, "cseq", "-1"), loc: time.UTC, wantErr: "cseq"},
		{name: "reg_id not a number", key: "k", fields: with(observed, "reg_id", "one"), loc: time.UTC, wantErr: "reg_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c source.Contact
			err := decodeKamailio(tt.key, tt.fields, tt.loc, tt.domain, &c)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, errBadEntry) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want a bad-entry error naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeKamailio: %v", err)
			}
			if c != tt.want {
				t.Errorf("got  %+v\nwant %+v", c, tt.want)
			}
		})
	}
}

// A wall-clock time in the DST fall-back hour happened twice; either
// instant is what Kamailio's mktime could have meant
// (docs/stores.md#time-encoding).
func TestKamailioTimeFallBackHour(t *testing.T) {
	berlin := mustZone(t, "Europe/Berlin")
	got, ok := kamailioTime("2026-10-25 02:30:00", berlin)
	first := time.Date(2026, 10, 25, 0, 30, 0, 0, time.UTC)
	if !ok || (!got.Equal(first) && !got.Equal(first.Add(time.Hour))) {
		t.Fatalf("kamailioTime = %v, %v; want %v or an hour later", got, ok, first)
	}
}

func TestDecodeGeneric(t *testing.T) {
	full := map[string]string{
		"aor": "sip:alice@example.com", "uri": "sip:alice@192.0.2.10:5060", "expires": "1795000000",
		"callid": "c1", "cseq": "7", "q": "0.8", "user_agent": "ua", "instance": "<urn:uuid:1>", "reg_id": "2",
		"received": "sip:198.51.100.1:5060", "path": "<sip:p;lr>", "modified": "1794996400", "admin": "true", "socket": "tcp:192.0.2.1:5060",
	}
	with := func(kv ...string) map[string]string {
		m := make(map[string]string, len(full))
		for k, v := range full {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "<absent>" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	tests := []struct {
		name    string
		fields  map[string]string
		want    source.Contact
		wantErr string
	}{
		{
			name: "every field", fields: full,
			want: source.Contact{
				Key: "b1", AOR: "sip:alice@example.com", URI: "sip:alice@192.0.2.10:5060", Expires: time.Unix(1795000000, 0).UTC(),
				Q: 0.8, CallID: "c1", CSeq: 7, Modified: time.Unix(1794996400, 0).UTC(), UserAgent: "ua", Instance: "<urn:uuid:1>",
				RegID: 2, Received: "sip:198.51.100.1:5060", Path: "<sip:p;lr>", Socket: "tcp:192.0.2.1:5060", Administrative: true,
			},
		},
		{
			name:   "only the required fields, permanent",
			fields: map[string]string{"aor": "tel:+15551234", "uri": "sips:bob@192.0.2.2", "expires": "0"},
			want:   source.Contact{Key: "b1", AOR: "tel:+15551234", URI: "sips:bob@192.0.2.2", Q: -1},
		},
		{name: "no aor", fields: with("aor", "<absent>"), wantErr: "aor"},
		{name: "aor without scheme", fields: with("aor", "alice@example.com"), wantErr: "aor"},
		{name: "uri with a space", fields: with("uri", "sip:a b"), wantErr: "uri"},
		{name: "no expires", fields: with("expires", "<absent>"), wantErr: "expires"},
		{name: "expires as a date", fields: with("expires", "2026-11-22 10:00:00"), wantErr: "expires"},
		{name: "fractional expires", fields: with("expires", "1795000000.5"), wantErr: "expires"},
		{name: "bad modified", fields: with("modified", "x"), wantErr: "modified"},
		{name: "q of 2", fields: with("q", "2"), wantErr: "q"},
		{name: "cseq too big", fields: with("cseq", "4294967296"), wantErr: "cseq"},
		{name: "admin maybe", fields: with("admin", "maybe"), wantErr: "admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c source.Contact
			err := decodeGeneric("b1", tt.fields, &c)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, errBadEntry) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want a bad-entry error naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("decodeGeneric: %v", err)
			}
			if c != tt.want {
				t.Errorf("got  %+v\nwant %+v", c, tt.want)
			}
		})
	}
}

func TestMissingClasses(t *testing.T) {
	tests := []struct{ flags, want string }{
		{"", "Kghx"},
		{"KA", ""},
		{"AK", ""},
		{"Kghx", ""},
		{"KEA", ""},
		{"Ex", "Kgh"},
		{"A", "K"},
		{"Kh$", "gx"},
		{"gxhE", "K"},
	}
	for _, tt := range tests {
		if got := missingClasses(tt.flags); got != tt.want {
			t.Errorf("missingClasses(%q) = %q, want %q", tt.flags, got, tt.want)
		}
	}
}

func TestGlobEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"location:entry::", "location:entry::"},
		{"v2:location:entry::", "v2:location:entry::"},
		{`a*b?c[d]e\f`, `a\*b\?c\[d\]e\\f`},
	}
	for _, tt := range tests {
		if got := globEscape(tt.in); got != tt.want {
			t.Errorf("globEscape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
