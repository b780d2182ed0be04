package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// apiTimeout bounds one request of the operator commands: the API
// answers from memory, so a slow answer means something is wrong.
const apiTimeout = 5 * time.Second

// defaultHTTPListen is REGBRIDGE_HTTP_LISTEN's default (config.go).
const defaultHTTPListen = "127.0.0.1:9065"

// apiFlags are the flags every command reading the /v1 API shares; their
// defaults come from the variables the server itself reads, so that on
// the server's host the commands need no flags at all.
type apiFlags struct {
	listen, token, domain string
	json                  bool
}

func (f *apiFlags) register(fs *flag.FlagSet, env envconfig.Lookuper) {
	listen, ok := env.Lookup(envPrefix + "HTTP_LISTEN")
	if !ok || listen == "" {
		listen = defaultHTTPListen
	}
	token, _ := env.Lookup(envPrefix + "ADMIN_TOKEN")
	domain, _ := env.Lookup(envPrefix + "DOMAIN")
	fs.StringVar(&f.listen, "http", listen, "regbridge's HTTP listener, host:port or http://host:port (default REGBRIDGE_HTTP_LISTEN)")
	fs.StringVar(&f.token, "token", token, "bearer token of the /v1 API (default REGBRIDGE_ADMIN_TOKEN)")
	fs.StringVar(&f.domain, "domain", domain, "domain for an AOR given without one (default REGBRIDGE_DOMAIN)")
	fs.BoolVar(&f.json, "json", false, "print JSON instead of text")
}

// apiClient reads a running regbridge's /v1 API.
type apiClient struct {
	base  string // http://host:port
	token string
}

func newAPIClient(f *apiFlags) (*apiClient, error) {
	addr := strings.TrimSuffix(strings.TrimPrefix(f.listen, "http://"), "/")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--http %q: want host:port, e.g. 127.0.0.1:9065", f.listen)
	}
	// The server listening on every address is reached on loopback.
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return &apiClient{base: "http://" + net.JoinHostPort(host, port), token: f.token}, nil
}

// get decodes the JSON answer of GET path into out. A 404 is reported as
// errNotFound wrapped with the API's message.
func (c *apiClient) get(ctx context.Context, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("no answer from %s: is regbridge running with REGBRIDGE_HTTP_LISTEN there? (%v)", c.base, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading %s: %w", c.base+path, err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		switch res.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("%s: %s: pass --token or set REGBRIDGE_ADMIN_TOKEN to the server's", c.base, msg)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s", errNotFound, msg)
		}
		return fmt.Errorf("%s answered %s: %s", c.base+path, res.Status, msg)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s: not the answer of a regbridge API: %w", c.base+path, err)
	}
	return nil
}

var errNotFound = errors.New("not found")

// apiPath is path with one escaped segment (an AOR) appended.
func apiPath(path, segment string) string {
	return path + "/" + url.PathEscape(segment)
}

// expandAOR completes the AOR forms an operator types: "alice@example.com"
// gets sip:, and a bare "alice" also domain (without a domain it stays
// sip:alice, the AOR of a registrar that ignores domains).
func expandAOR(arg, domain string) string {
	arg = strings.TrimSpace(arg)
	lower := strings.ToLower(arg)
	for _, scheme := range [...]string{"sip:", "sips:", "tel:"} {
		if strings.HasPrefix(lower, scheme) {
			return arg
		}
	}
	if !strings.Contains(arg, "@") && domain != "" {
		arg += "@" + domain
	}
	return "sip:" + arg
}

// parseArgs parses flags that may come before or after the positional
// arguments, which it returns. It reports flag.ErrHelp for -h; other
// errors are already printed with the usage.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return nil, err
		}
		rest = fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		positional, rest = append(positional, rest[0]), rest[1:]
	}
}
