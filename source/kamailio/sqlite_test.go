package kamailio

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

func TestNewSQLiteValidates(t *testing.T) {
	tests := []struct {
		name    string
		cfg     SQLiteConfig
		wantErr string
	}{
		{"defaults", SQLiteConfig{Path: "/x.db"}, ""},
		{"named table", SQLiteConfig{Path: "/x.db", Table: "location_pbx"}, ""},
		{"missing path", SQLiteConfig{}, "Path"},
		{"NUL in path", SQLiteConfig{Path: "/x\x00.db"}, "Path"},
		{"table with a quote", SQLiteConfig{Path: "/x.db", Table: `loc"ation`}, "Table"},
		{"table with a dot", SQLiteConfig{Path: "/x.db", Table: "main.location"}, "Table"},
		{"table starting with a digit", SQLiteConfig{Path: "/x.db", Table: "1location"}, "Table"},
		{"version table", SQLiteConfig{Path: "/x.db", Table: "Version"}, "Table"},
		{"domain with @", SQLiteConfig{Path: "/x.db", Domain: "a@b"}, "Domain"},
		{"domain with space", SQLiteConfig{Path: "/x.db", Domain: "a b"}, "Domain"},
		{"negative poll interval", SQLiteConfig{Path: "/x.db", PollInterval: -time.Second}, "PollInterval"},
		{"busy-loop poll interval", SQLiteConfig{Path: "/x.db", PollInterval: time.Microsecond}, "PollInterval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := NewSQLite(tt.cfg, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("NewSQLite: %v", err)
				}
				if w.cfg.Table == "" || w.cfg.PollInterval != DefaultPollInterval {
					t.Errorf("defaults not applied: %+v", w.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewSQLite error = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestRunMissingFileWithoutCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.db")
	w := newWatcher(t, SQLiteConfig{Path: path}, nil)
	err := w.Run(t.Context(), fakeSink{apply: func(context.Context, source.Batch) error {
		t.Error("Apply called for a missing file")
		return nil
	}})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Run = %v, want an error naming %s", err, path)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Run created %s (stat err %v)", path, err)
	}
}

func TestRunCreatesMissingFile(t *testing.T) {
	// The odd directory name checks the URI escaping end to end.
	dir := filepath.Join(t.TempDir(), "we?ird #dir %41")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "kamailio.db")
	log, logs := newLogger(t)
	w := newWatcher(t, SQLiteConfig{Path: path, Table: "location_pbx", Create: true}, log)
	var rec recorder
	stop := startRun(t, w, rec.sink())
	first := rec.WaitFor(t, 0, "first batch", func(b source.Batch) bool { return true })
	stop()
	if !first.Full || len(first.Contacts) != 0 || first.SeenAt.IsZero() {
		t.Errorf("first batch = %+v, want an empty Full batch with SeenAt", first)
	}
	if logs.count("NOT IN WAL MODE") != 0 {
		t.Errorf("warned about journal mode on a file we created in WAL mode")
	}
	db := openWriter(t, path)
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var versions []string
	rows, err := db.Query("SELECT table_name || '=' || table_version || ':' || typeof(table_version) FROM version ORDER BY table_name")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, s)
	}
	if want := []string{"location_pbx=9:integer", "version=1:integer"}; !slices.Equal(versions, want) {
		t.Errorf("version rows = %v, want %v", versions, want)
	}
	checkSchema(t, db, "location_pbx")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".regbridge-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// checkSchema compares the table with Kamailio's SQLite schema
