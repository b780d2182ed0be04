package kamailio

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/regbridge/regbridge/source"

	_ "modernc.org/sqlite" // registers driverName
)

const driverName = "sqlite"

const (
	// DefaultTable is usrloc's default table (save("location")).
	DefaultTable = "location"
	// DefaultPollInterval bounds the change-to-batch latency. A
	// data_version check reads one page, so asking every second costs
	// next to nothing and keeps the added NOTIFY latency near a second.
	DefaultPollInterval = time.Second
)

const (
	// busyTimeoutMS lets a read wait out a writer briefly (WAL recovery,
	// or the rollback-journal COMMIT) instead of failing at once.
	busyTimeoutMS = 1000
	// minBackoff and maxBackoff bound the retry delay while the file is
	// unreadable: quick recovery from a blip, little load during a long
	// outage.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
	// minPollInterval rejects intervals that would busy-loop the file.
	minPollInterval = time.Millisecond
	// maxLoggedBadRows caps the memory that keeps bad rows from being
	// logged again at every snapshot.
	maxLoggedBadRows = 10000
)

// SQLiteConfig configures the watcher of a Kamailio location table in a
// db_sqlite database file.
type SQLiteConfig struct {
	// Path is the database file, as in Kamailio's db_url without the
	// "sqlite://" prefix.
	Path string
	// Table is the usrloc table; default DefaultTable.
	Table string
	// Domain completes the AOR when the domain column is NULL or empty
	// (usrloc use_domain=0). If it is empty too, the AOR is "sip:"+username.
	Domain string
	// Create makes the file with Kamailio's schema (in WAL mode) when it
	// does not exist at start-up. An existing file is never written.
	Create bool
	// PollInterval is how often PRAGMA data_version is asked; default
	// DefaultPollInterval.
	PollInterval time.Duration
}

// Validate fills defaults and rejects settings that can never work.
func (c *SQLiteConfig) Validate() error {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	switch {
	case c.Path == "" || strings.IndexByte(c.Path, 0) >= 0:
		return errors.New("kamailio sqlite: Path must name the database file")
	case !validIdent(c.Table):
		return fmt.Errorf("kamailio sqlite: Table %q is not an identifier ([A-Za-z_][A-Za-z0-9_]*)", c.Table)
	case strings.EqualFold(c.Table, "version"):
		return errors.New(`kamailio sqlite: Table must not be "version" (Kamailio's table of table versions)`)
	case c.Domain != "" && (!printable(c.Domain) || strings.IndexByte(c.Domain, '@') >= 0):
		return fmt.Errorf("kamailio sqlite: Domain %q is not a host name", c.Domain)
	case c.PollInterval < minPollInterval:
		return fmt.Errorf("kamailio sqlite: PollInterval %v is below %v", c.PollInterval, minPollInterval)
	}
	return nil
}

// SQLite watches a Kamailio location table in an SQLite file and reports it
// as Full batches: one at start, one after every change another connection
// commits, one after every recovery from an outage.
type SQLite struct {
	cfg   SQLiteConfig
	log   *slog.Logger
	dsn   string
	query string

	running atomic.Bool
	skipped atomic.Uint64

	// The rest is owned by the goroutine in Run.
	row      rawRow
	scanArgs [numCols]any
	contacts []source.Contact // reused: Sink does not keep it
	// badLogged holds the keys of bad rows seen (and logged) in the last
	// snapshot, badSeen those of the snapshot being read; swapped after
	// each. A bad row is logged when it first appears, not every poll.
	badLogged, badSeen map[string]struct{}
	badCapped          bool
	journalWarned      bool

	// pollHook, when set (tests only), is called after every poll.
	pollHook func()
}

var _ source.Source = (*SQLite)(nil)

// NewSQLite checks cfg and returns a watcher; it does no I/O.
func NewSQLite(cfg SQLiteConfig, log *slog.Logger) (*SQLite, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &SQLite{
		cfg: cfg,
		log: log.With("component", "kamailio_sqlite", "path", cfg.Path, "table", cfg.Table),
		// mode=ro works only in the file: URI form (a plain path silently
		// opens read-write and creates missing files).
		dsn:       fileDSN(cfg.Path, "ro") + fmt.Sprintf("&_pragma=busy_timeout(%d)", busyTimeoutMS),
		query:     selectQuery(cfg.Table),
		badLogged: make(map[string]struct{}),
		badSeen:   make(map[string]struct{}),
	}
	for i := range w.scanArgs {
		w.scanArgs[i] = &w.row[i]
	}
	return w, nil
}

// Skipped returns how many rows were left out of batches because they could
// not be decoded, counting a bad row again in every snapshot it is in.
func (w *SQLite) Skipped() uint64 { return w.skipped.Load() }

