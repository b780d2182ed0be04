package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/regbridge/regbridge/bridge/feed"
	"github.com/regbridge/regbridge/bridge/httpapi"
	"github.com/regbridge/regbridge/notifier"
	"github.com/regbridge/regbridge/notifier/digest"
	"github.com/regbridge/regbridge/notifier/limit"
	"github.com/regbridge/regbridge/notifier/policy"
	"github.com/regbridge/regbridge/partition"
	"github.com/regbridge/regbridge/substore"
)

// envPrefix namespaces every variable regbridge reads.
const envPrefix = "REGBRIDGE_"

// config is regbridge's whole configuration, read from the environment.
// Each package owns its part (notifier.Config); the `desc` tags feed -h.
type config struct {
	// The default source is the embedded one: a Kamailio-schema SQLite file
	// in the working directory, created when missing, so that regbridge
	// runs with no configuration at all.
	Source       string        `env:"SOURCE, default=kamailio+sqlite:regbridge.db?create=true" desc:"contact store URL (see docs/stores.md)"`
	PollInterval time.Duration `env:"POLL_INTERVAL, default=1s" desc:"how often polling sources ask the store whether anything changed (a SQL server's slow check less often: poll_load= in REGBRIDGE_SOURCE)"`
	Domain       string        `env:"DOMAIN" desc:"AOR domain for rows whose domain column is NULL (Kamailio use_domain=0)"`
	HTTPListen   string        `env:"HTTP_LISTEN, default=127.0.0.1:9065" desc:"HTTP listener: /healthz, /readyz, /metrics, the /v1 API and the live view at /"`
	// The HTTP timeouts free the connections of clients that stall: a
	// request (headers and body, at most a few KiB) is read within
	// HTTPReadTimeout, a response written within HTTPWriteTimeout (the
	// default leaves room for pprof's default 30 s CPU profile; the event
	// stream sets its own deadline per write), and a kept-alive
	// connection waits for its next request HTTPIdleTimeout at most.
	HTTPReadTimeout  time.Duration `env:"HTTP_READ_TIMEOUT, default=10s" desc:"time allowed to read one HTTP request, headers and body"`
	HTTPWriteTimeout time.Duration `env:"HTTP_WRITE_TIMEOUT, default=60s" desc:"time allowed to write one HTTP response (the /v1/events stream is exempt)"`
	HTTPIdleTimeout  time.Duration `env:"HTTP_IDLE_TIMEOUT, default=120s" desc:"how long an idle kept-alive HTTP connection is kept"`
	LogLevel         string        `env:"LOG_LEVEL, default=info" desc:"debug, info, warn or error"`
	LogFormat        string        `env:"LOG_FORMAT, default=text" desc:"text or json"`
	PProf            bool          `env:"PPROF, default=false" desc:"serve the Go profiler at /debug/pprof/ on the HTTP listener (behind REGBRIDGE_ADMIN_TOKEN when set)"`
	SIP              notifier.Config
	Auth             digest.Config
	Policy           policy.Config
	Limit            limit.Config
	API              httpapi.Config
	Webhooks         feed.Config
	State            substore.Config
	// Partitions turns on the partitioned layout of docs/cluster.md: one
	// instance at a time reads the store into per-partition Redis
	// Streams, every instance follows them. Unset: off.
	Partitions int `env:"PARTITIONS" desc:"with REGBRIDGE_STATE=redis:// only: the number of partitions (1 to 4096, fixed for a deployment); one instance at a time reads the store, and each instance owns a share of the partitions: their contacts, subscriptions and NOTIFYs (see docs/cluster.md)"`
}

