// Command regload is a load and correctness test for regbridge that users
// run against their own installation. It holds many reg event subscriptions
// (RFC 3680 4.1, RFC 6665 4.1.2) from a few UDP sockets or TCP connections,
// writes re-REGISTERs into the contact store regbridge watches at a set rate
// (Kamailio's usrloc layout in SQLite, MariaDB/MySQL, PostgreSQL or Redis),
// and matches every NOTIFY to the store change it reports. It prints NOTIFY
// throughput, store-commit-to-NOTIFY latency, losses, duplicates, version
// gaps (RFC 3680 4.1: +1 per document), and regbridge's CPU time and
// memory, for people or as JSON.
//
// A run goes: prepare the store (one binding per AOR), optionally start
// regbridge on it (--spawn), subscribe, write changes for --duration, wait
// up to --drain for the last NOTIFYs, then unsubscribe (or stop the spawned
// regbridge) and clean up. Every loop is bounded by a count or a deadline;
// targets off the loopback interface are refused unless --allow-remote.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/regbridge/regbridge/source"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process; it returns the exit code: 0 when the run
// was correct, 1 when it found a problem or failed, 2 on bad usage.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "regcost" {
		return runRegcost(ctx, args[1:], stdout, stderr)
	}
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "regload: %v\n", err)
		return 2
	}
	rep, err := execute(ctx, cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "regload: %v\n", err)
		return 1
	}
	if cfg.json {
		if err := rep.writeJSON(stdout); err != nil {
			return 1
		}
	} else {
		rep.writeText(stdout)
	}
	if !rep.OK {
		return 1
	}
	return 0
}

// runner holds one run's state.
type runner struct {
	cfg   *config
	run   string // random id in every dialog identifier and store key
	t0    time.Time
	users []string // user part of each AOR
	rows  []row    // each AOR's binding as first written
	subs  []subscriber
	lanes []*lane

	timers  sipTimers     // the SUBSCRIBE transactions' timers
	window  chan struct{} // one token per outstanding SUBSCRIBE
	stage   atomic.Int32
	pending atomic.Int64 // SUBSCRIBEs not yet active or failed
	leaving atomic.Int64 // unsubscribes not yet confirmed
}

// since is the time since t0 in ns (monotonic).
func (r *runner) since() int64 { return int64(time.Since(r.t0)) }

// teardownTimeout bounds the end of a run after Ctrl-C.
const teardownTimeout = 30 * time.Second

