package sqlwatch

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// pgConnectTimeout is the connect_timeout (seconds) used unless the
	// URL sets one.
	pgConnectTimeout = 10
	// pgCloseTimeout bounds the goodbye to a server that may be gone.
	pgCloseTimeout = 2 * time.Second
)

// Postgres reads PostgreSQL with pgx's simple query protocol, so every
// column arrives as the server's text (a TIMESTAMP WITHOUT TIME ZONE is the
// registrar's wall clock, unconverted) and rows are decoded straight from
// pgx's buffers. The changelog feed (changelog.go), shared with MySQL,
// goes through database/sql on pgx's stdlib adapter.
type Postgres struct {
	cfg *pgx.ConnConfig
}

// NewPostgres checks e and returns a dialect; it does no I/O.
func NewPostgres(e Endpoint) (*Postgres, error) {
	cfg, err := pgx.ParseConfig(e.PostgresURL())
	if err != nil {
		// pgx's error may quote the connection string: keep the password out.
		return nil, fmt.Errorf("postgres: bad connection settings for %s/%s", e.Addr, e.Database)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	return &Postgres{cfg: cfg}, nil
}

// PostgresURL is the connection string of e, with a connect_timeout
// unless the parameters set one. It holds the password: never log it.
func (e Endpoint) PostgresURL() string {
	u := url.URL{Scheme: "postgres", Host: e.Addr, Path: "/" + e.Database}
	if e.User != "" {
		u.User = url.UserPassword(e.User, e.Password)
		if e.Password == "" {
			u.User = url.User(e.User)
		}
	}
	q := url.Values{}
	for k, v := range e.Params {
		q.Set(k, v)
	}
	if q.Get("connect_timeout") == "" {
		q.Set("connect_timeout", strconv.Itoa(pgConnectTimeout))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// QuotePostgres quotes an identifier with double quotes.
func QuotePostgres(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Open connects and probes the table's column types.
func (d *Postgres) Open(ctx context.Context, t *Table) (Session, error) {
	conn, err := pgx.ConnectConfig(ctx, d.cfg)
	if err != nil {
		return nil, err
	}
	s := &pgSession{
		conn:        conn,
		t:           t,
		snapshot:    hashedQuery(t, QuotePostgres, pgHash(t)),
		fingerprint: pgFingerprint(t),
		row:         make([]Value, len(t.Columns)+1),
	}
	err = t.checkColumns(pgColumnNames(ctx, conn, postgresColumnsQuery(t)))
	if err == nil {
		err = s.probe(ctx, ProbeQuery(t, QuotePostgres))
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// pgFingerprint counts the rows and sums hashtext() of each row's watched
// columns (concat_ws renders each in its text form): one pass in the
// server, one short row back.
func pgFingerprint(t *Table) string {
	return fmt.Sprintf("SELECT count(*), coalesce(sum(hashtext(concat_ws('|', %s))), 0) FROM %s",
		selectList(t.Watch, QuotePostgres), QuotePostgres(t.Name))
}

// pgHash is the per-row hash the fingerprint sums.
func pgHash(t *Table) string {
	return fmt.Sprintf("hashtext(concat_ws('|', %s))", selectList(t.Watch, QuotePostgres))
}

type pgSession struct {
	conn        *pgx.Conn
	t           *Table
	snapshot    string
	fingerprint string
	types       []string
	row         []Value
	fpBuf       []byte
}

func (s *pgSession) probe(ctx context.Context, query string) error {
	rows, err := s.conn.Query(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		return err
	}
	fds := rows.FieldDescriptions()
	s.types = make([]string, len(fds))
	for i, fd := range fds {
		name := fmt.Sprintf("OID%d", fd.DataTypeOID)
		if typ, ok := s.conn.TypeMap().TypeForOID(fd.DataTypeOID); ok {
			name = typ.Name
		}
		s.types[i] = strings.ToUpper(name)
	}
	return nil
}

func (s *pgSession) Types() []string { return s.types }

func (s *pgSession) Fingerprint(ctx context.Context) (string, error) {
	rows, err := s.conn.Query(ctx, s.fingerprint)
	if err != nil {
		return "", err
	}
	defer rows.Close()
	b := s.fpBuf[:0]
	n := 0
	for rows.Next() {
		n++
		for _, raw := range rows.RawValues() {
			b = append(b, raw...)
			b = append(b, ',')
		}
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	if n != 1 {
		return "", fmt.Errorf("fingerprint query returned %d rows", n)
	}
	s.fpBuf = b
	return string(b), nil
}

func (s *pgSession) Snapshot(ctx context.Context, fn func(row []Value)) error {
	return s.query(ctx, s.snapshot, fn)
}

var _ Partial = (*pgSession)(nil)

func (s *pgSession) Quote(id string) string { return QuotePostgres(id) }

func (s *pgSession) Aggregate(ctx context.Context) (int64, int64, error) {
	return aggregate(s.Fingerprint(ctx))
}

func (s *pgSession) Where(ctx context.Context, cond string, fn func(row []Value)) error {
	return s.query(ctx, s.snapshot+" WHERE "+cond, fn)
}

func (s *pgSession) Keys(ctx context.Context, fn func(key []byte)) error {
	rows, err := s.conn.Query(ctx, "SELECT "+QuotePostgres(s.t.Columns[s.t.Key])+" FROM "+QuotePostgres(s.t.Name))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		fn(rows.RawValues()[0])
	}
	return rows.Err()
}

func (s *pgSession) Since(col string, v *Value, slack time.Duration) (string, bool) {
	return sinceCond(QuotePostgres(col), v, slack, func(wall string, sec int64) string {
		return fmt.Sprintf("TIMESTAMP '%s' - INTERVAL '%d seconds'", wall, sec)
	})
}

func (s *pgSession) Consistent(ctx context.Context, fn func() error) error {
	tx, err := s.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	if err := fn(); err != nil {
		tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}

// pgColumnNames runs query, which returns one column name per row.
func pgColumnNames(ctx context.Context, conn *pgx.Conn, query string) ([]string, error) {
	rows, err := conn.Query(ctx, query)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// inSnapshot runs fn in a read-only REPEATABLE READ transaction that sees
// the exported snapshot name (a replication slot's starting point).
func (s *pgSession) inSnapshot(ctx context.Context, name string, fn func() error) error {
	for _, c := range name {
		if !(c == '-' || '0' <= c && c <= '9' || 'A' <= c && c <= 'F' || 'a' <= c && c <= 'f') {
			return fmt.Errorf("unexpected snapshot name %q", name)
		}
	}
	return s.Consistent(ctx, func() error {
		if _, err := s.conn.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+name+"'"); err != nil {
			return fmt.Errorf("importing the slot's snapshot: %w", err)
		}
		return fn()
	})
}

func (s *pgSession) query(ctx context.Context, query string, fn func(row []Value)) error {
	rows, err := s.conn.Query(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		raw := rows.RawValues()
		if len(raw) != len(s.row) {
			return fmt.Errorf("snapshot returned %d columns, want %d", len(raw), len(s.row))
		}
		for i, b := range raw {
			s.row[i].SetText(b)
		}
		fn(s.row)
	}
	return rows.Err()
}

func (s *pgSession) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), pgCloseTimeout)
	defer cancel()
	return s.conn.Close(ctx)
}
