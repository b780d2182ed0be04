package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source/kamailio"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// The real-registrar test (docs/interop.md): Debian's Kamailio, started by the
// test with a generated configuration (testdata/kamailio), saves SIPp's
// REGISTERs into MariaDB or SQLite through usrloc, and regbridge, reading
// the same store, must send a subscriber exactly the NOTIFYs those
// REGISTERs cause. Nothing in the store is written by the test itself.

const kamDir = "../../testdata/kamailio"

// kamTZ is the time zone Kamailio runs in: +05:30 all year, so a reader
// that decodes db_mysql's local-time DATETIMEs in the wrong zone is off by
// hours (the expires check fails), and no DST hour makes the test flaky.
const kamTZ = "Asia/Kolkata"

// kamAOR is what usrloc stores as username "alice" (use_domain=0, domain
// NULL) and regbridge reports with REGBRIDGE_DOMAIN=example.com.
const (
	kamUser   = "alice"
	kamDomain = "example.com"
	kamAOR    = "sip:" + kamUser + "@" + kamDomain
)

// kamBins are the programs the real-Kamailio tests run.
type kamBins struct {
	kamailio, sipp, kamcmd string
	modules                string // Kamailio's module directory
}

// kamMissing skips the test naming what to install, or fails it under
// CI=true, where .ci/run installs it.
func kamMissing(t *testing.T, what, packages string) {
	t.Helper()
	msg := what + ": apt-get install " + packages + " to run the real-Kamailio tests"
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (required when CI is set)")
	}
	t.Skip(msg)
}

// kamTools returns the paths of kamailio, sipp and kamcmd and Kamailio's
// module directory with the modules named, or skips the test (fails it
// under CI=true).
func kamTools(t *testing.T, modules ...string) kamBins {
	t.Helper()
	const pkgs = "kamailio kamailio-mysql-modules kamailio-sqlite-modules kamailio-presence-modules sip-tester"
	var b kamBins
	sbin := func(name string) string {
		p, err := exec.LookPath(name)
		if err != nil {
			// root's PATH has /usr/sbin, a developer's may not.
			if _, err := os.Stat("/usr/sbin/" + name); err != nil {
				kamMissing(t, name+" not found", pkgs)
			}
			p = "/usr/sbin/" + name
		}
		return p
	}
	b.kamailio, b.kamcmd = sbin("kamailio"), sbin("kamcmd")
	var err error
	if b.sipp, err = exec.LookPath("sipp"); err != nil {
		kamMissing(t, "sipp not found", pkgs)
	}
	dirs, _ := filepath.Glob("/usr/lib/*/kamailio/modules")
	dirs = append(dirs, "/usr/lib64/kamailio/modules", "/usr/lib/kamailio/modules")
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "usrloc.so")); err == nil {
			b.modules = d
			break
		}
	}
	if b.modules == "" {
		kamMissing(t, "Kamailio's modules (usrloc.so) not found", pkgs)
	}
	for _, m := range append([]string{"db_mysql.so", "db_sqlite.so", "ctl.so"}, modules...) {
		if _, err := os.Stat(filepath.Join(b.modules, m)); err != nil {
			kamMissing(t, m+" not found in "+b.modules, pkgs)
		}
	}
	return b
}

// kamStore is one store Kamailio writes and regbridge reads.
type kamStore struct {
	module     string      // db_mysql or db_sqlite
	dbURL      string      // Kamailio's usrloc db_url
	sqliteFile string      // the SQLite file, for db_set_journal_mode
	source     string      // REGBRIDGE_SOURCE
	db         *sqltest.DB // the MariaDB database (db_mysql only)
}

// kamMySQL makes a database on the local MariaDB with Kamailio's 5.6+
// location and version tables.
func kamMySQL(t *testing.T) kamStore {
	db := sqltest.MySQL(t)
	// What `regbridge schema kamailio+mysql` prints, plus the version
	// row of utils/kamctl/mysql/standard-create.sql.
	stmts := append(kamailio.MySQLSchema("location"),
		"INSERT INTO version (table_name, table_version) VALUES ('version', '1')")
	for _, s := range stmts {
		db.Exec(t, s)
	}
	return kamStore{
		module: "db_mysql",
		dbURL:  fmt.Sprintf("mysql://%s@%s/%s", db.Endpoint.User, db.Endpoint.Addr, db.Name()),
		source: fmt.Sprintf("kamailio+mysql://%s@%s/%s?table=location&tz=%s", db.Endpoint.User, db.Endpoint.Addr, db.Name(), kamTZ),
		db:     db,
	}
}