// fileDSN is an SQLite URI for path with the given mode. SQLite decodes
// %HH in URI paths, so '%', '?' and '#' in the name must be escaped;
// cleaning first turns a leading "//" (an authority) into "/".
func fileDSN(path, mode string) string {
	p := filepath.ToSlash(filepath.Clean(path))
	var b strings.Builder
	b.WriteString("file:")
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '%', '?', '#':
			fmt.Fprintf(&b, "%%%02X", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString("?mode=")
	b.WriteString(mode)
	return b.String()
}

// Run reports the table until ctx ends. It returns an error only when the
// file is missing at start and Create is off, or cannot be created; every
// later failure is retried with backoff and followed by a Full batch.
func (w *SQLite) Run(ctx context.Context, sink source.Sink) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("kamailio sqlite: Run called while already running")
	}
	defer w.running.Store(false)
	if err := w.ensureFile(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	backoff := minBackoff
	down := false
	up := func() {
		backoff = minBackoff
		if down {
			down = false
			w.log.Info("location table readable again")
		}
	}
	for {
		err := w.watch(ctx, sink, up)
		if ctx.Err() != nil {
			return nil
		}
		var delay time.Duration
		switch {
		case errors.Is(err, errReplaced):
			// A new file at the path (restored backup, Kamailio
			// re-created it): reopen now.
			w.log.Info("database file replaced, reopening")
		case !down:
			down = true
			w.log.Warn("location table unreadable, retrying", "err", err)
			delay = backoff
		default:
			w.log.Debug("location table still unreadable", "err", err)
			delay = backoff
		}
		if delay > 0 {
			backoff = min(2*backoff, maxBackoff)
			if !sleep(ctx, delay) {
				return nil
			}
		}
	}
}

// ensureFile applies Create and tells a missing file (configuration) from
// an unreadable one (outage, retried by Run).
func (w *SQLite) ensureFile(ctx context.Context) error {
	fi, err := os.Stat(w.cfg.Path)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Errorf("kamailio sqlite: %s is a directory, not a database file", w.cfg.Path)
	case err == nil || !errors.Is(err, fs.ErrNotExist):
		return nil
	case !w.cfg.Create:
		return fmt.Errorf("kamailio sqlite: database file %s does not exist (and Create is off)", w.cfg.Path)
	}
	created, err := createDatabase(ctx, w.cfg.Path, w.cfg.Table)
	if err != nil {
		return fmt.Errorf("kamailio sqlite: %w", err)
	}
	if created {
		w.log.Info("created database file with Kamailio location schema in WAL mode")
	}
	return nil
}

// errReplaced reports that the path now names another file than the one
// open.
var errReplaced = errors.New("database file replaced")

// watch opens the file, sends a Full batch, then polls data_version and
// sends a Full batch after each change, until ctx ends or a read fails.
// up is called once the first batch of this connection was delivered.
func (w *SQLite) watch(ctx context.Context, sink source.Sink, up func()) error {
	// Stat before opening: if the file is swapped in between, the next
	// identity check sees the difference and we reopen.
	opened, err := os.Stat(w.cfg.Path)
	if err != nil {
		return err
	}
	db, err := sql.Open(driverName, w.dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	// One connection does everything: data_version is only meaningful
	// when asked on the same connection, and each extra connection
	// would hold its own page cache and file handles.
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("opening: %w", err)
	}
	defer conn.Close()
	if err := w.checkJournalMode(ctx, conn); err != nil {
		return err
	}
	stmt, err := conn.PrepareContext(ctx, w.query)
	if err != nil {
		return fmt.Errorf("preparing snapshot query: %w", err)
	}
	defer stmt.Close()
	dv, err := conn.PrepareContext(ctx, "PRAGMA data_version")
	if err != nil {
		return fmt.Errorf("preparing data_version: %w", err)
	}
	defer dv.Close()

	// data_version is read before each snapshot, so a commit landing
	// between the two shows up as a change at the next poll.
	seen, err := dataVersion(ctx, dv)
	if err != nil {
		return err
	}
	seenAt := time.Now()
	if err := w.snapshot(ctx, stmt); err != nil {
		return err
	}
	sinkOK := w.deliver(ctx, sink, seenAt, true)
	up()

	tick := time.NewTicker(w.cfg.PollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := sameFile(w.cfg.Path, opened); err != nil {
			return err
		}
		v, err := dataVersion(ctx, dv)
		if err != nil {
			return err
		}
		if w.pollHook != nil {
			w.pollHook()
		}
		if v == seen && sinkOK {
			continue
		}
		seenAt := time.Now()
		if err := w.snapshot(ctx, stmt); err != nil {
			return err
		}
		seen = v
		sinkOK = w.deliver(ctx, sink, seenAt, sinkOK)
	}
}

// deliver hands the current snapshot to sink. A failing sink is not a
// store outage: the snapshot is simply read and offered again at the next
// poll. wasOK is the previous outcome, so a failure is logged once.
func (w *SQLite) deliver(ctx context.Context, sink source.Sink, seenAt time.Time, wasOK bool) bool {
	err := sink.Apply(ctx, source.Batch{Full: true, Contacts: w.contacts, SeenAt: seenAt})
	switch {
	case err == nil:
		if !wasOK {
			w.log.Info("sink accepts batches again")
		}
		return true
	case ctx.Err() != nil:
		return false
	default:
		if wasOK {
			w.log.Warn("sink rejected snapshot, offering it again at next poll", "err", err)
		}
		return false
	}
}

func sameFile(path string, opened os.FileInfo) error {
	now, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !os.SameFile(opened, now) {
		return errReplaced
	}
	return nil
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
