package sqlwatch

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// mysqlDialTimeout bounds a connect; the query timeout bounds the rest.
const mysqlDialTimeout = 10 * time.Second

// MySQL reads MySQL and MariaDB through database/sql with the text
// protocol (queries without parameters) and without parseTime, so DATETIME
// arrives as the server's text, unconverted: the registrar's wall clock, to
// be decoded in the registrar's time zone. (The driver parses integers and
// floats itself, and database/sql's driver interface boxes every non-NULL
// value: about one small allocation per column and row, which only a
// non-database/sql client could avoid.) The session keeps the server's
// default time_zone, like the registrar's own sessions, so even a
// TIMESTAMP column reads back as the text it wrote.
type MySQL struct {
	cfg *mysql.Config
}

// NewMySQL checks e and returns a dialect; it does no I/O.
func NewMySQL(e Endpoint) (*MySQL, error) {
	cfg := mysql.NewConfig()
	cfg.Net = "tcp"
	cfg.Addr = e.Addr
	cfg.User = e.User
	cfg.Passwd = e.Password
	cfg.DBName = e.Database
	cfg.Timeout = mysqlDialTimeout
	for k, v := range e.Params {
		switch k {
		case "tls":
			switch v {
			case "true", "false", "skip-verify", "preferred":
				cfg.TLSConfig = v
			default:
				return nil, fmt.Errorf("mysql: tls=%q: want true, false, skip-verify or preferred", v)
			}
		default:
			return nil, fmt.Errorf("mysql: unknown parameter %q", k)
		}
	}
	return &MySQL{cfg: cfg}, nil
}

// QuoteMySQL quotes an identifier with backticks, which MySQL accepts
// whatever its sql_mode; reserved words such as Kamailio's `partition`
// column need it.
func QuoteMySQL(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// Open connects and probes the table's column types.
func (d *MySQL) Open(ctx context.Context, t *Table) (Session, error) {
	conn, err := mysql.NewConnector(d.cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	// Polls run one after another: one connection, kept open.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	s := &sqlSession{db: db, snapshot: SnapshotQuery(t, QuoteMySQL), row: make([]Value, len(t.Columns))}
	s.fingerprint = mysqlFingerprint(t)
	if err := s.probe(ctx, ProbeQuery(t, QuoteMySQL)); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// mysqlFingerprint counts the rows and sums a CRC32 of each row's watched
// columns: one pass over the table in the server, one short row back.
// CONCAT_WS skips NULLs, so the separator keeps ('a', NULL) and (NULL,
// 'a') apart only together with the count; good enough for a change hint
// backed by the periodic reconcile.
func mysqlFingerprint(t *Table) string {
	return fmt.Sprintf("SELECT COUNT(*), COALESCE(SUM(CRC32(CONCAT_WS('|', %s))), 0) FROM %s",
		selectList(t.Watch, QuoteMySQL), QuoteMySQL(t.Name))
}

// sqlSession is a Session over database/sql (MySQL and SQLite share it).
type sqlSession struct {
	db          *sql.DB
	conn        *sql.Conn // when set, every query runs on it (SQLite)
	snapshot    string
	fingerprint string
	types       []string
	row         []Value
	dest        []any
	fpBuf       []byte
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *sqlSession) q() queryer {
	if s.conn != nil {
		return s.conn
	}
	return s.db
}

func (s *sqlSession) probe(ctx context.Context, query string) error {
	rows, err := s.q().QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	cts, err := rows.ColumnTypes()
	if err != nil {
		return err
	}
	s.types = make([]string, len(cts))
	for i, ct := range cts {
		s.types[i] = strings.ToUpper(ct.DatabaseTypeName())
	}
	s.dest = make([]any, len(s.row))
	for i := range s.row {
		s.dest[i] = &s.row[i]
	}
	return rows.Close()
}

func (s *sqlSession) Types() []string { return s.types }

// Fingerprint runs the fingerprint query and joins its columns as text.
func (s *sqlSession) Fingerprint(ctx context.Context) (string, error) {
	rows, err := s.q().QueryContext(ctx, s.fingerprint)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return "", err
		}
		return "", fmt.Errorf("fingerprint query returned no row")
	}
	cols, err := rows.Columns()
	if err != nil {
		return "", err
	}
	dest := make([]any, len(cols))
	vals := make([]Value, len(cols))
	for i := range vals {
		dest[i] = &vals[i]
	}
	if err := rows.Scan(dest...); err != nil {
		return "", err
	}
	b := s.fpBuf[:0]
	for i := range vals {
		b = vals[i].AppendText(b)
		b = append(b, ',')
	}
	s.fpBuf = b
	fp := string(b)
	return fp, rows.Close()
}

func (s *sqlSession) Snapshot(ctx context.Context, fn func(row []Value)) error {
	rows, err := s.q().QueryContext(ctx, s.snapshot)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(s.dest...); err != nil {
			return err
		}
		fn(s.row)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

func (s *sqlSession) Close() error {
	if s.conn != nil {
		s.conn.Close()
	}
	return s.db.Close()
}
