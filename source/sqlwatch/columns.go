package sqlwatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Every session checks, before anything else, that the table has the
// columns the layout reads. Without the check SQLite reads a missing
// column named in double quotes as a string literal (every row then looks
// bad, or an empty table looks fine), and the servers fail with a bare
// "unknown column" that is retried as if it were an outage.

// SchemaError says the table lacks columns the layout reads: it belongs to
// another registrar, or another version of one. Retrying cannot help.
type SchemaError struct {
	Table   string
	Missing []string // columns the layout reads that the table lacks
	Have    []string // the table's columns, lower case
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("table %s lacks columns %s", e.Table, strings.Join(e.Missing, ", "))
}

// ErrNoTable says the table does not exist.
var ErrNoTable = errors.New("table does not exist")

// checkColumns compares have, the table's columns as the store lists
// them (listing them failed with err), with what t reads. No columns at
// all means no table. Dialects call it as t.checkColumns(list(...)).
func (t *Table) checkColumns(have []string, err error) error {
	if err != nil {
		return fmt.Errorf("listing the columns of %s: %w", t.Name, err)
	}
	if len(have) == 0 {
		return fmt.Errorf("table %s: %w", t.Name, ErrNoTable)
	}
	lower := make([]string, len(have))
	for i, c := range have {
		lower[i] = strings.ToLower(c) // MySQL and SQLite match names without case
	}
	var missing []string
	for _, c := range t.Columns {
		if !slices.Contains(lower, strings.ToLower(c)) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return &SchemaError{Table: t.Name, Missing: missing, Have: lower}
	}
	return nil
}

// sqlNames runs query, which returns one column name per row, on a
// database/sql connection.
func sqlNames(ctx context.Context, q queryer, query string) ([]string, error) {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var have []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, err
		}
		have = append(have, name)
	}
	return have, rows.Err()
}

// The column lists per store; t.Name is a validated identifier, so it can
// stand in a string literal.
func sqliteColumnsQuery(t *Table) string {
	return "SELECT name FROM pragma_table_info('" + t.Name + "')"
}

func mysqlColumnsQuery(t *Table) string {
	return "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '" + t.Name + "'"
}

// The schemas of the search path, as an unqualified name in a query would
// be looked up.
func postgresColumnsQuery(t *Table) string {
	return "SELECT column_name FROM information_schema.columns WHERE table_schema = ANY (current_schemas(false)) AND table_name = '" + t.Name + "'"
}

// Check opens the store once and reports a table that can never be read
// as configured (SchemaError); nil for anything else, including a store
// that does not answer (Run retries those). Call it before Run, at
// start-up, to refuse a wrong setup at once.
func (w *Watcher) Check(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("sqlwatch: Check called while running")
	}
	defer w.running.Store(false)
	s, err := w.open(ctx)
	if err != nil {
		var se *SchemaError
		if errors.As(err, &se) {
			return se
		}
		return nil
	}
	return s.Close()
}
