package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/sethvargo/go-envconfig"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source/kamailio"
	"github.com/regbridge/regbridge/source/opensips"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// binary is the regbridge command built for one test, run as an operator
// runs it: a process with an environment, an exit code and its output.
type binary struct {
	path string
	dir  string // working directory: a relative default source lands here
}

func buildBinary(t *testing.T) binary {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "regbridge")
	if out, err := exec.Command("go", "build", "-o", path, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return binary{path: path, dir: dir}
}

// environ is the test's environment without REGBRIDGE_* configuration
// (a developer's own settings must not change the outcome), plus env.
func (b binary) environ(env []string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envPrefix) || strings.HasPrefix(kv, testEnvPrefix) {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

// run runs the binary to its end.
func (b binary) run(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.path, args...)
	cmd.Env, cmd.Dir = b.environ(env), b.dir
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errOut.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errOut.String()
}

// started is a regbridge process running in the background.
type started struct {
	http string
	log  *syncBuffer
}

// start runs the server with env on free ports; it is stopped when the
// test ends.
func (b binary) start(t *testing.T, env []string) *started {
	t.Helper()
	s := &started{http: fmt.Sprintf("127.0.0.1:%d", freePort(t)), log: &syncBuffer{}}
	cmd := exec.Command(b.path)
	cmd.Env = b.environ(append([]string{
		fmt.Sprintf("REGBRIDGE_SIP_LISTEN=udp://127.0.0.1:%d", freePort(t)),
		"REGBRIDGE_HTTP_LISTEN=" + s.http,
	}, env...))
	cmd.Dir = b.dir
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("regbridge log:\n%s", tail(s.log.String(), 4000))
		}
	})
	siptest.Eventually(t, func() bool { _, err := s.readyz(); return err == nil }, "HTTP listener up")
	return s
}

// readyz is /readyz's status code and body.
func (s *started) readyz() (string, error) {
	res, err := http.Get("http://" + s.http + "/readyz")
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return fmt.Sprintf("%d %s", res.StatusCode, body), nil
}

// TestSetupThroughBinary: wrong setups stop the real binary at start-up
// with exit code 2 and a message naming the variable and the fix; the
// other checks of this file share its build.
func TestSetupThroughBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	t.Run("refusals", func(t *testing.T) { testRefusals(t, bin) })
	t.Run("help", func(t *testing.T) { testSubcommandHelp(t, bin) })
	t.Run("wrong schema on servers", func(t *testing.T) { testWrongSchemaServers(t, bin) })
	t.Run("missing table", func(t *testing.T) { testMissingTable(t, bin) })
	t.Run("permanent store errors", func(t *testing.T) { testPermanentErrors(t, bin) })
	t.Run("redis layout", func(t *testing.T) { testRedisLayout(t, bin) })
	t.Run("cdc install while running", func(t *testing.T) { testCDCInstallWhileRunning(t, bin) })
}

