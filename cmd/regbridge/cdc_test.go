package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/regbridge/regbridge/source/kamailio"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

func runCDCArgs(t *testing.T, src string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := envconfig.MapLookuper(map[string]string{"REGBRIDGE_SOURCE": src})
	code := run(t.Context(), append([]string{"cdc"}, args...), env, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCDCCommandDryRun(t *testing.T) {
	for _, tt := range []struct {
		src       string
		want      []string
		uninstall string // in the uninstall SQL
	}{
		{"kamailio+postgres://u:secret@db.example/kam?cdc=trigger", []string{"CREATE TABLE IF NOT EXISTS regbridge_changelog", "CREATE OR REPLACE FUNCTION \"regbridge_cdc_location\"()",
			"INSERT INTO regbridge_changelog (tbl, op, k) VALUES ('location', 'D', OLD.\"ruid\"::text)", "CREATE TRIGGER regbridge_cdc AFTER INSERT OR UPDATE OR DELETE ON \"location\""}, "DROP TABLE IF EXISTS regbridge_changelog"},
		{"opensips+mysql://u:secret@db.example/os?table=loc", []string{"CREATE TABLE IF NOT EXISTS regbridge_changelog", "CREATE TRIGGER `regbridge_loc_ad` AFTER DELETE ON `loc`", "OLD.`contact_id`"}, "DROP TRIGGER IF EXISTS"},
		{"kamailio+postgres://u:secret@db.example/kam?cdc=logical", []string{"wal_level = logical", "max_replication_slots", "CREATE PUBLICATION regbridge_location FOR TABLE \"location\"",
			"REPLICA IDENTITY USING INDEX", "pg_create_logical_replication_slot('regbridge_kam_location', 'pgoutput')"}, "pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'regbridge_kam_location'"},
	} {
		code, out, errOut := runCDCArgs(t, tt.src, "install", "--dry-run")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", tt.src, code, errOut)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: dry-run output lacks %q:\n%s", tt.src, w, out)
			}
		}
		if strings.Contains(out+errOut, "secret") {
			t.Errorf("password printed")
		}
		code, out, _ = runCDCArgs(t, tt.src, "uninstall", "--dry-run")
		if code != 0 || !strings.Contains(out, tt.uninstall) {
			t.Errorf("uninstall dry-run: exit %d:\n%s", code, out)
		}
	}
}

func TestCDCCommandErrors(t *testing.T) {
	if code, _, errOut := runCDCArgs(t, "kamailio+sqlite:///tmp/none.db", "install"); code != 2 || !strings.Contains(errOut, "not a MySQL/MariaDB or PostgreSQL store") {
		t.Errorf("sqlite source: exit %d, %q", code, errOut)
	}
	if code, _, _ := runCDCArgs(t, "kamailio+postgres://h/db", "frobnicate"); code != 2 {
		t.Errorf("bad verb: exit %d, want 2", code)
	}
	if code, _, errOut := runCDCArgs(t, "kamailio+postgres://h/db?cdc=binlog", "install"); code != 2 || !strings.Contains(errOut, "cdc=") {
		t.Errorf("bad cdc mode: exit %d, %q", code, errOut)
	}
	if code, _, errOut := runCDCArgs(t, "kamailio+mysql://h/db?cdc=logical", "install"); code != 2 || !strings.Contains(errOut, "PostgreSQL") {
		t.Errorf("cdc=logical on MySQL: exit %d, %q", code, errOut)
	}
}

// The command installs and removes the triggers on a real server.
func TestCDCCommandInstall(t *testing.T) {
	db := sqltest.Postgres(t)
	db.Exec(t, "CREATE TABLE location (ruid varchar(64) PRIMARY KEY, username varchar(64))")
	src := "kamailio+postgres://postgres@" + db.Endpoint.Addr + "/" + db.Name() + "?sslmode=disable&cdc=trigger"
	count := func() int {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM pg_trigger WHERE tgname = 'regbridge_cdc'", &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, step := range []struct {
		verb string
		want int
	}{{"install", 1}, {"install", 1}, {"uninstall", 0}, {"uninstall", 0}} {
		if code, _, errOut := runCDCArgs(t, src, step.verb); code != 0 {
			t.Fatalf("%s: exit %d: %s", step.verb, code, errOut)
		}
		if got := count(); got != step.want {
			t.Errorf("after %s: %d triggers, want %d", step.verb, got, step.want)
		}
	}
}

// oldNotifyTrigger is the PostgreSQL change capture of an older
// regbridge: a trigger calling pg_notify.
var oldNotifyTrigger = []string{`CREATE FUNCTION regbridge_cdc_location() RETURNS trigger LANGUAGE plpgsql AS $regbridge$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('regbridge_cdc_location', 'D:' || OLD.ruid::text);
  ELSE
    PERFORM pg_notify('regbridge_cdc_location', left(TG_OP, 1) || ':' || NEW.ruid::text);
  END IF;
  RETURN NULL;
END
$regbridge$`, "CREATE TRIGGER regbridge_cdc AFTER INSERT OR UPDATE OR DELETE ON location FOR EACH ROW EXECUTE FUNCTION regbridge_cdc_location()"}