// kamSQLite makes a SQLite file with the same tables (db_sqlite schema),
// in the rollback-journal mode a new file has: Kamailio switches it to WAL.
func kamSQLite(t *testing.T) kamStore {
	path := filepath.Join(t.TempDir(), "kamailio.db")
	ddl, err := os.ReadFile("../../source/kamailio/testdata/location_schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stmts := append(splitSQL(string(ddl)),
		"INSERT INTO version (table_name, table_version) VALUES ('version', '1'), ('location', '9')")
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	return kamStore{
		module:     "db_sqlite",
		dbURL:      "sqlite:///" + path, // four slashes: an absolute path
		sqliteFile: path,
		source:     "kamailio+sqlite://" + path,
	}
}

// splitSQL splits a DDL file into statements.
func splitSQL(s string) []string {
	var out []string
	for _, stmt := range strings.Split(s, ";\n") {
		var lines []string
		for _, l := range strings.Split(stmt, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		if stmt := strings.TrimSpace(strings.Join(lines, "\n")); stmt != "" {
			out = append(out, strings.TrimSuffix(stmt, ";"))
		}
	}
	return out
}

// kamInstance is one Kamailio the test runs.
type kamInstance struct {
	addr string      // 127.0.0.1:port of its SIP socket(s)
	ctl  string      // its binrpc control socket, for kamcmd -s
	log  *syncBuffer // what it logged to stderr (since its last start)
}

// registrarVars are the template variables of kamailio.cfg.tmpl for a
// registrar writing to store in usrloc db_mode dbMode.
func registrarVars(store kamStore, dbMode int) map[string]any {
	return map[string]any{
		"DBModule":   store.module,
		"DBURL":      store.dbURL,
		"DBMode":     dbMode,
		"SQLiteFile": store.sqliteFile,
		"MinExpires": 10,
	}
}

// startKamailio fills in testdata/kamailio/tmplName with vars plus Port
// (a free port on 127.0.0.1), ModulesDir and CtlSocket (a unix socket of
// its own), writes it into a directory of its own and runs Kamailio in the
// foreground (-DD, log to stderr) until the test ends. It returns once
// Kamailio answers OPTIONS over UDP.
func startKamailio(t *testing.T, bins kamBins, tmplName string, vars map[string]any) *kamInstance {
	t.Helper()
	bin, sipp := bins.kamailio, bins.sipp
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	if err := os.Mkdir(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	k := &kamInstance{addr: fmt.Sprintf("127.0.0.1:%d", port), ctl: filepath.Join(dir, "ctl.sock")}
	tmpl, err := template.New(tmplName).Option("missingkey=error").ParseFiles(filepath.Join(kamDir, tmplName))
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]any{"Port": port, "ModulesDir": bins.modules, "CtlSocket": k.ctl}
	for key, v := range vars {
		all[key] = v
	}
	var cfg bytes.Buffer
	if err := tmpl.Execute(&cfg, all); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "kamailio.cfg")
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	launch := func() (chan struct{}, *syncBuffer, func()) {
		log := &syncBuffer{}
		cmd := exec.Command(bin, "-f", cfgPath,
			"-DD", // no daemon: the main process stays our child
			"-E",  // log to stderr
			"-Y", runDir, "-w", dir,
			"-m", "32", "-M", "8", // MB of shared and private memory: plenty here
		)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TZ="+kamTZ)
		cmd.Stdout, cmd.Stderr = log, log
		// Its own process group: the SIP workers go down with the main process
		// even if that one has to be killed.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting kamailio: %v", err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				t.Errorf("kamailio did not stop within 5s of SIGTERM: killed")
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-exited
			}
			if t.Failed() {
				t.Logf("kamailio.cfg:\n%s\nkamailio log:\n%s", cfg.String(), log.String())
			}
		})
		kill := func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		return exited, log, kill
	}
	exited, log, kill := launch()

	addr := k.addr
	relaunched := 0
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	// db_sqlite's children switch a new file to WAL together at start-up,
	// without a busy timeout, and sometimes lock each other out (Kamailio
	// 5.6): the main process then exits, or lingers without its workers
	// and answers nothing. A real first start fails the same way; starting
	// again is what an operator does.
	locked := func() bool { return relaunched < 2 && strings.Contains(log.String(), "database is locked") }
	relaunch := func() {
		relaunched++
		t.Logf("kamailio failed at start-up with \"database is locked\" (its children racing to switch the file to WAL); starting it again")
		exited, log, kill = launch()
		deadline = time.Now().Add(10 * time.Second)
	}
	for {
		select {
		case <-exited:
			if locked() {
				relaunch()
				continue
			}
			t.Fatalf("kamailio exited at start-up (its log follows)")
		default:
		}
		out, err := runKamSIPp(t, sipp, "options.xml", addr, freePort(t), "2s", "-cid_str", fmt.Sprintf("probe-%d@127.0.0.1", time.Now().UnixNano()))
		if err == nil {
			break
		}
		if locked() {
			kill()
			relaunch()
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("kamailio does not answer OPTIONS on %s: %v\n%s", addr, err, out)
		}
		time.Sleep(100 * time.Millisecond) // between probes, not to spin on a failing SIPp
	}
	t.Logf("kamailio %s (%s) answered OPTIONS after %v", addr, tmplName, time.Since(start).Round(time.Millisecond))
	k.log = log
	return k
}

