package kamailio

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// registrarTZ is the zone the tests' "Kamailio" runs in: not UTC, with
// DST, so that a decoder ignoring the zone is off by an hour or two.
const registrarTZ = "Europe/Berlin"

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// server is one database server kind the DB watchers support.
type server struct {
	name       string
	open       func(testing.TB) *sqltest.DB
	schema     func(table string) []string // Kamailio's DDL
	newWatcher func(DBConfig, *slog.Logger) (*sqlwatch.Watcher, error)
	quote      func(string) string
}

var servers = []server{
	{"mysql", sqltest.MySQL, MySQLSchema, NewMySQL, sqlwatch.QuoteMySQL},
	{"postgres", sqltest.Postgres, PostgresSchema, NewPostgres, sqlwatch.QuotePostgres},
}

// createTable runs Kamailio's DDL for table. epoch alters expires and
// last_modified to BIGINT, as an admin must for usrloc expires_type=1.
func (s server) createTable(t testing.TB, db *sqltest.DB, table string, epoch bool) {
	t.Helper()
	for _, stmt := range s.schema(table) {
		db.Exec(t, stmt)
	}
	if !epoch {
		return
	}
	switch s.name {
	case "mysql":
		db.Exec(t, "ALTER TABLE "+table+" MODIFY `expires` BIGINT NOT NULL DEFAULT 0, MODIFY `last_modified` BIGINT NOT NULL DEFAULT 0")
	default:
		for _, c := range []string{"expires", "last_modified"} {
			db.Exec(t, fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP DEFAULT, ALTER COLUMN %s TYPE BIGINT USING 0, ALTER COLUMN %s SET DEFAULT 0", table, c, c, c))
		}
	}
}

// kamWriter writes a location table as db_mysql / db_postgres do: times
// as wall-clock text in the registrar's zone (or epochs when the columns
// are BIGINT), NULL for unset optional columns.
type kamWriter struct {
	db    *sqltest.DB
	srv   server
	table string
	loc   *time.Location
	epoch bool
}

// timeValue is how Kamailio writes t; the zero Time is a permanent
// binding, written as epoch 0.
func (w kamWriter) timeValue(t time.Time) any {
	var sec int64
	if !t.IsZero() {
		sec = t.Unix()
	}
	if w.epoch {
		return sec
	}
	return time.Unix(sec, 0).In(w.loc).Format(time.DateTime)
}

type kamBinding struct {
	ruid, user, contact, callid, ua string
	domain                          any // NULL when nil
	expires                         time.Time
	cseq                            uint32
}

// insert is usrloc's db_insert: every column it knows, NULL-default ones
// left out.
func (w kamWriter) insert(t testing.TB, b kamBinding) {
	t.Helper()
	q := w.srv.quote
	w.db.Exec(t, fmt.Sprintf(`INSERT INTO %s (ruid, username, domain, contact, expires, q, callid, cseq, last_modified,
		flags, cflags, user_agent, socket, methods, reg_id, server_id, connection_id, keepalive, %s)
		VALUES (?, ?, ?, ?, ?, -1, ?, ?, ?, 0, 0, ?, 'udp:127.0.0.1:5060', 8191, 0, 0, -1, 0, 0)`, w.table, q("partition")),
		b.ruid, b.user, b.domain, b.contact, w.timeValue(b.expires), b.callid, int64(b.cseq), w.timeValue(time.Now()), b.ua)
}

// update is usrloc's db_update of a refresh, keyed by ruid.
func (w kamWriter) update(t testing.TB, b kamBinding) {
	t.Helper()
	n := w.db.Exec(t, fmt.Sprintf(`UPDATE %s SET expires = ?, q = -1, cseq = ?, flags = 0, cflags = 0, user_agent = ?,
		last_modified = ?, callid = ? WHERE ruid = ?`, w.table),
		w.timeValue(b.expires), int64(b.cseq), b.ua, w.timeValue(time.Now()), b.callid, b.ruid)
	if n != 1 {
		t.Fatalf("update %s: %d rows", b.ruid, n)
	}
}

func (w kamWriter) delete(t testing.TB, ruid string) {
	t.Helper()
	w.db.Exec(t, fmt.Sprintf("DELETE FROM %s WHERE ruid = ?", w.table), ruid)
}
