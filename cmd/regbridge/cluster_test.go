package main

import (
	"bytes"
	"database/sql"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source/kamailio"
)

// proc is one regbridge process of the cluster test.
type proc struct {
	cmd       *exec.Cmd
	sip, http string
	port      int
	id        string
	log       *syncBuffer
}

// startProc starts the binary bin on the store src (a REGBRIDGE_SOURCE
// URL) with the subscription state at state; extra are more VAR=value.
func startProc(t testing.TB, bin, src, state, id string, extra ...string) *proc {
	t.Helper()
	sipPort, httpPort := freePort(t), freePort(t)
	p := &proc{sip: fmt.Sprintf("127.0.0.1:%d", sipPort), http: fmt.Sprintf("127.0.0.1:%d", httpPort), port: sipPort, id: id, log: &syncBuffer{}}
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(os.Environ(),
		"REGBRIDGE_SOURCE="+src,
		"REGBRIDGE_SIP_LISTEN=udp://"+p.sip,
		"REGBRIDGE_HTTP_LISTEN="+p.http,
		"REGBRIDGE_POLL_INTERVAL=20ms",
		"REGBRIDGE_DOMAIN=example.com",
		"REGBRIDGE_STATE="+state,
		"REGBRIDGE_STATE_LEASE=1s",
		"REGBRIDGE_INSTANCE_ID="+id,
	)
	p.cmd.Env = append(p.cmd.Env, extra...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if dir := os.Getenv("REGBRIDGE_TEST_LOGS"); dir != "" {
		// Whole logs, as they are written, for a developer chasing a
		// failure.
		f, err := os.Create(filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+id+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		p.cmd.Stdout = io.MultiWriter(p.log, f)
		p.cmd.Stderr = p.cmd.Stdout
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", id, tail(p.log.String(), 3000))
		}

	})
	siptest.Eventually(t, func() bool {
		res, err := http.Get("http://" + p.http + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	}, id+" ready")
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// notice is one NOTIFY as the subscriber side recorded it.
type notice struct {
	at      time.Time
	from    int // sender's port: which instance
	cseq    uint32
	doc     siptest.Reginfo
	subsSt  string
	retrans bool
}

// watchers is a compact subscriber side: many dialogs over a few UDP
// sockets, every NOTIFY answered 200 and recorded per Call-ID.
type watchers struct {
	t     *testing.T
	conns []*net.UDPConn
	mu    sync.Mutex
	toTag map[string]string
	log   map[string][]notice
	last  map[string]uint32 // last CSeq per Call-ID: retransmissions
}

func newWatchers(t *testing.T, sockets int) *watchers {
	w := &watchers{t: t, toTag: map[string]string{}, log: map[string][]notice{}, last: map[string]uint32{}}
	for range sockets {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadBuffer(8 << 20)
		w.conns = append(w.conns, c)
		go w.read(c)
	}
	t.Cleanup(func() {
		for _, c := range w.conns {
			c.Close()
		}
	})
	return w
}

func (w *watchers) read(c *net.UDPConn) {
	buf := make([]byte, 65535)
	for {
		n, src, err := c.ReadFromUDP(buf)
		if err != nil {
			return
		}
		w.handle(bytes.Clone(buf[:n]), src.Port, func(b []byte) { c.WriteToUDP(b, src) })
	}
}

// watcherParser reads messages of any size: over TCP a NOTIFY may be
// larger than sipgo's default limit of 64 KB, and RFC 3261 sets none.
var watcherParser = func() *sip.Parser {
	p := sip.NewParser()
	p.MaxMessageLength = 4 << 20
	return p
}()

// handle records one message from port (the sender's) and answers a
// NOTIFY through reply.
func (w *watchers) handle(raw []byte, port int, reply func([]byte)) {
	msg, err := watcherParser.ParseSIP(raw)
	if err != nil {
		return
	}
	switch m := msg.(type) {
	case *sip.Response:
		if m.CSeq().MethodName == sip.SUBSCRIBE && m.StatusCode == 200 {
			tag, _ := m.To().Params.Get("tag")
			w.mu.Lock()
			w.toTag[m.CallID().Value()] = tag
			w.mu.Unlock()
		}
	case *sip.Request:
		if m.Method != sip.NOTIFY {
			return
		}
		var doc siptest.Reginfo
		xml.Unmarshal(m.Body(), &doc)
		callID := m.CallID().Value()
		ss := ""
		if h := m.GetHeader("Subscription-State"); h != nil {
			ss = h.Value()
		}
		// Recorded before it is answered, as a UA checks a request's
		// CSeq before its 2xx (RFC 3261 12.2.2): the 2xx lets the
		// notifier send the dialog's next NOTIFY, which otherwise could
		// be recorded first (a large document takes a while to read,
		// more so under -race), and this one would then pass for a
		// retransmission and be ignored.
		w.mu.Lock()
		retrans := m.CSeq().SeqNo <= w.last[callID]
		w.last[callID] = max(w.last[callID], m.CSeq().SeqNo)
		w.log[callID] = append(w.log[callID], notice{at: time.Now(), from: port, cseq: m.CSeq().SeqNo, doc: doc, subsSt: ss, retrans: retrans})
		w.mu.Unlock()
		reply([]byte(sip.NewResponseFromRequest(m, 200, "OK", nil).String()))
	}
}

// subscribe sends one initial SUBSCRIBE for aor to server over socket i.
func (w *watchers) subscribe(i int, callID, aor string, server *net.UDPAddr) {
	c := w.conns[i%len(w.conns)]
	local := c.LocalAddr().String()
	msg := fmt.Sprintf("SUBSCRIBE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%s;rport\r\n"+
		"From: <sip:w%d@example.com>;tag=f%d\r\nTo: <%s>\r\nCall-ID: %s\r\nCSeq: 1 SUBSCRIBE\r\n"+
		"Contact: <sip:w%d@%s>\r\nEvent: reg\r\nAccept: application/reginfo+xml\r\nExpires: 600\r\n"+
		"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n", aor, local, callID, i, i, aor, callID, i, local)
	c.WriteToUDP([]byte(msg), server)
}

// subscribeAll makes n subscriptions, the i-th with Call-ID callOf(i) to
// aorOf(i), spread over procs in turn, waits for each one's first NOTIFY
// and returns which process each Call-ID subscribed at.
func (w *watchers) subscribeAll(n int, procs []*proc, callOf, aorOf func(int) string) map[string]*proc {
	owner := map[string]*proc{}
	for i := range n {
		p := procs[i%len(procs)]
		addr, _ := net.ResolveUDPAddr("udp", p.sip)
		owner[callOf(i)] = p
		w.subscribe(i, callOf(i), aorOf(i), addr)
		if i%50 == 49 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Up to 20 s: thousands of SUBSCRIBEs on a loaded machine.
	deadline := time.Now().Add(20 * time.Second)
	for {
		w.mu.Lock()
		got := len(w.log)
		var answered, silent []string
		if got < n && time.Now().After(deadline) {
			for i := range n {
				if id := callOf(i); len(w.log[id]) == 0 {
					if _, ok := w.toTag[id]; ok {
						answered = append(answered, id)
					} else {
						silent = append(silent, id)
					}
				}
			}
		}
		w.mu.Unlock()
		if got == n {
			return owner
		}
		if answered != nil || silent != nil {
			w.t.Fatalf("no first NOTIFY for %d subscriptions answered 200 (%q) and %d unanswered (%q)", len(answered), answered[:min(5, len(answered))], len(silent), silent[:min(5, len(silent))])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// contactView is what a subscriber knows after the NOTIFYs of list:
// each active contact's URI and CSeq.
func contactView(list []notice) map[string]int {
	got := map[string]int{}
	for _, n := range list {
		if n.retrans || len(n.doc.Registrations) == 0 {
			continue
		}
		if n.doc.State == "full" {
			clear(got)
		}
		for _, c := range n.doc.Registrations[0].Contacts {
			if c.State == "active" {
				got[c.URI], _ = strconv.Atoi(c.CSeq)
			} else {
				delete(got, c.URI)
			}
		}
	}
	return got
}

// TestClusterTakeover: three processes on one store and one Redis prefix,
// 1000 subscriptions spread over them, a stream of registration changes,
// and SIGKILL of one mid-stream. The subscriber side checks every
// subscription: versions in order without gaps or duplicates, one sender
// at a time, takeover within the lease plus one round, and a final state
// equal to the store's.
func TestClusterTakeover(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs three processes")
	}
	state, _, _ := redisState(t)
	bin, dbPath, src := buildWithStore(t)
	procs := []*proc{startProc(t, bin, src, state, "i0")}
	procs = append(procs, startProc(t, bin, src, state, "i1"), startProc(t, bin, src, state, "i2"))
	db := openLocation(t, dbPath)

	const subs, aors = 1000, 50
	w := newWatchers(t, 4)
	aorOf := func(i int) string { return fmt.Sprintf("sip:u%d@example.com", i%aors) }
	callOf := func(i int) string { return fmt.Sprintf("ct-%d", i) }
	owner := w.subscribeAll(subs, procs, callOf, aorOf)

	// The stream: registrations and de-registrations across the AORs;
	// process i0 is killed half-way.
	victim := procs[0]
	want, killAt := churnKilling(t, db, aors, victim)
	w.converge(subs, callOf, aorOf, want)
	lease := time.Second
	notifies, moved, gaps, maxTakeover := w.check(subs, callOf, owner, victim, killAt)
	if moved == 0 {
		t.Fatal("no subscription was taken over")
	}
	if maxTakeover > lease+lease/2+time.Second {
		t.Errorf("takeover took %v, over the lease (%v) plus one round", maxTakeover, lease)
	}

	// Store cost: the survivors report their Redis round trips at exit.
	var trips, sent uint64
	re := regexp.MustCompile(`redis_round_trips=(\d+) notifies_sent=(\d+)`)
	for _, p := range procs[1:] {
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.cmd.Wait()
		if m := re.FindStringSubmatch(p.log.String()); m != nil {
			a, _ := strconv.ParseUint(m[1], 10, 64)
			b, _ := strconv.ParseUint(m[2], 10, 64)
			trips, sent = trips+a, sent+b
		}
	}
	t.Logf("%d subscriptions, %d NOTIFYs checked, %d taken over (%d of them skipping a version the killed instance took), slowest takeover %v after SIGKILL (lease %v); survivors: %d Redis round trips for %d NOTIFYs (%.2f per NOTIFY, heartbeats, takeover and contact state included)",
		subs, notifies, moved, gaps, maxTakeover.Round(time.Millisecond), lease, trips, sent, float64(trips)/float64(max(sent, 1)))
}

// buildWithStore builds regbridge into a temporary directory and names
// a Kamailio SQLite store beside it: the binary, the file, and the
// REGBRIDGE_SOURCE URL that creates it.
func buildWithStore(t testing.TB) (bin, dbPath, src string) {
	t.Helper()
	dir := t.TempDir()
	bin = filepath.Join(dir, "regbridge")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dbPath = filepath.Join(dir, "location.db")
	return bin, dbPath, "kamailio+sqlite://" + dbPath + "?create=true"
}

// openLocation opens the store's file for the test to write, closed at
// cleanup.
func openLocation(t testing.TB, dbPath string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+dbPath+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// churnKilling is churn that SIGKILLs victim half-way; it returns the
// store's final state and when victim died.
func churnKilling(t *testing.T, db *sql.DB, aors int, victim *proc) (map[string]map[string]int, time.Time) {
	t.Helper()
	var killAt time.Time
	want := churn(t, db, aors, func() {
		victim.cmd.Process.Signal(syscall.SIGKILL)
		victim.cmd.Wait()
		killAt = time.Now()
	})
	return want, killAt
}

// churn writes 120 registrations and de-registrations across aors AORs
// of the Kamailio location table in db, every contact URI new, calling
// kill half-way, and returns the store's final state: AOR -> contact URI
// -> CSeq.
func churn(t *testing.T, db *sql.DB, aors int, kill func()) map[string]map[string]int {
	t.Helper()
	rnd := rand.New(rand.NewPCG(1, 2))
	live := map[string]string{} // ruid -> aor
	for step := range 120 {
		if step == 60 {
			kill()
		}
		u := rnd.IntN(aors)
		ruid := fmt.Sprintf("r%d", step)
		var victimRuid string
		for r, a := range live {
			if a == fmt.Sprintf("u%d", u) {
				victimRuid = r
				break
			}
		}
		if victimRuid != "" && rnd.IntN(3) == 0 {
			if _, err := db.Exec(`DELETE FROM location WHERE ruid = ?`, victimRuid); err != nil {
				t.Fatal(err)
			}
			delete(live, victimRuid)
		} else {
			if _, err := db.Exec(`INSERT INTO location (ruid, username, contact, expires, q, callid, cseq, last_modified, user_agent)
				VALUES (?, ?, ?, ?, -1, ?, 1, ?, 'ct')`, ruid, fmt.Sprintf("u%d", u), fmt.Sprintf("sip:u%d@192.0.2.%d", u, step%250+1),
				kamailio.TimeToJulian(time.Now().Add(time.Hour)), "call-"+ruid, kamailio.TimeToJulian(time.Now())); err != nil {
				t.Fatal(err)
			}
			live[ruid] = fmt.Sprintf("u%d", u)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return storeState(t, db)
}

// storeState reads the location table: AOR -> contact URI -> CSeq (an
// AOR without contacts is absent, which compares equal to an empty
// view).
func storeState(t *testing.T, db *sql.DB) map[string]map[string]int {
	t.Helper()
	want := map[string]map[string]int{}
	rows, err := db.Query(`SELECT username, contact, cseq FROM location`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var u, c string
		var cseq int
		if err := rows.Scan(&u, &c, &cseq); err != nil {
			t.Fatal(err)
		}
		aor := "sip:" + u + "@example.com"
		if want[aor] == nil {
			want[aor] = map[string]int{}
		}
		want[aor][c] = cseq
	}
	return want
}

// converge waits until every subscription's view equals want.
func (w *watchers) converge(subs int, callOf, aorOf func(int) string, want map[string]map[string]int) {
	t := w.t
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		bad := 0
		var first []string
		w.mu.Lock()
		for i := range subs {
			list := w.log[callOf(i)]
			if got := contactView(list); !maps.Equal(got, want[aorOf(i)]) {
				bad++
				if len(first) < 3 && len(list) > 0 {
					last := list[len(list)-1]
					first = append(first, fmt.Sprintf("%s (%s): %d NOTIFYs, the last version %d %s from port %d at %s; view %v, store %v",
						callOf(i), aorOf(i), len(list), last.doc.Version, last.doc.State, last.from, last.at.Format(time.StampMilli), got, want[aorOf(i)]))
				}
			}
		}
		w.mu.Unlock()
		if bad == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriptions never reached the store's state, for example:\n%s", bad, strings.Join(first, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// check reads every subscription's record: versions in order without
// gaps or duplicates (a full document after the takeover of a
// subscription of victim, killed at killAt, may skip one), one sender
// at a time and never the victim after its death. It returns the
// NOTIFYs checked, the subscriptions taken over, the versions skipped
// and the slowest takeover.
func (w *watchers) check(subs int, callOf func(int) string, owner map[string]*proc, victim *proc, killAt time.Time) (notifies, moved, gaps int, maxTakeover time.Duration) {
	t := w.t
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range subs {
		id := callOf(i)
		list := w.log[id]
		next := uint32(0)
		sender := owner[id].port
		for k, n := range list {
			if n.retrans {
				continue
			}
			notifies++
			takeover := n.from != sender && sender == victim.port && n.at.After(killAt) && n.doc.State == "full"
			if takeover && n.doc.Version > next {
				// The killed instance took a version and died before the
				// NOTIFY left (or arrived): a full document may skip it
				// (RFC 3680 4.1: full state replaces whatever was missed).
				gaps++
				next = n.doc.Version
			}
			if n.doc.Version != next {
				t.Errorf("%s: version %d, want %d (NOTIFY %d)", id, n.doc.Version, next, k)
				break
			}
			next++
			if n.from != sender {
				if sender != victim.port || n.at.Before(killAt) {
					t.Errorf("%s: NOTIFY from %d while %d owned it", id, n.from, sender)
					break
				}
				if n.doc.State != "full" {
					t.Errorf("%s: first NOTIFY after takeover is %s", id, n.doc.State)
				}
				moved++
				maxTakeover = max(maxTakeover, n.at.Sub(killAt))
				sender = n.from
			}
			if n.from == victim.port && n.at.After(killAt) {
				t.Errorf("%s: NOTIFY from the killed instance", id)
			}
		}
	}
	return notifies, moved, gaps, maxTakeover
}
