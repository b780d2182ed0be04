package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/substore"
)

// runner is a part with a Run(ctx) error.
type runner interface {
	Run(ctx context.Context) error
}

type noRun struct{}

func (noRun) Run(ctx context.Context) error { <-ctx.Done(); return nil }

// sourceRunner runs a source into a bridge.
type sourceRunner struct {
	src source.Source
	br  *bridge.Bridge
}

func (r sourceRunner) Run(ctx context.Context) error { return r.src.Run(ctx, r.br) }

// newState wires REGBRIDGE_STATE. memory: nothing to do. redis://: the
// bridge starts from the contacts recorded by the last run (so the first
// snapshot is diffed, not silent), a Persister keeps that record current,
// and the notifier keeps its subscriptions in Redis and continues the
// ones it owns, or those of dead instances when it is alone. Call it
// before the source runs.
//
// Under REGBRIDGE_PARTITIONS (pt not nil) the partitions hold both: the
// contacts in their state and streams, the subscriptions in
// partition.Subs, continued by the partitions' owners; the single-tag
// layout keeps only the watchers (reg.winfo).
func newState(ctx context.Context, cfg substore.Config, pt *partitioned, br *bridge.Bridge, nt *notifier.Notifier, log *slog.Logger) (runner, func(), error) {
	if !cfg.Shared() {
		return noRun{}, func() {}, nil
	}
	if pt != nil {
		nt.SetStore(pt.subs, cfg.Lease)
		nt.SetWatcherStore(pt.legacy)
		log.Info("shared state", "instance", pt.id, "lease", cfg.Lease, "partitions", pt.m.Count())
		return noRun{}, func() {
			fences, polls, other := pt.subs.RoundTripsBy()
			log.Info("shared state closed", "redis_round_trips", pt.subs.RoundTrips(), "notifies_sent", nt.Counters().Sent.Load(),
				"fence_round_trips", fences, "inbox_poll_round_trips", polls, "other_round_trips", other)
		}, nil
	}
	opt, prefix, err := substore.ParseURL(cfg.State)
	if err != nil {
		return nil, nil, fmt.Errorf("REGBRIDGE_STATE: %w", err)
	}
	rdb := redis.NewUniversalClient(opt)
	id := cfg.ID()
	st := substore.NewRedis(rdb, prefix, id, cfg.Lease, log)
	restored, err := st.LoadContacts(ctx)
	if err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("REGBRIDGE_STATE: %w", err)
	}
	if len(restored) > 0 {
		br.Restore(restored)
	}
	nt.SetStore(st, cfg.Lease)
	nt.SetWatcherStore(st) // watchers on every instance, for reg.winfo
	if err := nt.Recover(ctx); err != nil {
		rdb.Close()
		return nil, nil, fmt.Errorf("REGBRIDGE_STATE: %w", err)
	}
	pers := bridge.NewPersister(br, st, log)
	br.Subscribe(pers)
	log.Info("shared state", "instance", id, "lease", cfg.Lease, "restored_contacts", len(restored))
	return pers, func() {
		// Read by the multi-instance test: store cost per NOTIFY.
		log.Info("shared state closed", "redis_round_trips", st.RoundTrips(), "notifies_sent", nt.Counters().Sent.Load())
		rdb.Close()
	}, nil
}
