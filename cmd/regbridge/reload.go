package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/sethvargo/go-envconfig"
)

// notifyHangup starts catching SIGHUP (whose default action ends the
// process) and returns the channel and the function that stops it. serve
// calls it before it reports ready, so that a SIGHUP is never fatal once
// /readyz says 200.
func notifyHangup() (<-chan os.Signal, func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// reloadOnHangup sets the log level from REGBRIDGE_LOG_LEVEL again on
// every SIGHUP, until ctx ends. A process's environment does not change
// after it starts, so in practice SIGHUP restores the configured level
// after POST /v1/log-level changed it.
func reloadOnHangup(ctx context.Context, hup <-chan os.Signal, env envconfig.Lookuper, level *slog.LevelVar, log *slog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			reloadLogLevel(ctx, env, level, log)
		}
	}
}

// reloadLogLevel reads the configuration again and applies its log level;
// a configuration that no longer validates changes nothing.
func reloadLogLevel(ctx context.Context, env envconfig.Lookuper, level *slog.LevelVar, log *slog.Logger) {
	cfg, err := loadConfig(ctx, env)
	if err != nil {
		log.Error("SIGHUP: configuration invalid; log level unchanged", "err", err)
		return
	}
	lvl, _ := parseLevel(cfg.LogLevel) // validated
	prev := level.Level()
	level.Set(lvl)
	log.Warn("log level reloaded", "level", lvl.String(), "previous", prev.String(), "by", "SIGHUP")
}
