// Command regbridge watches a SIP registrar's contact store and serves the
// RFC 3680 reg event package: SUBSCRIBE with Event: reg in, NOTIFY with
// application/reginfo+xml out.
//
// It is configured by REGBRIDGE_* environment variables (regbridge -h lists
// them) and wires three parts together: a source adapter reading the store,
// the bridge turning store differences into registration events, and the
// notifier serving subscriptions over SIP. Beside them run the bridge's
// other consumers (the SSE hub and webhooks of bridge/feed) and the HTTP
// listener: health, metrics, the /v1 API of bridge/httpapi and its live
// view.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sethvargo/go-envconfig"
	"golang.org/x/sync/errgroup"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/feed"
	"github.com/regbridge/regbridge/bridge/httpapi"
	"github.com/regbridge/regbridge/metrics"
	"github.com/regbridge/regbridge/notifier"
	"github.com/regbridge/regbridge/source"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], osEnv{envconfig.OsLookuper()}, os.Stdout, os.Stderr))
}

// run is main without the process: arguments, environment and output are
// passed in, the exit code comes back.
func run(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			printUsage(stdout)
			return 0
		case "version", "--version":
			if wantsHelp(args[1:]) {
				fmt.Fprint(stdout, versionUsage)
				return 0
			}
			fmt.Fprintln(stdout, "regbridge", buildVersion(), runtime.Version())
			return 0
		case "health":
			return runHealth(ctx, args[1:], env, stdout, stderr)
		case "registrations":
			return runRegistrations(ctx, args[1:], env, stdout, stderr)
		case "subscriptions":
			return runSubscriptions(ctx, args[1:], env, stdout, stderr)
		case "cdc":
			return runCDC(ctx, args[1:], env, stdout, stderr)
		case "schema":
			return runSchema(ctx, args[1:], env, stdout, stderr)
		case "watch":
			log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			if wantsHelp(args[1:]) {
				// Asked-for help goes to stdout, like every subcommand's.
				return runWatch(ctx, []string{"-h"}, stdout, stdout, log)
			}
			return runWatch(ctx, withDomainDefault(args[1:], env), stdout, stderr, log)
		default:
			fmt.Fprintf(stderr, "regbridge: unknown command %q\n\n", args[0])
			printUsage(stderr)
			return 2
		}
	}
	cfg, err := loadConfig(ctx, env)
	if err != nil {
		fmt.Fprintf(stderr, "regbridge: configuration: %v\n", err)
		return 2
	}
	level := new(slog.LevelVar)
	lvl, _ := parseLevel(cfg.LogLevel) // validated
	level.Set(lvl)
	log := newLogger(cfg, level, stderr)
	if err := serve(ctx, cfg, env, level, log); err != nil {
		if setup, ok := asSetupError(err); ok {
			// A setup the operator must change: said plainly, like a
			// configuration error, not as a crash.
			fmt.Fprintf(stderr, "regbridge: %v\n", setup)
			return 2
		}
		log.Error("regbridge stopped", "err", err)
		return 1
	}
	return 0
}

// newLogger logs at level, which SIGHUP and POST /v1/log-level change
// while the process runs.
func newLogger(cfg *config, level slog.Leveler, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h)
}

