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
	DefaultTZ = "UTC"
)

// DBConfig configures the watcher of an OpenSIPS location table on a
// database server.
type DBConfig struct {
	// Endpoint is the server and database (sqlwatch.ParseURL).
	Endpoint sqlwatch.Endpoint
	// Table is the usrloc table; default DefaultTable.
	Table string
	// Domain completes the AOR when the domain column is NULL or empty
	// (usrloc use_domain=0). If it is empty too, the AOR is "sip:"+username.
	Domain string
	// TZ is the IANA zone of the OpenSIPS process, in which it writes
	// last_modified (expires is an epoch); default DefaultTZ.
	TZ string
	// PollInterval is how often the change check runs; default
	// sqlwatch.DefaultPollInterval.
	PollInterval time.Duration
	// ReconcileInterval forces a full read this often even when the
	// change check saw nothing; default sqlwatch.DefaultReconcileInterval.
	ReconcileInterval time.Duration
	// ReconcileRate paces that reconcile beside a change feed, in rows
	// per second (sqlwatch.Config.ReconcileRate); default one query.
	ReconcileRate int
	// MaxBackoff caps the retry delay during an outage; default
	// sqlwatch.DefaultMaxBackoff.
	MaxBackoff time.Duration
	// CDC is sqlwatch.CDCTrigger to read changes from the triggers
	// `regbridge cdc install` adds, or sqlwatch.CDCLogical (PostgreSQL
	// logical replication) (sqlwatch.Config.CDC); default polling.
	CDC string
	// ChangelogPoll is how often the MySQL changelog is read under CDC;
	// default sqlwatch.DefaultChangelogPoll.
	ChangelogPoll time.Duration
	// FullReads turns incremental reads off (sqlwatch.Config.FullReads).
	FullReads bool
	// Slot and SlotLagWarn tune cdc=logical (sqlwatch.Config.Slot,
	// SlotLagWarn).
	Slot        string
	SlotLagWarn int64
}

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

// common validates the settings every watcher shares, fills defaults and
// returns the registrar's location.
func common(table, domain, tz *string, wc *sqlwatch.Config) (*time.Location, error) {
	if *table == "" {
		*table = DefaultTable
	}
	if *tz == "" {
		*tz = DefaultTZ
	}
	switch {
	case !sqlwatch.ValidIdent(*table):
		return nil, fmt.Errorf("Table %q is not an identifier ([A-Za-z_][A-Za-z0-9_]*)", *table)
	case strings.EqualFold(*table, "version"):
		return nil, errors.New(`Table must not be "version" (OpenSIPS's table of table versions)`)
	case *domain != "" && (!sqlwatch.Printable([]byte(*domain)) || strings.IndexByte(*domain, '@') >= 0):
		return nil, fmt.Errorf("Domain %q is not a host name", *domain)
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return nil, fmt.Errorf("TZ %q is not an IANA time zone: %w", *tz, err)
	}
	if err := wc.Validate(); err != nil {
		return nil, err
	}
	return loc, nil
}

// NewMySQL returns a watcher of a location table in MySQL or MariaDB; it
// does no I/O.
func NewMySQL(cfg DBConfig, log *slog.Logger) (*sqlwatch.Watcher, error) {
	d, err := sqlwatch.NewMySQL(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("opensips mysql: %w", err)
	}
	return newDBWatcher(cfg, d, "opensips_mysql", log)
}

// NewPostgres returns a watcher of a location table in PostgreSQL; it does
// no I/O.
func NewPostgres(cfg DBConfig, log *slog.Logger) (*sqlwatch.Watcher, error) {
	d, err := sqlwatch.NewPostgres(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("opensips postgres: %w", err)
	}
	return newDBWatcher(cfg, d, "opensips_postgres", log)
}

func newDBWatcher(cfg DBConfig, d sqlwatch.Dialect, component string, log *slog.Logger) (*sqlwatch.Watcher, error) {
	wc := sqlwatch.Config{PollInterval: cfg.PollInterval, ReconcileInterval: cfg.ReconcileInterval, MaxBackoff: cfg.MaxBackoff,
		CDC: cfg.CDC, ChangelogPoll: cfg.ChangelogPoll, FullReads: cfg.FullReads,
		Slot: cfg.Slot, SlotLagWarn: cfg.SlotLagWarn, ReconcileRate: cfg.ReconcileRate}
	loc, err := common(&cfg.Table, &cfg.Domain, &cfg.TZ, &wc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", component, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", component, "db", cfg.Endpoint, "table", cfg.Table, "tz", cfg.TZ)
	w, err := sqlwatch.New(wc, d, &layout{table: cfg.Table, domain: cfg.Domain, loc: loc, server: true}, log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", component, err)
	}
	return w, nil
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
	wc := sqlwatch.Config{PollInterval: cfg.PollInterval, ReconcileInterval: sqlwatch.Never, MaxBackoff: cfg.MaxBackoff}
	loc, err := common(&cfg.Table, &cfg.Domain, &cfg.TZ, &wc)
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
