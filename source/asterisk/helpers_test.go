package asterisk

import (
	"crypto/md5"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// astdbDDL are the two table declarations Asterisk's main/db.c has used:
// TEXT since 20.11 / 21.6 / 22.1, VARCHAR(256) before
// (docs/stores.md#astdb).
var astdbDDL = map[string]string{
	"text":    "CREATE TABLE IF NOT EXISTS astdb(key TEXT, value TEXT, PRIMARY KEY(key))",
	"varchar": "CREATE TABLE IF NOT EXISTS astdb(key VARCHAR(256), value VARCHAR(256), PRIMARY KEY(key))",
}

// newAstDB makes an AstDB file the way Asterisk does (default rollback
// journal) and returns its path and a writer holding Asterisk's one
// connection. busyMS is the writer's busy timeout: Asterisk sets none (0);
// tests that only need the data written use one so they cannot flake.
func newAstDB(t testing.TB, ddl string, busyMS int) (string, *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "astdb.sqlite3")
	db, err := sql.Open(sqlwatch.SQLiteDriver, sqlwatch.FileDSN(path, "rwc")+"&_pragma=busy_timeout("+strconv.Itoa(busyMS)+")")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	// Keep the one connection for good: one opened while the file is
	// moved away would create an empty file at path.
	db.SetConnMaxIdleTime(0)
	t.Cleanup(func() { db.Close() })
	if _, err := db.Exec(astdbDDL[ddl]); err != nil {
		t.Fatal(err)
	}
	return path, db
}

// contactID is res_pjsip's id for uri on aor: "<aor>;@<md5(uri)>".
func contactID(aor, uri string) string {
	sum := md5.Sum([]byte(uri))
	return aor + ";@" + hex.EncodeToString(sum[:])
}

// astContact is a contact as res_pjsip_registrar stores it.
type astContact struct {
	aor, uri, callID, userAgent, path string
	expires                           time.Time // zero: "0"
}

// json renders c as res_sorcery_astdb does: one JSON object, every sorcery
// field a string, empty ones "" (Asterisk 20+, with qualify_2xx_only).
func (c astContact) json() string {
	exp := "0"
	if !c.expires.IsZero() {
		exp = strconv.FormatInt(c.expires.Unix(), 10)
	}
	b, err := json.Marshal(map[string]string{
		"authenticate_qualify": "no", "call_id": c.callID, "endpoint": c.aor, "expiration_time": exp,
		"outbound_proxy": "", "path": c.path, "prune_on_boot": "no", "qualify_2xx_only": "false",
		"qualify_frequency": "0", "qualify_timeout": "3.000000", "reg_server": "pbx1", "uri": c.uri,
		"user_agent": c.userAgent, "via_addr": "192.0.2.10", "via_port": "5060",
	})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// put writes a value as ast_db_put does, in its own committed transaction
// (Asterisk batches a second's puts into one; one each is the same to a
// reader).
func put(t testing.TB, db *sql.DB, key, value string) {
	t.Helper()
	if _, err := db.Exec("INSERT OR REPLACE INTO astdb (key, value) VALUES (?, ?)", key, value); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func dbDel(t testing.TB, db *sql.DB, key string) {
	t.Helper()
	if _, err := db.Exec("DELETE FROM astdb WHERE key=?", key); err != nil {
		t.Fatalf("del %s: %v", key, err)
	}
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
