// Package opensips reads OpenSIPS's usrloc contact store: the `location`
// table of OpenSIPS 3.4 to 4.0 (table version 1013) in MySQL/MariaDB
// (db_mysql), PostgreSQL (db_postgres) or SQLite (db_sqlite), polled by
// source/sqlwatch.
//
// Store facts implemented here (docs/stores.md#opensips):
//
//   - the binding's key is contact_id, a 64-bit value OpenSIPS packs itself
//     (reported in decimal). Labels restart with OpenSIPS, so an id can be
//     reused by another binding later; a different contact URI under the
//     same id then reaches the bridge as the old contact deactivated and
//     the new one registered;
//   - expires is an INT epoch, 0 meaning permanent: no time zone involved;
//     last_modified is the registrar's wall clock (localtime_r), decoded in
//     the configured zone, and is informational only;
//   - no reg_id, and no ruid-style prefix for administrative bindings;
//   - usrloc must keep the table: working_mode_preset
//     single-instance-sql-write-through, single-instance-sql-write-back
//     (with timer_interval lag) or sql-only. The default,
//     single-instance-no-db, writes nothing;
//   - there is no index besides the primary key, so each change check is
//     one pass over the table in the server (the costs in
//     docs/stores.md#sql-servers apply).
//
// For SQLite the file is opened read-only and polled with PRAGMA
// data_version, as for Kamailio; OpenSIPS's db_sqlite has no journal-mode
// setting, so the warning for a file not in WAL mode says to switch the
// file once (WAL is a property of the file and persists).
package opensips

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	_ "time/tzdata" // the registrar's zone must load in a minimal image

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// Defaults.
const (
	// DefaultTable is usrloc's default table.
	DefaultTable = "location"
	// DefaultTZ is the registrar zone assumed for last_modified when none
	// is configured (only last_modified depends on it).
	DefaultTZ = sqlwatch.DefaultTZ
)

// DBConfig configures the watcher of an OpenSIPS location table on a
// database server. TZ is the zone of the OpenSIPS process, in which it
// writes last_modified (expires is an epoch).
type DBConfig = sqlwatch.ServerConfig

// SQLiteConfig configures the watcher of an OpenSIPS location table in a
// db_sqlite file.
type SQLiteConfig struct {
	// Path is the database file (OpenSIPS's db_url without "sqlite://").
	Path string
	// Table, Domain, TZ, PollInterval and MaxBackoff are as in DBConfig.
	// There is no reconcile interval: data_version is exact.
	Table, Domain, TZ string
	PollInterval      time.Duration
	MaxBackoff        time.Duration
}

// NewMySQL and NewPostgres return a watcher of a location table in
// MySQL or MariaDB, or in PostgreSQL; they do no I/O.
var (
	NewMySQL    = sqlwatch.OnDriver(sqlwatch.DriverMySQL, NewServer)
	NewPostgres = sqlwatch.OnDriver(sqlwatch.DriverPostgres, NewServer)
)

// NewServer returns a watcher of a location table on the server
// cfg.Driver names; it does no I/O.
func NewServer(cfg DBConfig, log *slog.Logger) (*sqlwatch.Watcher, error) {
	return cfg.NewWatcher("OpenSIPS", DefaultTable, func(c *DBConfig, loc *time.Location) sqlwatch.Layout {
		return &layout{table: c.Table, domain: c.Domain, loc: loc, server: true}
	}, log)
}

// SQLite watches an OpenSIPS location table in a db_sqlite file.
type SQLite struct {
	d *sqlwatch.SQLite
	w *sqlwatch.Watcher
}

var (
	_ source.Source   = (*SQLite)(nil)
	_ source.Reporter = (*SQLite)(nil)
)

// NewSQLite returns a watcher of the location table in an SQLite file; it
// does no I/O.
func NewSQLite(cfg SQLiteConfig, log *slog.Logger) (*SQLite, error) {
	if cfg.Path == "" || strings.IndexByte(cfg.Path, 0) >= 0 {
		return nil, errors.New("opensips sqlite: Path must name the database file")
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if cfg.TZ == "" {
		cfg.TZ = DefaultTZ
	}
	wc := sqlwatch.Config{PollInterval: cfg.PollInterval, ReconcileInterval: sqlwatch.Never, MaxBackoff: cfg.MaxBackoff}
	loc, err := time.LoadLocation(cfg.TZ)
	if err != nil {
		err = fmt.Errorf("TZ %q is not an IANA time zone: %w", cfg.TZ, err)
	} else {
		err = sqlwatch.CheckTableDomain("OpenSIPS", cfg.Table, cfg.Domain)
	}
	if err == nil {
		err = wc.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("opensips sqlite: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "opensips_sqlite", "path", cfg.Path, "table", cfg.Table)
	d := sqlwatch.NewSQLite(cfg.Path, `sqlite3 `+cfg.Path+` "PRAGMA journal_mode=WAL;" once, with OpenSIPS stopped (WAL persists in the file)`, log)
	w, err := sqlwatch.New(wc, d, &layout{table: cfg.Table, domain: cfg.Domain, loc: loc}, log)
	if err != nil {
		return nil, fmt.Errorf("opensips sqlite: %w", err)
	}
	return &SQLite{d: d, w: w}, nil
}

// Run reports the table until ctx ends. A missing file at start is a
// configuration error; every later failure is retried.
func (s *SQLite) Run(ctx context.Context, sink source.Sink) error {
	if err := s.d.CheckFile(); err != nil {
		return fmt.Errorf("opensips sqlite: %w", err)
	}
	return s.w.Run(ctx, sink)
}

// Check reports a setup that can never be read: no file, a table of
// another layout (sqlwatch.SchemaError). Call it before Run.
func (s *SQLite) Check(ctx context.Context) error {
	if err := s.d.CheckFile(); err != nil {
		return fmt.Errorf("opensips sqlite: %w", err)
	}
	return s.w.Check(ctx)
}

// Stats reports the watcher's health (source.Reporter).
func (s *SQLite) Stats() source.Stats { return s.w.Stats() }

// Snapshot reads the table once, outside Run (tools and tests).
func (s *SQLite) Snapshot(ctx context.Context) ([]source.Contact, error) {
	return s.w.Snapshot(ctx)
}
