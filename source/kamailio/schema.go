package kamailio

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// locationTableVersion is the `version` row Kamailio's usrloc checks at
// start-up; the layout below is version 9 (Kamailio 5.6 to 6.1).
const locationTableVersion = 9

// locationColumns are the location table's columns after id, written the
// same in Kamailio's db_sqlite and db_postgres DDL (db_mysql spells the
// types its own way).
const locationColumns = `    ruid VARCHAR(64) DEFAULT '' NOT NULL,
    username VARCHAR(64) DEFAULT '' NOT NULL,
    domain VARCHAR(64) DEFAULT NULL,
    contact VARCHAR(512) DEFAULT '' NOT NULL,
    received VARCHAR(128) DEFAULT NULL,
    path VARCHAR(512) DEFAULT NULL,
    expires TIMESTAMP WITHOUT TIME ZONE DEFAULT '2030-05-28 21:32:15' NOT NULL,
    q REAL DEFAULT 1.0 NOT NULL,
    callid VARCHAR(255) DEFAULT 'Default-Call-ID' NOT NULL,
    cseq INTEGER DEFAULT 1 NOT NULL,
    last_modified TIMESTAMP WITHOUT TIME ZONE DEFAULT '2000-01-01 00:00:01' NOT NULL,
    flags INTEGER DEFAULT 0 NOT NULL,
    cflags INTEGER DEFAULT 0 NOT NULL,
    user_agent VARCHAR(255) DEFAULT '' NOT NULL,
    socket VARCHAR(64) DEFAULT NULL,
    methods INTEGER DEFAULT NULL,
    instance VARCHAR(255) DEFAULT NULL,
    reg_id INTEGER DEFAULT 0 NOT NULL,
    server_id INTEGER DEFAULT 0 NOT NULL,
    connection_id INTEGER DEFAULT 0 NOT NULL,
    keepalive INTEGER DEFAULT 0 NOT NULL,
    partition INTEGER DEFAULT 0 NOT NULL,`

// SQLiteSchema returns the SQLite DDL of Kamailio's
// utils/kamctl/db_sqlite/standard-create.sql (the `version` table) and
// usrloc-create.sql (the `location` table), with table as the location
// table's name. Kamailio names its constraint and indexes after the table,
// so a renamed table (save("location_pbx")) gets renamed indexes too.
// Column names, declared types, defaults and NULL-ability are Kamailio's:
// the declared type decides SQLite's column affinity, which decides how
// values come back (TIMESTAMP WITHOUT TIME ZONE has NUMERIC affinity).
// table must already be a validated identifier. The version table is
// created only where missing, so the statements also add a location table
// to an existing Kamailio database (regload does).
func SQLiteSchema(table string) []string {
	return locationSchema(sqlwatch.QuoteSQLite, "INTEGER", table, true)
}

// locationSchema is the DDL SQLite and PostgreSQL share, differing in how
// names are quoted (q) and in the id column's type (SERIAL on
// PostgreSQL). seedVersion also records the version table's own version,
// as db_sqlite's standard-create.sql does.
func locationSchema(q func(string) string, idType, table string, seedVersion bool) []string {
	ddl := []string{`CREATE TABLE IF NOT EXISTS version (
    id ` + idType + ` PRIMARY KEY NOT NULL,
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_table_name_idx UNIQUE (table_name)
)`}
	if seedVersion {
		ddl = append(ddl, `INSERT INTO version (table_name, table_version) SELECT 'version', '1' WHERE NOT EXISTS (SELECT 1 FROM version WHERE table_name = 'version')`)
	}
	return append(ddl,
		`CREATE TABLE `+q(table)+` (
    id `+idType+` PRIMARY KEY NOT NULL,
`+locationColumns+`
    CONSTRAINT `+q(table+"_ruid_idx")+` UNIQUE (ruid)
)`,
		`CREATE INDEX `+q(table+"_account_contact_idx")+` ON `+q(table)+` (username, domain, contact)`,
		`CREATE INDEX `+q(table+"_expires_idx")+` ON `+q(table)+` (expires)`,
		`CREATE INDEX `+q(table+"_tcpcon_idx")+` ON `+q(table)+` (connection_id)`,
		`CREATE INDEX `+q(table+"_connection_idx")+` ON `+q(table)+` (server_id, connection_id)`,
		// Kamailio writes the version as a string literal into an INTEGER
		// column (stored as integer by affinity on SQLite); so do we.
		fmt.Sprintf(`INSERT INTO version (table_name, table_version) VALUES ('%s', '%d')`, table, locationTableVersion),
	)
}

// createDatabase makes a new database file at path holding the Kamailio
// schema, in WAL journal mode. It never touches an existing file: the
// database is built under a temporary name in the same directory and then
// hard-linked into place, which fails if anything appeared at path in the
// meantime (Kamailio starting up, an operator restoring a backup). It
// reports whether it created the file.
func createDatabase(ctx context.Context, path, table string) (created bool, err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".regbridge-*")
	if err != nil {
		return false, fmt.Errorf("creating %s: %w", path, err)
	}
	tmpPath := tmp.Name()
	defer func() {
		// The -wal/-shm of the temporary name are gone after a clean close;
		// remove them anyway in case the close failed half-way.
		for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
			_ = os.Remove(tmpPath + suffix)
		}
	}()
	// CreateTemp makes 0600; use what sqlite3 would give a new file, so
	// that a Kamailio running under another user can at least read it.
	err = tmp.Chmod(0o644)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, fmt.Errorf("creating %s: %w", path, err)
	}
	if err := initSchema(ctx, tmpPath, table); err != nil {
		return false, fmt.Errorf("creating %s: %w", path, err)
	}
	if err := os.Link(tmpPath, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil // someone else created it first: theirs wins
		}
		// No hard links on this file system: fall back to a rename, which
		// could replace a file created in the last microseconds.
		if _, serr := os.Lstat(path); !errors.Is(serr, os.ErrNotExist) {
			return false, nil
		}
		if err := os.Rename(tmpPath, path); err != nil {
			return false, fmt.Errorf("creating %s: %w", path, err)
		}
	}
	return true, nil
}

// initSchema writes the schema into the empty database file at path.
func initSchema(ctx context.Context, path, table string) error {
	db, err := sql.Open(sqlwatch.SQLiteDriver, sqlwatch.FileDSN(path, "rw"))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, stmt := range SQLiteSchema(table) {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// WAL is a persistent property of the file, so setting it once here
	// is enough for every later connection, Kamailio's included. In WAL
	// mode readers never block a writer's COMMIT; in the default
	// rollback-journal mode our read locks make Kamailio's COMMIT fail at
	// once with "database is locked" (it sets no busy timeout), losing the
	// registration. It is switched last so the schema is already in the
	// main file and closing the connection leaves no -wal behind.
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode=WAL").Scan(&mode); err != nil {
		return fmt.Errorf("setting WAL mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("setting WAL mode: journal_mode is %q", mode)
	}
	return db.Close()
}
