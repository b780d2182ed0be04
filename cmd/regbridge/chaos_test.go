package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// redisServer is a redis-server of the test's own, on a free loopback
// port, which the test may stop and start again: its data survive (append
// only file, fsynced at every write), as a production Redis's would.
type redisServer struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		msg := "redis-server not installed (Debian package redis-server)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	r := &redisServer{t: t, port: freePort(t), dir: t.TempDir()}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *redisServer) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer rdb.Close()
	siptest.Eventually(r.t, func() bool { return rdb.Ping(context.Background()).Err() == nil }, "own redis-server up")
}

// stop ends the server as an operator's restart does (SIGTERM: it
// flushes the append only file and exits).
func (r *redisServer) stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	r.cmd.Wait()
	r.cmd = nil
}

// listenTCP accepts NOTIFYs over TCP on the port of each of w's UDP
// sockets, as a phone does: a NOTIFY too large for a datagram comes over
// TCP to the same host and port (RFC 3261 18.1.1). A socket whose port is
// taken over TCP is replaced by a pair on a port free for both; call it
// before subscribing.
func (w *watchers) listenTCP() {
	for i, c := range w.conns {
		ln, err := net.Listen("tcp", c.LocalAddr().String())
		if err != nil {
			uc, pair := siptest.ListenPair(w.t, "127.0.0.1")
			c.Close()
			uc.SetReadBuffer(8 << 20)
			w.conns[i] = uc
			go w.read(uc)
			ln = pair
		}
		w.t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go w.readStream(conn)
			}
		}()
	}
}

// readStream reads SIP messages framed by Content-Length from conn.
func (w *watchers) readStream(conn net.Conn) {
	defer conn.Close()
	port := conn.RemoteAddr().(*net.TCPAddr).Port
	br := bufio.NewReader(conn)
	for {
		var head strings.Builder
		length := 0
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
			name, value, _ := strings.Cut(line, ":")
			if n := strings.ToLower(strings.TrimSpace(name)); n == "content-length" || n == "l" {
				length, _ = strconv.Atoi(strings.TrimSpace(value))
			}
		}
		body := make([]byte, length)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		w.handle(append([]byte(head.String()), body...), port, func(b []byte) { conn.Write(b) })
	}
}

// storeChange is one write of the chaos run's registrar: binding uri of
// AOR aor now has cseq (alive) or is gone.
type storeChange struct {
	at    time.Time
	aor   int
	uri   string
	cseq  int
	alive bool
}

// window is a time span during which the run broke something.
type window struct {
	what       string
	start, end time.Time
}

// procStatus reads the resident set size and its peak of pid.
func procStatus(pid int) (rss, peak uint64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak
}

