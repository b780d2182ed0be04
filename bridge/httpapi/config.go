package httpapi

import (
	"fmt"
	"net"
	"strings"
)

// Config is the API's configuration (environment names without the
// REGBRIDGE_ prefix, read by cmd/regbridge). The token is a secret: it is
// never logged or echoed.
type Config struct {
	AdminToken string `env:"ADMIN_TOKEN" desc:"bearer token required on every /v1 request; unset, the HTTP listener must be a loopback address"`
}

// CheckListen refuses an HTTP listener reachable from other hosts when no
// admin token protects the API: the operator actions would be open to the
// network.
func (c *Config) CheckListen(addr string) error {
	if c.AdminToken != "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil // reported by whoever validates the address itself
	}
	if isLoopback(host) {
		return nil
	}
	return fmt.Errorf("REGBRIDGE_HTTP_LISTEN: %s is not a loopback address and REGBRIDGE_ADMIN_TOKEN is not set: "+
		"set REGBRIDGE_ADMIN_TOKEN to protect the /v1 admin API, or listen on 127.0.0.1", addr)
}

// isLoopback reports whether host only ever means this machine; an empty
// host or 0.0.0.0 listens on every interface.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}