func testRefusals(t *testing.T, bin binary) {
	dir := t.TempDir()
	openSIPS := filepath.Join(dir, "opensips.db")
	emptyOpenSIPS := filepath.Join(dir, "empty-opensips.db")
	kam := filepath.Join(dir, "kamailio.db")
	for path, stmts := range map[string][]string{
		openSIPS:      must(opensips.Schema("sqlite", "location")),
		emptyOpenSIPS: must(opensips.Schema("sqlite", "location")),
		kam:           kamailio.SQLiteSchema("location"),
	} {
		sqliteExec(t, path, stmts...)
	}
	// The OpenSIPS table holds a row: read as Kamailio's it used to give
	// "skipping bad row" and aors=0.
	sqliteExec(t, openSIPS, "INSERT INTO location (username, contact, expires) VALUES ('alice', 'sip:alice@192.0.2.1', 2000000000)")

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	freeSIP := fmt.Sprintf("REGBRIDGE_SIP_LISTEN=udp://127.0.0.1:%d", freePort(t))
	freeHTTP := fmt.Sprintf("REGBRIDGE_HTTP_LISTEN=127.0.0.1:%d", freePort(t))
	okSource := "REGBRIDGE_SOURCE=kamailio+sqlite:" + kam

	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"misspelled variable", []string{"REGBRIDGE_LOGLEVEL=debug"},
			[]string{"REGBRIDGE_LOGLEVEL is not a regbridge variable; did you mean REGBRIDGE_LOG_LEVEL?"}},
		{"plural source", []string{"REGBRIDGE_SOURCES=kamailio+sqlite:x.db"},
			[]string{"did you mean REGBRIDGE_SOURCE?"}},
		{"bool in words", []string{"REGBRIDGE_PRESENCE=yes"},
			[]string{`REGBRIDGE_PRESENCE: "yes" is not true or false`}},
		{"duration without unit", []string{"REGBRIDGE_POLL_INTERVAL=1"},
			[]string{`REGBRIDGE_POLL_INTERVAL: "1" is not a duration with a unit, such as 1s or 500ms`}},
		{"number", []string{"REGBRIDGE_NOTIFY_MAX_IN_FLIGHT=many"},
			[]string{`REGBRIDGE_NOTIFY_MAX_IN_FLIGHT: "many" is not a whole number`}},
		{"HTTP listen with scheme", []string{"REGBRIDGE_HTTP_LISTEN=http://127.0.0.1:9065"},
			[]string{"REGBRIDGE_HTTP_LISTEN", "host:port, without a scheme"}},
		{"HTTP listen without port", []string{"REGBRIDGE_HTTP_LISTEN=127.0.0.1"},
			[]string{"REGBRIDGE_HTTP_LISTEN", "is not host:port"}},
		{"SIP port in use", []string{okSource, freeHTTP, "REGBRIDGE_SIP_LISTEN=udp://" + udp.LocalAddr().String()},
			[]string{"REGBRIDGE_SIP_LISTEN: the SIP listener cannot start", udp.LocalAddr().String(), "already listens there"}},
		{"HTTP port in use", []string{okSource, freeSIP, "REGBRIDGE_HTTP_LISTEN=" + tcp.Addr().String()},
			[]string{"REGBRIDGE_HTTP_LISTEN: the HTTP listener cannot start", tcp.Addr().String(), "already listens there"}},
		{"missing SQLite file", []string{freeSIP, freeHTTP, "REGBRIDGE_SOURCE=kamailio+sqlite:" + filepath.Join(dir, "none.db")},
			[]string{"database file " + filepath.Join(dir, "none.db") + " does not exist", "?create=true"}},
		{"OpenSIPS table as Kamailio", []string{freeSIP, freeHTTP, "REGBRIDGE_SOURCE=kamailio+sqlite:" + openSIPS},
			[]string{"table location lacks columns id, ruid, instance, reg_id", "it looks like an OpenSIPS usrloc table: use opensips+sqlite:" + openSIPS}},
		{"empty OpenSIPS table as Kamailio", []string{freeSIP, freeHTTP, "REGBRIDGE_SOURCE=kamailio+sqlite:" + emptyOpenSIPS + "?create=true"},
			[]string{"lacks columns", "use opensips+sqlite:" + emptyOpenSIPS}},
		{"Kamailio table as OpenSIPS", []string{freeSIP, freeHTTP, "REGBRIDGE_SOURCE=opensips+sqlite:" + kam},
			[]string{"lacks columns contact_id", "it looks like a Kamailio usrloc table: use kamailio+sqlite:" + kam}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := bin.run(t, tt.env)
			if code != 2 {
				t.Fatalf("exit %d, want 2; stderr:\n%s", code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
		})
	}
}

