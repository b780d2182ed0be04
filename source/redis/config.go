package redis

import (
	"errors"
	"fmt"
	"github.com/regbridge/regbridge/source"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	_ "time/tzdata" // the registrar's zone must resolve in a minimal image too
)

// Layout names how bindings are stored in Redis.
type Layout string

const (
	// LayoutKamailio is Kamailio db_redis's location table
	// (docs/stores.md#kamailios-db_redis-layout).
	LayoutKamailio Layout = "kamailio"
	// LayoutGeneric is regbridge's documented hash-per-binding layout for
	// home-grown registrars (docs/stores.md#the-generic-layout).
	LayoutGeneric Layout = "generic"
)

// Events says whether keyspace notifications are used.
type Events string

const (
	// EventsAuto checks notify-keyspace-events at start and at every
	// reconcile: events when the needed classes are on, else full scans
	// every PollInterval, with a warning naming the fix.
	EventsAuto Events = "auto"
	// EventsOff never subscribes: a full scan every PollInterval, for
	// servers where notifications cannot be enabled.
	EventsOff Events = "off"
)

const (
	// DefaultTable is usrloc's default table (save("location")).
	DefaultTable = "location"
	// DefaultPollInterval is how often the server is pinged while events
	// flow (so an outage shows within about a second) and how often the
	// keys are scanned when they do not.
	DefaultPollInterval = time.Second
	// DefaultReconcile is the period of the full resync done on top of
	// keyspace events. Events can be lost without any sign (a notification
	// dropped by a full client buffer, a key evicted without the 'e'
	// class); five minutes bounds how long such a loss can stay visible
	// while a full read of 10^5 hashes every five minutes costs the server
	// well under a second.
	DefaultReconcile = 5 * time.Minute
	// defaultPort is Redis's well-known port.
	defaultPort = "6379"
	// minInterval rejects periods that would busy-loop the server.
	minInterval = 10 * time.Millisecond
)

// Config configures a Watcher.
type Config struct {
	// Addr is the server's host:port.
	Addr string
	// Username and Password authenticate (ACL user or requirepass); never
	// logged.
	Username, Password string
	// DB is the database number (Kamailio's db_url redis://host:port/<db>).
	DB int
	// Layout is how bindings are stored; default LayoutKamailio.
	Layout Layout
	// Table is the Kamailio usrloc table as named in db_redis's keys
	// modparam, with its version code if it has one ("v2:location");
	// default DefaultTable. Kamailio layout only.
	Table string
	// Location is the registrar's time zone, in which db_redis writes
	// times; default UTC. Kamailio layout only.
	Location *time.Location
	// Prefix is the generic layout's key prefix; default DefaultPrefix.
	Prefix string
	// Domain completes the AOR of Kamailio entries without a domain
	// (usrloc use_domain=0). If empty too, the AOR is "sip:"+username.
	Domain string
	// Events selects change capture; default EventsAuto.
	Events Events
	// PollInterval: see DefaultPollInterval.
	PollInterval time.Duration
	// Reconcile: see DefaultReconcile.
	Reconcile time.Duration
}

