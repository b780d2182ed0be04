package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/regbridge/regbridge/notifier"
	"github.com/regbridge/regbridge/notifier/digest"
	"github.com/regbridge/regbridge/notifier/limit"
	"github.com/regbridge/regbridge/notifier/policy"
)

// newGuards builds the SUBSCRIBE admission checks from the configuration:
// digest authentication against the configured credential source (none
// when REGBRIDGE_AUTH=off), the authorization policy and the limits. The
// returned func closes the credential source.
func newGuards(ctx context.Context, cfg *config, log *slog.Logger) (notifier.Guards, func(), error) {
	var g notifier.Guards
	closeCreds := func() error { return nil }
	if cfg.Auth.Enabled() {
		creds, closeFn, err := digest.Open(ctx, cfg.Auth.Source, log.With("component", "auth"))
		if err != nil {
			return g, func() {}, fmt.Errorf("REGBRIDGE_AUTH: %w", err)
		}
		closeCreds = closeFn
		if g.Auth, err = digest.New(cfg.Auth, creds, log.With("component", "auth")); err != nil {
			closeCreds()
			return g, func() {}, err
		}
	}
	var err error
	if g.Policy, err = policy.New(cfg.Policy); err != nil {
		closeCreds()
		return g, func() {}, err
	}
	if g.Limits, err = limit.New(cfg.Limit); err != nil {
		closeCreds()
		return g, func() {}, err
	}
	return g, func() { closeCreds() }, nil
}