// TestChaos is the fault run: two regbridge processes sharing their
// subscriptions in a Redis of the test's own, a Kamailio location table in
// PostgreSQL changed all along, and, while it runs, a 20 s store outage
// (cut at a TCP proxy), a Redis restart, a SUBSCRIBE flood, a SIGKILL of
// one process and a burst of bindings with 450-byte URIs (whose documents
// no longer fit a datagram). The subscriber side records every NOTIFY on
// its own and checks, per subscription: versions in order without
// duplicates (a full-state document may skip ahead), no contact state the
// store never had, no change reported twice, every change reported
// explicitly except those superseded inside a fault window (where the
// store or the process could not be read), and at the end the store's
// state. The survivor's peak RSS must stay within the bound
// docs/performance.md#what-memory-costs documents.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two processes, PostgreSQL and its own redis-server for about two minutes")
	}
	rds := startRedisServer(t)
	db := sqltest.Postgres(t)
	db.Exec(t, `CREATE TABLE location (id SERIAL PRIMARY KEY, ruid VARCHAR(64), username VARCHAR(64), domain VARCHAR(64),
		contact VARCHAR(1024), received VARCHAR(128), path VARCHAR(512), expires TIMESTAMP, q REAL, callid VARCHAR(255),
		cseq INT, last_modified TIMESTAMP, user_agent VARCHAR(255), instance VARCHAR(255), reg_id INT)`)
	proxy := sourcetest.NewProxy(t, db.Endpoint.Addr)
	src := fmt.Sprintf("kamailio+postgres://%s@%s/%s?sslmode=disable&tz=UTC", db.Endpoint.User, proxy.Addr(), db.Name())
	state := "redis://" + rds.addr() + "/0?prefix=chaos:"
	dir := t.TempDir()
	bin := filepath.Join(dir, "regbridge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const maxTx = 4096
	extra := []string{"REGBRIDGE_SUBSCRIBE_MAX_TRANSACTIONS=" + strconv.Itoa(maxTx), "REGBRIDGE_LOG_LEVEL=warn"}
	victim := startProc(t, bin, src, state, "chaos-a", extra...)
	survivor := startProc(t, bin, src, state, "chaos-b", extra...)
	baseRSS, _ := procStatus(survivor.cmd.Process.Pid)

	// The registrar's writes, and the model of the table they keep.
	var (
		histMu  sync.Mutex
		history []storeChange
	)
	type binding struct {
		ruid, uri string
		cseq      int
	}
	live := map[int][]*binding{} // by AOR
	nextRuid := 0
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }
	record := func(c storeChange) {
		histMu.Lock()
		history = append(history, c)
		histMu.Unlock()
	}
	// insert adds n bindings to aor in one statement, their URIs padded
	// to uriLen bytes.
	insert := func(aor, n, uriLen int) error {
		var rows []string
		var args []any
		var added []*binding
		now := time.Now()
		for range n {
			nextRuid++
			b := &binding{ruid: fmt.Sprintf("r%d", nextRuid), cseq: 1}
			b.uri = fmt.Sprintf("sip:u%d-%d@192.0.2.%d:5060", aor, nextRuid, nextRuid%250+1)
			if pad := uriLen - len(b.uri) - len(";x="); pad > 0 {
				b.uri += ";x=" + strings.Repeat("a", pad)
			}
			rows = append(rows, "(?, ?, ?, ?::timestamp, -1, ?, 1, ?::timestamp, 'chaos')")
			args = append(args, b.ruid, fmt.Sprintf("u%d", aor), b.uri, ts(now.Add(time.Hour)), "call-"+b.ruid, ts(now))
			added = append(added, b)
		}
		if _, err := db.TryExec(`INSERT INTO location (ruid, username, contact, expires, q, callid, cseq, last_modified, user_agent)
			VALUES `+strings.Join(rows, ", "), args...); err != nil {
			return err
		}
		for _, b := range added {
			live[aor] = append(live[aor], b)
			record(storeChange{at: time.Now(), aor: aor, uri: b.uri, cseq: 1, alive: true})
		}
		return nil
	}
	refresh := func(aor int, b *binding) error {
		now := time.Now()
		if _, err := db.TryExec(`UPDATE location SET cseq = ?, expires = ?::timestamp, last_modified = ?::timestamp WHERE ruid = ?`,
			b.cseq+1, ts(now.Add(time.Hour+time.Duration(b.cseq)*time.Second)), ts(now), b.ruid); err != nil {
			return err
		}
		b.cseq++
		record(storeChange{at: time.Now(), aor: aor, uri: b.uri, cseq: b.cseq, alive: true})
		return nil
	}
	remove := func(aor int, i int) error {
		b := live[aor][i]
		if _, err := db.TryExec(`DELETE FROM location WHERE ruid = ?`, b.ruid); err != nil {
			return err
		}
		live[aor] = slices.Delete(live[aor], i, i+1)
		record(storeChange{at: time.Now(), aor: aor, uri: b.uri, cseq: b.cseq, alive: false})
		return nil
	}

	// The subscribers: 200 subscriptions to 20 AORs, half on each process.
	const subs, aors = 200, 20
	for a := range aors {
		if err := insert(a, 1, 0); err != nil {
			t.Fatal(err)
		}
	}
	w := newWatchers(t, 4)
	w.listenTCP()
	aorOf := func(i int) int { return i % aors }
	callOf := func(i int) string { return fmt.Sprintf("chaos-%d", i) }
	owner := w.subscribeAll(subs, []*proc{victim, survivor}, callOf, func(i int) string { return fmt.Sprintf("sip:u%d@example.com", aorOf(i)) })

	// The run: a change every 60 ms (each AOR every 1.2 s, far apart from
	// the 20 ms polls, so nothing coalesces unless a fault makes it), and
	// the faults on a fixed timeline.
	var windows []window
	var victimRSS, victimPeak uint64
	floodAnswers := map[int]int{}
	rnd := rand.New(rand.NewPCG(7, 11))
	start := time.Now()
	at := func(d time.Duration) bool { return time.Since(start) >= d }
	var outage, redisDown, flooded, killed, burst bool
	var outageWin window
	for step := 0; time.Since(start) < 60*time.Second; step++ {
		switch {
		case !outage && at(5*time.Second):
			outage = true
			outageWin = window{what: "store outage", start: time.Now()}
			proxy.Break()
		case outage && outageWin.end.IsZero() && at(25*time.Second):
			proxy.Restore()
			outageWin.end = time.Now()
			windows = append(windows, outageWin)
		case !redisDown && at(30*time.Second):
			redisDown = true
			win := window{what: "Redis restart", start: time.Now()}
			rds.stop()
			time.Sleep(time.Second)
			rds.start()
			win.end = time.Now()
			windows = append(windows, win)
		case !flooded && at(36*time.Second):
			flooded = true
			floodAnswers = floodSubscribe(t, survivor.sip, 20000)
		case !killed && at(45*time.Second):
			killed = true
			victimRSS, victimPeak = procStatus(victim.cmd.Process.Pid)
			victim.cmd.Process.Signal(syscall.SIGKILL)
			victim.cmd.Wait()
			windows = append(windows, window{what: "SIGKILL", start: time.Now(), end: time.Now().Add(time.Second)}) // the lease
		case !burst && at(50*time.Second):
			// As a registrar stores them (URIs of about 450 bytes), 150
			// bindings of one AOR at once: their document is over the
			// 64 KB a datagram carries.
			burst = true
			if err := insert(0, 150, 450); err != nil {
				t.Fatal(err)
			}
			// No other change in this step: were it AOR 0's turn, it
			// could remove a binding of the burst within the same poll,
			// and a binding that comes and goes between two reads of
			// the store is rightly never announced, while outside the
			// fault windows the check wants every change announced.
			time.Sleep(60 * time.Millisecond)
			continue
		}
		a := step % aors
		switch n := len(live[a]); {
		case n == 0 || n < 3 && rnd.IntN(2) == 0:
			if err := insert(a, 1, 0); err != nil {
				t.Fatal(err)
			}
		case rnd.IntN(3) == 0:
			if err := remove(a, rnd.IntN(n)); err != nil {
				t.Fatal(err)
			}
		default:
			if err := refresh(a, live[a][rnd.IntN(n)]); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(60 * time.Millisecond)
	}
	stopped := time.Now()

	// The store's final state, read back from the table itself.
	want := map[int]map[string]int{}
	db.Query(t, `SELECT username, contact, cseq FROM location`, func(cols []string) {
		a, _ := strconv.Atoi(strings.TrimPrefix(cols[0], "u"))
		c, _ := strconv.Atoi(cols[2])
		if want[a] == nil {
			want[a] = map[string]int{}
		}
		want[a][cols[1]] = c
	})

	// Convergence: every subscriber's view is the store's.
	deadline := time.Now().Add(30 * time.Second)
	for {
		bad, example := 0, ""
		w.mu.Lock()
		for i := range subs {
			list := w.log[callOf(i)]
			if got := contactView(list); !maps.Equal(got, want[aorOf(i)]) {
				bad++
				if example == "" {
					example = fmt.Sprintf("%s (AOR %d) holds %d contacts, the store %d; its last NOTIFYs:", callOf(i), aorOf(i), len(got), len(want[aorOf(i)]))
					for _, n := range list[max(0, len(list)-4):] {
						cs := 0
						if len(n.doc.Registrations) > 0 {
							cs = len(n.doc.Registrations[0].Contacts)
						}
						example += fmt.Sprintf("\n  +%v from %d cseq %d version %d %s, %d contacts, %s", n.at.Sub(start).Round(time.Millisecond), n.from, n.cseq, n.doc.Version, n.doc.State, cs, n.subsSt)
						if n.retrans {
							example += " (CSeq not above the last one seen: taken for a retransmission)"
						}
					}
				}
			}
		}
		w.mu.Unlock()
		if bad == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d subscriptions never reached the store's state; %s", bad, subs, example)
		}
		time.Sleep(200 * time.Millisecond)
	}
	converged := time.Since(stopped)

	// Per subscription, against the independent record.
	histMu.Lock()
	defer histMu.Unlock()
	excused := func(at time.Time) bool {
		for _, win := range windows {
			// A change read when the fault ended, plus the next polls.
			if !at.Before(win.start.Add(-time.Second)) && at.Before(win.end.Add(3*time.Second)) {
				return true
			}
		}
		return false
	}
	known := map[string]map[int]bool{} // uri -> cseqs it had while alive
	deleted := map[string]bool{}
	for _, c := range history {
		if known[c.uri] == nil {
			known[c.uri] = map[int]bool{}
		}
		if c.alive {
			known[c.uri][c.cseq] = true
		} else {
			deleted[c.uri] = true
		}
	}
	var notifies, fullDocs, explicit, covered, coveredFull, skipsAhead, overTCP, takenOver int
	laterFull := map[string]int{} // full-state documents after the first, by 5 s of the run and sender
	var failures []string
	fail := func(format string, args ...any) {
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	w.mu.Lock()
	for i := range subs {
		id := callOf(i)
		list := w.log[id]
		first := list[0].at
		type fullDoc struct {
			at       time.Time
			contacts map[string]int
		}
		var fulls []fullDoc                   // after the first
		holds := map[string]int{}             // what the subscriber knows: uri -> cseq
		reported := map[string]map[int]bool{} // uri -> cseqs seen active (deletions as -1)
		next := uint32(0)
		for k, n := range list {
			if n.retrans {
				continue
			}
			notifies++
			if n.from != victim.port && n.from != survivor.port {
				overTCP++ // from an ephemeral port: a NOTIFY too large for a datagram
			}
			if owner[id] == victim && n.from == survivor.port {
				takenOver++
			}
			v := n.doc.Version
			switch {
			case v == next:
			case v > next && n.doc.State == "full":
				skipsAhead++
			default:
				fail("%s: NOTIFY %d has version %d (%s), want %d", id, k, v, n.doc.State, next)
			}
			next = v + 1
			if len(n.doc.Registrations) == 0 {
				continue
			}
			if n.doc.State == "full" {
				fullDocs++
				clear(holds)
				if k > 0 {
					f := fullDoc{at: n.at, contacts: map[string]int{}}
					for _, c := range n.doc.Registrations[0].Contacts {
						f.contacts[c.URI], _ = strconv.Atoi(c.CSeq)
					}
					fulls = append(fulls, f)
					bucket := fmt.Sprintf("+%ds", int(n.at.Sub(start)/(5*time.Second))*5)
					if n.from == survivor.port {
						bucket += " survivor"
					} else if n.from == victim.port {
						bucket += " killed"
					}
					laterFull[bucket]++
				}
			}
			for _, c := range n.doc.Registrations[0].Contacts {
				cseq, _ := strconv.Atoi(c.CSeq)
				if reported[c.URI] == nil {
					reported[c.URI] = map[int]bool{}
				}
				if c.State == "active" {
					if !known[c.URI][cseq] {
						fail("%s: invented contact %s cseq %d", id, c.URI, cseq)
					}
					if old, ok := holds[c.URI]; ok && n.doc.State == "partial" && old == cseq {
						fail("%s: %s cseq %d reported twice", id, c.URI, cseq)
					}
					if old, ok := holds[c.URI]; ok && old > cseq {
						fail("%s: %s went back from cseq %d to %d", id, c.URI, old, cseq)
					}
					holds[c.URI] = cseq
					reported[c.URI][cseq] = true
				} else {
					if !deleted[c.URI] {
						fail("%s: %s reported %s (%s) but the store never removed it", id, c.URI, c.State, c.Event)
					}
					if _, ok := holds[c.URI]; !ok && n.doc.State == "partial" {
						fail("%s: %s terminated twice or without being known", id, c.URI)
					}
					delete(holds, c.URI)
					reported[c.URI][-1] = true
				}
			}
		}
		if st := list[len(list)-1].subsSt; !strings.HasPrefix(st, "active") {
			fail("%s: last Subscription-State %q", id, st)
		}
		// Every change after the subscription began: reported as such,
		// or, inside a fault window, superseded by a later report.
		for _, c := range history {
			if c.aor != aorOf(i) || !c.at.After(first) {
				continue
			}
			key := c.cseq
			if !c.alive {
				key = -1
			}
			if reported[c.uri][key] {
				explicit++
				continue
			}
			// A full-state document received after the change and
			// showing it (or a later state) covers it (RFC 3680 4.1).
			inFull := false
			for _, f := range fulls {
				cs, ok := f.contacts[c.uri]
				inFull = inFull || f.at.After(c.at) && (c.alive && ok && cs >= c.cseq || !c.alive && !ok)
			}
			if inFull {
				coveredFull++
				continue
			}
			// Inside a fault window regbridge could not see each write:
			// what it reads afterwards is the net result. A change a
			// later one replaced is covered by that one's report (checked
			// in its turn), and a binding that came and went unseen was
			// rightly never announced.
			if excused(c.at) {
				superseded, seenAlive := false, false
				for _, d := range history {
					superseded = superseded || d.uri == c.uri && d.at.After(c.at)
				}
				for cs := range reported[c.uri] {
					seenAlive = seenAlive || cs >= 0
				}
				if superseded || !c.alive && !seenAlive {
					covered++
					continue
				}
			}
			fail("%s: change of %s to cseq %d (alive %v) at +%v never reported", id, c.uri, c.cseq, c.alive, c.at.Sub(start).Round(time.Millisecond))
		}
	}
	w.mu.Unlock()
	for _, f := range failures {
		t.Error(f)
	}
	if overTCP == 0 {
		t.Error("no NOTIFY came over TCP: the burst of large bindings did not test what it should")
	}
	if takenOver == 0 {
		t.Error("no subscription of the killed process was taken over")
	}

	// Memory: docs/performance.md's figures, survivor side. The contact state (470
	// bytes a binding plus its URI) and the subscriptions (1,400 bytes
	// each) at most doubled by the collector, the UDP SUBSCRIBE
	// transactions held (700 bytes x REGBRIDGE_SUBSCRIBE_MAX_TRANSACTIONS),
	// 4,096 SUBSCRIBE handlers and 4,096 NOTIFY transactions of a few KB,
	// on top of the process as it started.
	contacts := 0
	for a := range want {
		contacts += len(want[a])
	}
	rss, peak := procStatus(survivor.cmd.Process.Pid)
	bound := baseRSS + 2*uint64(len(history)*(470+512)+subs*1400) + maxTx*700 + 4096*8<<10 + 4096*4<<10 + 16<<20
	if peak > bound {
		t.Errorf("survivor peak RSS %.1f MiB over the bound %.1f MiB", mib(peak), mib(bound))
	}
	if victimPeak > bound {
		t.Errorf("killed process's peak RSS %.1f MiB over the bound %.1f MiB", mib(victimPeak), mib(bound))
	}
	var ws []string
	for _, win := range windows {
		ws = append(ws, fmt.Sprintf("%s at +%v for %v", win.what, win.start.Sub(start).Round(100*time.Millisecond), win.end.Sub(win.start).Round(100*time.Millisecond)))
	}
	t.Logf("chaos run: %d store changes to %d AORs (%d bindings at the end) over %v; faults: %s; flood answers %v; "+
		"%d subscriptions, %d NOTIFYs checked (%d full-state, %d skipping ahead, %d over TCP, %d from the survivor for the killed one's), %d changes reported explicitly, %d covered by a later full-state document, %d superseded or unseen inside a fault window; later full-state documents %v; "+
		"converged %v after the last change; RSS: survivor %.1f MiB at start, %.1f MiB now, peak %.1f MiB; killed one %.1f MiB (peak %.1f MiB); bound %.1f MiB",
		len(history), aors, contacts, stopped.Sub(start).Round(time.Second), strings.Join(ws, ", "), floodAnswers,
		subs, notifies, fullDocs, skipsAhead, overTCP, takenOver, explicit, coveredFull, covered, laterFull, converged.Round(10*time.Millisecond),
		mib(baseRSS), mib(rss), mib(peak), mib(victimRSS), mib(victimPeak), mib(bound))
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// floodSubscribe sends n SUBSCRIBEs with distinct branches and Call-IDs to
// server as fast as one socket can: three in four for an event package
// regbridge does not serve, one in four a fetch (Expires: 0) of an AOR.
// It returns how many got each final status (a flood drops some).
func floodSubscribe(t *testing.T, server string, n int) map[int]int {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadBuffer(8 << 20)
	local := c.LocalAddr().String()
	addr, _ := net.ResolveUDPAddr("udp", server)
	answers := map[int]int{}
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			k, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			line, _, _ := strings.Cut(string(buf[:k]), "\r\n")
			if code, ok := strings.CutPrefix(line, "SIP/2.0 "); ok {
				st, _ := strconv.Atoi(code[:3])
				mu.Lock()
				answers[st]++
				mu.Unlock()
			}
		}
	}()
	for i := range n {
		event, expires := "presence-nope", "600"
		if i%4 == 0 {
			event, expires = "reg", "0"
		}
		msg := fmt.Sprintf("SUBSCRIBE sip:u%d@example.com SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKflood%d;rport\r\n"+
			"From: <sip:flood@example.com>;tag=f%d\r\nTo: <sip:u%d@example.com>\r\nCall-ID: flood-%d\r\nCSeq: 1 SUBSCRIBE\r\n"+
			"Contact: <sip:flood@%s>\r\nEvent: %s\r\nExpires: %s\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
			i%20, local, i, i, i%20, i, local, event, expires)
		c.WriteToUDP([]byte(msg), addr)
	}
	time.Sleep(2 * time.Second) // the answers still under way
	c.SetReadDeadline(time.Now())
	<-done
	mu.Lock()
	defer mu.Unlock()
	return maps.Clone(answers)
}
