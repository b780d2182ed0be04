package main

// `regload regcost`: what regbridge costs the registrar
// (docs/performance.md#what-regbridge-costs-the-registrar). It starts a
// MariaDB and a PostgreSQL server of its own, runs Kamailio (usrloc
// db_mode 1) on each, registers --aors AORs, then adds --rows other
// bindings to the location table (after Kamailio's start: usrloc loads the
// whole table into its memory then), and offers it REGISTERs at each
// --rates while regbridge reads the same
// table in each --modes, one cell after the other, interleaved: for each
// rate and store every mode runs once per round, in an order rotated from
// round to round, so the modes see the same machine. Per cell it reports
// REGISTER->200 p50/p99/max, retransmissions and losses, and the CPU of the
// database server, Kamailio and regbridge from /proc. Everything it
// started is stopped and its data directories removed at the end.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

type costConfig struct {
	regbridge string
	kamailio  string
	stores    []string
	modes     []string
	rates     []int
	cell      time.Duration
	settle    time.Duration
	drain     time.Duration
	rows      int
	aors      int
	children  int
	rounds    int
	recRate   int
	json      bool
	keep      bool
}

// costModes are the ways regbridge can read the table; "none" runs no
// regbridge. A "+reconcile" mode sets reconcile= so that the first full
// reconcile after start-up falls in the middle of the measured cell.
// A "+paced" mode sets reconcile_rate=--reconcile-rate and starts that
// reconcile a second into the cell.
var costModes = []string{"none", "poll", "trigger", "trigger+reconcile", "trigger+paced",
	"logical", "logical+reconcile", "logical+paced", "poll+reconcile"}

func parseCostFlags(args []string, out io.Writer) (*costConfig, error) {
	c := &costConfig{}
	fs := newFlagSet("regload regcost", costUsage, out)
	var stores, modes, rates string
	fs.StringVar(&c.regbridge, "regbridge", "", "the regbridge binary to measure (required)")
	fs.StringVar(&c.kamailio, "kamailio", "/usr/sbin/kamailio", "the Kamailio binary")
	fs.StringVar(&stores, "stores", "mysql,postgres", "database servers to run the registrar on: mysql (MariaDB), postgres")
	fs.StringVar(&modes, "modes", "none,poll,trigger,trigger+reconcile,logical,logical+reconcile", "regbridge modes: "+strings.Join(costModes, ", ")+" (logical ones on postgres only)")
	fs.StringVar(&rates, "rates", "1000,2000", "REGISTERs per second, one set of cells each")
	fs.DurationVar(&c.cell, "cell", 25*time.Second, "how long each cell sends REGISTERs")
	fs.DurationVar(&c.settle, "settle", 3*time.Second, "wait after regbridge is ready before a cell starts")
	fs.DurationVar(&c.drain, "drain", 5*time.Second, "wait after a cell for its last answers (later ones count as lost)")
	fs.IntVar(&c.rows, "rows", 1000000, "other bindings in the location table (what a reconcile reads)")
	fs.IntVar(&c.aors, "aors", 10000, "AORs registering (each REGISTER refreshes one: an UPDATE)")
	fs.IntVar(&c.children, "children", 8, "Kamailio's UDP worker processes")
	fs.IntVar(&c.rounds, "rounds", 1, "times every cell is measured")
	fs.IntVar(&c.recRate, "reconcile-rate", 10000, "reconcile_rate= of the +paced modes (rows per second)")
	fs.BoolVar(&c.json, "json", false, "print the cells as JSON")
	fs.BoolVar(&c.keep, "keep", false, "keep the work directory (logs, data) at the end")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.regbridge == "" {
		return nil, errors.New("--regbridge PATH is required (go build -o /tmp/regbridge ./cmd/regbridge)")
	}
	for _, s := range splitList(stores) {
		if s != "mysql" && s != "postgres" {
			return nil, fmt.Errorf("--stores %q: want mysql or postgres", s)
		}
		c.stores = append(c.stores, s)
	}
	for _, m := range splitList(modes) {
		if !slices.Contains(costModes, m) {
			return nil, fmt.Errorf("--modes %q: want one of %s", m, strings.Join(costModes, ", "))
		}
		c.modes = append(c.modes, m)
	}
	for _, r := range splitList(rates) {
		n, err := strconv.Atoi(r)
		if err != nil || n < 1 || n > 20000 {
			return nil, fmt.Errorf("--rates %q: want REGISTERs per second, 1 to 20000", r)
		}
		c.rates = append(c.rates, n)
	}
	if len(c.stores) == 0 || len(c.modes) == 0 || len(c.rates) == 0 {
		return nil, errors.New("--stores, --modes and --rates must not be empty")
	}
	if c.cell < time.Second || c.cell > 10*time.Minute || c.rows < 0 || c.aors < 1 || c.children < 1 || c.rounds < 1 {
		return nil, errors.New("--cell must be 1s to 10m; --rows >= 0; --aors, --children and --rounds >= 1")
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

const costUsage = `regload regcost: what regbridge costs a real Kamailio registrar.

Starts a MariaDB and a PostgreSQL server of its own (fresh data
directories, loopback, free ports), fills the location table with --rows
bindings, runs Kamailio (usrloc db_mode 1) on each, and offers it
REGISTERs at each rate with no regbridge and with regbridge in each mode,
interleaved. Prints REGISTER->200 p50/p99, retransmissions and CPU per cell.

  go build -o /tmp/regbridge ./cmd/regbridge
  regload regcost --regbridge /tmp/regbridge

Flags:
`

// costCell is one measured cell.
type costCell struct {
	Round    int     `json:"round"`
	Store    string  `json:"store"`
	Mode     string  `json:"mode"`
	Rate     int     `json:"rate"`
	regStats         // REGISTERs
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"` // -1: beyond every answer (more than 1% lost)
	Maxms    float64 `json:"max_ms"`
	Seconds  float64 `json:"seconds"`         // wall time measured (sending and drain)
	DBCores  float64 `json:"db_cores"`        // database server CPU / wall time
	KamCores float64 `json:"kamailio_cores"`  // Kamailio's
	RBCores  float64 `json:"regbridge_cores"` // regbridge's (0 without)
	HostBusy float64 `json:"host_busy_cores"` // every process of the machine
	Load1    float64 `json:"load1"`           // at the end of the cell
	ReadyS   float64 `json:"regbridge_ready_s,omitempty"`
	RBMode   string  `json:"regbridge_mode,omitempty"` // regbridge_source_info's mode at the end
	// DBx and P99x compare with the round's "none" cell of the same store
	// and rate (0 when there is none).
	DBx  float64 `json:"db_cpu_vs_none,omitempty"`
	P99x float64 `json:"p99_vs_none,omitempty"`
}

// costStore is one database server with its registrar and REGISTER agent.
type costStore struct {
	db    *dbServer
	kam   *costProc
	agent *regAgent
}

func runRegcost(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseCostFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "regload regcost: %v\n", err)
		return 2
	}
	cells, err := c.execute(ctx, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "regload regcost: %v\n", err)
		return 1
	}
	if c.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if enc.Encode(cells) != nil {
			return 1
		}
		return 0
	}
	writeCostTable(stdout, cells)
	return 0
}

