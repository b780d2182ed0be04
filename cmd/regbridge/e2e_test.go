package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
	_ "modernc.org/sqlite"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source/kamailio"
)

// syncBuffer collects the server's log output across goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// freePort returns a port free for both UDP and TCP on 127.0.0.1, below
// Linux's ephemeral range (32768 and up by default). Several tests stop
// regbridge and start it again on the same port, which a peer was told;
// a port the kernel hands out could meanwhile become the local port of
// some client connection of the tests running beside (it happened in CI:
// "address already in use" at the restart). Below the range only another
// test's freePort could pick it, at random.
func freePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		pc.Close()
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// server is regbridge started through run(), as the binary starts it.
type server struct {
	sip, http string
	db        *sql.DB // a writer, as Kamailio's db_sqlite would be
	log       *syncBuffer
	stop      func() int
}

// startServer starts regbridge on the SQLite file path (a new one in a
// temporary directory when path is empty).
func startServer(t *testing.T, path string, extra map[string]string) *server {
	t.Helper()
	return startServerEnv(t, path, mapEnv(nil), extra)
}

// startServerEnv is startServer reading its environment from env, which
// the test may change while regbridge runs (extra is added to it).
func startServerEnv(t *testing.T, path string, envs *syncEnv, extra map[string]string) *server {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "location.db")
	}
	sipPort, httpPort := freePort(t), freePort(t)
	s := &server{
		sip:  fmt.Sprintf("127.0.0.1:%d", sipPort),
		http: fmt.Sprintf("127.0.0.1:%d", httpPort),
		log:  &syncBuffer{},
	}
	env := map[string]string{
		"REGBRIDGE_SOURCE":        "kamailio+sqlite://" + path + "?create=true",
		"REGBRIDGE_SIP_LISTEN":    fmt.Sprintf("udp://%s,tcp://%s", s.sip, s.sip),
		"REGBRIDGE_HTTP_LISTEN":   s.http,
		"REGBRIDGE_POLL_INTERVAL": "20ms",
		"REGBRIDGE_DOMAIN":        "example.com",
		"REGBRIDGE_LOG_LEVEL":     "debug",
	}
	for k, v := range extra {
		env[k] = v
	}
	if envs.m == nil {
		envs.m = map[string]string{}
	}
	for k, v := range env {
		envs.set(k, v)
	}
	s.run(t, envs)

	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	s.db = db
	return s
}

// run runs regbridge through run(), as the binary starts it, with env
// until the test ends (or s.stop), and waits until s.http answers /readyz.
func (s *server) run(t *testing.T, env *syncEnv) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- run(ctx, nil, env, s.log, s.log) }()
	var once sync.Once
	var exit int
	s.stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case exit = <-code:
			case <-time.After(10 * time.Second):
				t.Errorf("regbridge did not stop within 10s")
				exit = -1
			}
		})
		return exit
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("regbridge log:\n%s", s.log.String())
		}
	})
	// A store of 100,000 rows takes seconds to load under the race detector.
	siptest.EventuallyWithin(t, 60*time.Second, func() bool {
		res, err := http.Get("http://" + s.http + "/readyz")
		if err != nil {
			return false
		}
		res.Body.Close()
		return res.StatusCode == 200
	}, "/readyz 200")
}

