package sqlwatch

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

	_ "modernc.org/sqlite" // registers SQLiteDriver
)

// SQLiteDriver is modernc.org/sqlite's database/sql driver name.
const SQLiteDriver = "sqlite"

// sqliteBusyTimeoutMS lets a read wait out a writer briefly (WAL recovery,
// or a rollback-journal COMMIT) instead of failing at once.
const sqliteBusyTimeoutMS = 1000

// SQLite reads a registrar's SQLite file (a registrar writes it, regbridge
// only reads). The change check is PRAGMA data_version on one dedicated
// connection: exact, one page read, so run the Watcher with
// ReconcileInterval Never and keep read transactions rare and tiny. The
// file is opened read-only; a file replaced at the path (a restored backup)
// is reopened (ErrReopen).
type SQLite struct {
	path string
	dsn  string
	// journalFix is the registrar setting that puts its file in WAL
	// mode, named in the warning when the file is not.
	journalFix string
	log        *slog.Logger
	warned     atomic.Bool
}

// NewSQLite returns a dialect for the file at path; it does no I/O.
// journalFix is what the warning tells the operator to configure when the
// file is not in WAL mode (for Kamailio a db_sqlite modparam).
func NewSQLite(path, journalFix string, log *slog.Logger) *SQLite {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SQLite{
		path: path,
		// mode=ro works only in the file: URI form (a plain path silently
		// opens read-write and creates missing files).
		dsn:        FileDSN(path, "ro") + fmt.Sprintf("&_pragma=busy_timeout(%d)", sqliteBusyTimeoutMS),
		journalFix: journalFix,
		log:        log,
	}
}

// CheckFile tells a configuration error (no file at the path, or a
// directory) from an outage; call it once before Run, which retries
// everything else.
func (d *SQLite) CheckFile() error {
	fi, err := os.Stat(d.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &NoFileError{Path: d.path}
	case err == nil && fi.IsDir():
		return fmt.Errorf("%s is a directory, not a database file", d.path)
	}
	return nil // readable or not: Run retries
}

// NoFileError says no database file exists at the configured path: a
// configuration error (the registrar writes another file, or has not
// created it yet), not an outage.
type NoFileError struct{ Path string }

func (e *NoFileError) Error() string { return "database file " + e.Path + " does not exist" }

// DSN is the read-only data source name the dialect opens.
func (d *SQLite) DSN() string { return d.dsn }

// FileDSN is an SQLite URI for path with the given mode. SQLite decodes
// %HH in URI paths, so '%', '?' and '#' in the name must be escaped;
// cleaning first turns a leading "//" (an authority) into "/".
func FileDSN(path, mode string) string {
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

// QuoteSQLite quotes an identifier with double quotes.
func QuoteSQLite(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Open opens the file read-only on one connection and probes the table.
func (d *SQLite) Open(ctx context.Context, t *Table) (Session, error) {
	opened, db, conn, err := OpenFile(ctx, d.path, d.dsn)
	if err != nil {
		return nil, err
	}
	s := &sqliteSession{
		sqlSession: sqlSession{db: db, conn: conn, snapshot: SnapshotQuery(t, QuoteSQLite), row: make([]Value, len(t.Columns))},
		d:          d,
		opened:     opened,
	}
	if err := d.checkJournalMode(ctx, conn); err != nil {
		s.Close()
		return nil, err
	}
	err = t.checkColumns(sqlNames(ctx, conn, sqliteColumnsQuery(t)))
	if err == nil {
		err = s.probe(ctx, ProbeQuery(t, QuoteSQLite))
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// OpenFile opens the SQLite file at path (dsn, from FileDSN) on one
// connection and returns that connection with the file's identity as it
// was before opening: if the file is swapped in between, the next
// identity check (os.SameFile) sees the difference and the caller
// reopens. One connection does everything: data_version is only
// meaningful when asked on the same connection, and each extra connection
// would hold its own page cache and file handles.
func OpenFile(ctx context.Context, path, dsn string) (os.FileInfo, *sql.DB, *sql.Conn, error) {
	opened, err := os.Stat(path)
	if err != nil {
		return nil, nil, nil, err
	}
	db, err := sql.Open(SQLiteDriver, dsn)
	if err != nil {
		return nil, nil, nil, err
	}
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		db.Close()
		return nil, nil, nil, err
	}
	return opened, db, conn, nil
}

// checkJournalMode warns, once per dialect, when the file is not in WAL
// mode. We must not switch it ourselves (a mode=ro connection cannot, and
// the registrar owns the file).
func (d *SQLite) checkJournalMode(ctx context.Context, conn *sql.Conn) error {
	var mode string
	if err := conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("reading journal_mode: %w", err)
	}
	if strings.EqualFold(mode, "wal") || !d.warned.CompareAndSwap(false, true) {
		return nil
	}
	// Loud on purpose: in rollback-journal mode every read we make holds
	// a lock that can make the registrar's COMMIT fail at once (registrars
	// set no busy timeout), and the registration is lost.
	d.log.Warn("DATABASE NOT IN WAL MODE: registrar writes can fail with \"database is locked\" while regbridge reads, losing registrations; "+
		"set the fix in the registrar's configuration (the file name must match its db_url path exactly) and restart it",
		"journal_mode", mode, "fix", d.journalFix)
	return nil
}

type sqliteSession struct {
	sqlSession
	d      *SQLite
	opened os.FileInfo
}

// errReplaced reports that the path now names another file than the one
// open.
var errReplaced = fmt.Errorf("database file replaced: %w", ErrReopen)

// Fingerprint is PRAGMA data_version, which moves when another connection
// commits; a file replaced at the path is reported as ErrReopen.
func (s *sqliteSession) Fingerprint(ctx context.Context) (string, error) {
	now, err := os.Stat(s.d.path)
	if err != nil {
		return "", err
	}
	if !os.SameFile(s.opened, now) {
		return "", errReplaced
	}
	var v int64
	if err := s.conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v); err != nil {
		return "", fmt.Errorf("reading data_version: %w", err)
	}
	return strconv.FormatInt(v, 10), nil
}
