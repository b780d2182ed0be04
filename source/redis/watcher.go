package redis

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/regbridge/regbridge/source"
)

const (
	// minBackoff and maxBackoff bound the retry delay while the server is
	// unreachable: quick recovery from a blip, little load during a long
	// outage.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// dialTimeout and ioTimeout make a dead server show as an outage
	// within seconds rather than hang a read.
	dialTimeout = 2 * time.Second
	ioTimeout   = 3 * time.Second
)

// Watcher reports the bindings kept in Redis: a Full batch after every
// (re)connect and every gap, then changes learned from keyspace
// notifications (or, without them, a Full batch every PollInterval).
type Watcher struct {
	cfg    Config
	log    *slog.Logger
	prefix string // key prefix of every binding
	// channel is the keyspace channel prefix ("__keyspace@<db>__:"),
	// pattern the escaped PSUBSCRIBE/SCAN pattern of the bindings' keys.
	channel, pattern string

	running atomic.Bool
	up      atomic.Bool
	polls   atomic.Uint64
	// keyspace is true while the session follows keyspace events.
	keyspace atomic.Bool
	errs     atomic.Uint64 // failed sessions: one per failed read, ping or dial
	skipped  atomic.Uint64
	// lastFull is the Unix time in nanoseconds of the last Full batch
	// delivered, 0 before the first.
	lastFull atomic.Int64
	// trouble explains a failure retrying cannot fix (problem).
	trouble source.Trouble

	// The rest is owned by the goroutine in Run.
	contacts []source.Contact // reused: Sink does not keep it
	deleted  []string
	// filled and filledDeleted bound the entries of contacts and deleted
	// that may be set (beyond them the arrays are zero), so that release
	// clears no more than was used.
	filled, filledDeleted int

	bad badLog
	// eventsNote remembers the last notify-keyspace-events verdict logged,
	// so that it is logged when it changes, not at every check.
	eventsNote string
	// clockWarned is set once the TZ heuristic has warned.
	clockWarned bool
	// backoffCap is maxBackoff; tests lower it.
	backoffCap time.Duration
	// clientName is set on every connection (CLIENT SETNAME), so that an
	// operator, or a test, can find ours in CLIENT LIST.
	clientName string
}

var (
	_ source.Source   = (*Watcher)(nil)
	_ source.Reporter = (*Watcher)(nil)
)

// New checks cfg and returns a watcher; it does no I/O.
func New(cfg Config, log *slog.Logger) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{
		cfg:     cfg,
		prefix:  cfg.keyPrefix(),
		channel: "__keyspace@" + strconv.Itoa(cfg.DB) + "__:",
		bad:     newBadLog(),
	}
	w.pattern = globEscape(w.prefix) + "*"
	w.log = log.With("component", "redis", "addr", cfg.Addr, "db", cfg.DB, "layout", string(cfg.Layout), "prefix", w.prefix)
	w.clientName = "regbridge"
	w.backoffCap = maxBackoff
	return w, nil
}

// dial builds the client. One connection serves reads and another the
// subscription; retries are left to Run, which knows about outages.
func (w *Watcher) dial() *goredis.Client {
	return goredis.NewClient(&goredis.Options{
		Addr:             w.cfg.Addr,
		Username:         w.cfg.Username,
		Password:         w.cfg.Password,
		DB:               w.cfg.DB,
		ClientName:       w.clientName,
		DialTimeout:      dialTimeout,
		ReadTimeout:      ioTimeout,
		WriteTimeout:     ioTimeout,
		MaxRetries:       1,
		PoolSize:         2,
		PipelinePoolSize: -1,
		// Registrar-side Redis is often older or managed: no CLIENT
		// SETINFO or MAINT_NOTIFICATIONS noise in its logs.
		DisableIdentity:          true,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
}

// Stats reports the watcher's view of the store (source.Reporter). Polls
// counts snapshots, change reads and liveness pings.
func (w *Watcher) Stats() source.Stats {
	s := source.Stats{
		Up:      w.up.Load(),
		Polls:   w.polls.Load(),
		Errors:  w.errs.Load(),
		Skipped: w.skipped.Load(),
	}
	if n := w.lastFull.Load(); n != 0 {
		s.LastFull = time.Unix(0, n)
	}
	s.Problem = w.trouble.String()
	s.Mode = source.ModePoll
	if w.keyspace.Load() {
		s.Mode = source.ModeKeyspace
	}
	return s
}

// Run reports the store until ctx ends. Outages are retried with capped
// backoff and followed by a Full batch; Run returns nil when ctx ends and
// an error only when called twice at once.
func (w *Watcher) Run(ctx context.Context, sink source.Sink) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("redis: Run called while already running")
	}
	defer w.running.Store(false)
	defer w.up.Store(false)
	rdb := w.dial()
	defer rdb.Close()

	backoff := minBackoff
	down := false
	up := func() {
		backoff = minBackoff
		w.up.Store(true)
		w.trouble.Clear()
		if down {
			down = false
			w.log.Info("redis reachable again")
		}
	}
	for {
		err := w.session(ctx, rdb, sink, up)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errEventsChanged) {
			continue // a new session in the other mode, at once
		}
		w.up.Store(false)
		w.errs.Add(1)
		p, permanent := problem(err)
		w.trouble.Failed(w.log, err, p, permanent, &down, "redis misconfigured", "redis unreachable")
		if !source.Sleep(ctx, backoff) {
			return nil
		}
		backoff = min(2*backoff, w.backoffCap)
	}
}

// globEscape quotes the glob metacharacters of a key prefix for SCAN MATCH
// and PSUBSCRIBE patterns.
func globEscape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(b)
}
