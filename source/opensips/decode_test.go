package opensips

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

var t0 = time.Date(2026, 11, 22, 10, 30, 15, 0, time.UTC)

// TestDecode writes rows as OpenSIPS would (plus a few no registrar
// writes) into each real backend and checks what the watcher reports.
func TestDecode(t *testing.T) {
	const id = 1<<62 | 5 // the top of OpenSIPS's 64-bit packing
	base := func() map[string]any {
		return map[string]any{
			"contact_id": int64(id), "username": "alice", "domain": nil, "contact": "sip:alice@192.0.2.10:5060",
			"expires": t0.Unix(), "q": 1.0, "callid": "cid-1", "cseq": int64(7),
			"last_modified": "2026-11-22 11:30:15", "user_agent": "phone/1.0",
		}
	}
	want := func() source.Contact {
		return source.Contact{Key: fmt.Sprint(int64(id)), AOR: "sip:alice@example.com", URI: "sip:alice@192.0.2.10:5060",
			Expires: t0, Q: 1, CallID: "cid-1", CSeq: 7, Modified: t0, UserAgent: "phone/1.0"}
	}
	tests := []struct {
		name string
		set  map[string]any
		want func(*source.Contact) // nil with bad: skipped
		bad  bool
	}{
		{name: "as OpenSIPS writes it", want: func(*source.Contact) {}},
		{name: "permanent (expires 0)", set: map[string]any{"expires": int64(0)},
			want: func(c *source.Contact) { c.Expires = time.Time{} }},
		{name: "domain column (use_domain=1)", set: map[string]any{"domain": "example.org"},
			want: func(c *source.Contact) { c.AOR = "sip:alice@example.org" }},
		{name: "outbound binding", set: map[string]any{"sip_instance": "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
			"received": "sip:198.51.100.7:40000;transport=tcp", "path": "<sip:edge.example.com;lr>", "q": 0.5},
			want: func(c *source.Contact) {
				c.Instance, c.Received = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", "sip:198.51.100.7:40000;transport=tcp"
				c.Path, c.Q = "<sip:edge.example.com;lr>", 0.5
			}},
		{name: "last_modified column default is unknown", set: map[string]any{"last_modified": "1900-01-01 00:00:01"},
			want: func(c *source.Contact) { c.Modified = time.Time{} }},
		{name: "small contact_id", set: map[string]any{"contact_id": int64(42)},
			want: func(c *source.Contact) { c.Key = "42" }},
		{name: "contact not a SIP URI", set: map[string]any{"contact": "<garbage>"}, bad: true},
		{name: "empty username", set: map[string]any{"username": ""}, bad: true},
		{name: "username with a space", set: map[string]any{"username": "al ice"}, bad: true},
		{name: "q out of range", set: map[string]any{"q": 7.0}, bad: true},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			st := b.open(t)
			for i, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					table := fmt.Sprintf("dec_%d", i)
					createTable(t, st.db, st.backend, table)
					good := base()
					good["contact_id"], good["contact"] = int64(1), "sip:good@192.0.2.1"
					insertCols(t, st.db, table, good)
					cols := base()
					maps.Copy(cols, tt.set)
					insertCols(t, st.db, table, cols)
					w := st.newSource(t, table, "")
					got, err := w.Snapshot(t.Context())
					if err != nil {
						t.Fatal(err)
					}
					byKey := map[string]source.Contact{}
					for _, c := range got {
						byKey[c.Key] = c
					}
					if _, ok := byKey["1"]; !ok {
						t.Errorf("good row lost beside the case row: %v", slices.Collect(maps.Keys(byKey)))
					}
					if tt.bad {
						if len(got) != 1 || w.Stats().Skipped != 1 {
							t.Errorf("bad row not skipped: got %d contacts, Skipped %d", len(got), w.Stats().Skipped)
						}
						return
					}
					wc := want()
					tt.want(&wc)
					c, ok := byKey[wc.Key]
					if !ok {
						t.Fatalf("row skipped (Skipped %d)", w.Stats().Skipped)
					}
					if !c.Expires.Equal(wc.Expires) || !c.Modified.Equal(wc.Modified) {
						t.Errorf("times = %v / %v, want %v / %v", c.Expires, c.Modified, wc.Expires, wc.Modified)
					}
					c.Expires, c.Modified, wc.Expires, wc.Modified = time.Time{}, time.Time{}, time.Time{}, time.Time{}
					if c != wc {
						t.Errorf("\n got %+v\nwant %+v", c, wc)
					}
				})
			}
		})
	}
}

func insertCols(t *testing.T, db execer, table string, cols map[string]any) {
	t.Helper()
	names := slices.Sorted(maps.Keys(cols))
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = cols[n]
	}
	db.Exec(t, fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", table, strings.Join(names, ", "),
		strings.TrimSuffix(strings.Repeat("?, ", len(names)), ", ")), args...)
}

func TestBindRejectsOtherTimeTypes(t *testing.T) {
	tests := []struct {
		name    string
		expires string
		lastMod string
		ok      bool
	}{
		{"MySQL", "UNSIGNED INT", "DATETIME", true},
		{"PostgreSQL", "INT4", "TIMESTAMP", true},
		{"expires as DATETIME", "DATETIME", "DATETIME", false},
		{"last_modified with zone", "INT4", "TIMESTAMPTZ", false},
	}
	for _, tt := range tests {
		types := make([]string, numCols)
		types[colExpires], types[colLastModified] = tt.expires, tt.lastMod
		err := (&layout{server: true}).Bind(types)
		if (err == nil) != tt.ok {
			t.Errorf("%s: Bind = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

func TestConfigValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  SQLiteConfig
		err  string
	}{
		{"defaults", SQLiteConfig{Path: "/x.db"}, ""},
		{"no path", SQLiteConfig{}, "Path"},
		{"bad table", SQLiteConfig{Path: "/x.db", Table: "a;b"}, "Table"},
		{"version table", SQLiteConfig{Path: "/x.db", Table: "version"}, "Table"},
		{"bad domain", SQLiteConfig{Path: "/x.db", Domain: "a@b"}, "Domain"},
		{"bad zone", SQLiteConfig{Path: "/x.db", TZ: "Mars/Olympus"}, "TZ"},
	}
	for _, tt := range tests {
		_, err := NewSQLite(tt.cfg, nil)
		if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%s: NewSQLite = %v, want error naming %q", tt.name, err, tt.err)
		}
	}
	if _, err := NewMySQL(DBConfig{Endpoint: sqlwatch.Endpoint{Addr: "h:3306", Database: "d"}, TZ: "Nowhere"}, nil); err == nil {
		t.Errorf("NewMySQL accepted an unknown zone")
	}
}

func TestMissingSQLiteFileIsAConfigError(t *testing.T) {
	w, err := NewSQLite(SQLiteConfig{Path: t.TempDir() + "/absent.db"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("Run = %v, want a missing-file error", err)
	}
}