// runKamSIPp runs one SIPp scenario from testdata/kamailio as a UAC
// against server, one call from UDP port local on 127.0.0.1, bounded by
// timeout, and returns its output and an error unless it exited 0.
func runKamSIPp(t *testing.T, bin, scenario, server string, local int, timeout string, args ...string) (string, error) {
	t.Helper()
	path, err := filepath.Abs(filepath.Join(kamDir, scenario))
	if err != nil {
		t.Fatal(err)
	}
	d, err := time.ParseDuration(timeout)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), d+5*time.Second)
	defer cancel()
	dir := t.TempDir()
	errLog := filepath.Join(dir, "errors.log")
	cmd := exec.CommandContext(ctx, bin, append([]string{server,
		"-sf", path,
		"-m", "1", // one call
		"-t", "u1", // UDP, one socket
		"-i", "127.0.0.1", "-p", strconv.Itoa(local),
		"-nostdin",
		"-timeout", timeout, "-timeout_error",
		"-default_behaviors", "abortunexp",
		"-trace_err", "-error_file", errLog,
		"-key", "user", kamUser, "-key", "domain", kamDomain,
	}, args...)...)
	cmd.Dir = dir // SIPp writes its logs into the working directory
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("sipp still running after %v: %w", d+5*time.Second, ctx.Err())
	}
	if err != nil {
		if b, rerr := os.ReadFile(errLog); rerr == nil {
			out.WriteString("\n--- SIPp error log:\n")
			out.Write(b)
		}
	}
	return out.String(), err
}

// kamUA is one SIPp user agent: a fixed UDP port (so its Contact stays
// the same across runs) and one Call-ID with a growing CSeq.
type kamUA struct {
	port   int
	callID string
	cseq   int
}

func (ua *kamUA) contact() string { return fmt.Sprintf("sip:%s@127.0.0.1:%d", kamUser, ua.port) }

// run sends one REGISTER (register.xml, expires seconds) or un-REGISTER
// (unregister.xml) from ua through Kamailio at server.
func (ua *kamUA) run(t *testing.T, sipp, server, scenario string, expires int) {
	t.Helper()
	ua.cseq++
	out, err := runKamSIPp(t, sipp, scenario, server, ua.port, "5s",
		"-cid_str", ua.callID, "-base_cseq", strconv.Itoa(ua.cseq), "-key", "expires", strconv.Itoa(expires))
	if err != nil {
		t.Fatalf("sipp %s from %s (CSeq %d): %v\n%s", scenario, ua.contact(), ua.cseq, err, out)
	}
}

// TestKamailio: Kamailio saves REGISTERs from SIPp user agents into
// MariaDB and SQLite (usrloc db_mode 1 and 3), and regbridge, reading the
// same store, tells a subscriber registered, refreshed, registered (a
// second device) and unregistered, with Kamailio's contact URIs, Call-IDs,
// CSeqs and expiries, consecutive versions, and nothing else.
func TestKamailio(t *testing.T) {
	bins := kamTools(t)
	stores := []struct {
		name string
		open func(*testing.T) kamStore
	}{
		{"mysql", kamMySQL},
		{"sqlite", kamSQLite},
	}
	for _, st := range stores {
		for _, mode := range []int{1, 3} {
			// No '=' in the name: it ends up in the SQLite path, and
			// db_set_journal_mode splits "<file>=WAL" at the first '='.
			t.Run(fmt.Sprintf("%s/db_mode_%d", st.name, mode), func(t *testing.T) {
				start := time.Now()
				store := st.open(t)
				kam := startKamailio(t, bins, "kamailio.cfg.tmpl", registrarVars(store, mode)).addr
				if store.sqliteFile != "" {
					checkWAL(t, store.sqliteFile)
				}
				s := startServer(t, "", map[string]string{
					"REGBRIDGE_SOURCE":        store.source,
					"REGBRIDGE_DOMAIN":        kamDomain,
					"REGBRIDGE_POLL_INTERVAL": "50ms",
				})
				ready := time.Now()
				kamScenario(t, s, bins.sipp, kam)
				t.Logf("set-up %v, REGISTERs and NOTIFYs %v", ready.Sub(start).Round(time.Millisecond), time.Since(ready).Round(time.Millisecond))
			})
		}
	}
}

