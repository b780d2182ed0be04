package asterisk

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/regbridge/regbridge/internal/conformance"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// testWatch is polling fast enough for the suite.
var testWatch = sqlwatch.Config{PollInterval: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}

// Each suite Row becomes a contact of the AOR named after its user; its
// id is what res_pjsip would make of that AOR and URI.
func rowID(r conformance.Row) string { return contactID(r.User, r.URI) }

// astdbHarness writes AstDB as Asterisk does: one open connection,
// INSERT OR REPLACE / DELETE by key, JSON values of strings, default
// rollback journal. The watcher reads through a symbolic link that Break
// removes: moving Asterisk's file itself would make SQLite refuse its
// writes (SQLITE_READONLY_DBMOVED), which the suite's writes during the
// outage must not meet.
type astdbHarness struct {
	ddl  string
	link string
	db   *sql.DB
}

func TestConformanceAstDB(t *testing.T) {
	for _, ddl := range []string{"text", "varchar"} {
		t.Run("astdb declared "+ddl, func(t *testing.T) {
			conformance.Run(t, &astdbHarness{ddl: ddl})
		})
	}
}

func (h *astdbHarness) NewSource(t *testing.T) source.Source {
	var path string
	path, h.db = newAstDB(t, h.ddl, 10000)
	h.link = filepath.Join(filepath.Dir(path), "astdb-link.sqlite3")
	if err := os.Symlink(path, h.link); err != nil {
		t.Fatal(err)
	}
	// Other families live in the same table; they are never read.
	put(t, h.db, "/registrar/aor/alice", `{"max_contacts":"1"}`)
	put(t, h.db, "/SIP/Registry/1001", "192.0.2.1:5060:3600:1001:sip:1001@192.0.2.1")
	w, err := NewAstDB(AstDBConfig{Path: h.link, Domain: conformance.Domain, Watch: testWatch}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (h *astdbHarness) value(r conformance.Row, uri string) string {
	return astContact{aor: r.User, uri: uri, callID: r.CallID, userAgent: r.UserAgent, expires: r.Expires}.json()
}

func (h *astdbHarness) Insert(t *testing.T, r conformance.Row) {
	put(t, h.db, "/registrar/contact/"+rowID(r), h.value(r, r.URI))
}

func (h *astdbHarness) InsertBad(t *testing.T, r conformance.Row) {
	put(t, h.db, "/registrar/contact/"+rowID(r), h.value(r, "<not a SIP URI>"))
}

// Update is a REGISTER refresh: the whole object is written again under
// the same key. Asterisk does not rewrite call_id on a refresh, and the
// suite keeps it unchanged too.
func (h *astdbHarness) Update(t *testing.T, r conformance.Row) { h.Insert(t, r) }

func (h *astdbHarness) Delete(t *testing.T, r conformance.Row) {
	dbDel(t, h.db, "/registrar/contact/"+rowID(r))
}

func (h *astdbHarness) Break(t *testing.T) {
	if err := os.Rename(h.link, h.link+".off"); err != nil {
		t.Fatal(err)
	}
}

func (h *astdbHarness) Restore(t *testing.T) {
	if err := os.Rename(h.link+".off", h.link); err != nil {
		t.Fatal(err)
	}
}

// Asterisk stores no CSeq.
func (h *astdbHarness) Limits() conformance.Limits {
	return conformance.Limits{NoCSeq: true, FixedCallID: true}
}

// realtimeHarness writes ps_contacts as Asterisk's realtime drivers do
// (every field sent as text) straight to the server; the watcher reads
// through a proxy that Break cuts.
type realtimeHarness struct {
	driver string
	cdc    string // change capture mode (sqlwatch.CDCTrigger, CDCLogical), polling off; "" polls
	db     *sqltest.DB
	proxy  *sourcetest.Proxy
	table  string
}

func TestConformanceRealtime(t *testing.T) {
	for _, driver := range []string{sqlwatch.DriverMySQL, sqlwatch.DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			conformance.Run(t, &realtimeHarness{driver: driver})
		})
	}
}

