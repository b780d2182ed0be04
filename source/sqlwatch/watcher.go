package sqlwatch

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/regbridge/regbridge/source"
)

// Defaults; each is what Config's zero value means.
const (
	// DefaultPollInterval bounds the change-to-batch latency. The change
	// check is one aggregate query (or one PRAGMA), cheap enough to ask
	// every second.
	DefaultPollInterval = time.Second
	// DefaultReconcileInterval forces a full read even when the change
	// check saw nothing, to catch what an aggregate can miss (two changes
	// that cancel out in the checksum, a clock-skewed last_modified).
	// Half a minute keeps a missed change shorter than a typical registrar
	// timer_interval while costing one full read per 30 s. Beside a change
	// feed the read verifies instead (verify.go) and holds nothing back.
	DefaultReconcileInterval = 30 * time.Second
	// DefaultQueryTimeout bounds one query, so a black-holed connection
	// becomes an outage instead of a hang.
	DefaultQueryTimeout = 30 * time.Second
	// DefaultMinBackoff and DefaultMaxBackoff bound the retry delay while
	// the store is unreachable: quick recovery from a blip, little load
	// during a long outage.
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
	// Never disables the forced reconcile (ReconcileInterval), for stores
	// whose change check is exact (SQLite's data_version).
	Never time.Duration = -1
	// DefaultChangelogPoll is how often the changelog is asked for
	// new rows under CDCTrigger: an index range read on its primary key,
	// cheap enough to run 50 times a second, and well inside the
	// latencies of docs/performance.md#figures.
	DefaultChangelogPoll = 20 * time.Millisecond
	// DefaultChangelogRetention is how long changelog rows already read
	// are kept before regbridge prunes them: long enough for a second
	// instance reading the same changelog to catch up after a short
	// hiccup, short enough to keep the table (and the trigger's insert)
	// small.
	DefaultChangelogRetention = time.Minute
)

// CDC modes (Config.CDC).
const (
	// CDCOff polls the fingerprint (the default).
	CDCOff = ""
	// CDCTrigger reads changes captured by triggers that `regbridge cdc
	// install` put on the table, which fill a changelog table.
	CDCTrigger = "trigger"
	// CDCLogical reads changes from a PostgreSQL logical replication slot
	// through the pgoutput plugin (logical.go): no trigger, no write on
	// the registrar's tables.
	CDCLogical = "logical"
)

// DefaultSlotLagWarn is the slot lag logged as a warning under
// CDCLogical: a slot that stops advancing keeps WAL on the server's disk,
// and a gibibyte is far beyond what a location table writes while
// regbridge keeps up, yet far below a full disk.
const DefaultSlotLagWarn = 1 << 30

const (
	// minPollInterval rejects intervals that would busy-loop the store.
	minPollInterval = time.Millisecond
	// maxLoggedBadRows caps the memory that keeps a bad row from being
	// logged again at every snapshot.
	maxLoggedBadRows = 10000
	// maxLogKeyLen truncates keys in bad-row log lines and the dedup set.
	maxLogKeyLen = 128
)

// Config tunes a Watcher; zero values mean the defaults above.
type Config struct {
	PollInterval      time.Duration
	ReconcileInterval time.Duration // Never: only when the change check moves
	QueryTimeout      time.Duration
	MinBackoff        time.Duration
	MaxBackoff        time.Duration
	// FullReads turns incremental reads off: every change the fingerprint
	// shows is answered with a full read (as before incremental reads).
	FullReads bool
	// CDC is CDCOff, CDCTrigger or CDCLogical.
	CDC string
	// ChangelogPoll and ChangelogRetention tune the changelog under
	// CDCTrigger; defaults DefaultChangelogPoll and
	// DefaultChangelogRetention.
	ChangelogPoll      time.Duration
	ChangelogRetention time.Duration
	// Slot is the replication slot of CDCLogical; default
	// regbridge_<database>_<table>. SlotLagWarn is the lag in bytes
	// above which the slot is logged as falling behind; default
	// DefaultSlotLagWarn.
	Slot        string
	SlotLagWarn int64
	// ReconcileRate paces the verifying reconcile beside a change feed
	// to this many rows per second, read in keyset pages
	// (reconcile_rate.go); 0 reads the table in one query.
	ReconcileRate int
	// PollLoad is the largest share of time polling may keep the
	// database busy: a round whose queries (the change check and the
	// reads it led to) took d starts the next no sooner than d/PollLoad
	// after it started, PollInterval at least (poll_load.go). Zero or 1
	// polls every PollInterval whatever a round costs, as for SQLite,
	// whose check is one page read in regbridge's own process; a server's
	// ServerConfig defaults to DefaultPollLoad.
	PollLoad float64
}

