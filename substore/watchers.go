package substore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Watcher information (RFC 3857): who holds a subscription to which
// resource. Every instance records the subscriptions it accepts and ends;
// the winfo subscribers of a resource, on whatever instance, learn of each
// change from a change signal and read the whole list when they need full
// state.

// Watcher is one watching subscription: a reg or presence subscription
// to an AOR, as a winfo document lists it.
type Watcher struct {
	ID          string    `json:"id"`      // stable for the subscription's life
	Package     string    `json:"package"` // the watched package: reg or presence
	AOR         string    `json:"aor"`     // canonical AOR
	URI         string    `json:"uri"`     // the watcher's identity
	DisplayName string    `json:"display_name,omitempty"`
	Since       time.Time `json:"since"`   // when it subscribed
	Expires     time.Time `json:"expires"` // when it ends unless refreshed
}

// WatcherChange is one transition of a watcher: it started (Ended empty)
// or ended with the RFC 3857 event Ended names. Seq orders changes: a
// list read with ListWatchers at sequence s contains every change up to
// s. Resync (no watcher) says changes may have been lost: whoever follows
// them must read the lists again.
type WatcherChange struct {
	Watcher Watcher
	Ended   string
	Seq     uint64
	Resync  bool
}

// LocalWatchers keeps watchers in one process and hands every change to
// its sink at once: the store for REGBRIDGE_STATE=memory.
type LocalWatchers struct {
	sink func(WatcherChange)
	// watchersMu guards byAOR and seq.
	watchersMu sync.Mutex
	// byAOR holds each AOR's watchers in a slice, not a map: most AORs
	// have one or two, and a map's first bucket alone would cost about
	// 1.4 KB per watched AOR.
	byAOR map[string][]Watcher
	seq   uint64
}

// NewLocalWatchers returns an empty store that calls sink (outside its
// lock) for every change.
func NewLocalWatchers(sink func(WatcherChange)) *LocalWatchers {
	return &LocalWatchers{sink: sink, byAOR: make(map[string][]Watcher)}
}

// AddWatcher records a new watcher.
func (l *LocalWatchers) AddWatcher(_ context.Context, w Watcher) error {
	l.watchersMu.Lock()
	if i := l.index(w); i >= 0 {
		l.byAOR[w.AOR][i] = w
	} else {
		l.byAOR[w.AOR] = append(l.byAOR[w.AOR], w)
	}
	l.seq++
	c := WatcherChange{Watcher: w, Seq: l.seq}
	l.watchersMu.Unlock()
	l.sink(c)
	return nil
}

// RefreshWatcher records a watcher's new expiry; it is no change to tell.
func (l *LocalWatchers) RefreshWatcher(_ context.Context, w Watcher) error {
	l.watchersMu.Lock()
	defer l.watchersMu.Unlock()
	if i := l.index(w); i >= 0 {
		l.byAOR[w.AOR][i].Expires = w.Expires
	}
	return nil
}

// EndWatcher records that a watcher ended with event; a watcher already
// ended is not reported again.
func (l *LocalWatchers) EndWatcher(_ context.Context, w Watcher, event string) error {
	l.watchersMu.Lock()
	i := l.index(w)
	if i < 0 {
		l.watchersMu.Unlock()
		return nil
	}
	list := l.byAOR[w.AOR]
	old := list[i]
	list[i] = list[len(list)-1]
	list[len(list)-1] = Watcher{}
	if list = list[:len(list)-1]; len(list) == 0 {
		delete(l.byAOR, w.AOR)
	} else {
		l.byAOR[w.AOR] = list
	}
	l.seq++
	c := WatcherChange{Watcher: old, Ended: event, Seq: l.seq}
	l.watchersMu.Unlock()
	l.sink(c)
	return nil
}

