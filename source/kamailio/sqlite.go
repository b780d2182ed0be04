package kamailio

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

const (
	// DefaultTable is usrloc's default table (save("location")).
	DefaultTable = "location"
	// DefaultPollInterval bounds the change-to-batch latency. A
	// data_version check reads one page, so asking every second costs
	// next to nothing and keeps the added NOTIFY latency near a second.
	DefaultPollInterval = time.Second
)

// SQLiteConfig configures the watcher of a Kamailio location table in a
// db_sqlite database file.
type SQLiteConfig struct {
	// Path is the database file, as in Kamailio's db_url without the
	// "sqlite://" prefix.
	Path string
	// Table is the usrloc table; default DefaultTable.
	Table string
	// Domain completes the AOR when the domain column is NULL or empty
	// (usrloc use_domain=0). If it is empty too, the AOR is "sip:"+username.
	Domain string
	// Create makes the file with Kamailio's schema (in WAL mode) when it
	// does not exist at start-up. An existing file is never written.
	Create bool
	// PollInterval is how often PRAGMA data_version is asked; default
	// DefaultPollInterval.
	PollInterval time.Duration
	// MaxBackoff caps the retry delay while the file is unreadable;
	// default sqlwatch.DefaultMaxBackoff.
	MaxBackoff time.Duration
}

// Validate fills defaults and rejects settings that can never work.
func (c *SQLiteConfig) Validate() error {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Path == "" || strings.IndexByte(c.Path, 0) >= 0 {
		return errors.New("kamailio sqlite: Path must name the database file")
	}
	if err := sqlwatch.CheckTableDomain("Kamailio", c.Table, c.Domain); err != nil {
		return fmt.Errorf("kamailio sqlite: %w", err)
	}
	wc := c.watchConfig()
	if err := wc.Validate(); err != nil {
		return fmt.Errorf("kamailio sqlite: %w", err)
	}
	return nil
}

func (c *SQLiteConfig) watchConfig() sqlwatch.Config {
	// data_version is exact: no forced reconcile, which would only add
	// read locks that can make Kamailio's commits fail (docs/stores.md#kamailio).
	return sqlwatch.Config{PollInterval: c.PollInterval, ReconcileInterval: sqlwatch.Never, MaxBackoff: c.MaxBackoff}
}

// SQLite watches a Kamailio location table in an SQLite file and reports it
// as Full batches: one at start, one after every change another connection
// commits, one after every recovery from an outage.
type SQLite struct {
	cfg     SQLiteConfig
	log     *slog.Logger
	dialect *sqlwatch.SQLite
	w       *sqlwatch.Watcher
}

var (
	_ source.Source   = (*SQLite)(nil)
	_ source.Reporter = (*SQLite)(nil)
)

// NewSQLite checks cfg and returns a watcher; it does no I/O.
func NewSQLite(cfg SQLiteConfig, log *slog.Logger) (*SQLite, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "kamailio_sqlite", "path", cfg.Path, "table", cfg.Table)
	d := sqlwatch.NewSQLite(cfg.Path, `modparam("db_sqlite","db_set_journal_mode","`+cfg.Path+`=WAL")`, log)
	w, err := sqlwatch.New(cfg.watchConfig(), d, newLayout(cfg.Table, cfg.Domain, time.UTC, false), log)
	if err != nil {
		return nil, fmt.Errorf("kamailio sqlite: %w", err)
	}
	return &SQLite{cfg: cfg, log: log, dialect: d, w: w}, nil
}

// Stats reports the watcher's health (source.Reporter).
func (w *SQLite) Stats() source.Stats { return w.w.Stats() }

// Run reports the table until ctx ends. It returns an error only when the
// file is missing at start and Create is off, or cannot be created; every
// later failure is retried with backoff and followed by a Full batch.
func (w *SQLite) Run(ctx context.Context, sink source.Sink) error {
	if err := w.ensureFile(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	return w.w.Run(ctx, sink)
}

// Check applies Create and reports a setup that can never be read: no
// file (Create off), a directory, a table of another layout
// (sqlwatch.SchemaError). Call it before Run; nil says Run may start.
func (w *SQLite) Check(ctx context.Context) error {
	if err := w.ensureFile(ctx); err != nil {
		return err
	}
	return w.w.Check(ctx)
}

// Snapshot reads the table once, outside Run (tools and tests).
func (w *SQLite) Snapshot(ctx context.Context) ([]source.Contact, error) {
	return w.w.Snapshot(ctx)
}

// ensureFile applies Create and tells a missing file (configuration) from
// an unreadable one (outage, retried by Run).
func (w *SQLite) ensureFile(ctx context.Context) error {
	fi, err := os.Stat(w.cfg.Path)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("kamailio sqlite: %s is a directory, not a database file", w.cfg.Path)
	case err == nil || !errors.Is(err, fs.ErrNotExist):
		return nil
	case !w.cfg.Create:
		return fmt.Errorf("kamailio sqlite: %w (and Create is off)", &sqlwatch.NoFileError{Path: w.cfg.Path})
	}
	created, err := createDatabase(ctx, w.cfg.Path, w.cfg.Table)
	if err != nil {
		return fmt.Errorf("kamailio sqlite: %w", err)
	}
	if created {
		w.log.Info("created database file with Kamailio location schema in WAL mode")
	}
	return nil
}
