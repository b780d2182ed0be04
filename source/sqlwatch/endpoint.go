package sqlwatch

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
)

// Endpoint is where a database server is and how to log in. Password never
// reaches a log line (LogValue leaves it out).
type Endpoint struct {
	// Addr is host:port.
	Addr     string
	User     string
	Password string
	Database string
	// Params are driver parameters passed through (see DriverParams).
	Params map[string]string
}

// LogValue implements slog.LogValuer without the password.
func (e Endpoint) LogValue() slog.Value {
	return slog.GroupValue(slog.String("addr", e.Addr), slog.String("user", e.User), slog.String("database", e.Database))
}

// Drivers this package connects to, with their default ports.
const (
	DriverMySQL    = "mysql"
	DriverPostgres = "postgres"
)

var defaultPorts = map[string]string{DriverMySQL: "3306", DriverPostgres: "5432"}

// DriverParams are the URL query parameters passed to each driver
// unchanged: TLS and connection settings an operator may need. Anything
// else is rejected rather than guessed at (the MySQL driver would send an
// unknown parameter to the server as a SET statement).
var DriverParams = map[string][]string{
	DriverMySQL:    {"tls"},
	DriverPostgres: {"sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name"},
}

// ParseURL reads scheme://user:password@host[:port]/database?params for
// driver (DriverMySQL or DriverPostgres). own names the query parameters
// the caller handles itself; they come back in the second result. Every
// other parameter must be one of DriverParams[driver].
func ParseURL(u *url.URL, driver string, own ...string) (Endpoint, url.Values, error) {
	port, ok := defaultPorts[driver]
	if !ok {
		return Endpoint{}, nil, fmt.Errorf("unknown driver %q", driver)
	}
	if u.Opaque != "" || u.Host == "" {
		return Endpoint{}, nil, fmt.Errorf("no host: want %s://user:password@host:%s/database", u.Scheme, port)
	}
	e := Endpoint{Addr: u.Host, Params: map[string]string{}}
	if u.Port() == "" {
		e.Addr = net.JoinHostPort(strings.Trim(u.Host, "[]"), port)
	}
	if u.User != nil {
		e.User = u.User.Username()
		e.Password, _ = u.User.Password()
	}
	e.Database = strings.TrimPrefix(u.Path, "/")
	if e.Database == "" || strings.Contains(e.Database, "/") {
		return Endpoint{}, nil, fmt.Errorf("no database name: want %s://user:password@%s/database", u.Scheme, e.Addr)
	}
	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Endpoint{}, nil, fmt.Errorf("bad query parameters: %w", err)
	}
	rest := url.Values{}
	allowed := append(slices.Clone(own), DriverParams[driver]...)
	for k, vs := range query {
		switch {
		case slices.Contains(own, k):
			rest[k] = vs
		case slices.Contains(DriverParams[driver], k):
			e.Params[k] = vs[len(vs)-1]
		default:
			slices.Sort(allowed)
			return Endpoint{}, nil, fmt.Errorf("unknown parameter %q for %s (known: %s)", k, u.Scheme, strings.Join(allowed, ", "))
		}
	}
	return e, rest, nil
}
