package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Defaults, chosen so that `regload --spawn ./regbridge` is a short run a
// shared 2-core machine shrugs off.
const (
	defaultServer        = "udp://127.0.0.1:5065" // regbridge's default listener
	defaultSockets       = 8                      // enough to spread the kernel's per-socket work
	defaultSubscriptions = 1000
	defaultSubscribeRate = 2000 // SUBSCRIBE/s: 4 datagrams each, well below what regbridge takes
	defaultWindow        = 1000 // SUBSCRIBEs waiting for their 200 and first NOTIFY
	defaultExpires       = time.Hour
	defaultRate          = 1000 // changes/s
	defaultDuration      = 10 * time.Second
	defaultDrain         = 5 * time.Second
	defaultSpawnPoll     = 20 * time.Millisecond // a polled store's latency is mostly this
	defaultDomain        = "regload.invalid"     // never a real user's domain (RFC 2606)

	// maxRunTime bounds a run, so arrival times fit in uint32 microseconds.
	maxRunTime = time.Hour
	// maxChanges bounds the per-change bookkeeping (16 bytes each).
	maxChanges = 50_000_000
)

// config is regload's command line.
type config struct {
	server         string
	network        string // "udp", "tcp", "tls", "ws" or "wss"
	serverAddr     netip.AddrPort
	sockets        int
	subscriptions  int
	aors           int
	watchersPerAOR int
	domain         string
	subscribeRate  float64
	window         int
	expires        time.Duration

	store      string
	table      string
	sqliteSync string
	rate       float64
	duration   time.Duration
	changes    int
	writers    int
	batch      int
	drain      time.Duration
	settle     time.Duration

	pid          int
	spawn        string
	env          multiFlag
	pollInterval time.Duration

	json        bool
	allowRemote bool
	keep        bool
	cpuProfile  string
	pprofURL    string
	pprofOut    string
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// newFlagSet is a flag set named name whose usage, written to out on -h,
// is head followed by the flags' defaults.
func newFlagSet(name, head string, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, head)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags reads the command line; it writes usage to out on -h.
func parseFlags(args []string, out io.Writer) (*config, error) {
	c := &config{}
	fs := newFlagSet("regload", usageHead, out)
	fs.StringVar(&c.server, "server", defaultServer, "regbridge's SIP address, udp://, tcp://, tls://, ws:// or wss://host:port (with --spawn only the transport counts)")
	fs.IntVar(&c.sockets, "sockets", defaultSockets, "UDP sockets (or TCP, TLS, WS or WSS connections) the subscriptions are spread over")
	fs.IntVar(&c.subscriptions, "subscriptions", defaultSubscriptions, "subscriptions to hold (default 1000, or aors x watchers-per-aor)")
	fs.IntVar(&c.aors, "aors", 0, "AORs watched (default: subscriptions / watchers-per-aor)")
	fs.IntVar(&c.watchersPerAOR, "watchers-per-aor", 0, "subscriptions per AOR (fan-out); with --aors it sets --subscriptions")
	fs.StringVar(&c.domain, "domain", defaultDomain, "domain of the AORs regload creates")
	fs.Float64Var(&c.subscribeRate, "subscribe-rate", defaultSubscribeRate, "SUBSCRIBEs per second")
	fs.IntVar(&c.window, "subscribe-window", defaultWindow, "SUBSCRIBEs outstanding at most (no 200 or first NOTIFY yet)")
	fs.DurationVar(&c.expires, "expires", defaultExpires, "subscription duration asked for")
	fs.StringVar(&c.store, "store", "", "the store regbridge reads: sqlite:PATH (or its kamailio+sqlite:// URL), mysql://DSN, postgres://URL, redis://URL; with --spawn, default a new SQLite file")
	fs.StringVar(&c.table, "table", "", "usrloc table name (default location)")
	fs.StringVar(&c.sqliteSync, "sqlite-synchronous", "", "SQLite synchronous mode for regload's writes (default: SQLite's FULL, as Kamailio's db_sqlite); NORMAL allows higher rates")
	fs.Float64Var(&c.rate, "rate", defaultRate, "contact changes per second written to the store")
	fs.DurationVar(&c.duration, "duration", defaultDuration, "how long to write changes")
	fs.IntVar(&c.changes, "changes", 0, "number of changes to write (default rate x duration)")
	fs.IntVar(&c.writers, "writers", 1, "store connections writing changes in parallel (SQLite: always 1)")
	fs.IntVar(&c.batch, "batch", 1, "when a writer falls behind, commit up to this many waiting changes in one transaction (1: one commit per change, as Kamailio)")
	fs.DurationVar(&c.drain, "drain", defaultDrain, "how long to wait after the last change for its NOTIFYs")
	fs.DurationVar(&c.settle, "settle", 0, "wait this long between subscribing and the first change (35s: the server's SUBSCRIBE transactions have ended, as in a steady state)")
	fs.IntVar(&c.pid, "pid", 0, "regbridge's process id, for its CPU and memory (default: found by the SIP port)")
	fs.StringVar(&c.spawn, "spawn", "", "start this regbridge binary on a temporary SQLite file (or on --store) and stop it at the end")
	fs.Var(&c.env, "env", "KEY=VALUE for the spawned regbridge (repeatable), e.g. REGBRIDGE_NOTIFY_MAX_IN_FLIGHT=8192")
	fs.DurationVar(&c.pollInterval, "poll-interval", defaultSpawnPoll, "REGBRIDGE_POLL_INTERVAL of the spawned regbridge")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON")
	fs.BoolVar(&c.allowRemote, "allow-remote", false, "allow a regbridge or store that is not on a loopback address")
	fs.BoolVar(&c.keep, "keep", false, "leave the subscriptions and store rows in place at the end")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write regload's own CPU profile to this file")
	fs.StringVar(&c.pprofURL, "pprof-url", "", "regbridge's pprof base URL (http://host:port/debug/pprof), to take a CPU profile of the change phase")
	fs.StringVar(&c.pprofOut, "pprof-out", "regbridge.cpu.pprof", "where to write that profile")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return c, c.finish(set)
}

const usageHead = `regload: load and correctness test for regbridge's reg event service.

It subscribes many watchers (from a few sockets) to AORs it creates in the
contact store, writes re-REGISTERs of those AORs into the store at a set
rate as Kamailio would, and reports NOTIFY throughput, store-commit-to-NOTIFY
latency, losses, duplicates, version gaps, and regbridge's CPU and memory.

  regload --spawn ./regbridge --subscriptions 5000 --rate 2000 --duration 10s
  regload --server udp://127.0.0.1:5065 --store sqlite:/var/lib/kamailio/kamailio.db

Flags:
`

// finish fills derived values and rejects nonsense; set holds the flags
// given explicitly.
func (c *config) finish(set map[string]bool) error {
	switch {
	case c.watchersPerAOR < 0 || c.aors < 0 || c.subscriptions < 1:
		return errors.New("--subscriptions, --aors and --watchers-per-aor must be positive")
	case c.watchersPerAOR > 0 && c.aors > 0:
		if set["subscriptions"] && c.subscriptions != c.aors*c.watchersPerAOR {
			return errors.New("--subscriptions must equal --aors x --watchers-per-aor (or leave one out)")
		}
		c.subscriptions = c.aors * c.watchersPerAOR
	case c.watchersPerAOR > 0:
		c.aors = max(1, c.subscriptions/c.watchersPerAOR)
	case c.aors == 0:
		c.aors = c.subscriptions
	}
	if c.subscriptions > 10_000_000 || c.aors > 10_000_000 {
		return errors.New("--subscriptions and --aors are limited to 10,000,000")
	}
	if c.sockets < 1 || c.sockets > 1024 {
		return errors.New("--sockets must be 1 to 1024")
	}
	if c.subscribeRate <= 0 || c.rate <= 0 || c.window < 1 || c.writers < 1 || c.writers > 256 || c.batch < 1 || c.batch > writerQueue {
		return fmt.Errorf("--subscribe-rate, --rate, --subscribe-window, --writers (at most 256) and --batch (at most %d) must be positive", writerQueue)
	}
	if c.expires < time.Minute {
		return errors.New("--expires must be at least 1m (regbridge's minimum by default)")
	}
	if c.changes == 0 {
		c.changes = int(c.rate * c.duration.Seconds())
	} else if !set["duration"] {
		c.duration = time.Duration(float64(c.changes) / c.rate * float64(time.Second))
	}
	if c.changes < 0 || c.changes > maxChanges {
		return fmt.Errorf("--changes (or rate x duration) must be 0 to %d", maxChanges)
	}
	if c.settle < 0 || c.settle > maxRunTime/4 {
		return fmt.Errorf("--settle must be 0 to %v", maxRunTime/4)
	}
	if c.duration+c.drain > maxRunTime/2 {
		return fmt.Errorf("--duration plus --drain must stay under %v", maxRunTime/2)
	}
	switch strings.ToUpper(c.sqliteSync) {
	case "", "OFF", "NORMAL", "FULL", "EXTRA":
	default:
		return fmt.Errorf("--sqlite-synchronous %q: OFF, NORMAL, FULL or EXTRA", c.sqliteSync)
	}
	for _, kv := range c.env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("--env %q: want KEY=VALUE", kv)
		}
	}
	if c.spawn == "" && c.store == "" {
		return errors.New("--store is required without --spawn: name the store regbridge reads")
	}
	if c.spawn != "" {
		// Only the transport counts; the address is chosen at spawn time.
		network, _, _ := cutScheme(c.server)
		if !knownNetwork(network) {
			return fmt.Errorf("--server %q: want udp://, tcp://, tls://, ws:// or wss://", c.server)
		}
		c.network = network
		return nil
	}
	return c.setServer(c.server)
}