// (docs/stores.md#creating-the-table).
func checkSchema(t *testing.T, db *sql.DB, table string) {
	t.Helper()
	type column struct {
		name, typ string
		notNull   bool
		dflt      string // as SQL text; "" for none/NULL
	}
	want := []column{
		{"id", "INTEGER", true, ""},
		{"ruid", "VARCHAR(64)", true, "''"},
		{"username", "VARCHAR(64)", true, "''"},
		{"domain", "VARCHAR(64)", false, "NULL"},
		{"contact", "VARCHAR(512)", true, "''"},
		{"received", "VARCHAR(128)", false, "NULL"},
		{"path", "VARCHAR(512)", false, "NULL"},
		{"expires", "TIMESTAMP WITHOUT TIME ZONE", true, "'2030-05-28 21:32:15'"},
		{"q", "REAL", true, "1.0"},
		{"callid", "VARCHAR(255)", true, "'Default-Call-ID'"},
		{"cseq", "INTEGER", true, "1"},
		{"last_modified", "TIMESTAMP WITHOUT TIME ZONE", true, "'2000-01-01 00:00:01'"},
		{"flags", "INTEGER", true, "0"},
		{"cflags", "INTEGER", true, "0"},
		{"user_agent", "VARCHAR(255)", true, "''"},
		{"socket", "VARCHAR(64)", false, "NULL"},
		{"methods", "INTEGER", false, "NULL"},
		{"instance", "VARCHAR(255)", false, "NULL"},
		{"reg_id", "INTEGER", true, "0"},
		{"server_id", "INTEGER", true, "0"},
		{"connection_id", "INTEGER", true, "0"},
		{"keepalive", "INTEGER", true, "0"},
		{"partition", "INTEGER", true, "0"},
	}
	rows, err := db.Query("SELECT name, type, \"notnull\", coalesce(dflt_value, ''), pk FROM pragma_table_info(?)", table)
	if err != nil {
		t.Fatal(err)
	}
	var got []column
	for rows.Next() {
		var c column
		var pk int
		if err := rows.Scan(&c.name, &c.typ, &c.notNull, &c.dflt, &pk); err != nil {
			t.Fatal(err)
		}
		if (pk == 1) != (c.name == "id") {
			t.Errorf("column %s: pk = %d", c.name, pk)
		}
		got = append(got, c)
	}
	if !slices.Equal(got, want) {
		t.Errorf("columns:\n got %v\nwant %v", got, want)
	}

	// Indexes: name (the UNIQUE constraint becomes an automatic index),
	// uniqueness and columns.
	rows, err = db.Query(`SELECT il."unique", il.origin, group_concat(ii.name, ',')
		FROM pragma_index_list(?) AS il, pragma_index_info(il.name) AS ii
		GROUP BY il.name ORDER BY il.name`, table)
	if err != nil {
		t.Fatal(err)
	}
	var idx []string
	for rows.Next() {
		var unique bool
		var origin, cols string
		if err := rows.Scan(&unique, &origin, &cols); err != nil {
			t.Fatal(err)
		}
		idx = append(idx, fmt.Sprintf("%s unique=%v %s", origin, unique, cols))
	}
	slices.Sort(idx)
	wantIdx := []string{
		"c unique=false connection_id",
		"c unique=false expires",
		"c unique=false server_id,connection_id",
		"c unique=false username,domain,contact",
		"u unique=true ruid",
	}
	if !slices.Equal(idx, wantIdx) {
		t.Errorf("indexes:\n got %v\nwant %v", idx, wantIdx)
	}
	var names []string
	rows, err = db.Query("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name", table)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	wantNames := []string{table + "_account_contact_idx", table + "_connection_idx", table + "_expires_idx", table + "_tcpcon_idx"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("index names = %v, want %v", names, wantNames)
	}
}

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// TestSchemaGolden pins the exact DDL so that a change to schema.go is a
// visible diff against testdata/location_schema.sql.
func TestSchemaGolden(t *testing.T) {
	path := newDBFile(t, "wal")
	db := openWriter(t, path)
	rows, err := db.Query("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type DESC, name")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s + ";\n")
	}
	checkSchema(t, db, "location")
	golden := filepath.Join("testdata", "location_schema.sql")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("schema differs from %s:\n%s", golden, b.String())
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// An existing database is never written: not by Create, not by reading
// (mode=ro), whatever its journal mode. In WAL mode SQLite may add the
// -wal/-shm side files a reader needs; the database file stays identical.
func TestExistingFileUnchanged(t *testing.T) {
	tests := []struct {
		name    string
		journal string
		create  bool
		table   string // "" makes an empty file without any table
	}{
		{"WAL, Create off", "wal", false, "location"},
		{"WAL, Create on", "wal", true, "location"},
		{"rollback journal, Create off", "delete", false, "location"},
		{"rollback journal, Create on", "delete", true, "location"},
		{"empty file, Create on", "", true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path string
			if tt.table == "" {
				path = filepath.Join(t.TempDir(), "empty.db")
				if err := os.WriteFile(path, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				path = newDBFile(t, tt.journal)
				db := openWriter(t, path)
				insertRow(t, db, kamRow{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1"})
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			before := fileHash(t, path)
			log, logs := newLogger(t)
			w := newWatcher(t, SQLiteConfig{Path: path, Create: tt.create}, log)
			var rec recorder
			stop := startRun(t, w, rec.sink())
			if tt.table == "" {
				// No table: Run keeps retrying, says once what to do, and
				// must not "fix" the file.
				eventually(t, "missing table logged", func() bool { return logs.count("table location does not exist") == 1 })
				if st := w.Stats(); st.Up || !strings.Contains(st.Problem, "regbridge schema") {
					t.Errorf("Stats = %+v, want down with the fix in Problem", st)
				}
			} else {
				b := rec.WaitFor(t, 0, "first batch", func(source.Batch) bool { return true })
				if got := keys(b); !slices.Equal(got, []string{"uloc-a"}) {
					t.Errorf("first batch keys = %v", got)
				}
			}
			stop()
			if after := fileHash(t, path); after != before {
				t.Errorf("database file changed")
			}
			wantWarn := 0
			if tt.journal != "wal" {
				wantWarn = 1
			}
			if n := logs.count("NOT IN WAL MODE"); n != wantWarn {
				t.Errorf("journal mode warnings = %d, want %d", n, wantWarn)
			}
		})
	}
}

// TestWatch drives a table the way Kamailio's db_mode 1/3 does and checks
// that each change arrives as a Full batch, in WAL mode and in SQLite's
// default rollback-journal mode.
func TestWatch(t *testing.T) {
	for _, journal := range []string{"wal", "delete"} {
		t.Run(journal, func(t *testing.T) {
			path := newDBFile(t, journal)
			db := openWriter(t, path)
			insertRow(t, db, kamRow{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1:5060"})
			log, logs := newLogger(t)
			w := newWatcher(t, SQLiteConfig{Path: path, Domain: "example.com"}, log)
			var rec recorder
			startRun(t, w, rec.sink())

			b := rec.WaitFor(t, 0, "batch at start", func(source.Batch) bool { return true })
			if !b.Full || !slices.Equal(keys(b), []string{"uloc-a"}) || b.SeenAt.IsZero() {
				t.Fatalf("first batch = %+v", b)
			}
			if c := b.Contacts[0]; c.AOR != "sip:alice@example.com" || !c.Expires.Equal(t0.Add(time.Hour)) || c.CSeq != 1 {
				t.Errorf("first contact = %s", describe(c))
			}

			_, n := rec.Last()
			insertRow(t, db, kamRow{ruid: "uloc-b", user: "bob", contact: "sip:bob@192.0.2.2:5060", domain: "example.org"})
			b = rec.WaitFor(t, n, "insert", func(b source.Batch) bool { return len(b.Contacts) == 2 })
			if c := byKey(b)["uloc-b"]; c.AOR != "sip:bob@example.org" {
				t.Errorf("inserted contact = %s", describe(c))
			}

			_, n = rec.Last()
			newExp := t0.Add(2 * time.Hour)
			refreshRow(t, db, "uloc-a", newExp, 2)
			b = rec.WaitFor(t, n, "refresh", func(b source.Batch) bool { return byKey(b)["uloc-a"].CSeq == 2 })
			if c := byKey(b)["uloc-a"]; !c.Expires.Equal(newExp) || len(b.Contacts) != 2 {
				t.Errorf("refreshed contact = %s (batch of %d)", describe(c), len(b.Contacts))
			}

			_, n = rec.Last()
			deleteRow(t, db, "uloc-b")
			b = rec.WaitFor(t, n, "delete", func(b source.Batch) bool { return len(b.Contacts) == 1 })
			if !slices.Equal(keys(b), []string{"uloc-a"}) {
				t.Errorf("after delete keys = %v", keys(b))
			}

			// No change, no batch: our own reads must not move
			// data_version. One poll may still be finishing the delete.
			p := w.Stats().Polls + 2
			_, n = rec.Last()
			eventually(t, "ten more polls", func() bool { return w.Stats().Polls >= p+10 })
			if _, m := rec.Last(); m > n {
				t.Errorf("%d batches without a change", m-n)
			}
			for _, b := range rec.All() {
				if !b.Full {
					t.Errorf("batch not Full: %+v", b)
				}
			}
			if logs.count("unreadable") != 0 {
				t.Errorf("unexpected outage")
			}
		})
	}
}
