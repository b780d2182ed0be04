package kamailio

import (
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// looseDDL has Kamailio's column names and declared types (so the same
// affinities) but no NOT NULL or UNIQUE: rows only a broken tool or a
// hand-made table could hold.
const looseDDL = `CREATE TABLE %s (id INTEGER PRIMARY KEY, ruid VARCHAR(64), username VARCHAR(64),
	domain VARCHAR(64), contact VARCHAR(512), received VARCHAR(128), path VARCHAR(512),
	expires TIMESTAMP WITHOUT TIME ZONE, q REAL, callid VARCHAR(255), cseq INTEGER,
	last_modified TIMESTAMP WITHOUT TIME ZONE, user_agent VARCHAR(255), instance VARCHAR(255), reg_id INTEGER)`

func julianSQL(t time.Time) string { return fmt.Sprintf("%.17g", TimeToJulian(t)) }

// baseCols is a good row as SQL expressions, baseContact what it decodes to.
func baseCols(ruid string) map[string]string {
	return map[string]string{
		"ruid": "'" + ruid + "'", "username": "'alice'", "domain": "NULL",
		"contact": "'sip:alice@192.0.2.10:5060;transport=udp'", "received": "NULL", "path": "NULL",
		"expires": julianSQL(t0.Add(time.Hour)), "q": "-1", "callid": "'cid-1'", "cseq": "7",
		"last_modified": julianSQL(t0), "user_agent": "'phone/1.0'", "instance": "NULL", "reg_id": "0",
	}
}

func baseContact(ruid string) source.Contact {
	return source.Contact{
		Key: ruid, AOR: "sip:alice", URI: "sip:alice@192.0.2.10:5060;transport=udp",
		Expires: t0.Add(time.Hour), Q: -1, CallID: "cid-1", CSeq: 7, Modified: t0, UserAgent: "phone/1.0",
	}
}

func insertSQL(table string, cols map[string]string) string {
	names := slices.Sorted(maps.Keys(cols))
	vals := make([]string, len(names))
	for i, n := range names {
		vals[i] = cols[n]
	}
	return fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", table, strings.Join(names, ", "), strings.Join(vals, ", "))
}

// normalized makes Contacts comparable with ==.
func normalized(c source.Contact) source.Contact {
	c.Expires, c.Modified = c.Expires.UTC(), c.Modified.UTC()
	return c
}

func TestDecodeRows(t *testing.T) {
	const ruid = "uloc-5f3a2b1c-4d2-1"
	perm := TimeToJulian(time.Time{})
	tests := []struct {
		name   string
		domain string            // SQLiteConfig.Domain
		set    map[string]string // columns that differ from baseCols
		want   func(*source.Contact)
		bad    bool
	}{
		{name: "REAL expires as db_sqlite writes it"},
		{name: "INTEGER expires (integral Julian day)", set: map[string]string{"expires": "julianday('2026-11-22 12:00:00')"},
			want: func(c *source.Contact) { c.Expires = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }},
		{name: "TEXT expires", set: map[string]string{"expires": "'2026-11-22 11:30:15'"},
			want: func(c *source.Contact) { c.Expires = time.Date(2026, 11, 22, 11, 30, 15, 0, time.UTC) }},
		{name: "TEXT expires with fractional seconds", set: map[string]string{"expires": "'2026-11-22 11:30:15.250'"},
			want: func(c *source.Contact) { c.Expires = time.Date(2026, 11, 22, 11, 30, 15, 250e6, time.UTC) }},
		{name: "TEXT expires with T", set: map[string]string{"expires": "'2026-11-22T11:30:15'"},
			want: func(c *source.Contact) { c.Expires = time.Date(2026, 11, 22, 11, 30, 15, 0, time.UTC) }},
		{name: "TEXT schema defaults (row made by kamctl)", set: map[string]string{"expires": "'2030-05-28 21:32:15'", "last_modified": "'2000-01-01 00:00:01'"},
			want: func(c *source.Contact) {
				c.Expires = time.Date(2030, 5, 28, 21, 32, 15, 0, time.UTC)
				c.Modified = time.Date(2000, 1, 1, 0, 0, 1, 0, time.UTC)
			}},
		{name: "epoch 0 REAL is permanent", set: map[string]string{"expires": fmt.Sprintf("%.17g", perm)},
			want: func(c *source.Contact) { c.Expires = time.Time{} }},
		{name: "epoch 0 TEXT is permanent", set: map[string]string{"expires": "'1970-01-01 00:00:00'"},
			want: func(c *source.Contact) { c.Expires = time.Time{} }},
		{name: "un-registered marker epoch 10", set: map[string]string{"expires": julianSQL(time.Unix(10, 0))},
			want: func(c *source.Contact) { c.Expires = time.Unix(10, 0) }},
		{name: "NULL last_modified is unknown", set: map[string]string{"last_modified": "NULL"},
			want: func(c *source.Contact) { c.Modified = time.Time{} }},
		{name: "NULL domain, Domain set", domain: "example.com",
			want: func(c *source.Contact) { c.AOR = "sip:alice@example.com" }},
		{name: "NULL domain, Domain unset"},
		{name: "empty domain, Domain set", domain: "example.com", set: map[string]string{"domain": "''"},
			want: func(c *source.Contact) { c.AOR = "sip:alice@example.com" }},
		{name: "domain column wins over Domain", domain: "example.com", set: map[string]string{"domain": "'example.org'"},
			want: func(c *source.Contact) { c.AOR = "sip:alice@example.org" }},
		{name: "username holding user@host", domain: "example.com", set: map[string]string{"username": "'alice@example.net'"},
			want: func(c *source.Contact) { c.AOR = "sip:alice@example.net" }},
		{name: "ulcx ruid is administrative", set: map[string]string{"ruid": "'ulcx-5f3a2b1c-4d2-1'"},
			want: func(c *source.Contact) { c.Key, c.Administrative = "ulcx-5f3a2b1c-4d2-1", true }},
		{name: "outbound binding with every optional column",
			set: map[string]string{
				"instance": "'<urn:uuid:00000000-0000-1000-8000-000A95A0E128>'", "reg_id": "1", "q": "0.5",
				"received": "'sip:198.51.100.7:40000;transport=tcp'", "path": "'<sip:edge.example.com;lr>'",
				"contact": "'sips:alice@[2001:db8::1]:5061;ob'", "user_agent": "'<x&y>\"'",
			},
			want: func(c *source.Contact) {
				c.Instance, c.RegID, c.Q = "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", 1, 0.5
				c.Received, c.Path = "sip:198.51.100.7:40000;transport=tcp", "<sip:edge.example.com;lr>"
				c.URI, c.UserAgent = "sips:alice@[2001:db8::1]:5061;ob", `<x&y>"`
			}},
		{name: "tel contact, upper-case scheme", set: map[string]string{"contact": "'TEL:+15551234567'"},
			want: func(c *source.Contact) { c.URI = "TEL:+15551234567" }},
		{name: "q column default 1.0", set: map[string]string{"q": "1"}, want: func(c *source.Contact) { c.Q = 1 }},
		{name: "NULL in NOT NULL strings reads as empty", set: map[string]string{"callid": "NULL", "user_agent": "NULL", "cseq": "NULL"},
			want: func(c *source.Contact) { c.CallID, c.UserAgent, c.CSeq = "", "", 0 }},

		{name: "NULL ruid", set: map[string]string{"ruid": "NULL"}, bad: true},
		{name: "empty ruid", set: map[string]string{"ruid": "''"}, bad: true},
		{name: "ruid with a space", set: map[string]string{"ruid": "'uloc 1'"}, bad: true},
		{name: "empty username", set: map[string]string{"username": "''"}, bad: true},
		{name: "NULL username", set: map[string]string{"username": "NULL"}, bad: true},
		{name: "domain with a newline", set: map[string]string{"domain": "'a' || char(10) || 'b'"}, bad: true},
		{name: "empty contact", set: map[string]string{"contact": "''"}, bad: true},
		{name: "contact without scheme", set: map[string]string{"contact": "'alice@192.0.2.10'"}, bad: true},
		{name: "contact with only a scheme", set: map[string]string{"contact": "'sip:'"}, bad: true},
		{name: "http contact", set: map[string]string{"contact": "'http://example.com/'"}, bad: true},
		{name: "contact with a space", set: map[string]string{"contact": "'sip:alice @192.0.2.10'"}, bad: true},
		{name: "contact with a control char", set: map[string]string{"contact": "'sip:alice' || char(7) || '@x'"}, bad: true},
		{name: "contact not UTF-8", set: map[string]string{"contact": "X'7369703A61FF'"}, bad: true},
		{name: "impossible TEXT date", set: map[string]string{"expires": "'2026-02-30 10:00:00'"}, bad: true},
		{name: "garbage TEXT expires", set: map[string]string{"expires": "'soon'"}, bad: true},
		{name: "NULL expires", set: map[string]string{"expires": "NULL"}, bad: true},
		{name: "REAL expires out of range", set: map[string]string{"expires": "1e300"}, bad: true},
		{name: "INTEGER expires before year 1", set: map[string]string{"expires": "12345"}, bad: true},
		{name: "BLOB expires", set: map[string]string{"expires": "X'00FF'"}, bad: true},
		{name: "garbage last_modified", set: map[string]string{"last_modified": "'yesterday'"}, bad: true},
		{name: "cseq not a number", set: map[string]string{"cseq": "'abc'"}, bad: true},
		{name: "cseq negative", set: map[string]string{"cseq": "-1"}, bad: true},
		{name: "cseq above 2^32-1", set: map[string]string{"cseq": "4294967296"}, bad: true},
		{name: "reg_id fractional", set: map[string]string{"reg_id": "1.5"}, bad: true},
		{name: "q out of range", set: map[string]string{"q": "7"}, bad: true},
		{name: "q not a number", set: map[string]string{"q": "'high'"}, bad: true},
	}
	path := filepath.Join(t.TempDir(), "decode.db")
	db := openWriter(t, path)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			table := fmt.Sprintf("case_%d", i)
			mustExec(t, db, fmt.Sprintf(looseDDL, table))
			mustExec(t, db, insertSQL(table, baseCols("uloc-good")))
			cols := baseCols(ruid)
			maps.Copy(cols, tt.set)
			mustExec(t, db, insertSQL(table, cols))

			log, logs := newLogger(t)
			w := newWatcher(t, SQLiteConfig{Path: path, Table: table, Domain: tt.domain}, log)
			wantGood := baseContact("uloc-good")
			if tt.domain != "" {
				wantGood.AOR = "sip:alice@" + tt.domain
			}
			for pass := 1; pass <= 2; pass++ {
				got := readOnce(t, w)
				if len(got) == 0 || normalized(got[0]) != normalized(wantGood) {
					t.Fatalf("pass %d: good row lost or changed: %v", pass, got)
				}
				if tt.bad {
					if len(got) != 1 {
						t.Fatalf("pass %d: bad row kept: %s", pass, describe(got[1]))
					}
					if got := w.Stats().Skipped; got != uint64(pass) {
						t.Errorf("pass %d: Stats().Skipped = %d, want %d", pass, got, pass)
					}
					continue
				}
				want := baseContact(ruid)
				if tt.want != nil {
					tt.want(&want)
				}
				if len(got) != 2 {
					t.Fatalf("pass %d: got %d contacts, want 2 (log: %s)", pass, len(got), logs)
				}
				if normalized(got[1]) != normalized(want) {
					t.Errorf("pass %d:\n got %s\nwant %s", pass, describe(got[1]), describe(want))
				}
				if got := w.Stats().Skipped; got != 0 {
					t.Errorf("Stats().Skipped = %d, want 0", got)
				}
			}
			wantLogs := 0
			if tt.bad {
				wantLogs = 1 // logged at the first snapshot only
			}
			if n := logs.count("skipping bad row"); n != wantLogs {
				t.Errorf("bad-row log lines = %d, want %d:\n%s", n, wantLogs, logs)
			}
		})
	}
}