// The case of LOG_LEVEL and LOG_FORMAT does not matter, and the
// repository's own test variables are not taken for misspellings.
func TestCaseAndTestVariablesAccepted(t *testing.T) {
	env := environMap{"REGBRIDGE_LOG_FORMAT": "JSON", "REGBRIDGE_LOG_LEVEL": "DEBUG", "REGBRIDGE_TEST_LOG": "1", "REGBRIDGE_DB_PASSWORD": "x"}
	cfg, err := loadConfig(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LogFormat != "json" {
		t.Errorf("LogFormat %q, want json", cfg.LogFormat)
	}
	if _, err := loadConfig(t.Context(), environMap{"REGBRIDGE_WEBHOOK_URL": "http://x"}); err == nil ||
		!strings.Contains(err.Error(), "did you mean REGBRIDGE_WEBHOOK_URLS?") {
		t.Errorf("REGBRIDGE_WEBHOOK_URL: %v", err)
	}
	if _, err := loadConfig(t.Context(), environMap{"REGBRIDGE_FROBNICATE": "1"}); err == nil ||
		strings.Contains(err.Error(), "did you mean") || !strings.Contains(err.Error(), "regbridge -h") {
		t.Errorf("REGBRIDGE_FROBNICATE: %v", err)
	}
}

// environMap is a test environment that can be listed, as the process's.
type environMap map[string]string

func (m environMap) Lookup(k string) (string, bool) { return envconfig.MapLookuper(m).Lookup(k) }

func (m environMap) Environ() []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func testSubcommandHelp(t *testing.T, bin binary) {
	// Unreachable settings: a subcommand that acted instead of helping
	// would fail or hang.
	env := []string{"REGBRIDGE_HTTP_LISTEN=127.0.0.1:1", "REGBRIDGE_SOURCE=kamailio+postgres://u@127.0.0.1:1/db"}
	for _, args := range [][]string{
		{"-h"}, {"--help"}, {"health", "-h"}, {"health", "--help"}, {"version", "-h"}, {"version", "--help"},
		{"watch", "-h"}, {"watch", "--help"}, {"cdc", "-h"}, {"cdc", "install", "--help"}, {"schema", "-h"}, {"schema", "--help"},
	} {
		code, stdout, stderr := bin.run(t, env, args...)
		if code != 0 || !strings.Contains(strings.ToLower(stdout), "usage") || stderr != "" {
			t.Errorf("regbridge %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, stdout, stderr)
		}
	}
}

// TestSchemaCommand: every SQL scheme prints its DDL, which creates a
// table the scheme's source then reads (SQLite here; the servers in
// TestSetupThroughBinary).
func TestSchemaCommand(t *testing.T) {
	for _, scheme := range sqlSchemes() {
		var out, errOut bytes.Buffer
		if code := run(t.Context(), []string{"schema", scheme, "--table", "loc"}, envconfig.MapLookuper(nil), &out, &errOut); code != 0 {
			t.Fatalf("%s: exit %d: %s", scheme, code, errOut.String())
		}
		if !strings.Contains(out.String(), "CREATE TABLE") || !strings.Contains(out.String(), "loc") {
			t.Errorf("%s: no CREATE TABLE loc:\n%s", scheme, out.String())
		}
	}
	var out, errOut bytes.Buffer
	if code := run(t.Context(), []string{"schema", "kamailio+redis"}, envconfig.MapLookuper(nil), &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), "no table schema") {
		t.Errorf("redis: exit %d, %q", code, errOut.String())
	}
	// Without an argument, REGBRIDGE_SOURCE decides; the DDL works.
	path := filepath.Join(t.TempDir(), "os.db")
	out.Reset()
	env := envconfig.MapLookuper(map[string]string{"REGBRIDGE_SOURCE": "opensips+sqlite:" + path + "?table=os_loc"})
	if code := run(t.Context(), []string{"schema"}, env, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	sqliteExec(t, path, splitSchema(out.String())...)
	w, err := opensips.NewSQLite(opensips.SQLiteConfig{Path: path, Table: "os_loc"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Check(t.Context()); err != nil {
		t.Fatalf("table made by regbridge schema: %v", err)
	}
}

// splitSchema splits `regbridge schema` output into statements.
func splitSchema(out string) []string {
	var stmts []string
	for _, s := range strings.Split(out, ";\n") {
		var lines []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, "--") {
				lines = append(lines, l)
			}
		}
		if s := strings.TrimSpace(strings.Join(lines, "\n")); s != "" {
			stmts = append(stmts, s)
		}
	}
	return stmts
}

func testWrongSchemaServers(t *testing.T, bin binary) {
	for _, tt := range []struct {
		name string
		db   func(testing.TB) *sqltest.DB
		url  func(*sqltest.DB, string) string
	}{
		{"mariadb", sqltest.MySQL, func(db *sqltest.DB, scheme string) string {
			return fmt.Sprintf("%s+mysql://%s@%s/%s", scheme, db.Endpoint.User, db.Endpoint.Addr, db.Name())
		}},
		{"postgres", sqltest.Postgres, func(db *sqltest.DB, scheme string) string {
			return fmt.Sprintf("%s+postgres://%s@%s/%s?sslmode=disable", scheme, db.Endpoint.User, db.Endpoint.Addr, db.Name())
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := tt.db(t)
			for _, stmt := range must(opensips.Schema(db.Driver, "location")) {
				db.Exec(t, stmt)
			}
			code, _, stderr := bin.run(t, []string{"REGBRIDGE_SOURCE=" + tt.url(db, "kamailio")})
			want := "it looks like an OpenSIPS usrloc table: use " + tt.url(db, "opensips")
			if code != 2 || !strings.Contains(stderr, "table location lacks columns id, ruid") || !strings.Contains(stderr, want) {
				t.Errorf("exit %d, want 2 and %q; stderr:\n%s", code, want, stderr)
			}
		})
	}
}

// testMissingTable: a missing table is no outage: one ERROR with the fix,
// the cause in /readyz, and creating the table with `regbridge schema`
// heals it without a restart.
func testMissingTable(t *testing.T, bin binary) {
	db := sqltest.Postgres(t)
	src := fmt.Sprintf("REGBRIDGE_SOURCE=kamailio+postgres://%s@%s/%s?sslmode=disable", db.Endpoint.User, db.Endpoint.Addr, db.Name())
	s := bin.start(t, []string{src, "REGBRIDGE_POLL_INTERVAL=50ms"})
	siptest.Eventually(t, func() bool {
		body, _ := s.readyz()
		return strings.HasPrefix(body, "503 ") && strings.Contains(body, "contact store unreachable: table location does not exist") &&
			strings.Contains(body, "regbridge schema")
	}, "/readyz names the missing table")
	code, ddl, stderr := bin.run(t, []string{src}, "schema")
	if code != 0 {
		t.Fatalf("regbridge schema: exit %d: %s", code, stderr)
	}
	for _, stmt := range splitSchema(ddl) {
		db.Exec(t, stmt)
	}
	siptest.Eventually(t, func() bool { body, _ := s.readyz(); return strings.HasPrefix(body, "200 ") }, "ready once the table exists")
	log := s.log.String()
	if n := strings.Count(log, "level=ERROR"); n != 1 || !strings.Contains(log, "contact store misconfigured: table location does not exist") {
		t.Errorf("%d ERROR lines, want 1 naming the table:\n%s", n, log)
	}
	if strings.Contains(log, "table unreadable, retrying") {
		t.Errorf("the missing table was also logged as an outage:\n%s", log)
	}
}

// testPermanentErrors: an unknown database or a refused user is told
// apart from an outage: /readyz says why, one ERROR line says it once.
func testPermanentErrors(t *testing.T, bin binary) {
	my, pg := sqltest.MySQL(t), sqltest.Postgres(t) // the servers answer (or the test skips)
	requireRedis(t)
	for _, tt := range []struct{ name, src, want string }{
		{"mariadb unknown database", fmt.Sprintf("kamailio+mysql://%s@%s/%s_none", my.Endpoint.User, my.Endpoint.Addr, my.Name()),
			"the database does not exist"},
		{"mariadb unknown user", fmt.Sprintf("kamailio+mysql://regbridge_nobody:secret@%s/%s", my.Endpoint.Addr, my.Name()),
			"the server refuses the user"},
		{"postgres unknown database", fmt.Sprintf("kamailio+postgres://%s@%s/%s_none?sslmode=disable", pg.Endpoint.User, pg.Endpoint.Addr, pg.Name()),
			"the database does not exist"},
		{"postgres unknown role", fmt.Sprintf("opensips+postgres://regbridge_nobody@%s/%s?sslmode=disable", pg.Endpoint.Addr, pg.Name()),
			"the server refuses the user"},
		{"redis database number", "redis://127.0.0.1:6379/4000?layout=generic", "the database number does not exist"},
		{"redis unknown user", "kamailio+redis://regbridge_nobody:secret@127.0.0.1:6379/0", "the server refuses the credentials"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := bin.start(t, []string{"REGBRIDGE_SOURCE=" + tt.src})
			siptest.Eventually(t, func() bool {
				body, _ := s.readyz()
				return strings.HasPrefix(body, "503 ") && strings.Contains(body, "contact store unreachable: "+tt.want)
			}, "/readyz says "+tt.want)
			time.Sleep(time.Second) // a few retries: still one ERROR
			log := s.log.String()
			if n := strings.Count(log, "level=ERROR"); n != 1 || !strings.Contains(log, tt.want) {
				t.Errorf("%d ERROR lines, want 1 saying %q:\n%s", n, tt.want, log)
			}
			if strings.Contains(log, "secret") {
				t.Errorf("password logged:\n%s", log)
			}
		})
	}
}

// requireRedis skips (fails under CI) without the local Redis.
func requireRedis(t *testing.T) {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379", DisableIdentity: true})
	defer rdb.Close()
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Redis at 127.0.0.1:6379: %v", err)
		}
		t.Skipf("Redis at 127.0.0.1:6379 not reachable (%v); install and start redis-server", err)
	}
}

