package asterisk

import (
	"fmt"
	"strings"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// realtimeDDL is ps_contacts after all of Asterisk's alembic migrations,
// per server, with {table} for the table's name.
var realtimeDDL = map[string][]string{
	sqlwatch.DriverMySQL: {
		`CREATE TABLE {table} (
    id VARCHAR(255) NOT NULL,
    uri VARCHAR(511),
    expiration_time BIGINT,
    qualify_frequency INTEGER,
    outbound_proxy VARCHAR(255),
    path TEXT,
    user_agent VARCHAR(255),
    qualify_timeout FLOAT,
    reg_server VARCHAR(255),
    authenticate_qualify ENUM('0','1','off','on','false','true','no','yes'),
    via_addr VARCHAR(40),
    via_port INTEGER,
    call_id VARCHAR(255),
    endpoint VARCHAR(255),
    prune_on_boot ENUM('0','1','off','on','false','true','no','yes'),
    qualify_2xx_only ENUM('0','1','off','on','false','true','no','yes'),
    UNIQUE (id),
    CONSTRAINT {table}_uq UNIQUE (id, reg_server)
)`,
		`CREATE INDEX {table}_id ON {table} (id)`,
		`CREATE INDEX {table}_qualifyfreq_exp ON {table} (qualify_frequency, expiration_time)`,
	},
	sqlwatch.DriverPostgres: {
		`CREATE TYPE ast_bool_values AS ENUM ('0','1','off','on','false','true','no','yes')`,
		`CREATE TABLE {table} (
    id VARCHAR(255) NOT NULL UNIQUE,
    uri VARCHAR(511),
    expiration_time BIGINT,
    qualify_frequency INTEGER,
    outbound_proxy VARCHAR(255),
    path TEXT,
    user_agent VARCHAR(255),
    qualify_timeout FLOAT,
    reg_server VARCHAR(255),
    authenticate_qualify ast_bool_values,
    via_addr VARCHAR(40),
    via_port INTEGER,
    call_id VARCHAR(255),
    endpoint VARCHAR(255),
    prune_on_boot ast_bool_values,
    qualify_2xx_only ast_bool_values,
    CONSTRAINT {table}_uq UNIQUE (id, reg_server)
)`,
		`CREATE INDEX {table}_id ON {table} (id)`,
		`CREATE INDEX {table}_qualifyfreq_exp ON {table} (qualify_frequency, expiration_time)`,
	},
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
