package kamailio

import (
	"database/sql"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/regbridge/regbridge/internal/conformance"
	"github.com/regbridge/regbridge/source"
)

// sqliteHarness writes the location table as Kamailio's db_sqlite does
// (REAL Julian days, use_domain=0: username only, domain NULL) through a
// connection that stays open like Kamailio's, and breaks the store by
// moving the file away.
type sqliteHarness struct {
	path string
	db   *sql.DB
}

func TestConformanceSQLite(t *testing.T) {
	conformance.Run(t, &sqliteHarness{})
}

func ruidOf(id int) string { return fmt.Sprintf("uloc-5f3a2b1c-4d2-%d", id) }

func (h *sqliteHarness) NewSource(t *testing.T) source.Source {
	h.path = newDBFile(t, "wal")
	h.db = openWriter(t, h.path)
	// Keep Kamailio's one connection for the whole test: a new one opened
	// while the file is moved away would create an empty file at path.
	h.db.SetConnMaxIdleTime(0)
	return newWatcherFast(t, SQLiteConfig{Path: h.path, Domain: conformance.Domain})
}

func (h *sqliteHarness) Insert(t *testing.T, r conformance.Row) { h.insert(t, r, r.URI) }

func (h *sqliteHarness) InsertBad(t *testing.T, r conformance.Row) {
	h.insert(t, r, "<not a SIP URI>")
}

func (h *sqliteHarness) insert(t *testing.T, r conformance.Row, contact string) {
	t.Helper()
	_, err := h.db.Exec(`INSERT INTO location (ruid, username, contact, expires, q, callid, cseq,
		last_modified, flags, cflags, user_agent, socket, methods, reg_id, server_id, connection_id, keepalive, partition)
		VALUES (?, ?, ?, ?, -1, ?, ?, ?, 0, 0, ?, 'udp:127.0.0.1:5060', 8191, 0, 0, -1, 0, 0)`,
		ruidOf(r.ID), r.User, contact, TimeToJulian(r.Expires), r.CallID, r.CSeq, TimeToJulian(time.Now()), r.UserAgent)
	if err != nil {
		t.Fatalf("insert %d: %v", r.ID, err)
	}
}

func (h *sqliteHarness) Update(t *testing.T, r conformance.Row) {
	t.Helper()
	res, err := h.db.Exec(`UPDATE location SET expires = ?, callid = ?, cseq = ?, user_agent = ?, last_modified = ? WHERE ruid = ?`,
		TimeToJulian(r.Expires), r.CallID, r.CSeq, r.UserAgent, TimeToJulian(time.Now()), ruidOf(r.ID))
	if err != nil {
		t.Fatalf("update %d: %v", r.ID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("update %d: %d rows", r.ID, n)
	}
}

func (h *sqliteHarness) Delete(t *testing.T, r conformance.Row) { deleteRow(t, h.db, ruidOf(r.ID)) }

// Break moves the file away: the adapter cannot open it, while the
// writer's open connection keeps writing to it, as Kamailio's would.
func (h *sqliteHarness) Break(t *testing.T) {
	if err := os.Rename(h.path, h.path+".moved"); err != nil {
		t.Fatal(err)
	}
}

func (h *sqliteHarness) Restore(t *testing.T) {
	if err := os.Rename(h.path+".moved", h.path); err != nil {
		t.Fatal(err)
	}
}

// newWatcherFast is newWatcher with a poll interval for the suite.
func newWatcherFast(t *testing.T, cfg SQLiteConfig) *SQLite {
	cfg.PollInterval = 20 * time.Millisecond
	return newWatcher(t, cfg, nil)
}