// Validate fills defaults and rejects settings that can never work.
func (c *Config) Validate() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.PollInterval, DefaultPollInterval)
	def(&c.ReconcileInterval, DefaultReconcileInterval)
	def(&c.QueryTimeout, DefaultQueryTimeout)
	def(&c.MinBackoff, DefaultMinBackoff)
	def(&c.MaxBackoff, DefaultMaxBackoff)
	def(&c.ChangelogPoll, DefaultChangelogPoll)
	def(&c.ChangelogRetention, DefaultChangelogRetention)
	if c.SlotLagWarn == 0 {
		c.SlotLagWarn = DefaultSlotLagWarn
	}
	if c.PollLoad == 0 {
		c.PollLoad = 1
	}
	switch {
	case c.CDC != CDCOff && c.CDC != CDCTrigger && c.CDC != CDCLogical:
		return fmt.Errorf("CDC %q: want %q, %q or nothing", c.CDC, CDCTrigger, CDCLogical)
	case c.Slot != "" && !ValidSlot(c.Slot):
		return fmt.Errorf("Slot %q is not a replication slot name (1 to 63 of a-z, 0-9, _)", c.Slot)
	case c.SlotLagWarn < 0:
		return fmt.Errorf("SlotLagWarn %d is negative", c.SlotLagWarn)
	case c.ChangelogPoll < minPollInterval || c.ChangelogRetention < 0:
		return fmt.Errorf("ChangelogPoll %v must be at least %v and ChangelogRetention not negative", c.ChangelogPoll, minPollInterval)
	case c.PollLoad < minPollLoad || c.PollLoad > 1:
		return fmt.Errorf("PollLoad %v is not between %v and 1", c.PollLoad, minPollLoad)
	case c.PollInterval < minPollInterval:
		return fmt.Errorf("PollInterval %v is below %v", c.PollInterval, minPollInterval)
	case c.ReconcileInterval < 0 && c.ReconcileInterval != Never:
		return fmt.Errorf("ReconcileInterval %v is negative", c.ReconcileInterval)
	case c.QueryTimeout < 0 || c.MinBackoff < 0:
		return errors.New("QueryTimeout and MinBackoff must not be negative")
	case c.MaxBackoff < c.MinBackoff:
		return fmt.Errorf("MaxBackoff %v is below MinBackoff %v", c.MaxBackoff, c.MinBackoff)
	}
	return nil
}

// Table says what to read. The registrar's Layout fills it.
type Table struct {
	// Name is the table, a plain identifier (ValidIdent).
	Name string
	// Columns are read in this order; Decode gets them in it.
	Columns []string
	// Key is the index in Columns of the binding's identity (Kamailio
	// ruid, OpenSIPS contact_id).
	Key int
	// Watch are the columns the change check covers: those a registrar
	// rewrites on every create, refresh or in-place change.
	Watch []string
	// LogKey are indexes in Columns tried in order to name a bad row in
	// the log (the key first, then a row id).
	LogKey []int
	// Modified names the column of Columns the registrar rewrites on
	// every create and refresh (last_modified), or is empty. With it a
	// changed table is first read incrementally (incremental.go).
	Modified string
}

// Layout is the registrar-specific part of a Watcher.
type Layout interface {
	// Table is what to read; called once, by New.
	Table() Table
	// Bind is called after every connect with the store's type name of
	// each column (upper case: "DATETIME", "BIGINT", "TIMESTAMP", ...),
	// so the layout can pick how to decode; an error makes the store
	// unusable until the next reconnect.
	Bind(types []string) error
	// Decode turns one row into c. It is called only for rows that are
	// new or changed since the last read (and for every row of a
	// complete read), so it may allocate its strings. An error skips the
	// row.
	Decode(row []Value, c *source.Contact) error
}

// KeyedSink is a sink that keeps, by Key, the contacts it accepted (the
// bridge does). The watcher sends it Full batches that carry only the new
// and changed rows and name the unchanged ones by key, so neither side
// decodes or compares an unchanged row again and the watcher need not
// keep the contacts (it keeps a hash per row). The first Full batch of a
// Run, and the first after the sink rejected a batch, a read failed or the
// column types changed, is complete (Apply).
type KeyedSink interface {
	source.Sink
	// ApplyFull takes a Full batch whose Contacts are the bindings that
	// are new or changed since the last batch the sink accepted from this
	// watcher; every other binding of the store is one that batch left
	// as it is, and same yields the Keys of all bindings the store holds
	// (valid only during the call). A binding the sink has that same does
	// not name is gone.
	ApplyFull(ctx context.Context, b source.Batch, same iter.Seq[string]) error
}