// loadConfig reads the configuration through l (the environment in main,
// a map in tests) and validates it.
func loadConfig(ctx context.Context, l envconfig.Lookuper) (*config, error) {
	if e, ok := l.(environ); ok {
		if err := checkUnknownVars(e.Environ()); err != nil {
			return nil, err
		}
	}
	var cfg config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{
		Target:   &cfg,
		Lookuper: envconfig.PrefixLookuper(envPrefix, l),
	}); err != nil {
		return nil, fmt.Errorf("%s", namedEnvError(err, l))
	}
	if v, ok := l.Lookup(envPrefix + "PARTITIONS"); ok && strings.TrimSpace(v) == "0" {
		// 0 would read as unset: say so rather than run unpartitioned.
		return nil, fmt.Errorf("REGBRIDGE_PARTITIONS: 0 is not 1 to %d; unset it to run without partitions", partition.MaxCount)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// namedEnvError rewrites go-envconfig's field-path errors so that they
// name the variable the user sets and, for plain types, say what it
// accepts.
func namedEnvError(err error, l envconfig.Lookuper) string {
	msg := err.Error()
	vars := configVars()
	// Longest paths first: "Auth: Source:" before "Source:".
	slices.SortFunc(vars, func(a, b configVar) int { return len(b.field) - len(a.field) })
	for _, v := range vars {
		field := v.field + ":"
		if i := strings.Index(msg, field); i >= 0 && (i == 0 || msg[i-1] == ' ') {
			if words := valueError(v, l); words != "" {
				return words
			}
			return envPrefix + v.name + ":" + msg[i+len(field):]
		}
	}
	return msg
}

func (c *config) validate() error {
	var errs []error
	if c.PollInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("REGBRIDGE_POLL_INTERVAL: %v is below 10ms", c.PollInterval))
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		errs = append(errs, fmt.Errorf("REGBRIDGE_LOG_LEVEL: %w", err))
	}
	// Case-insensitive like the level: JSON and json are the same wish.
	c.LogFormat = strings.ToLower(c.LogFormat)
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("REGBRIDGE_LOG_FORMAT: %q is not text or json", c.LogFormat))
	}
	if err := checkHostPort("REGBRIDGE_HTTP_LISTEN", c.HTTPListen); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"HTTP_READ_TIMEOUT", c.HTTPReadTimeout}, {"HTTP_WRITE_TIMEOUT", c.HTTPWriteTimeout}, {"HTTP_IDLE_TIMEOUT", c.HTTPIdleTimeout}} {
		if d.v < 100*time.Millisecond {
			errs = append(errs, fmt.Errorf("REGBRIDGE_%s: %v is below 100ms", d.name, d.v))
		}
	}
	if err := checkSourceURL(c.Source); err != nil {
		errs = append(errs, fmt.Errorf("REGBRIDGE_SOURCE: %w", err))
	}
	for _, v := range []interface{ Validate() error }{&c.SIP, &c.Auth, &c.Policy, &c.Limit, &c.State} {
		if err := v.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.API.CheckListen(c.HTTPListen); err != nil {
		errs = append(errs, err)
	}
	if err := c.Webhooks.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.checkPartitions(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkPartitions: a count in range, and only over a redis:// state.
func (c *config) checkPartitions() error {
	if c.Partitions == 0 {
		return nil
	}
	if c.Partitions < 1 || c.Partitions > partition.MaxCount {
		return fmt.Errorf("REGBRIDGE_PARTITIONS: %d is not 1 to %d (%d suits most deployments)", c.Partitions, partition.MaxCount, partition.DefaultCount)
	}
	if !c.State.Shared() {
		return fmt.Errorf("REGBRIDGE_PARTITIONS: needs REGBRIDGE_STATE=redis://...; set it, or unset REGBRIDGE_PARTITIONS")
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// configVar is one environment variable, for -h.
type configVar struct {
	name, field, def, desc string
	typ                    reflect.Type
}

// configVars lists every variable of config from its struct tags, so the
// help can never disagree with what is read.
func configVars() []configVar {
	var out []configVar
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("env")
			if tag == "" && f.Type.Kind() == reflect.Struct {
				walk(f.Type, path+f.Name+": ")
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			// field is the path go-envconfig names in its errors
			// ("Auth: Source"), so that the same field name in two
			// packages' configurations is told apart.
			v := configVar{name: strings.TrimSpace(name), field: path + f.Name, desc: f.Tag.Get("desc"), typ: f.Type}
			if _, def, ok := strings.Cut(opts, "default="); ok {
				v.def = def
			}
			out = append(out, v)
		}
	}
	walk(reflect.TypeFor[config](), "")
	return out
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `regbridge: RFC 3680 registration events from a SIP registrar's contact store.

Usage:
  regbridge              run the server (configured by environment variables)
  regbridge watch AOR    subscribe to an AOR's reg events and print each NOTIFY
  regbridge registrations [AOR]
                         list AORs and contacts of a running regbridge (--json)
  regbridge subscriptions [AOR]
                         list who watches which AOR on a running regbridge (--json)
  regbridge cdc install|uninstall [--dry-run]
                         add/remove change capture (?cdc=trigger: triggers; ?cdc=logical:
                         publication and replication slot); prints the SQL first
  regbridge schema [SCHEME]
                         print the SQL that creates the contact table (kamailio+postgres, ...)
  regbridge health       ask a running regbridge's /readyz (--live: /healthz); exit 0 if OK
  regbridge version      print the version

Every command answers -h with its help.

Environment:
`)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	for _, v := range configVars() {
		def := v.def
		if def == "" {
			def = "(unset)"
		}
		fmt.Fprintf(tw, "  %s%s\t%s\n", envPrefix, v.name, v.desc)
		fmt.Fprintf(tw, "  \tdefault: %s\n", def)
	}
	tw.Flush()
}
