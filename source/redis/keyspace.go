package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/source"
)

const (
	// coalesceWindow is how long the first change of a burst waits for
	// more before the changed keys are read: a delete sends several events
	// and a refresh touches the entry and its mapping keys
	// (docs/stores.md#kamailios-db_redis-layout).
	// A few milliseconds merge those into one read without adding visible
	// NOTIFY latency.
	coalesceWindow = 5 * time.Millisecond
	// maxPending bounds the set of changed keys waiting for a read; a
	// burst larger than this is cheaper to take as one full resync.
	maxPending = 20000
	// channelSize is go-redis's buffer between its reader and us. A
	// notification that finds it full for a minute is dropped without a
	// sign, so it is generous; the loop below only moves keys into a set.
	channelSize = 8192
	// subscribeTimeout bounds the wait for PSUBSCRIBE's confirmation.
	subscribeTimeout = 5 * time.Second
)

// neededClasses are the notify-keyspace-events classes the watcher needs:
// K (keyspace channel), g (del, expire, rename), h (hset, hdel), x
// (expired). 'A' stands for g$lshzxet, which includes all three. Evicted
// keys ('e') are caught by the periodic reconcile: a registrar whose
// bindings are evicted has a misconfigured Redis anyway.
const neededClasses = "Kghx"

// errEventsChanged ends a session whose mode (events or polling) no longer
// matches the server's notify-keyspace-events.
var errEventsChanged = errors.New("notify-keyspace-events changed")

// missingClasses returns the needed classes flags lacks.
func missingClasses(flags string) string {
	var missing []byte
	for _, c := range []byte(neededClasses) {
		if strings.IndexByte(flags, c) >= 0 || (c != 'K' && strings.IndexByte(flags, 'A') >= 0) {
			continue
		}
		missing = append(missing, c)
	}
	return string(missing)
}

// useEvents decides whether this session subscribes, logging each new
// verdict once. A server that refuses CONFIG (ACLs, managed services) is
// trusted to have notifications on, with a warning: failing start-up there
// would make regbridge unusable on exactly the hosted Redis services that
// let operators set notify-keyspace-events only through their console.
func (w *Watcher) useEvents(ctx context.Context, rdb *goredis.Client) (bool, error) {
	if w.cfg.Events == EventsOff {
		w.note("off", func() {
			w.log.Info("keyspace events not used (events=off): full scan every poll interval", "poll_interval", w.cfg.PollInterval)
		})
		return false, nil
	}
	res, err := rdb.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		var re goredis.Error
		if !errors.As(err, &re) {
			return false, fmt.Errorf("reading notify-keyspace-events: %w", err)
		}
		w.note("unknown", func() {
			w.log.Warn("cannot read notify-keyspace-events (CONFIG GET refused); assuming keyspace notifications are enabled. "+
				"If they are not, changes show only at the periodic reconcile; enable them or set events=off",
				"err", err, "needed", neededClasses, "reconcile", w.cfg.Reconcile)
		})
		return true, nil
	}
	flags := res["notify-keyspace-events"]
	if missing := missingClasses(flags); missing != "" {
		w.note("missing:"+flags, func() {
			w.log.Warn("KEYSPACE NOTIFICATIONS OFF: changes are seen only by a full scan every poll interval. "+
				"Fix: CONFIG SET notify-keyspace-events "+neededClasses+" (or KA), and the same line in redis.conf",
				"notify_keyspace_events", flags, "missing", missing, "poll_interval", w.cfg.PollInterval)
		})
		return false, nil
	}
	w.note("on", func() {
		w.log.Info("following keyspace notifications", "notify_keyspace_events", flags, "reconcile", w.cfg.Reconcile)
	})
	return true, nil
}

// note runs logIt when verdict differs from the last one logged.
func (w *Watcher) note(verdict string, logIt func()) {
	if w.eventsNote != verdict {
		w.eventsNote = verdict
		logIt()
	}
}