func (c *costConfig) execute(ctx context.Context, logw io.Writer) (cells []costCell, err error) {
	dir, err := os.MkdirTemp("", "regcost-")
	if err != nil {
		return nil, err
	}
	// The database servers run as their own users and must reach their data.
	_ = os.Chmod(dir, 0o755)
	if c.keep {
		fmt.Fprintf(logw, "regcost: work directory %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	logf := func(format string, a ...any) {
		fmt.Fprintf(logw, "%s regcost: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	stores := map[string]*costStore{}
	defer func() {
		for _, s := range stores {
			if s.agent != nil {
				s.agent.close()
			}
			s.kam.stop()
			s.db.stop()
		}
	}()
	for _, kind := range c.stores {
		logf("starting %s", kind)
		var db *dbServer
		if kind == "mysql" {
			db, err = startMariaDB(ctx, dir)
		} else {
			db, err = startPostgres(ctx, dir)
		}
		if err != nil {
			return nil, err
		}
		s := &costStore{db: db}
		stores[kind] = s
		// Kamailio first: usrloc loads every row of the table into its
		// shared memory at start, and the other bindings are not its own.
		kam, port, err := startKamailio(ctx, c.kamailio, dir, db, c.children)
		if err != nil {
			return nil, err
		}
		s.kam = kam
		addr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
		if err := probeSIP(ctx, addr, 30*time.Second); err != nil {
			return nil, fmt.Errorf("kamailio on %s: %w\n%s", kind, err, kam.logTail())
		}
		if s.agent, err = newRegAgent(addr, "rc", "example.com", c.aors); err != nil {
			return nil, err
		}
		// One REGISTER per AOR first: the cells then measure refreshes.
		logf("%s: registering %d AORs", kind, c.aors)
		st := s.agent.run(ctx, float64(min(c.rates[0], 1000)), time.Duration(float64(c.aors)/float64(min(c.rates[0], 1000))*float64(time.Second))+time.Millisecond, 30*time.Second, 3600)
		if st.OK < c.aors*9/10 {
			return nil, fmt.Errorf("kamailio on %s answered %d of %d first REGISTERs with 200 (%v)\n%s", kind, st.OK, st.Sent, st.Statuses, kam.logTail())
		}
		t := time.Now()
		if err := db.prefill(ctx, c.rows); err != nil {
			return nil, fmt.Errorf("filling %s: %w", kind, err)
		}
		logf("%s filled in %.1f s", kind, time.Since(t).Seconds())
	}
	n := 0
	for round := range c.rounds {
		for ri, rate := range c.rates {
			for _, kind := range c.stores {
				modes := slices.Clone(c.modes)
				if kind != "postgres" {
					modes = slices.DeleteFunc(modes, func(m string) bool { return strings.HasPrefix(m, "logical") })
				}
				// Rotate the order from round to round and rate to rate.
				if k := (round + ri) % len(modes); k > 0 {
					modes = append(modes[k:], modes[:k]...)
				}
				for _, mode := range modes {
					n++
					cellDir := filepath.Join(dir, fmt.Sprintf("cell%02d-%s-%s-%d", n, kind, strings.ReplaceAll(mode, "+", "-"), rate))
					if err := os.MkdirAll(cellDir, 0o755); err != nil {
						return nil, err
					}
					cell, err := c.runCell(ctx, stores[kind], mode, rate, cellDir)
					if err != nil {
						return cells, fmt.Errorf("%s %s %d/s: %w", kind, mode, rate, err)
					}
					cell.Round = round + 1
					logf("%-8s %-18s %5d/s  p50 %7.1f ms  p99 %8.1f ms  retrans %6d  lost %5d  db %.2f cores  load %.1f",
						kind, mode, rate, cell.P50ms, cell.P99ms, cell.Retrans, cell.Lost, cell.DBCores, cell.Load1)
					cells = append(cells, cell)
				}
			}
		}
	}
	compareWithNone(cells)
	return cells, nil
}

// compareWithNone fills DBx and P99x from the matching "none" cell.
func compareWithNone(cells []costCell) {
	for i := range cells {
		for _, b := range cells {
			if b.Mode == "none" && b.Round == cells[i].Round && b.Store == cells[i].Store && b.Rate == cells[i].Rate {
				if b.DBCores > 0 {
					cells[i].DBx = cells[i].DBCores / b.DBCores
				}
				if b.P99ms > 0 && cells[i].P99ms > 0 {
					cells[i].P99x = cells[i].P99ms / b.P99ms
				}
			}
		}
	}
}

// source is regbridge's REGBRIDGE_SOURCE for mode; reconcile= is an hour
// (none within the cell) unless the mode asks for one mid-cell.
func (c *costConfig) source(s *costStore, mode string) string {
	base, plus, _ := strings.Cut(mode, "+")
	reconcile := "1h"
	switch plus {
	case "reconcile":
		// The reconcile timer starts when regbridge is ready.
		reconcile = (c.settle + c.cell/2).String()
	case "paced":
		// A paced reconcile is longer: it starts a second into the cell.
		reconcile = (c.settle + time.Second).String()
	}
	q := "table=location&tz=UTC&reconcile=" + reconcile
	if s.db.kind == "postgres" {
		q += "&sslmode=disable"
	}
	if base == "trigger" || base == "logical" {
		q += "&cdc=" + base
	}
	if plus == "paced" {
		q += "&reconcile_rate=" + strconv.Itoa(c.recRate)
	}
	return s.db.srcBase + "?" + q
}

func (c *costConfig) cdc(ctx context.Context, src, verb, dir string) error {
	cmd := exec.CommandContext(ctx, c.regbridge, "cdc", verb)
	cmd.Env = append(os.Environ(), "REGBRIDGE_SOURCE="+src)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(dir, "cdc-"+verb+".log"), out, 0o644)
	if err != nil {
		return fmt.Errorf("regbridge cdc %s: %v\n%s", verb, err, tail(out))
	}
	return nil
}

func (c *costConfig) runCell(ctx context.Context, s *costStore, mode string, rate int, dir string) (costCell, error) {
	cell := costCell{Store: s.db.kind, Mode: mode, Rate: rate}
	base, _, _ := strings.Cut(mode, "+")
	var rb *child
	var httpAddr string
	if base != "none" {
		src := c.source(s, mode)
		if base != "poll" {
			if err := c.cdc(ctx, src, "install", dir); err != nil {
				return cell, err
			}
			defer func() {
				if err := c.cdc(context.WithoutCancel(ctx), src, "uninstall", dir); err == nil && s.db.kind == "mysql" {
					_ = s.db.admin(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS regbridge_changelog")
				}
			}()
		}
		t := time.Now()
		port, err := freePort()
		if err != nil {
			return cell, err
		}
		httpAddr = fmt.Sprintf("127.0.0.1:%d", port)
		rb, err = spawnRegbridge(ctx, c.regbridge, src, dir, &config{pollInterval: time.Second,
			env: multiFlag{"REGBRIDGE_HTTP_LISTEN=" + httpAddr}})
		if err != nil {
			return cell, err
		}
		defer rb.stop()
		cell.ReadyS = time.Since(t).Seconds()
	}
	select {
	case <-time.After(c.settle):
	case <-ctx.Done():
		return cell, ctx.Err()
	}
	rbCPU := func() float64 {
		if rb == nil {
			return 0
		}
		p, _ := readProc(rb.cmd.Process.Pid)
		return p.CPU
	}
	t0, db0, kam0, rb0, host0 := time.Now(), s.db.proc.cpu(), s.kam.cpu(), rbCPU(), readHostCPU()
	st := s.agent.run(ctx, float64(rate), c.cell, c.drain, 3600)
	wall := time.Since(t0).Seconds()
	db1, kam1, rb1, host1 := s.db.proc.cpu(), s.kam.cpu(), rbCPU(), readHostCPU()
	if ctx.Err() != nil {
		return cell, ctx.Err()
	}
	if rb != nil {
		select {
		case <-rb.exited:
			return cell, fmt.Errorf("regbridge exited during the cell:\n%s", rb.logTail())
		default:
		}
	}
	if rb != nil {
		// How regbridge learnt of changes at the end: a cdc mode that fell
		// back to polling would measure the wrong thing.
		cell.RBMode = sourceMode(httpAddr)
		if cell.RBMode != base {
			return cell, fmt.Errorf("regbridge read the store by %q, not %q:\n%s", cell.RBMode, base, rb.logTail())
		}
	}
	select {
	case <-s.kam.exited:
		return cell, fmt.Errorf("kamailio exited:\n%s", s.kam.logTail())
	default:
	}
	cell.regStats = st
	ms := func(d time.Duration) float64 {
		if d < 0 {
			return -1
		}
		return float64(d.Microseconds()) / 1000
	}
	cell.P50ms, cell.P99ms = ms(st.quantile(0.50)), ms(st.quantile(0.99))
	if len(st.lat) > 0 {
		cell.Maxms = ms(slices.Max(st.lat))
	}
	cell.Seconds = wall
	cell.DBCores = (db1 - db0) / wall
	cell.KamCores = (kam1 - kam0) / wall
	cell.RBCores = (rb1 - rb0) / wall
	if d := host1.total - host0.total; d > 0 {
		cell.HostBusy = (host1.busy - host0.busy) / wall
	}
	cell.Load1 = loadAvg()[0]
	return cell, nil
}

func writeCostTable(w io.Writer, cells []costCell) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "store\tmode\trate/s\tsent\t200\tlost\tretrans\tp50 ms\tp99 ms\tmax ms\tDB cores\tDB vs none\tp99 vs none\tkamailio\tregbridge\thost busy\tload1\t")
	x := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", v)
	}
	p := func(v float64) string {
		if v < 0 {
			return ">drain"
		}
		return fmt.Sprintf("%.1f", v)
	}
	for _, c := range cells {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%.0f\t%.2f\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.1f\t\n",
			c.Store, c.Mode, c.Rate, c.Sent, c.OK, c.Lost, c.Retrans, p(c.P50ms), p(c.P99ms), c.Maxms,
			c.DBCores, x(c.DBx), x(c.P99x), c.KamCores, c.RBCores, c.HostBusy, c.Load1)
	}
	tw.Flush()
}

// sourceMode is the mode label of regbridge's regbridge_source_info.
func sourceMode(httpAddr string) string {
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if !strings.HasPrefix(line, "regbridge_source_info{") {
			continue
		}
		if _, v, ok := strings.Cut(line, `mode="`); ok {
			v, _, _ = strings.Cut(v, `"`)
			return v
		}
	}
	return "unknown"
}
