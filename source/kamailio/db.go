package kamailio

import (
	"log/slog"
	"time"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// DefaultTZ is the registrar time zone assumed when none is configured. UTC
// is what docs/stores.md#kamailio recommends operators run Kamailio in;
// anything else must be said explicitly, or every expiry is off by the
// offset.
const DefaultTZ = sqlwatch.DefaultTZ

// DBConfig configures the watcher of a Kamailio location table on a
// database server (db_mysql for MySQL/MariaDB, db_postgres for
// PostgreSQL). TZ is the zone of the Kamailio process (its TZ or
// /etc/localtime): db_mysql and db_postgres write DATETIME/TIMESTAMP
// values as its wall clock; columns an admin altered to BIGINT (usrloc
// expires_type=1) hold epochs and do not depend on it.
type DBConfig = sqlwatch.ServerConfig

// NewMySQL and NewPostgres return a watcher of a location table in
// MySQL or MariaDB, or in PostgreSQL; they do no I/O.
var (
	NewMySQL    = sqlwatch.OnDriver(sqlwatch.DriverMySQL, NewServer)
	NewPostgres = sqlwatch.OnDriver(sqlwatch.DriverPostgres, NewServer)
)

// NewServer returns a watcher of a location table on the server
// cfg.Driver names; it does no I/O.
func NewServer(cfg DBConfig, log *slog.Logger) (*sqlwatch.Watcher, error) {
	return cfg.NewWatcher("Kamailio", DefaultTable, func(c *DBConfig, loc *time.Location) sqlwatch.Layout {
		return newLayout(c.Table, c.Domain, loc, true)
	}, log)
}
