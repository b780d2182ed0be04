package main

// SQL stores (SQLite, MariaDB/MySQL, PostgreSQL) written as Kamailio's usrloc
// writes them in db_mode 1 or 3: an INSERT per new binding, and per
// re-REGISTER one autocommitted `UPDATE ... WHERE ruid = ?` of the columns
// usrloc rewrites (docs/stores.md#how-store-changes-become-events), with
// times encoded as the database module does (docs/stores.md#time-encoding):
// REAL Julian days for db_sqlite, local-time text for db_mysql and
// db_postgres. regload writes that text in UTC, so a regbridge reading a
// MySQL or PostgreSQL store must be told the registrar runs in UTC.

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite"

	"github.com/regbridge/regbridge/source/kamailio"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// dialect is what differs between the SQL stores.
type dialect struct {
	driver      string
	quote       func(string) string
	placeholder func(n int) string
	timeValue   func(time.Time) any
	schema      func(table string) []string
}

var (
	sqliteDialect = dialect{
		driver:      "sqlite",
		quote:       sqlwatch.QuoteSQLite,
		placeholder: func(int) string { return "?" },
		timeValue:   func(t time.Time) any { return kamailio.TimeToJulian(t) },
		schema:      kamailio.SQLiteSchema,
	}
	mysqlDialect = dialect{
		driver:      "mysql",
		quote:       sqlwatch.QuoteMySQL,
		placeholder: func(int) string { return "?" },
		timeValue:   func(t time.Time) any { return t.UTC().Format(time.DateTime) },
		schema:      kamailio.MySQLSchema,
	}
	postgresDialect = dialect{
		driver:      "pgx", // used through pgx itself, not database/sql
		quote:       sqlwatch.QuotePostgres,
		placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
		timeValue:   func(t time.Time) any { return t.UTC() }, // pgx writes the wall clock
		schema:      kamailio.PostgresSchema,
	}
)

// insertBatch is how many rows one INSERT statement of prepare carries.
const insertBatch = 200

// insertColumns are the columns usrloc's INSERT names (NULL-default ones it
// has no value for are left out, as with db_insert_null=0).
var insertColumns = []string{"ruid", "username", "domain", "contact", "expires", "q", "callid", "cseq",
	"last_modified", "flags", "cflags", "user_agent", "socket", "reg_id", "server_id", "connection_id",
	"keepalive", "partition"}

// conn is one connection to an SQL store. exec runs one statement that
// returns no rows (a prepared one, cached per query) and returns the rows
// it affected; query runs one that returns rows, and discards them.
//
// A statement that returns rows must never go through exec: on MariaDB
// 10.6+ go-sql-driver/mysql (v1.10.1) executes it as a prepared statement
// whose column metadata the server leaves out as cached
// (MARIADB_CLIENT_CACHE_METADATA), and its Exec then skips the missing
// column packets anyway, reading the result's end as a column and waiting
// forever for one more packet (an interrupt turns that into "driver: bad
// connection"). Query, without arguments, uses the text protocol.
type conn interface {
	exec(ctx context.Context, query string, args ...any) (int64, error)
	query(ctx context.Context, query string) error
	close() error
}

// stdConn is a database/sql connection (SQLite, MySQL) pinned for its
// writer, with its prepared statements.
type stdConn struct {
	c     *sql.Conn
	stmts map[string]*sql.Stmt
}

func (c *stdConn) exec(ctx context.Context, query string, args ...any) (int64, error) {
	stmt, ok := c.stmts[query]
	if !ok {
		var err error
		if stmt, err = c.c.PrepareContext(ctx, query); err != nil {
			return 0, err
		}
		c.stmts[query] = stmt
	}
	res, err := stmt.ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c *stdConn) query(ctx context.Context, query string) error {
	rows, err := c.c.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	if err := rows.Close(); err != nil { // reads what is left
		return err
	}
	return rows.Err()
}

func (c *stdConn) close() error {
	for _, s := range c.stmts {
		s.Close()
	}
	return c.c.Close()
}

// pgxConn is a PostgreSQL connection; pgx prepares and caches statements.
type pgxConn struct{ c *pgx.Conn }