// TestConformanceRealtimeCDC runs the suite with ?cdc=trigger and
// polling and reconciles an hour apart: every change the suite sees came
// through the triggers on ps_contacts.
func TestConformanceRealtimeCDC(t *testing.T) {
	for _, driver := range []string{sqlwatch.DriverMySQL, sqlwatch.DriverPostgres} {
		t.Run(driver, func(t *testing.T) {
			conformance.Run(t, &realtimeHarness{driver: driver, cdc: sqlwatch.CDCTrigger})
		})
	}
}

// TestConformanceRealtimeLogical runs the suite over PostgreSQL logical
// replication (?cdc=logical) on ps_contacts, polling and reconciles an
// hour apart. The slot goes with the test's database (sqltest).
func TestConformanceRealtimeLogical(t *testing.T) {
	conformance.Run(t, &realtimeHarness{driver: sqlwatch.DriverPostgres, cdc: sqlwatch.CDCLogical})
}

func (h *realtimeHarness) NewSource(t *testing.T) source.Source {
	if h.driver == sqlwatch.DriverMySQL {
		h.db = sqltest.MySQL(t)
	} else {
		h.db = sqltest.Postgres(t)
	}
	h.table = "ps_contacts"
	stmts, err := RealtimeSchema(h.driver, h.table)
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range stmts {
		h.db.Exec(t, stmt)
	}
	h.proxy = sourcetest.NewProxy(t, h.db.Endpoint.Addr)
	watch := testWatch
	if h.cdc != "" {
		watch.CDC, watch.PollInterval, watch.ReconcileInterval = h.cdc, time.Hour, time.Hour
	}
	w, err := NewRealtime(RealtimeConfig{Driver: h.driver, Endpoint: h.db.Via(h.proxy.Addr()), Domain: conformance.Domain, Watch: watch}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h.cdc != "" {
		stmts, err := w.CaptureSQL(true)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.ExecCapture(t.Context(), stmts); err != nil {
			t.Fatalf("cdc install: %v", err)
		}
	}
	return w
}

func expirationText(r conformance.Row) string {
	if r.Expires.IsZero() {
		return "0"
	}
	return fmt.Sprint(r.Expires.Unix())
}

func (h *realtimeHarness) insert(t *testing.T, r conformance.Row, uri string) {
	h.db.Exec(t, `INSERT INTO `+h.table+` (id, uri, expiration_time, qualify_frequency, outbound_proxy, path, user_agent,
		qualify_timeout, reg_server, authenticate_qualify, via_addr, via_port, call_id, endpoint, prune_on_boot, qualify_2xx_only)
		VALUES (?, ?, ?, '0', '', '', ?, '3.000000', 'pbx1', 'no', '192.0.2.10', '5060', ?, ?, 'no', 'false')`,
		rowID(r), uri, expirationText(r), r.UserAgent, r.CallID, r.User)
}

func (h *realtimeHarness) Insert(t *testing.T, r conformance.Row) { h.insert(t, r, r.URI) }
func (h *realtimeHarness) InsertBad(t *testing.T, r conformance.Row) {
	h.insert(t, r, "<not a SIP URI>")
}

// Update is a REGISTER refresh: what docs/stores.md#asterisk
// describes, by id.
func (h *realtimeHarness) Update(t *testing.T, r conformance.Row) {
	n := h.db.Exec(t, `UPDATE `+h.table+` SET expiration_time = ?, qualify_frequency = '0', authenticate_qualify = 'no',
		qualify_2xx_only = 'false', user_agent = ?, reg_server = 'pbx1' WHERE id = ?`, expirationText(r), r.UserAgent, rowID(r))
	if n != 1 {
		t.Fatalf("update %s: %d rows", rowID(r), n)
	}
}

func (h *realtimeHarness) Delete(t *testing.T, r conformance.Row) {
	h.db.Exec(t, `DELETE FROM `+h.table+` WHERE id = ?`, rowID(r))
}

func (h *realtimeHarness) Break(t *testing.T)   { h.proxy.Break() }
func (h *realtimeHarness) Restore(t *testing.T) { h.proxy.Restore() }

func (h *realtimeHarness) Limits() conformance.Limits {
	return conformance.Limits{NoCSeq: true, FixedCallID: true}
}