// ListWatchers returns the watchers of a canonical AOR (every package)
// and the sequence number of the last change they contain.
func (l *LocalWatchers) ListWatchers(_ context.Context, aor string) ([]Watcher, uint64, error) {
	l.watchersMu.Lock()
	defer l.watchersMu.Unlock()
	return slices.Clone(l.byAOR[aor]), l.seq, nil
}

// index is the position of w among its AOR's watchers, or -1. Called
// with watchersMu held.
func (l *LocalWatchers) index(w Watcher) int {
	return slices.IndexFunc(l.byAOR[w.AOR], func(x Watcher) bool { return x.ID == w.ID })
}

// FollowWatchers does nothing: changes reach the sink as they happen.
func (l *LocalWatchers) FollowWatchers(ctx context.Context, _ func(WatcherChange)) error {
	<-ctx.Done()
	return nil
}

// Redis keys of watcher information, beside the subscriptions:
//
//	{p}watchers:<canonical aor>  hash: watcher id -> Watcher (JSON)
//	{p}wseq                      the change counter
//	{p}winfo                     Pub/Sub channel: one message per change
func (r *Redis) watchersKey(aor string) string { return r.p + "watchers:" + aor }
func (r *Redis) wseqKey() string               { return r.p + "wseq" }
func (r *Redis) winfoChannel() string          { return r.p + "winfo" }

// A change message is "<seq>\n<ended event or empty>\n<watcher JSON>".

// addWatcher stores a watcher, counts the change and signals it; the
// hash lives as long as its longest-lived watcher (ARGV[4], ms).
var addWatcher = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
local s = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[3], s .. '\n\n' .. ARGV[2])
return s
`)

// refreshWatcher updates a watcher that is still recorded.
var refreshWatcher = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
`)

// endWatcher removes a watcher and signals how it ended, once: when two
// instances both end it (a takeover racing an expiry), only the first
// one's change exists.
var endWatcher = redis.NewScript(`
local w = redis.call('HGET', KEYS[1], ARGV[1])
if not w then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local s = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], s .. '\n' .. ARGV[3] .. '\n' .. w)
return s
`)

// listWatchers reads one AOR's watchers and the change counter together.
var listWatchers = redis.NewScript(`
return {redis.call('GET', KEYS[2]) or '0', redis.call('HGETALL', KEYS[1])}
`)

// watcherTTL is how long the record of w must live, in milliseconds.
func watcherTTL(w Watcher) int64 {
	return max(time.Until(w.Expires)+grace, time.Second).Milliseconds()
}

// AddWatcher records a new watcher and signals it to every instance.
func (r *Redis) AddWatcher(ctx context.Context, w Watcher) error {
	js, err := encodeV1(&w)
	if err != nil {
		return fmt.Errorf("recording watcher: %w", err)
	}
	r.trips.Add(1)
	err = addWatcher.Run(ctx, r.rdb, []string{r.watchersKey(w.AOR), r.wseqKey()},
		w.ID, js, r.winfoChannel(), watcherTTL(w)).Err()
	if err != nil {
		return fmt.Errorf("recording watcher: %w", err)
	}
	return nil
}

// RefreshWatcher records a watcher's new expiry (no signal: its status
// did not change).
func (r *Redis) RefreshWatcher(ctx context.Context, w Watcher) error {
	js, err := encodeV1(&w)
	if err != nil {
		return fmt.Errorf("refreshing watcher: %w", err)
	}
	r.trips.Add(1)
	if err := refreshWatcher.Run(ctx, r.rdb, []string{r.watchersKey(w.AOR)}, w.ID, js, watcherTTL(w)).Err(); err != nil {
		return fmt.Errorf("refreshing watcher: %w", err)
	}
	return nil
}

// EndWatcher removes a watcher and signals the event that ended it.
func (r *Redis) EndWatcher(ctx context.Context, w Watcher, event string) error {
	r.trips.Add(1)
	err := endWatcher.Run(ctx, r.rdb, []string{r.watchersKey(w.AOR), r.wseqKey()},
		w.ID, r.winfoChannel(), event).Err()
	if err != nil {
		return fmt.Errorf("ending watcher: %w", err)
	}
	return nil
}