// knownNetwork reports a transport regload speaks.
func knownNetwork(network string) bool {
	switch network {
	case "udp", "tcp", "tls", "ws", "wss":
		return true
	}
	return false
}

// setServer parses a udp://, tcp://, tls://, ws:// or wss://host:port
// address.
func (c *config) setServer(v string) error {
	network, hostport, ok := strings.Cut(v, "://")
	if !ok || !knownNetwork(network) {
		return fmt.Errorf("--server %q: want udp://, tcp://, tls://, ws:// or wss://host:port", v)
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("--server %q: %w", v, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(host, port))
	if err != nil {
		return fmt.Errorf("--server %q: want a numeric address: %w", v, err)
	}
	if !ap.Addr().IsLoopback() && !c.allowRemote {
		return fmt.Errorf("--server %s is not a loopback address; regload floods what it targets, so say --allow-remote if you mean it", v)
	}
	c.network, c.serverAddr = network, ap
	return nil
}

// checkHost refuses a store or pprof host off the loopback interface unless
// --allow-remote.
func (c *config) checkHost(what, host string) error {
	if host == "" || c.allowRemote || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("%s host %q is not a loopback address (say --allow-remote if you mean it)", what, host)
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// pprofHost returns the host of --pprof-url.
func (c *config) pprofHost() (string, error) {
	u, err := url.Parse(c.pprofURL)
	if err != nil || u.Scheme != "http" {
		return "", fmt.Errorf("--pprof-url %q: want http://host:port/debug/pprof", c.pprofURL)
	}
	return u.Hostname(), nil
}