func (c *pgxConn) exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := c.c.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (c *pgxConn) query(ctx context.Context, query string) error {
	rows, err := c.c.Query(ctx, query)
	if err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

func (c *pgxConn) close() error { return c.c.Close(context.Background()) }

type sqlStore struct {
	d     dialect
	db    *sql.DB // nil for PostgreSQL
	conns []conn  // one per writer; conns[0] also sets up and cleans up
	table string
	query string // the refresh UPDATE
}

// openSQL opens s with one connection per writer. A missing SQLite file
// is created (in WAL mode by prepare), as regbridge's create=true would.
func openSQL(ctx context.Context, s storeSpec, writers int, sqliteSync string) (*sqlStore, error) {
	st := &sqlStore{table: s.table}
	switch s.kind {
	case "sqlite":
		st.d = sqliteDialect
		writers = 1 // one writer at a time is all SQLite has
	case "mysql":
		st.d = mysqlDialect
	case "postgres":
		st.d = postgresDialect
	default:
		return nil, fmt.Errorf("store kind %q", s.kind)
	}
	if s.kind == "postgres" {
		for range writers {
			c, err := pgx.Connect(ctx, s.dsn)
			if err != nil {
				st.close()
				return nil, fmt.Errorf("connecting to postgres store: %w", err)
			}
			st.conns = append(st.conns, &pgxConn{c})
		}
		return st, nil
	}
	dsn := s.dsn
	if s.kind == "sqlite" {
		dsn = sqliteDSN(s.path, sqliteSync)
	}
	db, err := sql.Open(st.d.driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("opening %s store: %w", s.kind, err)
	}
	st.db = db
	db.SetMaxOpenConns(writers)
	db.SetMaxIdleConns(writers)
	for range writers {
		c, err := db.Conn(ctx)
		if err != nil {
			st.close()
			return nil, fmt.Errorf("connecting to %s store: %w", s.kind, err)
		}
		st.conns = append(st.conns, &stdConn{c: c, stmts: map[string]*sql.Stmt{}})
	}
	return st, nil
}

// sqliteDSN is an SQLite URI for path (sqlwatch.FileDSN, read-write)
// with a busy timeout and, when asked, a synchronous mode. db_sqlite leaves
// synchronous at SQLite's default, FULL: one fsync per commit.
func sqliteDSN(path, sync string) string {
	dsn := sqlwatch.FileDSN(path, "rwc") + "&_pragma=busy_timeout(5000)"
	if sync != "" {
		dsn += "&_pragma=synchronous(" + sync + ")"
	}
	return dsn
}

func (s *sqlStore) prepare(ctx context.Context, rows []row) error {
	c, q := s.conns[0], s.d.quote
	if probeErr := c.query(ctx, "SELECT 1 FROM "+q(s.table)+" WHERE 1 = 0"); probeErr != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("looking for table %s: %w", s.table, probeErr)
		}
		if s.d.driver == "sqlite" {
			// A new file: WAL first, so that regbridge's reads never make
			// our commits fail (docs/stores.md#kamailio).
			if _, err := c.exec(ctx, "PRAGMA journal_mode=WAL"); err != nil {
				return fmt.Errorf("setting WAL mode: %w", err)
			}
		}
		for _, stmt := range s.d.schema(s.table) {
			if _, err := c.exec(ctx, stmt); err != nil {
				// Both errors: an unreadable table need not be a missing one.
				return fmt.Errorf("creating table %s (reading it: %v): %w", s.table, probeErr, err)
			}
		}
	}
	cols := make([]string, len(insertColumns))
	for i, col := range insertColumns {
		cols[i] = q(col)
	}
	head := "INSERT INTO " + q(s.table) + " (" + strings.Join(cols, ", ") + ") VALUES "
	if _, err := c.exec(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("inserting rows: %w", err)
	}
	for len(rows) > 0 {
		n := min(len(rows), insertBatch)
		var b strings.Builder
		b.WriteString(head)
		args := make([]any, 0, n*len(insertColumns))
		for i := range rows[:n] {
			r := &rows[i]
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('(')
			for j := range insertColumns {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString(s.d.placeholder(len(args) + j + 1))
			}
			b.WriteByte(')')
			args = append(args, r.ruid, r.user, r.domain, r.contact, s.d.timeValue(r.expires), -1.0,
				r.callid, int64(r.cseq), s.d.timeValue(r.modified), 0, 0, "regload", "udp:127.0.0.1:5060",
				0, 0, -1, 0, 0)
		}
		if _, err := c.exec(ctx, b.String(), args...); err != nil {
			_, _ = c.exec(ctx, "ROLLBACK")
			return fmt.Errorf("inserting rows: %w", err)
		}
		rows = rows[n:]
	}
	if _, err := c.exec(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("inserting rows: %w", err)
	}
	var b strings.Builder
	b.WriteString("UPDATE " + q(s.table) + " SET ")
	for i, col := range updateColumns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(q(col) + " = " + s.d.placeholder(i+1))
	}
	b.WriteString(" WHERE " + q("ruid") + " = " + s.d.placeholder(len(updateColumns)+1))
	s.query = b.String()
	return nil
}

// updateColumns are the columns usrloc's refresh UPDATE rewrites.
var updateColumns = []string{"expires", "q", "cseq", "flags", "cflags", "user_agent", "received", "path",
	"socket", "methods", "last_modified", "callid", "instance", "reg_id", "server_id", "connection_id",
	"keepalive", "contact"}

func (s *sqlStore) refresh(ctx context.Context, w int, rows []row) error {
	c := s.conns[w%len(s.conns)]
	if len(rows) == 1 {
		return s.update(ctx, c, &rows[0]) // autocommit, as usrloc writes
	}
	if _, err := c.exec(ctx, "BEGIN"); err != nil {
		return err
	}
	for i := range rows {
		if err := s.update(ctx, c, &rows[i]); err != nil {
			_, _ = c.exec(ctx, "ROLLBACK")
			return err
		}
	}
	_, err := c.exec(ctx, "COMMIT")
	return err
}

// update runs the refresh UPDATE of one binding on c.
func (s *sqlStore) update(ctx context.Context, c conn, r *row) error {
	n, err := c.exec(ctx, s.query, s.d.timeValue(r.expires), -1.0, int64(r.cseq), 0, 0, "regload",
		nil, nil, "udp:127.0.0.1:5060", nil, s.d.timeValue(r.modified), r.callid, nil, 0, 0, -1, 0,
		r.contact, r.ruid)
	if err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("UPDATE of ruid %s changed %d rows", r.ruid, n)
	}
	return nil
}

func (s *sqlStore) cleanup(ctx context.Context, rows []row) error {
	for len(rows) > 0 {
		n := min(len(rows), insertBatch)
		var b strings.Builder
		b.WriteString("DELETE FROM " + s.d.quote(s.table) + " WHERE " + s.d.quote("ruid") + " IN (")
		args := make([]any, n)
		for i := range rows[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(s.d.placeholder(i + 1))
			args[i] = rows[i].ruid
		}
		b.WriteByte(')')
		if _, err := s.conns[0].exec(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("removing rows: %w", err)
		}
		rows = rows[n:]
	}
	return nil
}

func (s *sqlStore) close() error {
	for _, c := range s.conns {
		c.close()
	}
	if s.db != nil {
		return s.db.Close()
	}
	return nil
}