// A regbridge started against an older pg_notify install says to run
// `cdc install` again and polls; install replaces the trigger (the
// running regbridge then reads the changelog), uninstall removes it all.
func TestCDCCommandUpgradesNotify(t *testing.T) {
	db := sqltest.Postgres(t)
	for _, stmt := range append(kamailio.PostgresSchema("location"), oldNotifyTrigger...) {
		db.Exec(t, stmt)
	}
	src := fmt.Sprintf("kamailio+postgres://%s@%s/%s?sslmode=disable&cdc=trigger&reconcile=1s", db.Endpoint.User, db.Endpoint.Addr, db.Name())
	s := startServer(t, "", map[string]string{"REGBRIDGE_SOURCE": src, "REGBRIDGE_POLL_INTERVAL": "100ms"})
	waitFor(t, "the warning about the old trigger", func() bool {
		return strings.Contains(s.log.String(), "older regbridge's pg_notify trigger")
	})
	if log := s.log.String(); !strings.Contains(log, "run `regbridge cdc install` with the same REGBRIDGE_SOURCE to replace it") {
		t.Errorf("the warning does not say what to run:\n%s", log)
	}
	code, out, errOut := runCDCArgs(t, src, "install")
	if code != 0 {
		t.Fatalf("install over the pg_notify trigger: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"CREATE TABLE IF NOT EXISTS regbridge_changelog", "CREATE OR REPLACE FUNCTION \"regbridge_cdc_location\"()", "DROP TRIGGER IF EXISTS regbridge_cdc"} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q:\n%s", want, out)
		}
	}
	var src2 string
	if err := db.QueryRow("SELECT string_agg(p.prosrc, ' ') FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid WHERE g.tgname = 'regbridge_cdc'", &src2); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(src2, "pg_notify") || !strings.Contains(src2, "regbridge_changelog") {
		t.Errorf("trigger function after install:\n%s", src2)
	}
	waitFor(t, "the running regbridge on the changelog", func() bool {
		return strings.Contains(s.log.String(), "change capture by triggers active")
	})
	db.Exec(t, "INSERT INTO location (ruid, username, domain, contact, expires, last_modified) VALUES "+
		"('r1', 'alice', 'example.com', 'sip:alice@192.0.2.1', now() + interval '1 hour', now())")
	var n int
	if err := db.QueryRow("SELECT count(*) FROM regbridge_changelog WHERE tbl = 'location' AND op = 'I' AND k = 'r1'", &n); err != nil || n != 1 {
		t.Errorf("changelog rows of the insert: %d, %v", n, err)
	}

	if code, _, errOut := runCDCArgs(t, src, "uninstall"); code != 0 {
		t.Fatalf("uninstall: exit %d: %s", code, errOut)
	}
	var left string
	if err := db.QueryRow("SELECT concat_ws(',', to_regclass('regbridge_changelog'), to_regproc('regbridge_cdc_location'), (SELECT min(tgname) FROM pg_trigger WHERE tgname = 'regbridge_cdc'))", &left); err != nil {
		t.Fatal(err)
	}
	if left != "" {
		t.Errorf("left after uninstall: %s", left)
	}
}

// cdc=logical end to end: install prints what the server needs and the
// SQL and creates the slot, a running regbridge reports the slot's lag in
// /metrics and /readyz, and uninstall drops the slot although that
// regbridge is streaming from it.
func TestCDCCommandLogical(t *testing.T) {
	db := sqltest.Postgres(t)
	db.Exec(t, "CREATE TABLE location (id SERIAL PRIMARY KEY, ruid VARCHAR(64) NOT NULL UNIQUE, username VARCHAR(64), domain VARCHAR(64), contact VARCHAR(512), received VARCHAR(128), path VARCHAR(512), expires TIMESTAMP, q REAL, callid VARCHAR(255), cseq INT, last_modified TIMESTAMP, user_agent VARCHAR(255), instance VARCHAR(255), reg_id INT)")
	slot := "regbridge_cmd_" + strings.TrimPrefix(db.Name(), "regbridge_test_")
	src := "kamailio+postgres://postgres@" + db.Endpoint.Addr + "/" + db.Name() + "?sslmode=disable&cdc=logical&slot=" + slot
	slots := func() int {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM pg_replication_slots WHERE slot_name = '"+slot+"'", &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	code, out, errOut := runCDCArgs(t, src, "install")
	if code != 0 {
		t.Fatalf("install: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"wal_level = logical", "REPLICATION", "CREATE PUBLICATION regbridge_location", "pg_create_logical_replication_slot('" + slot + "', 'pgoutput')"} {
		if !strings.Contains(out, want) {
			t.Errorf("install output lacks %q:\n%s", want, out)
		}
	}
	if n := slots(); n != 1 {
		t.Fatalf("%d slots after install", n)
	}

	s := startServer(t, "", map[string]string{"REGBRIDGE_SOURCE": src})
	get := func(path string) string {
		res, err := http.Get("http://" + s.http + path)
		if err != nil {
			return ""
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	waitFor(t, "slot lag in /metrics", func() bool {
		return strings.Contains(get("/metrics"), `regbridge_source_slot_lag_bytes{slot="`+slot+`"}`)
	})
	if body := get("/readyz"); !strings.Contains(body, "replication slot "+slot+" lag: ") {
		t.Errorf("/readyz lacks the slot lag:\n%s", body)
	}

	for range 2 { // idempotent
		if code, _, errOut := runCDCArgs(t, src, "uninstall"); code != 0 {
			t.Fatalf("uninstall: exit %d: %s", code, errOut)
		}
		if n := slots(); n != 0 {
			t.Errorf("%d slots after uninstall", n)
		}
	}
}