// session runs one connection's life: subscribe first (when events are
// on), then a Full snapshot, then changes until an error. Anything
// published before the subscription is confirmed is covered by the
// snapshot that follows it; every later re-subscription (go-redis
// reconnects the subscriber by itself) is a gap and triggers another.
func (w *Watcher) session(ctx context.Context, rdb *goredis.Client, sink source.Sink, up func()) error {
	events, err := w.useEvents(ctx, rdb)
	if err != nil {
		return err
	}
	w.keyspace.Store(events)
	var msgs <-chan any
	if events {
		ps := rdb.PSubscribe(ctx, w.channel+w.pattern)
		defer ps.Close()
		sctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
		m, err := ps.Receive(sctx)
		cancel()
		if err != nil {
			return fmt.Errorf("subscribing to %s: %w", w.channel+w.pattern, err)
		}
		if _, ok := m.(*goredis.Subscription); !ok {
			return fmt.Errorf("subscribing to %s: unexpected %T", w.channel+w.pattern, m)
		}
		msgs = ps.ChannelWithSubscriptions(goredis.WithChannelSize(channelSize))
	}
	needFull := false
	if err := w.snapshot(ctx, rdb, sink); err != nil {
		if !w.refused(err) {
			return err
		}
		needFull = true
	}
	up()

	tick := time.NewTicker(w.cfg.PollInterval)
	defer tick.Stop()
	reconcile := time.NewTicker(w.cfg.Reconcile)
	defer reconcile.Stop()
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	defer coalesce.Stop()
	pending := make(map[string]struct{})
	var pendingSince time.Time
	keys := make([]string, 0, readBatch)

	for {
		full := false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m, ok := <-msgs:
			if !ok {
				return errors.New("subscription closed")
			}
			switch m := m.(type) {
			case *goredis.Subscription:
				if m.Kind == "psubscribe" {
					w.log.Info("keyspace subscription re-established; resyncing")
					full = true
				}
			case *goredis.Message:
				key, ok := w.keyOf(m.Channel)
				if !ok {
					continue
				}
				if len(pending) == 0 {
					pendingSince = time.Now()
					coalesce.Reset(coalesceWindow)
				}
				pending[key] = struct{}{}
				if len(pending) >= maxPending {
					full = true
				} else if len(pending) < readBatch {
					continue
				}
			}
		case <-coalesce.C:
		case <-tick.C:
			if !events {
				full = true
			} else {
				w.polls.Add(1)
				if err := rdb.Ping(ctx).Err(); err != nil {
					return fmt.Errorf("ping: %w", err)
				}
				full = needFull
			}
		case <-reconcile.C:
			now, err := w.useEvents(ctx, rdb)
			if err != nil {
				return err
			}
			if now != events {
				return errEventsChanged
			}
			full = true
		}
		if full {
			clear(pending)
			coalesce.Stop()
			err := w.snapshot(ctx, rdb, sink)
			if needFull = err != nil; needFull && !w.refused(err) {
				return err
			}
			continue
		}
		if len(pending) == 0 {
			continue
		}
		keys = keys[:0]
		for k := range pending {
			keys = append(keys, k)
		}
		clear(pending)
		coalesce.Stop()
		if err := w.changes(ctx, rdb, sink, keys, pendingSince); err != nil {
			if !w.refused(err) {
				return err
			}
			// The changes are lost to the sink: offer everything again.
			needFull = true
		}
	}
}

// keyOf returns the key a keyspace notification on channel is about, when
// it is a binding's key (one a snapshot's SCAN of w.pattern would list).
func (w *Watcher) keyOf(channel string) (string, bool) {
	key, ok := strings.CutPrefix(channel, w.channel)
	if !ok || !strings.HasPrefix(key, w.prefix) {
		return "", false
	}
	return key, true
}

// refused reports whether err is a batch the sink refused rather than a
// store failure, and logs the refusal at warn level (the bridge should
// never refuse; when it does, each refusal matters). The caller re-reads
// everything as a Full batch at the next tick.
func (w *Watcher) refused(err error) bool {
	var se *sinkError
	if !errors.As(err, &se) {
		return false
	}
	w.log.Warn("sink rejected batch, offering a full snapshot at the next tick", "err", se.err)
	return true
}

// checkClock warns once when a binding that was just written carries a
// last_modified a whole number of quarter hours away from our clock: the
// mark of a registrar running in another time zone than tz= says (db_redis
// writes local time). Only the Kamailio layout stores local time.
func (w *Watcher) checkClock(now time.Time) {
	if w.clockWarned || w.cfg.Layout != LayoutKamailio {
		return
	}
	const (
		step      = 15 * time.Minute // every zone offset is a multiple
		tolerance = 90 * time.Second // clock skew plus event latency
	)
	for i := range w.contacts {
		m := w.contacts[i].Modified
		if m.IsZero() {
			continue
		}
		off := now.Sub(m)
		if abs(off) < step-tolerance {
			continue
		}
		if r := abs(off) % step; r > tolerance && r < step-tolerance {
			continue
		}
		w.clockWarned = true
		w.log.Warn("a binding just written has last_modified far from regbridge's clock by about a whole zone offset: "+
			"is tz= the registrar's time zone? Expiry times would be off by the same amount",
			"key", logKey(w.contacts[i].Key), "offset", off.Round(time.Minute), "tz", w.cfg.Location.String())
		return
	}
}