// Validate fills defaults and rejects settings that can never work.
func (c *Config) Validate() error {
	if c.Layout == "" {
		c.Layout = LayoutKamailio
	}
	if c.Events == "" {
		c.Events = EventsAuto
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Reconcile == 0 {
		c.Reconcile = DefaultReconcile
	}
	switch c.Layout {
	case LayoutKamailio:
		if c.Table == "" {
			c.Table = DefaultTable
		}
		if c.Location == nil {
			c.Location = time.UTC
		}
		if c.Prefix != "" {
			return errors.New("redis: Prefix is for the generic layout; the Kamailio layout derives it from Table")
		}
		if !source.Printable(c.Table) {
			return fmt.Errorf("redis: Table %q is not printable", c.Table)
		}
	case LayoutGeneric:
		if c.Prefix == "" {
			c.Prefix = DefaultPrefix
		}
		if c.Table != "" {
			return errors.New("redis: Table is for the Kamailio layout; the generic layout uses Prefix")
		}
		if !source.Printable(c.Prefix) {
			return fmt.Errorf("redis: Prefix %q is not printable", c.Prefix)
		}
	default:
		return fmt.Errorf("redis: Layout %q is not %s or %s", c.Layout, LayoutKamailio, LayoutGeneric)
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("redis: Addr %q is not host:port", c.Addr)
	}
	switch {
	case c.DB < 0:
		return fmt.Errorf("redis: DB %d is negative", c.DB)
	case c.Events != EventsAuto && c.Events != EventsOff:
		return fmt.Errorf("redis: Events %q is not %s or %s", c.Events, EventsAuto, EventsOff)
	case c.Domain != "" && (!source.Printable(c.Domain) || strings.IndexByte(c.Domain, '@') >= 0):
		return fmt.Errorf("redis: Domain %q is not a host name", c.Domain)
	case c.PollInterval < minInterval:
		return fmt.Errorf("redis: PollInterval %v is below %v", c.PollInterval, minInterval)
	case c.Reconcile < minInterval:
		return fmt.Errorf("redis: Reconcile %v is below %v", c.Reconcile, minInterval)
	}
	return nil
}

// keyPrefix is the prefix of every binding's key.
func (c *Config) keyPrefix() string {
	if c.Layout == LayoutGeneric {
		return c.Prefix
	}
	return kamailioPrefix(c.Table)
}

// URL schemes ParseURL accepts.
const (
	SchemeKamailio = "kamailio+redis"
	SchemeRedis    = "redis"
)

// urlParams lists the query parameters each layout accepts.
var urlParams = map[Layout][]string{
	LayoutKamailio: {"layout", "table", "tz", "events", "reconcile"},
	LayoutGeneric:  {"layout", "prefix", "events", "reconcile"},
}

// ParseURL reads a source URL:
//
//	kamailio+redis://[user:pass@]host[:port][/db][?table=location&tz=Europe/Berlin]
//	redis://[user:pass@]host[:port][/db]?layout=kamailio|generic[&prefix=reg:contact:]
//
// plus events=auto|off and reconcile=<duration> for both. Errors never
// repeat the URL (it may hold a password). Domain and PollInterval are
// not part of the URL; the caller sets them.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, errors.New("not a URL")
	}
	return parseURL(u)
}

// Schemes are the source URL schemes this package reads (source/stores
// registers them); ParseURL says what their URLs hold.
func Schemes() []source.Scheme {
	open := func(u *url.URL, o source.Options) (source.Source, error) {
		c, err := parseURL(u)
		if err != nil {
			return nil, err
		}
		c.Domain, c.PollInterval = o.Domain, o.PollInterval
		return source.Built(New(c, o.Log))
	}
	return []source.Scheme{
		{Name: SchemeKamailio, Params: urlParams[LayoutKamailio], Open: open},
		{Name: SchemeRedis, Params: urlParams[LayoutGeneric], Open: open},
	}
}

func parseURL(u *url.URL) (Config, error) {
	var c Config
	var err error
	q := u.Query()
	switch strings.ToLower(u.Scheme) {
	case SchemeKamailio:
		c.Layout = LayoutKamailio
		if l := q.Get("layout"); l != "" && Layout(l) != LayoutKamailio {
			return c, fmt.Errorf("%s is always layout=kamailio", SchemeKamailio)
		}
	case SchemeRedis:
		c.Layout = Layout(q.Get("layout"))
		if c.Layout != LayoutKamailio && c.Layout != LayoutGeneric {
			return c, fmt.Errorf("%s:// needs layout=%s or layout=%s", SchemeRedis, LayoutKamailio, LayoutGeneric)
		}
	default:
		return c, fmt.Errorf("scheme %q is not %s or %s", u.Scheme, SchemeKamailio, SchemeRedis)
	}
	for k := range q {
		if !slices.Contains(urlParams[c.Layout], k) {
			return c, fmt.Errorf("unknown parameter %q for layout %s (%s)", k, c.Layout, strings.Join(urlParams[c.Layout], ", "))
		}
	}
	if u.Opaque != "" || u.Host == "" {
		return c, fmt.Errorf("%s URL needs //host[:port]", u.Scheme)
	}
	c.Addr = u.Host
	if u.Port() == "" {
		c.Addr = net.JoinHostPort(u.Hostname(), defaultPort)
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if c.DB, err = strconv.Atoi(db); err != nil || c.DB < 0 {
			return c, fmt.Errorf("database %q is not a number", db)
		}
	}
	c.Table, c.Prefix = q.Get("table"), q.Get("prefix")
	if q.Has("table") && c.Table == "" {
		return c, errors.New("table is empty")
	}
	if q.Has("prefix") && c.Prefix == "" {
		return c, errors.New("prefix is empty")
	}
	if tz := q.Get("tz"); tz != "" {
		if c.Location, err = time.LoadLocation(tz); err != nil {
			return c, fmt.Errorf("tz=%q is not a time zone name", tz)
		}
	}
	c.Events = Events(q.Get("events"))
	if r := q.Get("reconcile"); r != "" {
		if c.Reconcile, err = time.ParseDuration(r); err != nil || c.Reconcile <= 0 {
			return c, fmt.Errorf("reconcile=%q is not a positive duration", r)
		}
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}
