package sqlwatch

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	_ "time/tzdata" // the registrar's zone must load in a minimal image

	"github.com/regbridge/regbridge/source"
)

// ServerConfig configures the watcher of a registrar's contact table on a
// database server: what every registrar's server adapter (Kamailio,
// OpenSIPS) is told, in one type.
type ServerConfig struct {
	// Driver is DriverMySQL or DriverPostgres (ParseServerURL takes it
	// from the scheme; the adapters' NewMySQL and NewPostgres set it).
	Driver string
	// Endpoint is the server and database (ParseURL).
	Endpoint Endpoint
	// Table is the contact table; default the registrar's.
	Table string
	// Domain completes the AOR when the domain column is NULL or empty
	// (usrloc use_domain=0). If it is empty too, the AOR is "sip:"+username.
	Domain string
	// TZ is the IANA time zone of the registrar process, in which it
	// writes DATETIME/TIMESTAMP values (its wall clock); default UTC.
	// Columns holding epochs do not depend on it.
	TZ string
	// PollInterval, ReconcileInterval, MaxBackoff, CDC, ChangelogPoll,
	// ChangelogRetention, FullReads, Slot, SlotLagWarn, ReconcileRate and
	// PollLoad are Config's.
	PollInterval       time.Duration
	ReconcileInterval  time.Duration
	MaxBackoff         time.Duration
	CDC                string
	ChangelogPoll      time.Duration
	ChangelogRetention time.Duration
	FullReads          bool
	Slot               string
	SlotLagWarn        int64
	ReconcileRate      int
	PollLoad           float64
}

// DefaultTZ is the registrar time zone assumed when none is configured.
const DefaultTZ = "UTC"

// Watch is the watcher configuration c carries. A server's polling is
// spaced by its cost (DefaultPollLoad unless poll_load= says otherwise).
func (c *ServerConfig) Watch() Config {
	load := c.PollLoad
	if load == 0 {
		load = DefaultPollLoad
	}
	return Config{PollInterval: c.PollInterval, ReconcileInterval: c.ReconcileInterval, MaxBackoff: c.MaxBackoff,
		CDC: c.CDC, ChangelogPoll: c.ChangelogPoll, ChangelogRetention: c.ChangelogRetention, FullReads: c.FullReads,
		Slot: c.Slot, SlotLagWarn: c.SlotLagWarn, ReconcileRate: c.ReconcileRate, PollLoad: load}
}

// Settle fills the defaults (table defTable, zone DefaultTZ) and rejects
// settings that can never work; it returns the registrar's location.
// registrar names the registrar in messages ("Kamailio").
func (c *ServerConfig) Settle(registrar, defTable string) (*time.Location, error) {
	if c.Table == "" {
		c.Table = defTable
	}
	if c.TZ == "" {
		c.TZ = DefaultTZ
	}
	if c.Endpoint.Addr == "" || c.Endpoint.Database == "" {
		return nil, errors.New("Endpoint needs a host and a database")
	}
	if err := CheckTableDomain(registrar, c.Table, c.Domain); err != nil {
		return nil, err
	}
	loc, err := time.LoadLocation(c.TZ)
	if err != nil {
		return nil, fmt.Errorf("TZ %q is not an IANA time zone: %w", c.TZ, err)
	}
	wc := c.Watch()
	if err := wc.Validate(); err != nil {
		return nil, err
	}
	return loc, nil
}

// Dialect returns the dialect of c.Driver; it does no I/O.
func (c *ServerConfig) Dialect() (Dialect, error) {
	switch c.Driver {
	case DriverMySQL:
		return NewMySQL(c.Endpoint)
	case DriverPostgres:
		return NewPostgres(c.Endpoint)
	}
	return nil, fmt.Errorf("Driver %q is not %s or %s", c.Driver, DriverMySQL, DriverPostgres)
}

// CheckTableDomain checks the table and fallback domain a usrloc watcher
// is given: the table an identifier other than "version" (the
// registrar's table of table versions), the domain a host name.
func CheckTableDomain(registrar, table, domain string) error {
	switch {
	case !ValidIdent(table):
		return fmt.Errorf("Table %q is not an identifier ([A-Za-z_][A-Za-z0-9_]*)", table)
	case strings.EqualFold(table, "version"):
		return fmt.Errorf(`Table must not be "version" (%s's table of table versions)`, registrar)
	case domain != "" && (!source.Printable(domain) || strings.IndexByte(domain, '@') >= 0):
		return fmt.Errorf("Domain %q is not a host name", domain)
	}
	return nil
}

// schemeDriver is the driver a source scheme names by its suffix
// (+mysql, +postgres), or "".
func schemeDriver(scheme string) string {
	switch {
	case strings.HasSuffix(strings.ToLower(scheme), "+mysql"):
		return DriverMySQL
	case strings.HasSuffix(strings.ToLower(scheme), "+postgres"):
		return DriverPostgres
	}
	return ""
}

// serverParams are the query parameters ParseServerURL reads besides the
// driver's: table, tz and ReadParamNames.
var serverParams = append([]string{"table", "tz"}, ReadParamNames...)