// checkWAL: the db_set_journal_mode modparam took effect (docs/stores.md#kamailio).
func checkWAL(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Fatalf("journal_mode %q after Kamailio started, want wal (db_set_journal_mode)", mode)
	}
}

// kamScenario subscribes to kamAOR at regbridge and drives two SIPp user
// agents through Kamailio at kam.
func kamScenario(t *testing.T, s *server, sipp, kam string) {
	p := siptest.New(t, "udp", s.sip)
	if res := p.Subscribe(kamAOR, siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d %s", res.StatusCode, res.Reason)
	}
	n := p.Next()
	p.Check(n, 0, "full", "active;expires=")
	if r := n.Doc.Registrations; len(r) != 1 || r[0].State != "init" || r[0].AOR != kamAOR || len(r[0].Contacts) != 0 {
		t.Fatalf("initial full state: %s", n.Req.Body())
	}

	run := time.Now().UnixNano()
	a := &kamUA{port: freePort(t), callID: fmt.Sprintf("kam-a-%d@127.0.0.1", run)}
	b := &kamUA{port: freePort(t), callID: fmt.Sprintf("kam-b-%d@127.0.0.1", run)}

	// want takes the next NOTIFY and checks its one contact.
	// The store forgets a deleted binding's last REGISTER, so an
	// unregistered contact carries the CSeq regbridge saw last (cseq).
	want := func(step string, version uint32, ua *kamUA, cseq int, event, state, regState string) siptest.Contact {
		t.Helper()
		sent := time.Now()
		n := p.Next()
		p.Check(n, version, "partial", "active;expires=")
		c := contactOf(t, n)
		if c.Event != event || c.State != state || c.URI != ua.contact() || c.CallID != ua.callID || c.CSeq != strconv.Itoa(cseq) {
			t.Fatalf("%s: want %s %s %s Call-ID %s CSeq %d:\n%s", step, event, state, ua.contact(), ua.callID, cseq, n.Req.Body())
		}
		if r := n.Doc.Registrations[0]; r.AOR != kamAOR || r.State != regState {
			t.Fatalf("%s: registration %s %s, want %s %s", step, r.AOR, r.State, kamAOR, regState)
		}
		if state == "active" {
			// Kamailio stored now+60 s in its own time zone; decoded
			// right, about 60 s are left.
			if e, err := strconv.Atoi(c.Expires); err != nil || e < 50 || e > 60 {
				t.Fatalf("%s: expires=%q, want 50..60 (Kamailio's expiry decoded in the wrong time zone?):\n%s", step, c.Expires, n.Req.Body())
			}
		}
		t.Logf("%s: NOTIFY version %d %v after SIPp's 200", step, version, time.Since(sent).Round(time.Millisecond))
		return c
	}

	a.run(t, sipp, kam, "register.xml", 60)
	first := want("register A", 1, a, 1, "registered", "active", "active")

	a.run(t, sipp, kam, "register.xml", 60) // same Call-ID, CSeq 2
	if c := want("refresh A", 2, a, 2, "refreshed", "active", "active"); c.ID != first.ID {
		t.Fatalf("refresh A: contact id %s, want %s (the same binding)", c.ID, first.ID)
	}

	b.run(t, sipp, kam, "register.xml", 60)
	if c := want("register B", 3, b, 1, "registered", "active", "active"); c.ID == first.ID {
		t.Fatalf("register B: contact id %s is A's", c.ID)
	}

	a.run(t, sipp, kam, "unregister.xml", 0) // CSeq 3, Expires: 0
	if c := want("unregister A", 4, a, 2, "unregistered", "terminated", "active"); c.ID != first.ID {
		t.Fatalf("unregister A: contact id %s, want %s", c.ID, first.ID)
	}

	// Nothing Kamailio did not cause: some twenty polls of silence.
	p.None(time.Second)

	// Stopped while the peer still answers: one final full NOTIFY with B.
	if code := s.stop(); code != 0 {
		t.Fatalf("regbridge exit code %d", code)
	}
	n = p.Next()
	p.Check(n, 5, "full", "terminated;reason=deactivated")
	if r := n.Doc.Registrations; len(r) != 1 || r[0].State != "active" || len(r[0].Contacts) != 1 || r[0].Contacts[0].URI != b.contact() {
		t.Fatalf("final full state, want B only: %s", n.Req.Body())
	}
}