func testRedisLayout(t *testing.T, bin binary) {
	requireRedis(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379", DisableIdentity: true})
	defer rdb.Close()
	prefix := fmt.Sprintf("setuptest%d", time.Now().UnixNano())
	generic, kam, kamTable := prefix+"g:", prefix+"k:entry::", prefix+"t:entry::"
	t.Cleanup(func() { rdb.Del(context.Background(), generic+"b1", kam+"r1", kamTable+"r2") })
	// Kamailio's db_redis hash under the generic prefix, and the reverse.
	rdb.HSet(t.Context(), generic+"b1", "ruid", "r1", "username", "alice", "contact", "sip:alice@192.0.2.1", "expires", "2030-01-01 00:00:00")
	rdb.HSet(t.Context(), kam+"r1", "aor", "sip:bob@example.com", "uri", "sip:bob@192.0.2.2", "expires", "1900000000")
	// db_redis keys read as generic ones: the table is named.
	rdb.HSet(t.Context(), kamTable+"r2", "ruid", "r2", "username", "carol", "contact", "sip:carol@192.0.2.3", "expires", "2030-01-01 00:00:00")
	for _, tt := range []struct{ src, want string }{
		{"redis://127.0.0.1:6379/0?layout=generic&prefix=" + generic, "follow the kamailio layout"},
		{"kamailio+redis://127.0.0.1:6379/0?table=" + prefix + "k", "follow the generic layout"},
		{"redis://127.0.0.1:6379/0?layout=generic&prefix=" + kamTable, "use kamailio+redis://127.0.0.1:6379/0?table=" + prefix + "t "},
	} {
		code, _, stderr := bin.run(t, []string{"REGBRIDGE_SOURCE=" + tt.src,
			fmt.Sprintf("REGBRIDGE_SIP_LISTEN=udp://127.0.0.1:%d", freePort(t)), fmt.Sprintf("REGBRIDGE_HTTP_LISTEN=127.0.0.1:%d", freePort(t))})
		if code != 2 || !strings.Contains(stderr, tt.want) || !strings.Contains(stderr, "use ") {
			t.Errorf("%s: exit %d, want 2 and %q; stderr:\n%s", tt.src, code, tt.want, stderr)
		}
	}
}

// testCDCInstallWhileRunning: `regbridge cdc install` takes effect in a
// running instance that polls because the triggers were missing.
func testCDCInstallWhileRunning(t *testing.T, bin binary) {
	for _, tt := range []struct {
		name   string
		db     func(testing.TB) *sqltest.DB
		schema func(string) []string
		url    string
		insert string
	}{
		{"mariadb", sqltest.MySQL, kamailio.MySQLSchema, "kamailio+mysql://%s@%s/%s?cdc=trigger&reconcile=1s",
			"INSERT INTO location (ruid, username, domain, contact, expires, last_modified) VALUES " +
				"('r1', 'alice', 'example.com', 'sip:alice@192.0.2.1', NOW() + INTERVAL 1 HOUR, NOW())"},
		{"postgres", sqltest.Postgres, kamailio.PostgresSchema, "kamailio+postgres://%s@%s/%s?sslmode=disable&cdc=trigger&reconcile=1s",
			"INSERT INTO location (ruid, username, domain, contact, expires, last_modified) VALUES " +
				"('r1', 'alice', 'example.com', 'sip:alice@192.0.2.1', now() + interval '1 hour', now())"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			db := tt.db(t)
			for _, stmt := range tt.schema("location") {
				db.Exec(t, stmt)
			}
			src := "REGBRIDGE_SOURCE=" + fmt.Sprintf(tt.url, db.Endpoint.User, db.Endpoint.Addr, db.Name())
			s := bin.start(t, []string{src, "REGBRIDGE_POLL_INTERVAL=100ms"})
			siptest.Eventually(t, func() bool { body, _ := s.readyz(); return strings.HasPrefix(body, "200 ") }, "ready")
			if !strings.Contains(s.log.String(), "the triggers are missing") {
				t.Fatalf("no warning about the missing triggers:\n%s", s.log.String())
			}
			if code, _, stderr := bin.run(t, []string{src}, "cdc", "install"); code != 0 {
				t.Fatalf("cdc install: exit %d: %s", code, stderr)
			}
			siptest.Eventually(t, func() bool {
				log := s.log.String()
				return strings.Contains(log, "switching from polling to the change feed") && strings.Contains(log, "change capture by triggers active")
			}, "the running watcher switches to the change feed")
			// The feed delivers: a row written now reaches the API.
			db.Exec(t, tt.insert)
			siptest.Eventually(t, func() bool {
				res, err := http.Get("http://" + s.http + "/v1/registrations")
				if err != nil {
					return false
				}
				defer res.Body.Close()
				body, _ := io.ReadAll(res.Body)
				return strings.Contains(string(body), "sip:alice@192.0.2.1")
			}, "the new row reported")
			if body, _ := s.readyz(); !strings.HasPrefix(body, "200 ") {
				t.Errorf("/readyz after the switch: %s", body)
			}
		})
	}
}

func sqliteExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