// execute performs one run and returns its report.
func execute(ctx context.Context, cfg *config, progress io.Writer) (*report, error) {
	say := func(format string, args ...any) { fmt.Fprintf(progress, "regload: "+format+"\n", args...) }
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return nil, err
		}
		defer pprof.StopCPUProfile()
	}
	r := &runner{cfg: cfg, run: strconv.FormatUint(rand.Uint64N(1<<24)+1<<24, 36), t0: time.Now(), timers: defaultTimers}
	r.window = make(chan struct{}, cfg.window)
	now := time.Now()
	r.users = make([]string, cfg.aors)
	r.rows = make([]row, cfg.aors)
	for a := range cfg.aors {
		r.rows[a] = newRow(r.run, cfg.domain, a, now)
		r.users[a] = r.rows[a].user
	}

	// The store, and regbridge on it when spawning.
	var spec storeSpec
	var tmpDir string
	var err error
	if cfg.spawn != "" && cfg.store == "" {
		if tmpDir, err = os.MkdirTemp("", "regload-"); err != nil {
			return nil, err
		}
		if !cfg.keep {
			defer os.RemoveAll(tmpDir)
		}
		spec = storeSpec{kind: "sqlite", path: filepath.Join(tmpDir, "location.db"), table: "location"}
		if cfg.table != "" {
			spec.table = cfg.table
		}
	} else if spec, err = parseStore(cfg.store, cfg.table); err != nil {
		return nil, err
	}
	if err := cfg.checkHost("--store", spec.host); err != nil {
		return nil, err
	}
	if spec.kind == "sqlite" {
		cfg.writers = 1 // SQLite has one writer at a time
	}
	if cfg.pprofURL != "" {
		host, err := cfg.pprofHost()
		if err != nil {
			return nil, err
		}
		if err := cfg.checkHost("--pprof-url", host); err != nil {
			return nil, err
		}
	}
	st, err := openStore(ctx, spec, cfg.writers, cfg.sqliteSync)
	if err != nil {
		return nil, err
	}
	defer st.close()
	say("writing %d bindings into the %s store", cfg.aors, spec.kind)
	if err := st.prepare(ctx, r.rows); err != nil {
		return nil, err
	}
	if tmpDir == "" && !cfg.keep {
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
			defer cancel()
			if err := st.cleanup(cctx, r.rows); err != nil {
				say("%v", err)
			}
		}()
	}

	rep := &report{Store: spec.kind, Spawned: cfg.spawn != "", Subscriptions: cfg.subscriptions, AORs: cfg.aors, Sockets: cfg.sockets}
	var kid, kid0 *child // kid is nil once stopped
	if cfg.spawn != "" {
		source, err := spawnSource(spec, cfg)
		if err != nil {
			return nil, err
		}
		dir := tmpDir
		if dir == "" { // its log needs a place of its own
			if dir, err = os.MkdirTemp("", "regload-"); err != nil {
				return nil, err
			}
			if !cfg.keep {
				defer os.RemoveAll(dir)
			}
		}
		say("starting %s", cfg.spawn)
		if kid, err = spawnRegbridge(ctx, cfg.spawn, source, dir, cfg); err != nil {
			return nil, err
		}
		kid0 = kid
		defer func() {
			if kid != nil {
				kid.stop()
			}
		}()
		network, _, _ := cutScheme(cfg.server)
		addr := kid.sip
		switch network {
		case "tls":
			addr = kid.tls
		case "ws":
			addr = kid.ws
		case "wss":
			addr = kid.wss
		}
		if err := cfg.setServer(network + "://" + addr); err != nil {
			return nil, err
		}
		rep.Regbridge.PID = kid.cmd.Process.Pid
	}
	rep.Server, rep.Transport = cfg.serverAddr.String(), cfg.network
	switch {
	case rep.Regbridge.PID != 0:
	case cfg.pid != 0:
		rep.Regbridge.PID = cfg.pid
	case cfg.serverAddr.Addr().IsLoopback():
		network := cfg.network
		if network != "udp" {
			network = "tcp" // TLS and WebSocket listen on TCP
		}
		rep.Regbridge.PID, err = findPID(network, cfg.serverAddr.Port())
		if err != nil {
			rep.Regbridge.Error = err.Error()
		}
	default:
		rep.Regbridge.Error = "remote server; give --pid"
	}

	// The watchers.
	r.subs = make([]subscriber, cfg.subscriptions)
	for i := range r.subs {
		r.subs[i] = subscriber{aor: int32(i % cfg.aors), seen: -1}
	}
	if r.lanes, err = openLanes(cfg.network, cfg.serverAddr, cfg.sockets); err != nil {
		return nil, err
	}
	var readers sync.WaitGroup
	for _, l := range r.lanes {
		readers.Go(func() { r.read(l) })
	}
	lanesOpen := true
	closeAll := func() {
		if lanesOpen {
			closeLanes(r.lanes)
			readers.Wait()
			lanesOpen = false
		}
	}
	defer closeAll()

	rep.Cores = runtime.NumCPU()
	switch {
	case spec.port == 0:
	case !isLoopback(spec.host):
		rep.StoreServer.Error = "remote store"
	default:
		rep.StoreServer.PID, err = findPID("tcp", spec.port)
		if err != nil {
			rep.StoreServer.Error = err.Error()
		}
	}
	storeCPU := func() float64 {
		return serverCPU(rep.StoreServer.PID)
	}

	rep.LoadBefore = loadAvg()
	udp0 := readUDPCounters()
	proc := func() procSample {
		if rep.Regbridge.PID == 0 {
			return procSample{}
		}
		p, err := readProc(rep.Regbridge.PID)
		if err != nil && rep.Regbridge.Error == "" {
			rep.Regbridge.Error = err.Error()
		}
		return p
	}

	say("subscribing %d watchers to %d AORs over %d %s sockets at %.0f/s", cfg.subscriptions, cfg.aors, cfg.sockets, cfg.network, cfg.subscribeRate)
	p0, start := proc(), time.Now()
	r.stage.Store(stageSubscribe)
	if err := r.subscribeAll(ctx); err != nil {
		return nil, err // the deferred cleanups remove the bindings
	}
	rep.Subscribe.Seconds = time.Since(start).Seconds()
	p1 := proc()
	rep.Regbridge.SubscribeCPU = p1.CPU - p0.CPU
	for _, l := range r.lanes {
		l.subsMu.Lock()
		for i := l.id; i < len(r.subs); i += len(r.lanes) {
			if s := &r.subs[i]; s.phase == subActive {
				s.watched = true
				rep.Subscribe.Active++
			}
		}
		l.subsMu.Unlock()
	}
	rep.Subscribe.Rate = float64(rep.Subscribe.Active) / rep.Subscribe.Seconds
	if cfg.settle > 0 && ctx.Err() == nil {
		say("settling for %v", cfg.settle)
		select {
		case <-ctx.Done():
		case <-time.After(cfg.settle):
		}
	}

	var log *changeLog
	if ctx.Err() == nil && rep.Subscribe.Active > 0 {
		say("writing %d changes at %.0f/s", cfg.changes, cfg.rate)
		r.stage.Store(stageChanges)
		profiled := r.profileRegbridge(ctx, say)
		start = time.Now()
		self1, store1, host1 := selfCPU(), storeCPU(), readHostCPU()
		log = r.driveChanges(ctx, st)
		deadline := time.Now().Add(cfg.drain)
		for !r.caughtUp(log) && time.Now().Before(deadline) && source.Sleep(ctx, 20*time.Millisecond) {
		}
		p2, host2 := proc(), readHostCPU()
		secs := time.Since(start).Seconds()
		rep.Regbridge.ChangeCPU = p2.CPU - p1.CPU
		rep.Regbridge.Cores = rep.Regbridge.ChangeCPU / secs
		rep.Regbridge.After = p2
		rep.Regload.ChangeCPU = selfCPU() - self1
		rep.Regload.Cores = rep.Regload.ChangeCPU / secs
		rep.StoreServer.ChangeCPU = storeCPU() - store1
		rep.StoreServer.Cores = rep.StoreServer.ChangeCPU / secs
		rep.HostBusy = (host2.busy - host1.busy) / secs
		<-profiled
	}
	rep.Changes.TargetRate = cfg.rate

	// Teardown, bounded even after Ctrl-C.
	r.stage.Store(stageTeardown)
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownTimeout)
	defer cancel()
	switch {
	case kid != nil:
		say("stopping regbridge")
		if err := kid.stop(); err != nil {
			say("regbridge: %v", err)
		}
		// It runs at log level warn: anything logged is worth a look.
		if tail := kid.logTail(); tail != "" {
			say("regbridge logged (warnings and errors; end of its log):\n%s", lastLines(tail, 10))
		}
		kid = nil
	case !cfg.keep:
		say("unsubscribing")
		r.unsubscribeAll(tctx, time.Now().Add(time.Duration(float64(cfg.subscriptions)/cfg.subscribeRate*float64(time.Second))+5*time.Second))
	}
	closeAll()

	rep.LoadAfter = loadAvg()
	rep.UDP = readUDPCounters().since(udp0)
	rep.Regload.CPU = selfCPU()
	if self, err := readProc(os.Getpid()); err == nil {
		rep.Regload.RSS = self.RSS
	}
	rep.fill(r, log)
	if n := rep.Correctness.ChangeNotifies; n > 0 {
		rep.Regbridge.MicrosPerNote = rep.Regbridge.ChangeCPU / float64(n) * 1e6
	}
	if log == nil {
		rep.Changes.Planned = cfg.changes
	}
	rep.judge()
	if cfg.keep && kid0 != nil {
		say("kept %s", filepath.Dir(kid0.logPath))
	}
	return rep, nil
}