// ListWatchers returns the watchers of a canonical AOR and the sequence
// number of the last change they contain. Watchers whose subscription is
// over by more than the grace time (their instances died and nobody took
// them over) are ended with timeout and left out.
func (r *Redis) ListWatchers(ctx context.Context, aor string) ([]Watcher, uint64, error) {
	r.trips.Add(1)
	v, err := listWatchers.Run(ctx, r.rdb, []string{r.watchersKey(aor), r.wseqKey()}).Slice()
	if err != nil || len(v) != 2 {
		return nil, 0, fmt.Errorf("listing watchers: %w", errors.Join(err, errors.New("unexpected reply")))
	}
	seqText, _ := v[0].(string)
	seq, _ := strconv.ParseUint(seqText, 10, 64)
	flat, _ := v[1].([]any)
	var out, stale []Watcher
	for i := 0; i+1 < len(flat); i += 2 {
		js, _ := flat[i+1].(string)
		var w Watcher
		if err := decodeV1([]byte(js), &w); err != nil {
			r.log.Warn("skipping unreadable watcher", "aor", aor, "err", err)
			continue
		}
		if time.Since(w.Expires) > grace {
			stale = append(stale, w)
			continue
		}
		out = append(out, w)
	}
	for _, w := range stale {
		if err := r.EndWatcher(ctx, w, "timeout"); err != nil {
			r.log.Warn("ending stale watcher failed", "aor", aor, "err", err)
		}
	}
	return out, seq, nil
}

// followPoll is how long FollowWatchers waits for a message before it
// pings, so that a connection that died silently is noticed and renewed.
const followPoll = 5 * time.Second

// FollowWatchers hands every watcher change signalled by any instance to
// sink until ctx ends. Pub/Sub loses what is published while its
// connection is down; go-redis subscribes again on the next connection,
// and each such re-subscription reaches sink as a Resync.
func (r *Redis) FollowWatchers(ctx context.Context, sink func(WatcherChange)) error {
	ps := r.rdb.Subscribe(ctx, r.winfoChannel())
	defer ps.Close()
	// A receive in progress does not watch ctx; closing ends it.
	stop := context.AfterFunc(ctx, func() { ps.Close() })
	defer stop()
	subscribed, failing := false, false
	for {
		msg, err := ps.ReceiveTimeout(ctx, followPoll)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				_ = ps.Ping(ctx) // a dead connection fails here and is renewed
				continue
			}
			if !failing {
				r.log.Warn("following watcher changes failed; retrying", "err", err)
				failing = true
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(storeRetryFollow):
			}
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if subscribed {
				sink(WatcherChange{Resync: true})
			}
			subscribed, failing = true, false
		case *redis.Message:
			c, err := decodeChange(m.Payload)
			if err != nil {
				r.log.Warn("skipping unreadable watcher change", "err", err)
				continue
			}
			sink(c)
		}
	}
}

// storeRetryFollow is the pause before following changes again after
// Redis failed.
const storeRetryFollow = 500 * time.Millisecond

func decodeChange(payload string) (WatcherChange, error) {
	seqText, rest, ok1 := strings.Cut(payload, "\n")
	ended, js, ok2 := strings.Cut(rest, "\n")
	if !ok1 || !ok2 {
		return WatcherChange{}, errors.New("malformed message")
	}
	seq, err := strconv.ParseUint(seqText, 10, 64)
	if err != nil {
		return WatcherChange{}, fmt.Errorf("sequence %q: %w", seqText, err)
	}
	c := WatcherChange{Ended: ended, Seq: seq}
	if err := decodeV1([]byte(js), &c.Watcher); err != nil {
		return WatcherChange{}, err
	}
	return c, nil
}
