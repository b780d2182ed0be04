package sqlwatch

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
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
	cfg, err := e.MySQLConfig()
	if err != nil {
		return nil, err
	}
	return &MySQL{cfg: cfg}, nil
}

// MySQLConfig is the go-sql-driver configuration of e: TCP, a connect
// timeout, and the driver parameters (DriverParams) checked.
func (e Endpoint) MySQLConfig() (*mysql.Config, error) {
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
	return cfg, nil
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
	s := &mysqlSession{sqlSession: sqlSession{db: db, row: make([]Value, len(t.Columns)+1)}, t: t}
	s.snapshot = hashedQuery(t, QuoteMySQL, mysqlHash(t))
	s.fingerprint = mysqlFingerprint(t)
	err = t.checkColumns(sqlNames(ctx, db, mysqlColumnsQuery(t)))
	if err == nil {
		err = s.probe(ctx, ProbeQuery(t, QuoteMySQL))
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// mysqlHash is the per-row hash the fingerprint sums.
func mysqlHash(t *Table) string {
	return fmt.Sprintf("CRC32(CONCAT_WS('|', %s))", selectList(t.Watch, QuoteMySQL))
}

// hashedQuery is the full read of t with each row's hash as the last
// column.
func hashedQuery(t *Table, quote func(string) string, hash string) string {
	return "SELECT " + selectList(t.Columns, quote) + ", " + hash + " FROM " + quote(t.Name)
}

// mysqlSession is a MySQL/MariaDB session; it can read parts of the table.
type mysqlSession struct {
	sqlSession
	t *Table
}

var _ Partial = (*mysqlSession)(nil)

func (s *mysqlSession) Quote(id string) string { return QuoteMySQL(id) }

func (s *mysqlSession) Aggregate(ctx context.Context) (int64, int64, error) {
	return aggregate(s.Fingerprint(ctx))
}

func (s *mysqlSession) Where(ctx context.Context, cond string, fn func(row []Value)) error {
	return s.query(ctx, s.snapshot+" WHERE "+cond, fn)
}

func (s *mysqlSession) Keys(ctx context.Context, fn func(key []byte)) error {
	rows, err := s.q().QueryContext(ctx, "SELECT "+QuoteMySQL(s.t.Columns[s.t.Key])+" FROM "+QuoteMySQL(s.t.Name))
	if err != nil {
		return err
	}
	defer rows.Close()
	var v Value
	var b []byte
	for rows.Next() {
		if err := rows.Scan(&v); err != nil {
			return err
		}
		b = v.AppendText(b[:0])
		fn(b)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	return rows.Close()
}

func (s *mysqlSession) Since(col string, v *Value, slack time.Duration) (string, bool) {
	return sinceCond(QuoteMySQL(col), v, slack, func(wall string, sec int64) string {
		return fmt.Sprintf("CAST('%s' AS DATETIME(6)) - INTERVAL %d SECOND", wall, sec)
	})
}

func (s *mysqlSession) Consistent(ctx context.Context, fn func() error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return err
	}
	s.tx = tx
	defer func() { s.tx = nil }()
	if err := fn(); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// aggregate parses a server fingerprint ("rows,sum,").
func aggregate(fp string, err error) (int64, int64, error) {
	if err != nil {
		return 0, 0, err
	}
	a, rest, _ := strings.Cut(fp, ",")
	b, _, _ := strings.Cut(rest, ",")
	n, err1 := strconv.ParseInt(a, 10, 64)
	sum, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("fingerprint %q is not two integers", fp)
	}
	return n, sum, nil
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
	tx          *sql.Tx   // when set, every query runs in it (Consistent)
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
	if s.tx != nil {
		return s.tx
	}
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
	return s.query(ctx, s.snapshot, fn)
}

func (s *sqlSession) query(ctx context.Context, query string, fn func(row []Value)) error {
	rows, err := s.q().QueryContext(ctx, query)
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
