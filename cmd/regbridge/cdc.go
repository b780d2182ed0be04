package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// capturer is what `regbridge cdc` needs from a source: the SQL store
// watchers (sqlwatch.Watcher) implement it.
type capturer interface {
	CaptureSQL(install bool) ([]string, error)
	ExecCapture(ctx context.Context, stmts []string) error
}

const cdcUsage = `usage: regbridge cdc install|uninstall [--dry-run]

Installs (or removes) change capture on the location table named by
REGBRIDGE_SOURCE. With ?cdc=trigger (or no cdc): the triggers that report
changes by writing regbridge_changelog (uninstall drops it on PostgreSQL
with the last regbridge trigger; an older pg_notify trigger is replaced
by install). With ?cdc=logical (PostgreSQL): a
publication of the table and a logical replication slot; uninstall drops
both. Prints what the server needs and the SQL first, then runs it;
--dry-run only prints it. Idempotent.
`

// runCDC is `regbridge cdc install|uninstall [--dry-run]`.
func runCDC(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	var install, dry bool
	var verb string
	for _, a := range args {
		switch a {
		case "install", "uninstall":
			if verb != "" {
				fmt.Fprint(stderr, cdcUsage)
				return 2
			}
			verb, install = a, a == "install"
		case "--dry-run", "-dry-run", "-n":
			dry = true
		case "-h", "--help", "help":
			fmt.Fprint(stdout, cdcUsage)
			return 0
		default:
			fmt.Fprintf(stderr, "regbridge cdc: unknown argument %q\n\n%s", a, cdcUsage)
			return 2
		}
	}
	if verb == "" {
		fmt.Fprint(stderr, cdcUsage)
		return 2
	}
	cfg, err := loadConfig(ctx, env)
	if err != nil {
		fmt.Fprintf(stderr, "regbridge cdc: configuration: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	stmts, c, err := captureSQL(cfg, install, log)
	if err != nil {
		fmt.Fprintf(stderr, "regbridge cdc %s: %v\n", verb, err)
		return 2
	}
	fmt.Fprintf(stdout, "-- regbridge cdc %s\n", verb)
	if n, ok := c.(interface{ CaptureNotes() string }); ok && n.CaptureNotes() != "" {
		fmt.Fprintf(stdout, "%s\n", n.CaptureNotes())
	}
	fmt.Fprintf(stdout, "%s;\n", strings.Join(stmts, ";\n\n"))
	if dry {
		return 0
	}
	if err := c.ExecCapture(ctx, stmts); err != nil {
		fmt.Fprintf(stderr, "regbridge cdc %s: %v\n", verb, err)
		return 1
	}
	fmt.Fprintf(stderr, "regbridge cdc %s: done\n", verb)
	return 0
}

// captureSQL builds the configured source and asks it for its capture
// SQL.
func captureSQL(cfg *config, install bool, log *slog.Logger) ([]string, capturer, error) {
	src, err := newSource(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	c, ok := src.(capturer)
	if !ok {
		return nil, nil, errors.New("REGBRIDGE_SOURCE is not a MySQL/MariaDB or PostgreSQL store; change capture needs one")
	}
	stmts, err := c.CaptureSQL(install)
	if err != nil {
		return nil, nil, fmt.Errorf("REGBRIDGE_SOURCE: %w", err)
	}
	return stmts, c, nil
}
