package main

// The processes `regload regcost` runs and measures: a MariaDB and a
// PostgreSQL server of its own (a fresh data directory, loopback, a free
// port, the distribution's default settings but wal_level=logical), so
// their CPU time is the registrar's and regbridge's alone and no shared
// server is touched; and a Kamailio registrar (usrloc db_mode 1) on each.

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/regbridge/regbridge/source/kamailio"
)

// costProc is a process regcost started, with its log.
type costProc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

func startProc(name, dir string, cmd *exec.Cmd) (*costProc, error) {
	p := &costProc{name: name, cmd: cmd, log: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// stop ends the process group with SIGTERM (SIGKILL after 20 s).
func (p *costProc) stop() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

func (p *costProc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// cpu is the CPU seconds of the process and its children, live or reaped
// (PostgreSQL's backends and Kamailio's workers are children of the first
// process; a backend that ended is in its parent's cutime).
func (p *costProc) cpu() float64 { return treeCPU(p.cmd.Process.Pid) }

func treeCPU(pid int) float64 {
	own, _, ok := statTimes(pid, true)
	if !ok {
		return 0
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil || c == pid {
			continue
		}
		if t, ppid, ok := statTimes(c, true); ok && ppid == pid {
			own += t
		}
	}
	return own
}

// statTimes reads utime+stime (plus cutime+cstime with children) and the
// parent's pid from /proc/<pid>/stat.
func statTimes(pid int, children bool) (float64, int, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0, false
	}
	ppid, _ := strconv.Atoi(f[1])
	var t uint64
	last := 12
	if children {
		last = 14
	}
	for _, s := range f[11 : last+1] {
		n, _ := strconv.ParseUint(s, 10, 64)
		t += n
	}
	return float64(t) / clockTicks, ppid, true
}

// dbServer is a database server of regcost's own with a database
// "regcost" holding Kamailio's location table.
type dbServer struct {
	kind    string // mysql or postgres
	port    int
	proc    *costProc
	kamURL  string // Kamailio's db_url
	srcBase string // REGBRIDGE_SOURCE without its query
	admin   func(ctx context.Context, q string) error
	closeDB func()
}

const costDBUser, costDBPass, costDB = "regcost", "regcost", "regcost"

func startMariaDB(ctx context.Context, dir string) (*dbServer, error) {
	data := filepath.Join(dir, "mariadb")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	run := "root"
	if _, err := user.Lookup("mysql"); err == nil && os.Geteuid() == 0 {
		run = "mysql"
		if err := chownTo(data, "mysql"); err != nil {
			return nil, err
		}
	}
	install, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		return nil, errors.New("mariadb-install-db not found: apt-get install mariadb-server")
	}
	if out, err := exec.CommandContext(ctx, install, "--no-defaults", "--datadir="+data, "--user="+run,
		"--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("mariadb-install-db: %v\n%s", err, tail(out))
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	bin := "/usr/sbin/mariadbd"
	if p, err := exec.LookPath("mariadbd"); err == nil {
		bin = p
	}
	proc, err := startProc("mariadb", dir, exec.Command(bin, "--no-defaults", "--datadir="+data,
		"--user="+run, "--port="+strconv.Itoa(port), "--bind-address=127.0.0.1",
		"--socket="+filepath.Join(data, "mysqld.sock"), "--pid-file="+filepath.Join(data, "mysqld.pid"),
		"--skip-log-bin"))
	if err != nil {
		return nil, err
	}
	s := &dbServer{kind: "mysql", port: port, proc: proc}
	rootDSN := fmt.Sprintf("root@tcp(127.0.0.1:%d)/", port)
	var db *sql.DB
	for deadline := time.Now().Add(60 * time.Second); ; {
		db, err = sql.Open("mysql", rootDSN)
		if err == nil {
			if err = db.PingContext(ctx); err == nil {
				break
			}
			db.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			proc.stop()
			return nil, fmt.Errorf("MariaDB did not start: %v\n%s", err, proc.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	db.SetMaxOpenConns(1)
	s.admin = func(ctx context.Context, q string) error { _, err := db.ExecContext(ctx, q); return err }
	s.closeDB = func() { db.Close() }
	for _, q := range []string{
		"CREATE DATABASE " + costDB + " CHARACTER SET utf8mb4",
		"CREATE USER '" + costDBUser + "'@'%' IDENTIFIED BY '" + costDBPass + "'",
		"GRANT ALL ON " + costDB + ".* TO '" + costDBUser + "'@'%'",
	} {
		if err := s.admin(ctx, q); err != nil {
			s.stop()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	db.Close()
	if db, err = sql.Open("mysql", rootDSN+costDB); err != nil {
		proc.stop()
		return nil, err
	}
	for _, q := range append(kamailio.MySQLSchema("location"),
		"INSERT INTO version (table_name, table_version) VALUES ('version', '1')") {
		if err := s.admin(ctx, q); err != nil {
			s.stop()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	s.kamURL = fmt.Sprintf("mysql://%s:%s@127.0.0.1:%d/%s", costDBUser, costDBPass, port, costDB)
	s.srcBase = fmt.Sprintf("kamailio+mysql://%s:%s@127.0.0.1:%d/%s", costDBUser, costDBPass, port, costDB)
	return s, nil
}

func startPostgres(ctx context.Context, dir string) (*dbServer, error) {
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		return nil, errors.New("PostgreSQL's initdb not found: apt-get install postgresql")
	}
	binDir := filepath.Dir(bins[len(bins)-1])
	data := filepath.Join(dir, "postgres")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 { // PostgreSQL refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, errors.New("running as root needs a postgres user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := chownTo(data, "postgres"); err != nil {
			return nil, err
		}
	}
	initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, tail(out))
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(binDir, "postgres"), "-D", data, "-p", strconv.Itoa(port),
		"-k", data, "-c", "listen_addresses=127.0.0.1", "-c", "wal_level=logical")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	proc, err := startProc("postgres", dir, cmd)
	if err != nil {
		return nil, err
	}
	s := &dbServer{kind: "postgres", port: port, proc: proc}
	var conn *pgx.Conn
	for deadline := time.Now().Add(60 * time.Second); ; {
		conn, err = pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port))
		if err == nil {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			proc.stop()
			return nil, fmt.Errorf("PostgreSQL did not start: %v\n%s", err, proc.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+costDB); err != nil {
		conn.Close(ctx)
		proc.stop()
		return nil, err
	}
	conn.Close(ctx)
	if conn, err = pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", port, costDB)); err != nil {
		proc.stop()
		return nil, err
	}
	s.admin = func(ctx context.Context, q string) error { _, err := conn.Exec(ctx, q); return err }
	s.closeDB = func() { conn.Close(context.Background()) }
	for _, q := range append(kamailio.PostgresSchema("location"),
		"INSERT INTO version (table_name, table_version) VALUES ('version', '1')") {
		if err := s.admin(ctx, q); err != nil {
			s.stop()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	// The superuser may install the publication and slot of cdc=logical;
	// trust authentication ignores the password Kamailio insists on.
	s.kamURL = fmt.Sprintf("postgres://postgres:x@127.0.0.1:%d/%s", port, costDB)
	s.srcBase = fmt.Sprintf("kamailio+postgres://postgres@127.0.0.1:%d/%s", port, costDB)
	return s, nil
}

// prefill adds n bindings of other AORs (fill0..fillN-1) that live a day,
// generated by the server itself.
func (s *dbServer) prefill(ctx context.Context, n int) error {
	if n <= 0 {
		return nil
	}
	var q string
	switch s.kind {
	case "mysql":
		// The SEQUENCE engine's seq_0_to_N table, in chunks so the undo log stays small.
		for lo := 0; lo < n; lo += 100000 {
			hi := min(lo+100000, n) - 1
			q = fmt.Sprintf("INSERT INTO location (ruid, username, contact, expires, last_modified, callid, cseq, user_agent)"+
				" SELECT CONCAT('uloc-fill-', seq), CONCAT('fill', seq), CONCAT('sip:fill', seq, '@192.0.2.9:5060'),"+
				" UTC_TIMESTAMP() + INTERVAL 1 DAY, UTC_TIMESTAMP(), CONCAT('fill-', seq), 1, 'regcost' FROM seq_%d_to_%d", lo, hi)
			if err := s.admin(ctx, q); err != nil {
				return err
			}
		}
		return s.admin(ctx, "ANALYZE TABLE location")
	default:
		q = fmt.Sprintf("INSERT INTO location (ruid, username, contact, expires, last_modified, callid, cseq, user_agent)"+
			" SELECT 'uloc-fill-' || g, 'fill' || g, 'sip:fill' || g || '@192.0.2.9:5060',"+
			" (now() AT TIME ZONE 'UTC') + interval '1 day', now() AT TIME ZONE 'UTC', 'fill-' || g, 1, 'regcost'"+
			" FROM generate_series(0, %d) g", n-1)
		if err := s.admin(ctx, q); err != nil {
			return err
		}
		return s.admin(ctx, "VACUUM ANALYZE location")
	}
}

func (s *dbServer) stop() {
	if s == nil {
		return
	}
	if s.closeDB != nil {
		s.closeDB()
	}
	s.proc.stop()
}

//go:embed regcost_kamailio.cfg.tmpl
var kamailioCostCfg string

// startKamailio runs Kamailio as the registrar of s with children UDP
// workers, in UTC (so regbridge reads its DATETIMEs with tz=UTC).
func startKamailio(ctx context.Context, bin, dir string, s *dbServer, children int) (*costProc, int, error) {
	mods, _ := filepath.Glob("/usr/lib/*/kamailio/modules/usrloc.so")
	mods = append(mods, "/usr/lib64/kamailio/modules/usrloc.so", "/usr/lib/kamailio/modules/usrloc.so")
	modDir := ""
	for _, m := range mods {
		if _, err := os.Stat(m); err == nil {
			modDir = filepath.Dir(m)
			break
		}
	}
	module := "db_" + s.kind
	if modDir == "" {
		return nil, 0, errors.New("Kamailio's modules not found: apt-get install kamailio")
	}
	if _, err := os.Stat(filepath.Join(modDir, module+".so")); err != nil {
		return nil, 0, fmt.Errorf("%s.so not found: apt-get install kamailio-%s-modules", module, map[string]string{"mysql": "mysql", "postgres": "postgres"}[s.kind])
	}
	port, err := freePort()
	if err != nil {
		return nil, 0, err
	}
	var b strings.Builder
	err = template.Must(template.New("kamailio").Parse(kamailioCostCfg)).Execute(&b, map[string]any{
		"Port": port, "ModulesDir": modDir, "DBModule": module, "DBURL": s.kamURL, "Children": children,
	})
	if err != nil {
		return nil, 0, err
	}
	cfg := filepath.Join(dir, "kamailio-"+s.kind+".cfg")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(bin, "-f", cfg, "-DD", "-E", "-m", "256", "-M", "16")
	cmd.Env = append(os.Environ(), "TZ=UTC")
	p, err := startProc("kamailio-"+s.kind, dir, cmd)
	if err != nil {
		return nil, 0, err
	}
	return p, port, nil
}

func chownTo(path, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}