// Dialect connects to one kind of store.
type Dialect interface {
	// Open connects and checks that t can be read.
	Open(ctx context.Context, t *Table) (Session, error)
}

// Session is one connection to the store.
type Session interface {
	// Types are the store's type names of the table's columns, upper case.
	Types() []string
	// Fingerprint is a cheap value that changes whenever the table does
	// (as far as an aggregate can tell).
	Fingerprint(ctx context.Context) (string, error)
	// Snapshot reads the whole table, calling fn for each row; row is
	// valid only during the call.
	Snapshot(ctx context.Context, fn func(row []Value)) error
	Close() error
}

// ErrReopen is returned by a Session when the store must be reopened at
// once, without an outage (a database file replaced by a new one).
var ErrReopen = errors.New("store must be reopened")

// Watcher polls one table and reports it: a Full batch at start, after
// every recovery from an outage and every reconcile interval, and in
// between the changes it sees (incremental reads, or CDC), as non-Full
// batches, or as a Full batch when it cannot tell exactly what changed.
type Watcher struct {
	cfg     Config
	dialect Dialect
	layout  Layout
	table   Table
	log     *slog.Logger

	running  atomic.Bool
	up       atomic.Bool
	polls    atomic.Uint64
	errors   atomic.Uint64
	skipped  atomic.Uint64
	lastFull atomic.Int64 // unix nanoseconds
	// trouble explains a failure retrying cannot fix (problem.go).
	trouble source.Trouble

	// The rest is owned by the goroutine in Run (or Snapshot).
	snap       snapshotState
	keyed      KeyedSink              // the sink of Run, when it is one
	complete   bool                   // the last read decoded every row
	cdcWarned  bool                   // "triggers not installed" was logged
	cdcRunning bool                   // the last session used CDC (for log lines)
	feedMode   atomic.Pointer[string] // while cdcRunning, the Stats mode (trigger, logical); nil: poll
	logical    logicalState
}

var (
	_ source.Source   = (*Watcher)(nil)
	_ source.Reporter = (*Watcher)(nil)
)

// New checks cfg and the layout's table and returns a watcher; it does no
// I/O. log gets "component" from the caller.
func New(cfg Config, d Dialect, l Layout, log *slog.Logger) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := l.Table()
	if err := t.validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{cfg: cfg, dialect: d, layout: l, table: t, log: log}
	w.snap.init(slices.Index(t.Columns, t.Modified))
	return w, nil
}

func (t *Table) validate() error {
	if !ValidIdent(t.Name) {
		return fmt.Errorf("table %q is not an identifier ([A-Za-z_][A-Za-z0-9_]*)", t.Name)
	}
	if t.Key < 0 || t.Key >= len(t.Columns) {
		return fmt.Errorf("table %s: key index %d out of range", t.Name, t.Key)
	}
	for _, c := range append(append([]string(nil), t.Columns...), t.Watch...) {
		if !ValidIdent(c) {
			return fmt.Errorf("table %s: column %q is not an identifier", t.Name, c)
		}
	}
	if t.Modified != "" && !slices.Contains(t.Columns, t.Modified) {
		return fmt.Errorf("table %s: modified column %q is not read", t.Name, t.Modified)
	}
	for _, i := range t.LogKey {
		if i < 0 || i >= len(t.Columns) {
			return fmt.Errorf("table %s: log key index %d out of range", t.Name, i)
		}
	}
	return nil
}

// ValidIdent reports whether s is a plain SQL identifier. Only such names
// are accepted for tables, so quoting them is never a security question.
func ValidIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// Stats reports the watcher's health (source.Reporter).
func (w *Watcher) Stats() source.Stats {
	st := source.Stats{Up: w.up.Load(), Polls: w.polls.Load(), Errors: w.errors.Load(), Skipped: w.skipped.Load(), Mode: source.ModePoll}
	if m := w.feedMode.Load(); m != nil {
		st.Mode = *m
	}
	if n := w.lastFull.Load(); n != 0 {
		st.LastFull = time.Unix(0, n)
	}
	st.Problem = w.trouble.String()
	return st
}

// selectList is the quoted, comma-separated column list.
func selectList(cols []string, quote func(string) string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = quote(c)
	}
	return strings.Join(q, ", ")
}

// SnapshotQuery is the full read of t.
func SnapshotQuery(t *Table, quote func(string) string) string {
	return "SELECT " + selectList(t.Columns, quote) + " FROM " + quote(t.Name)
}

// ProbeQuery reads no row but reports t's column types (and fails when
// the table or a column is missing).
func ProbeQuery(t *Table, quote func(string) string) string {
	return SnapshotQuery(t, quote) + " WHERE 1 = 0"
}
