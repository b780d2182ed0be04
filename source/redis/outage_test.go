package redis

import (
	"context"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// proxy is a loopback TCP relay to Redis that a test can cut and restore:
// while cut, every connection is closed and new ones are closed at once,
// which is what the watcher sees when the server or the network goes away.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	io.Copy(dst, src)
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}

// cut drops every connection and refuses new ones.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
}

func (p *proxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// TestOutage cuts the watcher off from Redis, changes the store meanwhile,
// restores the path, and checks that Run survives, reports Up correctly,
// logs the outage once each way, retries with capped backoff, and ends
// with a Full batch that holds exactly the store's content.
func TestOutage(t *testing.T) {
	rdb := needRedis(t)
	setKeyspaceEvents(t, rdb, "Kghx", true)
	table := uniqueName(t, "location")
	prefix := table + ":entry::"
	cleanPrefix(t, rdb, table)
	exp := time.Now().Add(time.Hour)
	hset(t, rdb, prefix+"uloc-a", kamailioEntry{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1", expires: exp}.fields(time.UTC))

	px := startProxy(t, redisAddr)
	log, logs := newLogger(t)
	w := newWatcher(t, Config{Addr: px.addr(), Table: table}, log)
	var rec recorder
	stop := startRun(t, w, rec.sink())
	rec.waitFor(t, 0, "baseline", func(source.Batch) bool { return true })
	eventually(t, "Up", func() bool { return w.Stats().Up })

	px.cut()
	eventually(t, "outage noticed", func() bool { return !w.Stats().Up && logs.count("redis unreachable") == 1 })
	// The registrar keeps writing while we cannot see it.
	hset(t, rdb, prefix+"uloc-b", kamailioEntry{ruid: "uloc-b", user: "bob", contact: "sip:bob@192.0.2.2", expires: exp}.fields(time.UTC))
	del(t, rdb, prefix+"uloc-a")
	// Let several retries fail: they must stay quiet and back off.
	eventually(t, "retries", func() bool { return w.Stats().Errors >= 4 })
	n := rec.count()

	px.restore()
	b := rec.waitFor(t, n, "Full batch after recovery", func(b source.Batch) bool { return b.Full })
	if !slices.Equal(batchKeys(b), []string{"uloc-b"}) {
		t.Errorf("after recovery got %v, want [uloc-b]", batchKeys(b))
	}
	eventually(t, "recovery logged", func() bool { return w.Stats().Up && logs.count("redis reachable again") == 1 })
	if n := logs.count("redis unreachable"); n != 1 {
		t.Errorf("outage logged %d times at warn level, want once", n)
	}
	// Events flow again after the reconnect.
	n = rec.count()
	hset(t, rdb, prefix+"uloc-c", kamailioEntry{ruid: "uloc-c", user: "carol", contact: "sip:carol@192.0.2.3", expires: exp}.fields(time.UTC))
	rec.waitFor(t, n, "event after recovery", func(b source.Batch) bool { return !b.Full && slices.Equal(batchKeys(b), []string{"uloc-c"}) })
	stop()
	if w.Stats().Up {
		t.Errorf("Up after Run returned")
	}
}

// Killing only the subscriber connection loses notifications without the
// watcher's reads failing: go-redis re-subscribes by itself, and that
// re-subscription must trigger a full resync.
func TestResyncAfterSubscriberKilled(t *testing.T) {
	rdb := needRedis(t)
	setKeyspaceEvents(t, rdb, "Kghx", true)
	table := uniqueName(t, "location")
	prefix := table + ":entry::"
	cleanPrefix(t, rdb, table)
	log, logs := newLogger(t)
	w := newWatcher(t, Config{Table: table, PollInterval: time.Hour}, log)
	w.clientName = uniqueName(t, "regbridge")
	var rec recorder
	startRun(t, w, rec.sink())
	rec.waitFor(t, 0, "baseline", func(source.Batch) bool { return true })

	var ids []string
	eventually(t, "subscriber connection listed", func() bool {
		ids = clientIDs(t, rdb, w, true)
		return len(ids) == 1
	})
	n := rec.count()
	if err := rdb.Do(context.Background(), "CLIENT", "KILL", "ID", ids[0]).Err(); err != nil {
		t.Fatal(err)
	}
	b := rec.waitFor(t, n, "Full batch after re-subscription", func(b source.Batch) bool { return b.Full })
	if len(b.Contacts) != 0 {
		t.Errorf("resync invented contacts: %v", batchKeys(b))
	}
	if logs.count("re-established") != 1 {
		t.Errorf("re-subscription not logged once")
	}
	n = rec.count()
	hset(t, rdb, prefix+"uloc-a", kamailioEntry{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1", expires: time.Now().Add(time.Hour)}.fields(time.UTC))
	rec.waitFor(t, n, "event on the new subscription", func(b source.Batch) bool { return !b.Full && len(b.Contacts) == 1 })
}
