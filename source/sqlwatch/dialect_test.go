package sqlwatch_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

var table = sqlwatch.Table{
	Name:    "t",
	Columns: []string{"k", "e", "n", "u"},
	Watch:   []string{"k", "e", "n", "u"},
}

// TestServerDialects checks, on the real servers, that the change check
// moves for every kind of change a registrar makes (and only then), that
// column types are reported, and that values arrive as the server's own
// text (no time zone conversion).
func TestServerDialects(t *testing.T) {
	servers := []struct {
		name     string
		open     func(testing.TB) *sqltest.DB
		ddl      string
		dialect  func(sqlwatch.Endpoint) (sqlwatch.Dialect, error)
		wantType []string
	}{
		{"mysql", sqltest.MySQL, "CREATE TABLE t (k VARCHAR(64) PRIMARY KEY, e DATETIME NOT NULL, n INT NOT NULL, u VARCHAR(64) NULL)",
			func(e sqlwatch.Endpoint) (sqlwatch.Dialect, error) { return sqlwatch.NewMySQL(e) },
			[]string{"VARCHAR", "DATETIME", "INT", "VARCHAR"}},
		{"postgres", sqltest.Postgres, "CREATE TABLE t (k VARCHAR(64) PRIMARY KEY, e TIMESTAMP WITHOUT TIME ZONE NOT NULL, n INTEGER NOT NULL, u VARCHAR(64) NULL)",
			func(e sqlwatch.Endpoint) (sqlwatch.Dialect, error) { return sqlwatch.NewPostgres(e) },
			[]string{"VARCHAR", "TIMESTAMP", "INT4", "VARCHAR"}},
	}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			db := srv.open(t)
			d, err := srv.dialect(db.Endpoint)
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if _, err := d.Open(ctx, &table); err == nil {
				t.Fatalf("Open succeeded on a missing table")
			}
			db.Exec(t, srv.ddl)
			s, err := d.Open(ctx, &table)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !slices.Equal(s.Types(), srv.wantType) {
				t.Errorf("Types = %v, want %v", s.Types(), srv.wantType)
			}
			fp := func() string {
				t.Helper()
				v, err := s.Fingerprint(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
			steps := []struct {
				name  string
				sql   string
				moves bool
			}{
				{"nothing", "", false},
				{"insert", "INSERT INTO t VALUES ('a', '2026-01-15 13:00:00', 1, NULL), ('b', '2026-01-15 13:00:00', 5, 'x')", true},
				{"refresh: counter only", "UPDATE t SET n = 2 WHERE k = 'a'", true},
				{"shorten: time only", "UPDATE t SET e = '2026-01-15 12:00:00' WHERE k = 'a'", true},
				{"nullable column set", "UPDATE t SET u = 'y' WHERE k = 'a'", true},
				{"values swapped between rows", "UPDATE t SET n = CASE k WHEN 'a' THEN 5 ELSE 2 END", true},
				{"delete", "DELETE FROM t WHERE k = 'b'", true},
				{"insert with the deleted row's values", "INSERT INTO t VALUES ('c', '2026-01-15 13:00:00', 2, 'x')", true},
				{"delete one, insert another: same count", "DELETE FROM t WHERE k = 'c'", true},
				{"no-op update", "UPDATE t SET n = n", false},
			}
			prev := fp()
			for _, st := range steps {
				if st.sql != "" {
					db.Exec(t, st.sql)
				}
				now := fp()
				if (now != prev) != st.moves {
					t.Errorf("%s: fingerprint %q -> %q, want moved=%v", st.name, prev, now, st.moves)
				}
				prev = now
			}
			var texts []string
			if err := s.Snapshot(ctx, func(row []sqlwatch.Value) {
				texts = append(texts, string(row[0].Bytes)+" "+string(row[1].Bytes)+" "+string(row[2].AppendText(nil)))
			}); err != nil {
				t.Fatal(err)
			}
			if want := []string{"a 2026-01-15 12:00:00 5"}; !slices.Equal(texts, want) {
				t.Errorf("snapshot = %q, want %q (the server's text, unconverted)", texts, want)
			}
		})
	}
}

// TestSQLiteDialect: data_version moves on another connection's commit,
// not on our reads, and a replaced file asks for a reopen.
func TestSQLiteDialect(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "t.db")
	writer, err := sql.Open(sqlwatch.SQLiteDriver, sqlwatch.FileDSN(path, "rwc"))
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	writer.SetMaxOpenConns(1)
	exec := func(q string) {
		t.Helper()
		if _, err := writer.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec("PRAGMA journal_mode=WAL")
	exec("CREATE TABLE t (k TEXT PRIMARY KEY, e REAL, n INTEGER, u TEXT)")
	d := sqlwatch.NewSQLite(path, "fix", nil)
	s, err := d.Open(ctx, &table)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fp := func() string {
		t.Helper()
		v, err := s.Fingerprint(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	a := fp()
	if err := s.Snapshot(ctx, func([]sqlwatch.Value) {}); err != nil {
		t.Fatal(err)
	}
	if b := fp(); b != a {
		t.Errorf("our own read moved data_version: %s -> %s", a, b)
	}
	exec("INSERT INTO t VALUES ('a', 2461000.5, 1, NULL)")
	if b := fp(); b == a {
		t.Errorf("another connection's commit did not move data_version")
	}
	var kinds []sqlwatch.Kind
	if err := s.Snapshot(ctx, func(row []sqlwatch.Value) {
		for _, v := range row {
			kinds = append(kinds, v.Kind)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if want := []sqlwatch.Kind{sqlwatch.Text, sqlwatch.Float, sqlwatch.Int, sqlwatch.Null}; !slices.Equal(kinds, want) {
		t.Errorf("value kinds = %v, want SQLite's storage classes %v", kinds, want)
	}
	// Replace the file by another one: the session asks to be reopened.
	other := filepath.Join(t.TempDir(), "other.db")
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fingerprint(ctx); !errors.Is(err, sqlwatch.ErrReopen) {
		t.Errorf("Fingerprint after replacement = %v, want ErrReopen", err)
	}
}
