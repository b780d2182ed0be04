package main

import (
	"fmt"
	"log/slog"

	"github.com/regbridge/regbridge/source"
	_ "github.com/regbridge/regbridge/source/stores" // registers every store's schemes
)

// newSource builds the adapter REGBRIDGE_SOURCE names: source.Open
// dispatches on the scheme to the store's own package, which reads the
// rest of the URL.
func newSource(cfg *config, log *slog.Logger) (source.Source, error) {
	src, err := source.Open(cfg.Source, source.Options{Domain: cfg.Domain, PollInterval: cfg.PollInterval, Log: log})
	if err != nil {
		return nil, fmt.Errorf("REGBRIDGE_SOURCE: %w", err)
	}
	return src, nil
}

// checkSourceURL validates a store URL without building anything that
// lasts (source.Open does no I/O).
func checkSourceURL(raw string) error {
	_, err := source.Open(raw, source.Options{})
	return err
}