func (s *server) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := s.db.Exec(query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// insert writes a row the way Kamailio's db_sqlite does (REAL Julian days).
func (s *server) insert(t *testing.T, ruid, user, contact string, expires time.Time, callid string, cseq int) {
	t.Helper()
	s.exec(t, `INSERT INTO location (ruid, username, contact, expires, q, callid, cseq, last_modified, user_agent)
		VALUES (?, ?, ?, ?, -1, ?, ?, ?, 'e2e <phone> & "co"')`,
		ruid, user, contact, kamailio.TimeToJulian(expires), callid, cseq, kamailio.TimeToJulian(time.Now()))
}

func contactOf(t *testing.T, n siptest.Notify) siptest.Contact {
	t.Helper()
	if len(n.Doc.Registrations) != 1 || len(n.Doc.Registrations[0].Contacts) != 1 {
		t.Fatalf("want one registration with one contact: %s", n.Req.Body())
	}
	return n.Doc.Registrations[0].Contacts[0]
}

// TestEndToEnd drives the whole path: rows written to a Kamailio-schema
// SQLite file as db_sqlite writes them, regbridge started as the binary
// starts, and an independent sipgo subscriber over UDP and TCP asserting
// the exact sequence of NOTIFYs.
func TestEndToEnd(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			s := startServer(t, "", nil)
			p := siptest.New(t, network, s.sip)
			aor := "sip:alice@example.com"

			res := p.Subscribe(aor, siptest.Header("Event", "reg"))
			if res.StatusCode != 200 {
				t.Fatalf("SUBSCRIBE: %d %s", res.StatusCode, res.Reason)
			}
			n := p.Next()
			p.Check(n, 0, "full", "active;expires=")
			if r := n.Doc.Registrations[0]; r.State != "init" || r.AOR != aor || len(r.Contacts) != 0 {
				t.Fatalf("initial full state: %s", n.Req.Body())
			}
			regID := n.Doc.Registrations[0].ID

			s.insert(t, "uloc-1", "alice", "sip:alice@192.0.2.10:5060", time.Now().Add(time.Hour), "call-1", 1)
			n = p.Next()
			p.Check(n, 1, "partial", "active;expires=")
			c := contactOf(t, n)
			if c.Event != "registered" || c.State != "active" || c.URI != "sip:alice@192.0.2.10:5060" || n.Doc.Registrations[0].State != "active" || n.Doc.Registrations[0].ID != regID {
				t.Fatalf("registered: %s", n.Req.Body())
			}
			contactID := c.ID

			s.exec(t, `UPDATE location SET cseq = 2, expires = ? WHERE ruid = 'uloc-1'`, kamailio.TimeToJulian(time.Now().Add(2*time.Hour)))
			n = p.Next()
			p.Check(n, 2, "partial", "active")
			if c := contactOf(t, n); c.Event != "refreshed" || c.ID != contactID || c.CSeq != "2" {
				t.Fatalf("refreshed: %s", n.Req.Body())
			}

			s.exec(t, `UPDATE location SET expires = ? WHERE ruid = 'uloc-1'`, kamailio.TimeToJulian(time.Now().Add(3*time.Second)))
			n = p.Next()
			p.Check(n, 3, "partial", "active")
			if c := contactOf(t, n); c.Event != "shortened" || c.Expires == "" || c.Expires > "3" {
				t.Fatalf("shortened needs expires <= 3: %s", n.Req.Body())
			}

			s.insert(t, "uloc-2", "alice", "sip:alice@192.0.2.11:5060;transport=tcp", time.Now().Add(time.Hour), "call-2", 7)
			n = p.Next()
			p.Check(n, 4, "partial", "active")
			if c := contactOf(t, n); c.Event != "registered" || c.ID == contactID {
				t.Fatalf("second contact: %s", n.Req.Body())
			}
			s.exec(t, `DELETE FROM location WHERE ruid = 'uloc-2'`)
			n = p.Next()
			p.Check(n, 5, "partial", "active")
			if c := contactOf(t, n); c.Event != "unregistered" || c.State != "terminated" || n.Doc.Registrations[0].State != "active" {
				t.Fatalf("unregistered: %s", n.Req.Body())
			}

			// uloc-1 expires by regbridge's clock while its row is still there.
			n = p.Next()
			p.Check(n, 6, "partial", "active")
			if c := contactOf(t, n); c.Event != "expired" || c.State != "terminated" || c.ID != contactID || n.Doc.Registrations[0].State != "terminated" {
				t.Fatalf("expired: %s", n.Req.Body())
			}
			// Kamailio's timer deletes the expired row later: nothing to say.
			s.exec(t, `DELETE FROM location WHERE ruid = 'uloc-1'`)
			p.None(300 * time.Millisecond)

			if code := s.stop(); code != 0 {
				t.Fatalf("exit code %d", code)
			}
			n = p.Next()
			p.Check(n, 7, "full", "terminated;reason=deactivated")
		})
	}
}

// TestRestartIsSilent: regbridge restarted on a store that already has
// contacts loads them as its baseline and announces nothing (invariant 1,
// docs/design.md#invariants); a new subscriber sees them in full state, then
// silence.
func TestRestartIsSilent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "location.db")
	first := startServer(t, path, nil)
	first.insert(t, "uloc-a", "bob", "sip:bob@192.0.2.20", time.Now().Add(time.Hour), "cb", 1)
	first.insert(t, "uloc-b", "bob", "sip:bob@192.0.2.21", time.Now().Add(time.Hour), "cb2", 1)
	p := siptest.New(t, "udp", first.sip)
	p.Subscribe("sip:bob@example.com", siptest.Header("Event", "reg"))
	seen := map[string]bool{}
	for len(seen) < 2 {
		for _, c := range p.Next().Doc.Registrations[0].Contacts {
			seen[c.ID] = true
		}
	}
	if code := first.stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	second := startServer(t, path, nil)
	q := siptest.New(t, "tcp", second.sip)
	if res := q.Subscribe("sip:bob@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE after restart: %d", res.StatusCode)
	}
	n := q.Next()
	q.Check(n, 0, "full", "active")
	if r := n.Doc.Registrations[0]; r.State != "active" || len(r.Contacts) != 2 {
		t.Fatalf("full state after restart: %s", n.Req.Body())
	}
	q.None(500 * time.Millisecond) // the baseline is not a burst of events
}

func TestHealthEndpoints(t *testing.T) {
	s := startServer(t, "", nil)
	for _, path := range []string{"/healthz", "/readyz"} {
		res, err := http.Get("http://" + s.http + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s: %d", path, res.StatusCode)
		}
	}
	var out, errOut bytes.Buffer
	env := envconfig.MapLookuper(map[string]string{"REGBRIDGE_HTTP_LISTEN": s.http})
	if code := run(t.Context(), []string{"health"}, env, &out, &errOut); code != 0 || !strings.Contains(out.String(), "ok") {
		t.Errorf("regbridge health: exit %d, %q %q", code, out.String(), errOut.String())
	}
}
