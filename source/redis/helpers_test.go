package redis

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/source"
)

const (
	// redisAddr is the local Redis every developer machine and CI run.
	redisAddr = "127.0.0.1:6379"
	// testDB keeps this package's keys out of database 0; each test also
	// has its own key prefix, so tests never see each other's keys.
	testDB = 9
)

// needRedis connects to the local Redis, or skips (fails when CI is set)
// when it is not running.
func needRedis(t testing.TB) *goredis.Client {
	t.Helper()
	rdb := goredis.NewClient(&goredis.Options{Addr: redisAddr, DB: testDB, DisableIdentity: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		msg := fmt.Sprintf("Redis at %s is not reachable (%v); start it with: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no --dir /var/lib/redis", redisAddr, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// uniqueName returns a name no other test run uses.
func uniqueName(t testing.TB, base string) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return base + "_" + hex.EncodeToString(b[:])
}

// cleanPrefix deletes every key under prefix when the test ends.
func cleanPrefix(t testing.TB, rdb *goredis.Client, prefix string) {
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, globEscape(prefix)+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
}

// setKeyspaceEvents sets notify-keyspace-events for the test and restores
// the previous value afterwards. add=true keeps what was set and adds
// flags; add=false sets exactly flags.
func setKeyspaceEvents(t testing.TB, rdb *goredis.Client, flags string, add bool) {
	t.Helper()
	ctx := context.Background()
	prev, err := rdb.ConfigGet(ctx, "notify-keyspace-events").Result()
	if err != nil {
		t.Fatalf("CONFIG GET: %v", err)
	}
	old := prev["notify-keyspace-events"]
	val := flags
	if add {
		val = old + flags
	}
	if err := rdb.ConfigSet(ctx, "notify-keyspace-events", val).Err(); err != nil {
		t.Fatalf("CONFIG SET notify-keyspace-events %q: %v", val, err)
	}
	t.Cleanup(func() {
		if err := rdb.ConfigSet(context.Background(), "notify-keyspace-events", old).Err(); err != nil {
			t.Errorf("restoring notify-keyspace-events %q: %v", old, err)
		}
	})
}

// fakeSink is a Sink built from a function.
type fakeSink struct {
	apply func(ctx context.Context, b source.Batch) error
}

func (f fakeSink) Apply(ctx context.Context, b source.Batch) error { return f.apply(ctx, b) }

// recorder keeps a copy of every batch (the adapter reuses the arrays) and
// the state they add up to.
type recorder struct {
	mu      sync.Mutex
	batches []source.Batch
	state   map[string]source.Contact
}

func (r *recorder) sink() fakeSink {
	return fakeSink{apply: func(_ context.Context, b source.Batch) error {
		b.Contacts = slices.Clone(b.Contacts)
		b.Deleted = slices.Clone(b.Deleted)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.batches = append(r.batches, b)
		if b.Full || r.state == nil {
			r.state = make(map[string]source.Contact)
		}
		for _, k := range b.Deleted {
			delete(r.state, k)
		}
		for _, c := range b.Contacts {
			r.state[c.Key] = c
		}
		return nil
	}}
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.batches)
}

func (r *recorder) all() []source.Batch {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

// contact returns the binding key in the state the batches add up to.
func (r *recorder) contact(key string) (source.Contact, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.state[key]
	return c, ok
}

func (r *recorder) keys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.state))
}

// waitFor waits until a batch after the first `after` batches satisfies ok
// and returns it.
func (r *recorder) waitFor(t *testing.T, after int, what string, ok func(source.Batch) bool) source.Batch {
	t.Helper()
	var got source.Batch
	eventually(t, what, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, b := range r.batches[min(after, len(r.batches)):] {
			if ok(b) {
				got = b
				return true
			}
		}
		return false
	})
	return got
}

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func batchKeys(b source.Batch) []string {
	var ks []string
	for _, c := range b.Contacts {
		ks = append(ks, c.Key)
	}
	slices.Sort(ks)
	return ks
}

// logBuffer collects log output safely across goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

func newLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	h := slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", lb.String())
		}
	})
	return slog.New(h), lb
}

// newWatcher builds a watcher on the test database with fast timers.
func newWatcher(t *testing.T, cfg Config, log *slog.Logger) *Watcher {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = redisAddr
	}
	if cfg.DB == 0 {
		cfg.DB = testDB
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 50 * time.Millisecond
	}
	w, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return w
}

// startRun runs w in the background; the returned stop cancels it and
// checks that Run returned nil.
func startRun(t *testing.T, w *Watcher, sink source.Sink) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, sink) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v, want nil after cancel", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// kamailioEntry is a binding as usrloc hands it to db_redis: every column
// as text, times in the registrar's zone.
type kamailioEntry struct {
	ruid, user, domain, contact, callid string
	expires                             time.Time // zero: permanent
	cseq                                int
}

// fields renders e as db_redis writes it (docs/stores.md#kamailios-db_redis-layout;
// observed: 17 fields,
// the NULL ones absent).
func (e kamailioEntry) fields(loc *time.Location) map[string]any {
	exp := time.Unix(0, 0)
	if !e.expires.IsZero() {
		exp = e.expires
	}
	if e.callid == "" {
		e.callid = "call-" + e.ruid
	}
	if e.cseq == 0 {
		e.cseq = 1
	}
	f := map[string]any{
		"ruid": e.ruid, "username": e.user, "contact": e.contact,
		"expires":       exp.In(loc).Format(kamailioTimeLayout),
		"q":             "-1.000000",
		"callid":        e.callid,
		"cseq":          fmt.Sprint(e.cseq),
		"last_modified": time.Now().In(loc).Format(kamailioTimeLayout),
		"flags":         "0", "cflags": "0", "user_agent": "test-ua", "socket": "udp:127.0.0.1:5060",
		"reg_id": "0", "server_id": "0", "connection_id": "-1", "keepalive": "0", "partition": "0",
	}
	if e.domain != "" {
		f["domain"] = e.domain
	}
	return f
}

// hset writes fields into key in one HSET, as db_redis's HMSET does.
func hset(t testing.TB, rdb *goredis.Client, key string, fields map[string]any) {
	t.Helper()
	if err := rdb.HSet(context.Background(), key, fields).Err(); err != nil {
		t.Fatalf("HSET %s: %v", key, err)
	}
}

func del(t testing.TB, rdb *goredis.Client, keys ...string) {
	t.Helper()
	if err := rdb.Del(context.Background(), keys...).Err(); err != nil {
		t.Fatalf("DEL %v: %v", keys, err)
	}
}
