package kamailio

import (
	"fmt"
	"log/slog"
	"time"

	_ "time/tzdata" // the registrar's zone must load in a minimal image

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// DefaultTZ is the registrar time zone assumed when none is configured. UTC
// is what docs/stores.md#kamailio recommends operators run Kamailio in;
// anything else must be said explicitly, or every expiry is off by the
// offset.
const DefaultTZ = "UTC"

// DBConfig configures the watcher of a Kamailio location table on a
// database server (db_mysql for MySQL/MariaDB, db_postgres for
// PostgreSQL).
type DBConfig struct {
	// Endpoint is the server and database (sqlwatch.ParseURL).
	Endpoint sqlwatch.Endpoint
	// Table is the usrloc table; default DefaultTable.
	Table string
	// Domain completes the AOR when the domain column is NULL or empty
	// (usrloc use_domain=0). If it is empty too, the AOR is "sip:"+username.
	Domain string
	// TZ is the IANA time zone of the Kamailio process (its TZ or
	// /etc/localtime): db_mysql and db_postgres write DATETIME/TIMESTAMP
	// values as its wall clock. Default DefaultTZ. Ignored for columns an
	// admin altered to BIGINT (usrloc expires_type=1), which hold epochs.
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
	// ChangelogRetention is how long read changelog rows are kept
	// (MySQL, CDC); default sqlwatch.DefaultChangelogRetention.
	ChangelogRetention time.Duration
	// FullReads turns incremental reads off (sqlwatch.Config.FullReads).
	FullReads bool
	// Slot and SlotLagWarn tune cdc=logical (sqlwatch.Config.Slot,
	// SlotLagWarn).
	Slot        string
	SlotLagWarn int64
}

// Validate fills defaults and rejects settings that can never work; it
// returns the registrar's location.
func (c *DBConfig) Validate() (*time.Location, error) {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.TZ == "" {
		c.TZ = DefaultTZ
	}
	if c.Endpoint.Addr == "" || c.Endpoint.Database == "" {
		return nil, fmt.Errorf("Endpoint needs a host and a database")
	}
	if err := validTableDomain(c.Table, c.Domain); err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(c.TZ)
	if err != nil {
		return nil, fmt.Errorf("TZ %q is not an IANA time zone: %w", c.TZ, err)
	}
	wc := c.watchConfig()
	if err := wc.Validate(); err != nil {
		return nil, err
	}
	return loc, nil
}

func (c *DBConfig) watchConfig() sqlwatch.Config {
	return sqlwatch.Config{PollInterval: c.PollInterval, ReconcileInterval: c.ReconcileInterval, MaxBackoff: c.MaxBackoff,
		CDC: c.CDC, ChangelogPoll: c.ChangelogPoll, ChangelogRetention: c.ChangelogRetention, FullReads: c.FullReads,
		Slot: c.Slot, SlotLagWarn: c.SlotLagWarn, ReconcileRate: c.ReconcileRate}
}

// NewMySQL returns a watcher of a location table in MySQL or MariaDB; it
// does no I/O.
func NewMySQL(cfg DBConfig, log *slog.Logger) (*sqlwatch.Watcher, error) {
	loc, err := cfg.Validate()
	if err != nil {
		return nil, fmt.Errorf("kamailio mysql: %w", err)
	}
	d, err := sqlwatch.NewMySQL(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("kamailio mysql: %w", err)
	}
	return newDBWatcher(cfg, loc, d, "kamailio_mysql", log)
}

// NewPostgres returns a watcher of a location table in PostgreSQL; it does
// no I/O.
func NewPostgres(cfg DBConfig, log *slog.Logger) (*sqlwatch.Watcher, error) {
	loc, err := cfg.Validate()
	if err != nil {
		return nil, fmt.Errorf("kamailio postgres: %w", err)
	}
	d, err := sqlwatch.NewPostgres(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("kamailio postgres: %w", err)
	}
	return newDBWatcher(cfg, loc, d, "kamailio_postgres", log)
}

func newDBWatcher(cfg DBConfig, loc *time.Location, d sqlwatch.Dialect, component string, log *slog.Logger) (*sqlwatch.Watcher, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", component, "db", cfg.Endpoint, "table", cfg.Table, "tz", cfg.TZ)
	w, err := sqlwatch.New(cfg.watchConfig(), d, newLayout(cfg.Table, cfg.Domain, loc, true), log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", component, err)
	}
	return w, nil
}