// serve runs the source, the bridge, the notifier, the event feeds and
// the HTTP endpoints until ctx ends or one of them fails.
func serve(ctx context.Context, cfg *config, env envconfig.Lookuper, level *slog.LevelVar, log *slog.Logger) error {
	setSIPLogger(log.With("component", "sipgo"))
	applyMemoryLimit(log)
	src, err := newSource(cfg, log)
	if err != nil {
		return err
	}
	if err := checkSource(ctx, cfg.Source, src); err != nil {
		return err
	}
	br := bridge.New(log)
	nt, err := notifier.New(cfg.SIP, br, log)
	if err != nil {
		return err
	}
	br.Subscribe(nt)
	// reader runs the source: directly, or under REGBRIDGE_PARTITIONS
	// only while this instance holds the reader lease, every instance
	// following the streams of the partitions it owns (partitions.go).
	var reader runner = sourceRunner{src, br}
	var pt *partitioned
	if cfg.Partitions > 0 {
		if pt, err = newPartitioned(cfg.State, cfg.Partitions, br, nt, func() (source.Source, error) { return newSource(cfg, log) }, log); err != nil {
			return err
		}
		defer pt.closer()
		src, reader = pt.src, pt
	}
	persist, closeState, err := newState(ctx, cfg.State, pt, br, nt, log)
	if err != nil {
		return err
	}
	defer closeState()
	guards, closeGuards, err := newGuards(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeGuards()
	nt.SetGuards(guards)
	hub := feed.NewHub(0, log)
	br.Subscribe(hub)
	hooks, err := feed.NewWebhooks(cfg.Webhooks, "regbridge/"+buildVersion(), log)
	if err != nil {
		return err
	}
	if hooks.Len() > 0 {
		br.Subscribe(hooks)
	}
	var sipUp atomic.Bool
	ready := readiness(ctx, br, src, &sipUp)
	m := metrics.New(metrics.Inputs{Bridge: br, Notifier: nt, Source: src, Hub: hub, Webhooks: hooks,
		Ready: func() bool { return allReady(ready) }, HTTPPanics: httpPanics.Load,
		Transports: metrics.Transports(cfg.SIP.Listen), SourceScheme: metrics.SourceScheme(cfg.Source),
		Version: buildVersion(), Partitions: partitionStats(pt)})
	nt.SetObserver(m)
	br.Subscribe(m)
	metricsHandler := m.Handler()
	api := httpapi.New(cfg.API, httpapi.Deps{
		Registrations: br,
		Ready:         br.Ready,
		Subscriptions: nt.Subscriptions,
		Watchers:      watchersOf(nt),
		Events:        hub,
		Level:         level,
	}, log)

	// Bind every socket before running anything, so that a port in use
	// stops start-up with one clear error.
	if err := nt.Listen(); err != nil {
		return listenError("REGBRIDGE_SIP_LISTEN", "SIP", err)
	}
	sipUp.Store(true)
	ln, err := net.Listen("tcp", cfg.HTTPListen)
	if err != nil {
		return listenError("REGBRIDGE_HTTP_LISTEN", "HTTP", fmt.Errorf("listening on %s: %w", cfg.HTTPListen, err))
	}
	httpSrv := &http.Server{
		Handler:           newHTTPHandler(httpParts{ready: ready, detail: readyDetail(src), metrics: metricsHandler, api: api, pprof: cfg.PProf, token: cfg.API.AdminToken, log: log}),
		ReadHeaderTimeout: min(5*time.Second, cfg.HTTPReadTimeout),
		ReadTimeout:       cfg.HTTPReadTimeout,
		WriteTimeout:      cfg.HTTPWriteTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.With("component", "http").Handler(), slog.LevelWarn),
	}
	httpSrv.RegisterOnShutdown(hub.Close) // event streams never go idle by themselves
	hup, stopHangup := notifyHangup()
	defer stopHangup()

	log.Info("starting", "version", buildVersion(), "source", redactURL(cfg.Source),
		"admin_token", cfg.API.AdminToken != "", "webhooks", hooks.Len())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return reader.Run(gctx) })
	g.Go(func() error { return br.Run(gctx) })
	g.Go(func() error { return persist.Run(gctx) })
	g.Go(func() error {
		defer sipUp.Store(false)
		return nt.Run(gctx)
	})
	g.Go(func() error { return nt.RunWatchers(gctx) })
	g.Go(func() error { return hooks.Run(gctx) })
	g.Go(func() error { return serveHTTP(gctx, httpSrv, ln, log) })
	g.Go(func() error { return reloadOnHangup(gctx, hup, env, level, log) })
	err = g.Wait()
	log.Info("stopped")
	return err
}

// buildVersion is the -ldflags version, else the module version.
func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
