package asterisk

import (
	"fmt"
	"strings"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// psContacts is ps_contacts after all of Asterisk's alembic migrations,
// with {table} for the table's name. The servers differ only in how id is
// declared unique ({id}, {unique}) and how the yes/no enum is spelt
// ({bool}).
const psContacts = `CREATE TABLE {table} (
    id {id},
    uri VARCHAR(511),
    expiration_time BIGINT,
    qualify_frequency INTEGER,
    outbound_proxy VARCHAR(255),
    path TEXT,
    user_agent VARCHAR(255),
    qualify_timeout FLOAT,
    reg_server VARCHAR(255),
    authenticate_qualify {bool},
    via_addr VARCHAR(40),
    via_port INTEGER,
    call_id VARCHAR(255),
    endpoint VARCHAR(255),
    prune_on_boot {bool},
    qualify_2xx_only {bool},{unique}
    CONSTRAINT {table}_uq UNIQUE (id, reg_server)
)`

// psContactsIndexes are the indexes the migrations add, on every server.
var psContactsIndexes = []string{
	`CREATE INDEX {table}_id ON {table} (id)`,
	`CREATE INDEX {table}_qualifyfreq_exp ON {table} (qualify_frequency, expiration_time)`,
}

// astBool is the migrations' yes/no enum.
const astBool = `ENUM('0','1','off','on','false','true','no','yes')`

// realtimeDDL is the contacts table per server, with {table} for the
// table's name.
var realtimeDDL = map[string][]string{
	sqlwatch.DriverMySQL: append([]string{
		strings.NewReplacer("{id}", "VARCHAR(255) NOT NULL", "{bool}", astBool,
			"{unique}", "\n    UNIQUE (id),").Replace(psContacts),
	}, psContactsIndexes...),
	sqlwatch.DriverPostgres: append([]string{
		`CREATE TYPE ast_bool_values AS ENUM ('0','1','off','on','false','true','no','yes')`,
		strings.NewReplacer("{id}", "VARCHAR(255) NOT NULL UNIQUE", "{bool}", "ast_bool_values",
			"{unique}", "").Replace(psContacts),
	}, psContactsIndexes...),
}

// RealtimeSchema returns the statements that create the contacts table
// as Asterisk's alembic migrations leave it, on driver
// (sqlwatch.DriverMySQL or sqlwatch.DriverPostgres), named table (a
// validated identifier): for operators (`regbridge schema`) and tests.
func RealtimeSchema(driver, table string) ([]string, error) {
	ddl, ok := realtimeDDL[driver]
	if !ok {
		return nil, fmt.Errorf("asterisk realtime: no schema for driver %q", driver)
	}
	if !sqlwatch.ValidIdent(table) {
		return nil, fmt.Errorf("asterisk realtime: table %q is not an identifier", table)
	}
	out := make([]string, len(ddl))
	for i, s := range ddl {
		out[i] = strings.ReplaceAll(s, "{table}", table)
	}
	return out, nil
}

// RealtimeColumns are the columns regbridge reads from the contacts
// table.
func RealtimeColumns() []string { return append([]string(nil), realtimeColumns...) }
