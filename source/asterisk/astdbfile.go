package asterisk

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

const (
	// settleWindow is how long after the file last changed the change
	// check also asks PRAGMA data_version: a commit landing in the same
	// file-time tick as the previous one leaves mtime and size alone on
	// file systems with coarse timestamps. After that the check is a
	// stat() only, which takes no lock at all.
	settleWindow = 2 * time.Second
	// maxJournalWait is how long a read waits while Asterisk's rollback
	// journal exists. Asterisk always keeps a write transaction open and
	// commits it at most once a second, without a busy timeout, rolling
	// the second's writes back if the COMMIT finds a reader
	// (docs/stores.md#astdb).
	// While the journal is there a COMMIT is due, so reading then is the
	// riskiest moment, and it would only see the old data anyway. The
	// bound keeps a journal left behind by a crash from stopping reads.
	maxJournalWait = 3 * time.Second
	// busyTimeoutMS lets our short read wait out Asterisk's COMMIT instead
	// of failing; it never makes Asterisk wait.
	busyTimeoutMS = 1000
)

// astdbFile is the sqlwatch.Dialect for AstDB: read-only, one connection,
// one indexed range query per read, and a change check that touches the
// database only after the file changed.
type astdbFile struct {
	path, prefix, upper string
	dsn                 string
	log                 *slog.Logger
	noted               atomic.Bool
}

func newAstDBFile(path, prefix string, log *slog.Logger) *astdbFile {
	return &astdbFile{
		path:   path,
		prefix: prefix,
		// The primary-key range of every key under prefix ("/" + 1 is
		// "0"): docs/stores.md#astdb.
		upper: prefix[:len(prefix)-1] + "0",
		// mode=ro only works in the file: URI form.
		dsn: sqlwatch.FileDSN(path, "ro") + fmt.Sprintf("&_pragma=busy_timeout(%d)", busyTimeoutMS),
		log: log,
	}
}

// Open opens the file read-only on one connection and checks the table.
func (d *astdbFile) Open(ctx context.Context, _ *sqlwatch.Table) (sqlwatch.Session, error) {
	opened, db, conn, err := sqlwatch.OpenFile(ctx, d.path, d.dsn)
	if err != nil {
		return nil, err
	}
	// SQLite follows a symbolic link and names its journal after the
	// target; so must the change check.
	real, err := filepath.EvalSymlinks(d.path)
	if err != nil {
		db.Close()
		return nil, err
	}
	s := &astdbSession{d: d, db: db, conn: conn, opened: opened, real: real}
	if err := s.check(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

type astdbSession struct {
	d      *astdbFile
	db     *sql.DB
	conn   *sql.Conn
	opened os.FileInfo
	real   string // d.path with symbolic links resolved

	sig          string    // file signature at the last check
	changed      time.Time // when sig last changed
	dv           string    // last data_version
	fp           string    // last fingerprint returned
	journalSince time.Time // when the journal was first seen, zero if absent
	row          [2]sqlwatch.Value
}

// check probes the table and notes the journal mode once.
func (s *astdbSession) check(ctx context.Context) error {
	rows, err := s.conn.QueryContext(ctx, "SELECT key, value FROM astdb WHERE 1 = 0")
	if err != nil {
		return fmt.Errorf("no astdb table: %w", err)
	}
	rows.Close()
	var mode string
	if err := s.conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("reading journal_mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") && s.d.noted.CompareAndSwap(false, true) {
		s.d.log.Info("AstDB uses a rollback journal: each read briefly locks the file, and an Asterisk COMMIT that meets the lock "+
			"is rolled back. regbridge reads only after the file changed, never while a write is pending, with one short range query; "+
			"on busy systems prefer realtime contacts (sorcery.conf contact=realtime,ps_contacts, then asterisk+mysql:// or asterisk+postgres://)",
			"journal_mode", mode)
	}
	return nil
}

func (s *astdbSession) Types() []string { return []string{"TEXT", "TEXT"} }

// Fingerprint changes when the file does. It stats the file (no lock);
// only after a change, or within settleWindow of one, does it ask PRAGMA
// data_version (a brief shared lock). While Asterisk's journal shows a
// pending write it reports no change, postponing the read (up to
// maxJournalWait). A file replaced at the path is sqlwatch.ErrReopen.
func (s *astdbSession) Fingerprint(ctx context.Context) (string, error) {
	sig, err := s.signature()
	if err != nil {
		return "", err
	}
	now := time.Now()
	if s.fp != "" && s.journalPending(now) {
		return s.fp, nil
	}
	if sig != s.sig {
		s.sig, s.changed = sig, now
	}
	if s.dv == "" || now.Sub(s.changed) < settleWindow {
		var v int64
		if err := s.conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
			return "", fmt.Errorf("reading data_version: %w", err)
		}
		s.dv = strconv.FormatInt(v, 10)
	}
	s.fp = sig + "|" + s.dv
	return s.fp, nil
}

// signature is the file's identity check plus what a COMMIT changes:
// the main file in rollback-journal mode, the -wal file in WAL mode.
func (s *astdbSession) signature() (string, error) {
	fi, err := os.Stat(s.d.path)
	if err != nil {
		return "", err
	}
	if !os.SameFile(s.opened, fi) {
		return "", fmt.Errorf("AstDB file replaced: %w", sqlwatch.ErrReopen)
	}
	sig := strconv.FormatInt(fi.ModTime().UnixNano(), 10) + "," + strconv.FormatInt(fi.Size(), 10)
	if wal, err := os.Stat(s.real + "-wal"); err == nil {
		sig += "," + strconv.FormatInt(wal.ModTime().UnixNano(), 10) + "," + strconv.FormatInt(wal.Size(), 10)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	return sig, nil
}

// journalPending reports whether a non-empty rollback journal says a
// write transaction is open, within maxJournalWait of first seeing it.
func (s *astdbSession) journalPending(now time.Time) bool {
	j, err := os.Stat(s.real + "-journal")
	if err != nil || j.Size() == 0 {
		s.journalSince = time.Time{}
		return false
	}
	if s.journalSince.IsZero() {
		s.journalSince = now
	}
	return now.Sub(s.journalSince) < maxJournalWait
}

// Snapshot reads the contacts with one range query on the primary key.
func (s *astdbSession) Snapshot(ctx context.Context, fn func(row []sqlwatch.Value)) error {
	rows, err := s.conn.QueryContext(ctx, "SELECT key, value FROM astdb WHERE key >= ? AND key < ?", s.d.prefix, s.d.upper)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&s.row[0], &s.row[1]); err != nil {
			return err
		}
		fn(s.row[:])
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

func (s *astdbSession) Close() error {
	s.conn.Close()
	return s.db.Close()
}
