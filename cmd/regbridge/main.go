// Command regbridge watches a SIP registrar's contact store and serves the
// RFC 3680 reg event package: SUBSCRIBE with Event: reg in, NOTIFY with
// application/reginfo+xml out.
//
// It is configured by REGBRIDGE_* environment variables (regbridge -h lists
// them) and wires three parts together: a source adapter reading the store,
// the bridge turning store differences into registration events, and the
// notifier serving subscriptions over SIP.
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
	"runtime/debug"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/sethvargo/go-envconfig"
	"golang.org/x/sync/errgroup"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], envconfig.OsLookuper(), os.Stdout, os.Stderr))
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
			fmt.Fprintln(stdout, "regbridge", buildVersion())
			return 0
		case "health":
			return runHealth(ctx, args[1:], env, stdout, stderr)
		case "watch":
			log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			return runWatch(ctx, args[1:], stdout, stderr, log)
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
	log := newLogger(cfg, stderr)
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("regbridge stopped", "err", err)
		return 1
	}
	return 0
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	level, _ := parseLevel(cfg.LogLevel)
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h)
}

// serve runs the source, the bridge, the notifier and the HTTP endpoints
// until ctx ends or one of them fails.
func serve(ctx context.Context, cfg *config, log *slog.Logger) error {
	sip.SetDefaultLogger(log.With("component", "sipgo"))
	src, err := newSource(cfg, log)
	if err != nil {
		return err
	}
	br := bridge.New(log)
	nt, err := notifier.New(cfg.SIP, br, log)
	if err != nil {
		return err
	}
	br.Subscribe(nt)
	// Bind every socket before running anything, so that a port in use
	// stops start-up with one clear error.
	if err := nt.Listen(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("listening on REGBRIDGE_HTTP_LISTEN %s: %w", cfg.HTTPListen, err)
	}
	httpSrv := &http.Server{Handler: newHTTPHandler(br), ReadHeaderTimeout: 5 * time.Second}

	log.Info("starting", "version", buildVersion(), "source", redactURL(cfg.Source))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return src.Run(gctx, br) })
	g.Go(func() error { return br.Run(gctx) })
	g.Go(func() error { return nt.Run(gctx) })
	g.Go(func() error { return serveHTTP(gctx, httpSrv, ln, log) })
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
