package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier"
	"github.com/regbridge/regbridge/substore"
)

// runner is a part with a Run(ctx) error.
type runner interface {
	Run(ctx context.Context) error
}

type noRun struct{}

func (noRun) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// newState wires REGBRIDGE_STATE. memory: nothing to do. redis://: the
// bridge starts from the contacts recorded by the last run (so the first
// snapshot is diffed, not silent), a Persister keeps that record current,
// and the notifier keeps its subscriptions in Redis and continues the
// ones it owns, or those of dead instances when it is alone. Call it
// before the source runs.
func newState(ctx context.Context, cfg substore.Config, br *bridge.Bridge, nt *notifier.Notifier, log *slog.Logger) (runner, func(), error) {
	if !cfg.Shared() {
		return noRun{}, func() {}, nil
	}
	opt, prefix, err := substore.ParseURL(cfg.State)
	if err != nil {
		return nil, nil, fmt.Errorf("REGBRIDGE_STATE: %w", err)
	}
	rdb := redis.NewUniversalClient(opt)
	id := cfg.ID()
	st := substore.NewRedis(rdb, prefix, id, cfg.Lease, log)
	contacts, err := st.LoadContacts(ctx)
	if err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("REGBRIDGE_STATE: %w", err)
	}
	if len(contacts) > 0 {
		br.Restore(contacts)
	}
	nt.SetStore(st, cfg.Lease)
	nt.SetWatcherStore(st) // watchers on every instance, for reg.winfo
	if err := nt.Recover(ctx); err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("REGBRIDGE_STATE: %w", err)
	}
	p := bridge.NewPersister(br, st, log)
	br.Subscribe(p)
	log.Info("shared state", "instance", id, "lease", cfg.Lease, "restored_contacts", len(contacts))
	return p, func() {
		// Read by the multi-instance test: store cost per NOTIFY.
		log.Info("shared state closed", "redis_round_trips", st.RoundTrips(), "notifies_sent", nt.Counters().Sent.Load())
		rdb.Close()
	}, nil
}