func TestIntegerJulianIsStoredAsInteger(t *testing.T) {
	// Guards the premise of the INTEGER case above: NUMERIC affinity keeps
	// an integral julianday() as an integer.
	db := openWriter(t, filepath.Join(t.TempDir(), "affinity.db"))
	mustExec(t, db, fmt.Sprintf(looseDDL, "location"))
	mustExec(t, db, "INSERT INTO location (expires, last_modified) VALUES (julianday('2026-11-22 12:00:00'), "+julianSQL(t0)+")")
	var te, tl string
	if err := db.QueryRow("SELECT typeof(expires), typeof(last_modified) FROM location").Scan(&te, &tl); err != nil {
		t.Fatal(err)
	}
	if te != "integer" || tl != "real" {
		t.Errorf("typeof = %s, %s; want integer, real", te, tl)
	}
}

func TestBadRowLogIsCapped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.db")
	db := openWriter(t, path)
	mustExec(t, db, fmt.Sprintf(looseDDL, "location"))
	const n = 10000 + 50 // sqlwatch's cap on logged bad rows, plus some
	mustExec(t, db, fmt.Sprintf(`WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < %d)
		INSERT INTO location (ruid, username, contact, expires) SELECT 'bad-' || i, 'u', 'garbage', 1 FROM s`, n))
	log, logs := newLogger(t)
	w := newWatcher(t, SQLiteConfig{Path: path}, log)
	readOnce(t, w)
	readOnce(t, w)
	if got := w.Stats().Skipped; got != 2*n {
		t.Errorf("Stats().Skipped = %d, want %d", got, 2*n)
	}
	if got := logs.count("skipping bad row"); got != 10000 {
		t.Errorf("logged %d bad rows, want the cap 10000", got)
	}
	if got := logs.count("too many bad rows"); got != 1 {
		t.Errorf("cap warning logged %d times, want 1", got)
	}
}
