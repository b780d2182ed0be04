package opensips

import (
	"embed"
	"fmt"
	"strings"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// schemaFS holds OpenSIPS's DDL of the location table per store, written
// for the default table name "location".
//
//go:embed schema/*.sql
var schemaFS embed.FS

// Schema returns the statements that create OpenSIPS's location table in
// a store (sqlwatch.DriverMySQL, sqlwatch.DriverPostgres or "sqlite"),
// named table (a validated identifier), for operators (`regbridge
// schema`) and tests alike.
func Schema(store, table string) ([]string, error) {
	raw, err := schemaFS.ReadFile("schema/" + store + ".sql")
	if err != nil {
		return nil, fmt.Errorf("opensips: no schema for store %q", store)
	}
	if !sqlwatch.ValidIdent(table) {
		return nil, fmt.Errorf("opensips: table %q is not an identifier", table)
	}
	var lines []string
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(l, "--") {
			lines = append(lines, l)
		}
	}
	// "location" appears only as the table's name and in names derived
	// from it (PostgreSQL's location_contact_id_seq).
	var stmts []string
	for _, s := range strings.Split(strings.ReplaceAll(strings.Join(lines, "\n"), "location", table), ";") {
		if s = strings.TrimSpace(s); s != "" {
			stmts = append(stmts, s)
		}
	}
	return stmts, nil
}

// Columns are the columns regbridge reads from OpenSIPS's location table.
func Columns() []string { return append([]string(nil), columns[:]...) }
