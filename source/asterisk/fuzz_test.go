package asterisk

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// checkAccepted fails when a decoder accepted a contact the bridge and the
// XML renderer could not use.
func checkAccepted(t *testing.T, c *source.Contact) {
	t.Helper()
	if c.Key == "" || !source.Printable(c.Key) || !strings.Contains(c.Key, dynamicSeparator) {
		t.Fatalf("accepted unusable key: %+v", c)
	}
	if !strings.HasPrefix(c.AOR, "sip:") || !source.Printable(c.AOR) || !source.ValidURI(c.URI) {
		t.Fatalf("accepted unusable AOR or URI: %+v", c)
	}
	if y := c.Expires.Year(); !c.Expires.IsZero() && (y < 1970 || y > 9999 || c.Expires.Location() != time.UTC) {
		t.Fatalf("expires out of range: %v", c.Expires)
	}
	if c.Q != -1 || c.CSeq != 0 {
		t.Fatalf("Asterisk stores no q or CSeq: %+v", c)
	}
}

// FuzzDecodeAstDB feeds arbitrary keys and values of the astdb table.
func FuzzDecodeAstDB(f *testing.F) {
	f.Add("/registrar/contact/1001;@0123456789abcdef0123456789abcdef",
		astContact{aor: "1001", uri: "sip:1001@192.0.2.1", callID: "c", userAgent: "ua", expires: time.Unix(1795000000, 0)}.json(), "example.com")
	f.Add("/registrar/contact/1002;@ff", `{"uri":"sip:x@y","expiration_time":1795000000,"user_agent":null}`, "")
	f.Add("/registrar/contact/a;@b", `{"uri":"sip:\u0000","expiration_time":"-0"}`, "")
	f.Add("/registrar/contact/a b;@", `[]`, "a@b")
	f.Fuzz(func(t *testing.T, key, value, domain string) {
		if !validDomain(domain) {
			domain = "" // AstDBConfig.Validate rejects it
		}
		l := &astdbLayout{prefix: "/registrar/contact/", domain: domain}
		var c source.Contact
		if err := l.Decode([]sqlwatch.Value{text(key), text(value)}, &c); err != nil {
			return
		}
		checkAccepted(t, &c)
	})
}

// FuzzDecodeRealtime feeds arbitrary ps_contacts columns, NULL or text.
func FuzzDecodeRealtime(f *testing.F) {
	f.Add("1001;@ab", "sip:1001@192.0.2.1", "1795000000", "ua", "cid", "<sip:p;lr>", uint8(0))
	f.Add("1001@@ab", "sips:x", "0", "", "", "", uint8(0x3f))
	f.Add(";@", "tel:", "+17", "\xff", "", "", uint8(0x15))
	f.Fuzz(func(t *testing.T, id, uri, exp, ua, callID, path string, nulls uint8) {
		col := func(i int, s string) sqlwatch.Value {
			if nulls&(1<<i) != 0 {
				return sqlwatch.Value{}
			}
			return text(s)
		}
		row := []sqlwatch.Value{col(0, id), col(1, uri), col(2, exp), col(3, ua), col(4, callID), col(5, path), text("pbx1")}
		l := &realtimeLayout{table: DefaultTable, domain: "example.com"}
		var c source.Contact
		if err := l.Decode(row, &c); err != nil {
			return
		}
		checkAccepted(t, &c)
	})
}

// FuzzAstDBFile feeds arbitrary bytes as the AstDB file (a SQLite file
// anyone who can write Asterisk's directory controls; a torn copy or a
// disk error looks the same): opening and reading it either fails or
// yields rows under the contact prefix whose accepted contacts are usable,
// within a bounded time.
func FuzzAstDBFile(f *testing.F) {
	seed := func(ddl string, rows map[string]string) []byte {
		path, db := newAstDB(f, ddl, 1000)
		for k, v := range rows {
			put(f, db, k, v)
		}
		db.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	c := astContact{aor: "1001", uri: "sip:1001@192.0.2.1", callID: "c", userAgent: "ua", expires: time.Unix(1795000000, 0)}
	f.Add(seed("text", map[string]string{contactID("1001", c.uri): c.json(), "/registrar/contact0": "x", "/pbx/x": "y"}))
	f.Add(seed("varchar", map[string]string{contactID("1002", "sip:x@y"): `{"uri":"sip:x@y","expiration_time":"0"}`}))
	f.Add([]byte("SQLite format 3\x00"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, file []byte) {
		path := filepath.Join(dir, "astdb.sqlite3")
		for _, s := range []string{"", "-journal", "-wal", "-shm"} {
			os.Remove(path + s)
		}
		if err := os.WriteFile(path, file, 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d := newAstDBFile(path, "/registrar/contact/", slog.New(slog.DiscardHandler))
		s, err := d.Open(ctx, nil)
		if err != nil {
			return
		}
		defer s.Close()
		l := &astdbLayout{prefix: d.prefix, domain: "example.com"}
		err = s.Snapshot(ctx, func(row []sqlwatch.Value) {
			if key := row[0].String(""); !strings.HasPrefix(key, d.prefix) {
				t.Fatalf("read a row outside the contact prefix: %q", key)
			}
			var c source.Contact
			if l.Decode(row, &c) == nil {
				checkAccepted(t, &c)
			}
		})
		if ctx.Err() != nil {
			t.Fatalf("reading the file took over 5 s (%v)", err)
		}
	})
}
