package sqlwatch_test

import (
	"database/sql"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// TestColumnCheck: on every store, Open tells a missing table
// (ErrNoTable) and a table without some of the columns read (SchemaError
// naming them) from a readable one. SQLite would otherwise read a missing
// double-quoted column as a string literal and open fine.
func TestColumnCheck(t *testing.T) {
	const partial = "CREATE TABLE t (k VARCHAR(64) PRIMARY KEY, n INTEGER, other VARCHAR(8))"
	stores := []struct {
		name    string
		dialect func(t *testing.T) (sqlwatch.Dialect, func(string))
	}{
		{"sqlite", func(t *testing.T) (sqlwatch.Dialect, func(string)) {
			path := filepath.Join(t.TempDir(), "t.db")
			db, err := sql.Open(sqlwatch.SQLiteDriver, sqlwatch.FileDSN(path, "rwc"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			exec := func(q string) {
				if _, err := db.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			exec("PRAGMA journal_mode=WAL")
			return sqlwatch.NewSQLite(path, "fix", nil), exec
		}},
		{"mysql", func(t *testing.T) (sqlwatch.Dialect, func(string)) {
			db := sqltest.MySQL(t)
			d, err := sqlwatch.NewMySQL(db.Endpoint)
			if err != nil {
				t.Fatal(err)
			}
			return d, func(q string) { db.Exec(t, q) }
		}},
		{"postgres", func(t *testing.T) (sqlwatch.Dialect, func(string)) {
			db := sqltest.Postgres(t)
			d, err := sqlwatch.NewPostgres(db.Endpoint)
			if err != nil {
				t.Fatal(err)
			}
			return d, func(q string) { db.Exec(t, q) }
		}},
	}
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			d, exec := st.dialect(t)
			if _, err := d.Open(t.Context(), &table); !errors.Is(err, sqlwatch.ErrNoTable) {
				t.Fatalf("Open without the table = %v, want ErrNoTable", err)
			}
			exec(partial)
			_, err := d.Open(t.Context(), &table)
			var se *sqlwatch.SchemaError
			if !errors.As(err, &se) {
				t.Fatalf("Open on a table lacking e and u = %v, want a SchemaError", err)
			}
			if !slices.Equal(se.Missing, []string{"e", "u"}) || !slices.Contains(se.Have, "other") || se.Table != "t" {
				t.Errorf("SchemaError = %+v, want e and u missing from t", se)
			}
			if want := "table t lacks columns e, u"; se.Error() != want {
				t.Errorf("message %q, want %q", se.Error(), want)
			}
			exec("ALTER TABLE t ADD COLUMN e INTEGER")
			exec("ALTER TABLE t ADD COLUMN u VARCHAR(8)")
			s, err := d.Open(t.Context(), &table)
			if err != nil {
				t.Fatalf("Open on the complete table: %v", err)
			}
			s.Close()
		})
	}
}
