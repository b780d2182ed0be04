package asterisk

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// Realtime source URL schemes:
// asterisk+mysql://user:pass@host:3306/asterisk[?table=ps_contacts] and
// asterisk+postgres://user:pass@host:5432/asterisk[?table=ps_contacts].
const (
	SchemeMySQL    = "asterisk+mysql"
	SchemePostgres = "asterisk+postgres"
)

// DefaultTable is the realtime contacts table of Asterisk's alembic
// schema (sorcery.conf "contact=realtime,ps_contacts").
const DefaultTable = "ps_contacts"

// RealtimeConfig configures a watcher of ps_contacts
// (docs/stores.md#realtime-ps_contacts) in MySQL,
// MariaDB or PostgreSQL.
type RealtimeConfig struct {
	// Driver is sqlwatch.DriverMySQL or sqlwatch.DriverPostgres.
	Driver   string
	Endpoint sqlwatch.Endpoint
	// Table is the contacts table; default DefaultTable.
	Table string
	// Domain completes the AOR, as for AstDB.
	Domain string
	// Watch tunes polling (sqlwatch defaults).
	Watch sqlwatch.Config
}

// Validate fills defaults and rejects settings that can never work.
func (c *RealtimeConfig) Validate() error {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	switch {
	case c.Driver != sqlwatch.DriverMySQL && c.Driver != sqlwatch.DriverPostgres:
		return fmt.Errorf("asterisk realtime: Driver %q is not %s or %s", c.Driver, sqlwatch.DriverMySQL, sqlwatch.DriverPostgres)
	case !sqlwatch.ValidIdent(c.Table):
		return fmt.Errorf("asterisk realtime: Table %q is not an identifier ([A-Za-z_][A-Za-z0-9_]*)", c.Table)
	case !validDomain(c.Domain):
		return fmt.Errorf("asterisk realtime: Domain %q is not a host name", c.Domain)
	}
	if err := c.Watch.Validate(); err != nil {
		return fmt.Errorf("asterisk realtime: %w", err)
	}
	return nil
}

// ParseRealtimeURL reads an asterisk+mysql:// or asterisk+postgres:// URL:
// the server, table= and the read parameters every SQL server source
// takes (sqlwatch.ReadParamNames: cdc=trigger or cdc=logical,
// changelog_poll=, reconcile=, incremental=, slot=, slot_lag_warn=). Errors never repeat the URL (it may hold a
// password).
func ParseRealtimeURL(raw string) (RealtimeConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return RealtimeConfig{}, errors.New("not a URL")
	}
	return parseRealtimeURL(u)
}

func parseRealtimeURL(u *url.URL) (RealtimeConfig, error) {
	var c RealtimeConfig
	switch strings.ToLower(u.Scheme) {
	case SchemeMySQL, SchemePostgres:
	default:
		return c, fmt.Errorf("scheme %q is not %s or %s", u.Scheme, SchemeMySQL, SchemePostgres)
	}
	sc, err := sqlwatch.ParseServerURL(u, false)
	if err != nil {
		return c, err
	}
	c.Driver, c.Endpoint, c.Table, c.Watch = sc.Driver, sc.Endpoint, sc.Table, sc.Watch()
	if u.Query().Has("table") && c.Table == "" {
		return c, errors.New("table is empty")
	}
	return c, c.Validate()
}

// NewRealtime checks cfg and returns a watcher of the contacts table; it
// does no I/O.
func NewRealtime(cfg RealtimeConfig, log *slog.Logger) (*sqlwatch.Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "asterisk_realtime", "driver", cfg.Driver, "endpoint", cfg.Endpoint, "table", cfg.Table)
	sc := sqlwatch.ServerConfig{Driver: cfg.Driver, Endpoint: cfg.Endpoint}
	d, err := sc.Dialect()
	if err != nil {
		return nil, fmt.Errorf("asterisk realtime: %w", err)
	}
	return sqlwatch.New(cfg.Watch, d, &realtimeLayout{table: cfg.Table, domain: cfg.Domain}, log)
}

// Column positions in a realtime row; realtimeColumns names them.
const (
	rtID = iota
	rtURI
	rtExpirationTime
	rtUserAgent
	rtCallID
	rtPath
	rtRegServer
)

var realtimeColumns = []string{
	rtID: "id", rtURI: "uri", rtExpirationTime: "expiration_time", rtUserAgent: "user_agent",
	rtCallID: "call_id", rtPath: "path", rtRegServer: "reg_server",
}

// realtimeLayout decodes ps_contacts rows.
type realtimeLayout struct {
	table, domain string
}

// Table reads only the columns regbridge reports. The change check covers
// what a REGISTER rewrites on create and refresh
// (docs/stores.md#asterisk).
func (l *realtimeLayout) Table() sqlwatch.Table {
	return sqlwatch.Table{
		Name:    l.table,
		Columns: realtimeColumns,
		Key:     rtID,
		Watch:   []string{"id", "uri", "expiration_time", "user_agent", "path", "reg_server", "call_id"},
		LogKey:  []int{rtID},
	}
}

// Bind accepts expiration_time as BIGINT (current schema) or text (before
// alembic migration ef7efc2d3964 it was VARCHAR(40)): both decode from the
// text the server sends.
func (l *realtimeLayout) Bind([]string) error { return nil }

func (l *realtimeLayout) Decode(row []sqlwatch.Value, c *source.Contact) error {
	if row[rtID].Kind != sqlwatch.Text {
		return badRow("id is not text")
	}
	f := fields{
		uri:       row[rtURI].String(""),
		userAgent: row[rtUserAgent].String(""),
		callID:    row[rtCallID].String(""),
		path:      row[rtPath].String(""),
	}
	f.expires, f.expiresOK = row[rtExpirationTime].Int64()
	return decodeContact(row[rtID].String(""), &f, l.domain, c)
}