// spawnSource is the REGBRIDGE_SOURCE for a spawned regbridge.
func spawnSource(spec storeSpec, cfg *config) (string, error) {
	for _, kv := range cfg.env {
		if v, ok := strings.CutPrefix(kv, "REGBRIDGE_SOURCE="); ok {
			return v, nil
		}
	}
	if spec.kind != "sqlite" {
		return "", fmt.Errorf("with --spawn and a %s store, give regbridge's source URL with --env REGBRIDGE_SOURCE=<url>", spec.kind)
	}
	abs, err := filepath.Abs(spec.path)
	if err != nil {
		return "", err
	}
	src := "kamailio+sqlite://" + abs
	if spec.table != "location" {
		src += "?table=" + spec.table
	}
	return src, nil
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// cutScheme splits "udp://host:port".
func cutScheme(v string) (scheme, rest string, ok bool) { return strings.Cut(v, "://") }

// profileRegbridge takes a CPU profile of regbridge over the change phase
// when --pprof-url is set; the returned channel closes when it is done.
func (r *runner) profileRegbridge(ctx context.Context, say func(string, ...any)) <-chan struct{} {
	done := make(chan struct{})
	if r.cfg.pprofURL == "" {
		close(done)
		return done
	}
	secs := int(r.cfg.duration.Seconds() + 0.999)
	go func() {
		defer close(done)
		client := &http.Client{Timeout: time.Duration(secs+10) * time.Second}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/profile?seconds=%d", r.cfg.pprofURL, secs), nil)
		if err != nil {
			say("profile: %v", err)
			return
		}
		res, err := client.Do(req)
		if err != nil {
			say("profile: %v", err)
			return
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			say("profile: %s", res.Status)
			return
		}
		f, err := os.Create(r.cfg.pprofOut)
		if err != nil {
			say("profile: %v", err)
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, res.Body); err != nil {
			say("profile: %v", err)
			return
		}
		say("wrote regbridge's CPU profile to %s", r.cfg.pprofOut)
	}()
	return done
}

// serverCPU is the CPU seconds of a store's server found by its port (0
// when none was): its whole process tree, since PostgreSQL's backends
// and walsenders are child processes of the one listening.
func serverCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	return treeCPU(pid)
}
