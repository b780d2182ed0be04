package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/sethvargo/go-envconfig"
)

const healthUsage = `usage: regbridge health [--live]

Asks the running regbridge at REGBRIDGE_HTTP_LISTEN whether it is ready
(/readyz; with --live only whether it is alive, /healthz), prints the
answer and exits 0 when it is, 1 when not. For container health checks:
the image has no shell or curl.
`

// runHealth implements `regbridge health`: it asks the running server's
// /readyz (or /healthz with --live) and exits 0 when it answers 200. The
// container image has no shell or curl, so its HEALTHCHECK runs this.
func runHealth(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	path := "/readyz"
	for _, a := range args {
		switch {
		case isHelp(a):
			fmt.Fprint(stdout, healthUsage)
			return 0
		case a == "--live" || a == "-live":
			path = "/healthz"
		default:
			fmt.Fprintf(stderr, "regbridge health: unknown argument %q\n\n%s", a, healthUsage)
			return 2
		}
	}
	cfg, err := loadConfig(ctx, env)
	if err != nil {
		fmt.Fprintf(stderr, "regbridge: configuration: %v\n", err)
		return 2
	}
	host, port, err := net.SplitHostPort(cfg.HTTPListen)
	if err != nil {
		fmt.Fprintf(stderr, "regbridge: REGBRIDGE_HTTP_LISTEN: %v\n", err)
		return 2
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+path, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "regbridge: health: %v\n", err)
		return 1
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
	fmt.Fprintf(stdout, "%s", body)
	if res.StatusCode != http.StatusOK {
		return 1
	}
	return 0
}
