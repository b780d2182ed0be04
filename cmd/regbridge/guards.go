package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

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
	warnNoRemoteWatcher(cfg, log)
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

// warnNoRemoteWatcher says once, at start-up, that SIP listens beyond
// loopback while the policy can admit no watcher from another host: every
// such SUBSCRIBE would be refused (403), which an operator otherwise only
// learns from the subscriber's side.
func warnNoRemoteWatcher(cfg *config, log *slog.Logger) {
	var exposed []string
	for _, l := range cfg.SIP.Listen {
		if !loopbackListener(l.Addr) {
			exposed = append(exposed, l.String())
		}
	}
	if len(exposed) == 0 || cfg.Auth.Enabled() || cfg.Policy.AdmitsRemote() {
		return
	}
	log.Warn("SIP listens beyond loopback but no watcher on another host can be admitted: every such SUBSCRIBE is refused; "+
		"set REGBRIDGE_TRUSTED_NETWORKS to your proxies (they assert identities with P-Asserted-Identity) with REGBRIDGE_WATCHERS, "+
		"or REGBRIDGE_AUTH for digest logins, or REGBRIDGE_OPEN_NETWORKS",
		"listen", strings.Join(exposed, ","), "open_networks", cfg.Policy.OpenNetworks.String())
}

// loopbackListener reports whether a listener's host:port only ever
// accepts this machine's traffic; an empty host or 0.0.0.0 is every
// interface, and a name other than localhost may resolve anywhere.
func loopbackListener(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