// ParseServerURL reads a SQL server source URL,
// <registrar>+mysql|postgres://user:password@host[:port]/database, with
// the parameters table, tz (the registrar's IANA time zone) and
// ReadParamNames, plus the driver's (DriverParams). Without withTZ, tz is
// not a parameter. Its errors never repeat the URL (it may hold a
// password).
func ParseServerURL(u *url.URL, withTZ bool) (ServerConfig, error) {
	c := ServerConfig{Driver: schemeDriver(u.Scheme)}
	own := serverParams
	if !withTZ {
		own = append([]string{"table"}, ReadParamNames...)
	}
	ep, q, err := ParseURL(u, c.Driver, own...)
	if err != nil {
		return c, err
	}
	if err := checkTZ(q); err != nil {
		return c, err
	}
	p, err := ParseReadParams(q)
	if err == nil {
		err = p.ForDriver(c.Driver)
	}
	if err != nil {
		return c, err
	}
	c.Endpoint, c.Table, c.TZ = ep, q.Get("table"), q.Get("tz")
	c.CDC, c.ChangelogPoll, c.ReconcileInterval, c.FullReads, c.Slot, c.SlotLagWarn = p.CDC, p.ChangelogPoll, p.ReconcileInterval, p.FullReads, p.Slot, p.SlotLagWarn
	c.ReconcileRate, c.PollLoad = p.ReconcileRate, p.PollLoad
	return c, nil
}

// checkTZ rejects a tz parameter that names no IANA time zone.
func checkTZ(q url.Values) error {
	if tz := q.Get("tz"); tz != "" {
		if _, err := time.LoadLocation(tz); err != nil {
			return fmt.Errorf("tz=%q is not an IANA time zone name (such as Europe/Berlin)", tz)
		}
	}
	return nil
}

// FilePath is the file a file store's URL names: scheme:///abs/path (three
// slashes), scheme:rel/path, or scheme://rel/path (relative too).
func FilePath(u *url.URL) string {
	switch {
	case u.Opaque != "":
		return u.Opaque
	case u.Host != "":
		return u.Host + u.Path
	}
	return u.Path
}

// ParseFileURL reads a file store's URL (FilePath) and its query
// parameters, each of which must be one of known; tz, when known, must
// name a zone.
func ParseFileURL(u *url.URL, known ...string) (string, url.Values, error) {
	path := FilePath(u)
	scheme := strings.ToLower(u.Scheme)
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", nil, fmt.Errorf("bad query parameters: %w", err)
	}
	if path == "" {
		return "", nil, fmt.Errorf("%q names no file (%s:///abs/path.db or %s:rel/path.db)", u.String(), scheme, scheme)
	}
	for k := range q {
		if !slices.Contains(known, k) {
			return "", nil, fmt.Errorf("unknown parameter %q for %s (%s)", k, scheme, strings.Join(known, ", "))
		}
	}
	return path, q, checkTZ(q)
}

// ServerSchemes are a registrar's two server schemes, <prefix>+mysql and
// <prefix>+postgres: ParseServerURL, then build. table describes the
// table on each driver.
func ServerSchemes(prefix string, table func(driver string) *source.Table, build func(ServerConfig, *slog.Logger) (*Watcher, error)) []source.Scheme {
	open := func(u *url.URL, o source.Options) (source.Source, error) {
		c, err := ParseServerURL(u, true)
		if err != nil {
			return nil, err
		}
		c.Domain, c.PollInterval = o.Domain, o.PollInterval
		return source.Built(build(c, o.Log))
	}
	var out []source.Scheme
	for _, driver := range []string{DriverMySQL, DriverPostgres} {
		out = append(out, source.Scheme{Name: prefix + "+" + driver, Params: slices.Concat(serverParams, DriverParams[driver]),
			Open: open, Table: table(driver)})
	}
	return out
}

// NewWatcher settles c (Settle) and returns a watcher of its table, read
// with the layout newLayout makes for the settled c and the registrar's
// zone; it does no I/O. registrar names the registrar in messages and
// the log's component ("Kamailio": "kamailio_mysql").
func (c ServerConfig) NewWatcher(registrar, defTable string, newLayout func(c *ServerConfig, loc *time.Location) Layout, log *slog.Logger) (*Watcher, error) {
	name := strings.ToLower(registrar) + " " + c.Driver
	loc, err := c.Settle(registrar, defTable)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	d, err := c.Dialect()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	component := strings.ReplaceAll(name, " ", "_")
	log = log.With("component", component, "db", c.Endpoint, "table", c.Table, "tz", c.TZ)
	w, err := New(c.Watch(), d, newLayout(&c, loc), log)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", component, err)
	}
	return w, nil
}

// OnDriver is build with ServerConfig.Driver set to driver: an adapter's
// NewMySQL or NewPostgres from its NewServer.
func OnDriver(driver string, build func(ServerConfig, *slog.Logger) (*Watcher, error)) func(ServerConfig, *slog.Logger) (*Watcher, error) {
	return func(c ServerConfig, log *slog.Logger) (*Watcher, error) {
		c.Driver = driver
		return build(c, log)
	}
}
