// Package sqltest gives adapter tests a fresh database of their own on the
// local MariaDB/MySQL or PostgreSQL server (docs/design.md#tests-and-ci:
// each test makes its own database and cleans up). It
// is test support: production packages never import it.
//
// The servers are expected where the development machines and CI run them:
// MariaDB at 127.0.0.1:3306 (root, empty password) and PostgreSQL at
// 127.0.0.1:5432 (user postgres, trust authentication). When one is
// unreachable the test is skipped, or fails when CI is set.
package sqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"

	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// Where the local servers are.
const (
	MySQLAddr    = "127.0.0.1:3306"
	PostgresAddr = "127.0.0.1:5432"
	// connectTimeout keeps a missing server from stalling the test.
	connectTimeout = 5 * time.Second
)

const (
	mysqlHint    = "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"
	postgresHint = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)

// DB is a database made for one test and dropped when it ends.
type DB struct {
	// Driver is sqlwatch.DriverMySQL or sqlwatch.DriverPostgres.
	Driver string
	// Endpoint reaches the database directly.
	Endpoint sqlwatch.Endpoint
	my       *sql.DB
	pg       *pgx.Conn
}

// Name is the database's name.
func (d *DB) Name() string { return d.Endpoint.Database }

// Via returns the Endpoint with another address, e.g. a
// sourcetest.Proxy's in front of the server.
func (d *DB) Via(addr string) sqlwatch.Endpoint {
	e := d.Endpoint
	e.Addr = addr
	return e
}

func newName() string {
	var b [6]byte
	rand.Read(b[:])
	return "regbridge_test_" + hex.EncodeToString(b[:])
}

// MySQL makes a database on the local MariaDB/MySQL server.
func MySQL(t testing.TB) *DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.Net, cfg.Addr, cfg.User, cfg.Timeout = "tcp", MySQLAddr, "root", connectTimeout
	admin, err := openMySQL(cfg)
	if err != nil {
		sourcetest.Unavailable(t, "MariaDB at "+MySQLAddr, err, mysqlHint)
	}
	name := newName()
	if _, err := admin.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4"); err != nil {
		admin.Close()
		t.Fatalf("creating database: %v", err)
	}
	cfg.DBName = name
	db, err := openMySQL(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		if _, err := admin.Exec("DROP DATABASE IF EXISTS " + name); err != nil {
			t.Errorf("dropping database %s: %v", name, err)
		}
		admin.Close()
	})
	return &DB{
		Driver:   sqlwatch.DriverMySQL,
		Endpoint: sqlwatch.Endpoint{Addr: MySQLAddr, User: "root", Database: name, Params: map[string]string{}},
		my:       db,
	}
}

func openMySQL(cfg *mysql.Config) (*sql.DB, error) {
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(conn)
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Postgres makes a database on the local PostgreSQL server.
func Postgres(t testing.TB) *DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	admin, err := pgx.Connect(ctx, pgURL("postgres"))
	if err != nil {
		sourcetest.Unavailable(t, "PostgreSQL at "+PostgresAddr, err, postgresHint)
	}
	name := newName()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		t.Fatalf("creating database: %v", err)
	}
	conn, err := pgx.Connect(ctx, pgURL(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn.Close(ctx)
		dropSlots(t, ctx, admin, name)
		// FORCE ends connections a failed test may have left behind.
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping database %s: %v", name, err)
		}
		admin.Close(ctx)
	})
	return &DB{
		Driver:   sqlwatch.DriverPostgres,
		Endpoint: sqlwatch.Endpoint{Addr: PostgresAddr, User: "postgres", Database: name, Params: map[string]string{"sslmode": "disable"}},
		pg:       conn,
	}
}

// dropSlots ends and drops the replication slots (cdc=logical) of
// database name: a slot left behind keeps WAL on the shared server, and
// DROP DATABASE refuses a database with one.
func dropSlots(t testing.TB, ctx context.Context, admin *pgx.Conn, name string) {
	for {
		if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = $1 AND active_pid IS NOT NULL", name); err != nil {
			t.Errorf("ending replication of %s: %v", name, err)
			return
		}
		_, err := admin.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1", name)
		if err == nil {
			return
		}
		if ctx.Err() != nil || !strings.Contains(err.Error(), "is active") {
			t.Errorf("dropping replication slots of %s: %v", name, err)
			return
		}
		time.Sleep(50 * time.Millisecond) // the ended walsender still holds it
	}
}

func pgURL(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable&connect_timeout=%d", PostgresAddr, db, int(connectTimeout/time.Second))
}

// Exec runs one statement on the test database and returns the rows it
// affected. Placeholders are written '?' for both servers (rewritten to
// $n for PostgreSQL; do not put '?' in literals).
func (d *DB) Exec(t testing.TB, query string, args ...any) int64 {
	t.Helper()
	n, err := d.TryExec(query, args...)
	if err != nil {
		t.Fatalf("%s: %v", firstLine(query), err)
	}
	return n
}

// TryExec is Exec returning the error.
func (d *DB) TryExec(query string, args ...any) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if d.pg != nil {
		tag, err := d.pg.Exec(ctx, Rebind(query), args...)
		return tag.RowsAffected(), err
	}
	res, err := d.my.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// QueryRow runs a query returning one row into dest.
func (d *DB) QueryRow(query string, dest ...any) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if d.pg != nil {
		return d.pg.QueryRow(ctx, Rebind(query)).Scan(dest...)
	}
	return d.my.QueryRowContext(ctx, query).Scan(dest...)
}

// Query runs a query and calls fn with each row's columns as text (NULL
// as "NULL").
func (d *DB) Query(t testing.TB, query string, fn func(cols []string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if d.pg != nil {
		rows, err := d.pg.Query(ctx, Rebind(query), pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatalf("%s: %v", firstLine(query), err)
		}
		defer rows.Close()
		for rows.Next() {
			var cols []string
			for _, v := range rows.RawValues() {
				if v == nil {
					cols = append(cols, "NULL")
				} else {
					cols = append(cols, string(v))
				}
			}
			fn(cols)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return
	}
	rows, err := d.my.QueryContext(ctx, query)
	if err != nil {
		t.Fatalf("%s: %v", firstLine(query), err)
	}
	defer rows.Close()
	names, _ := rows.Columns()
	for rows.Next() {
		vals := make([]sql.NullString, len(names))
		dest := make([]any, len(names))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		cols := make([]string, len(vals))
		for i, v := range vals {
			cols[i] = "NULL"
			if v.Valid {
				cols[i] = v.String
			}
		}
		fn(cols)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// Rebind turns '?' placeholders into PostgreSQL's $1, $2, ...
func Rebind(query string) string {
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
