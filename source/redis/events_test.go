package redis

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/source"
)

// With keyspace notifications off the watcher says so, names the fix, and
// still sees changes by scanning every poll interval; once they are
// enabled it notices at the next reconcile and follows events.
func TestKeyspaceDisabled(t *testing.T) {
	rdb := needRedis(t)
	setKeyspaceEvents(t, rdb, "", false)
	table := uniqueName(t, "location")
	prefix := table + ":entry::"
	cleanPrefix(t, rdb, table)
	exp := time.Now().Add(time.Hour)
	log, logs := newLogger(t)
	w := newWatcher(t, Config{Table: table, Reconcile: 200 * time.Millisecond}, log)
	w.clientName = uniqueName(t, "regbridge")
	var rec recorder
	startRun(t, w, rec.sink())
	rec.waitFor(t, 0, "baseline", func(source.Batch) bool { return true })
	if logs.count("KEYSPACE NOTIFICATIONS OFF") != 1 || logs.count("CONFIG SET notify-keyspace-events Kghx") != 1 || logs.count("missing=Kghx") != 1 {
		t.Fatalf("no clear warning naming the missing classes and the fix:\n%s", logs.String())
	}

	n := rec.count()
	hset(t, rdb, prefix+"uloc-a", kamailioEntry{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1", expires: exp}.fields(time.UTC))
	rec.waitFor(t, n, "change seen by polling", func(b source.Batch) bool {
		return b.Full && slices.Equal(batchKeys(b), []string{"uloc-a"})
	})

	if ids := clientIDs(t, rdb, w, true); len(ids) != 0 {
		t.Fatalf("subscribed while notifications are off")
	}
	if m := w.Stats().Mode; m != source.ModePoll {
		t.Errorf("Stats().Mode = %q while notifications are off, want %q", m, source.ModePoll)
	}
	// Enable them as an operator would.
	if err := rdb.ConfigSet(context.Background(), "notify-keyspace-events", "KA").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "switch to events", func() bool {
		return logs.count("following keyspace notifications") == 1 && len(clientIDs(t, rdb, w, true)) == 1
	})
	if m := w.Stats().Mode; m != source.ModeKeyspace {
		t.Errorf("Stats().Mode = %q following notifications, want %q", m, source.ModeKeyspace)
	}
	n = rec.count()
	hset(t, rdb, prefix+"uloc-b", kamailioEntry{ruid: "uloc-b", user: "bob", contact: "sip:bob@192.0.2.2", expires: exp}.fields(time.UTC))
	rec.waitFor(t, n, "change seen as an event", func(b source.Batch) bool {
		return !b.Full && slices.Equal(batchKeys(b), []string{"uloc-b"})
	})
	if logs.count("KEYSPACE NOTIFICATIONS OFF") != 1 {
		t.Errorf("warning repeated")
	}
	if logs.count("unreachable") != 0 {
		t.Errorf("mode switch reported as an outage")
	}
}

// events=off never subscribes and polls without a warning.
func TestEventsOff(t *testing.T) {
	rdb := needRedis(t)
	table := uniqueName(t, "location")
	prefix := table + ":entry::"
	cleanPrefix(t, rdb, table)
	log, logs := newLogger(t)
	w := newWatcher(t, Config{Table: table, Events: EventsOff}, log)
	w.clientName = uniqueName(t, "regbridge")
	var rec recorder
	startRun(t, w, rec.sink())
	rec.waitFor(t, 0, "baseline", func(source.Batch) bool { return true })
	n := rec.count()
	hset(t, rdb, prefix+"uloc-a", kamailioEntry{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1", expires: time.Now().Add(time.Hour)}.fields(time.UTC))
	rec.waitFor(t, n, "change seen by polling", func(b source.Batch) bool { return b.Full && len(b.Contacts) == 1 })
	if logs.count("level=WARN") != 0 || logs.count("events=off") != 1 {
		t.Errorf("want one info line and no warning:\n%s", logs.String())
	}
	if ids := clientIDs(t, rdb, w, true); len(ids) != 0 {
		t.Errorf("events=off opened %d subscriber connections", len(ids))
	}
}

// A user that may not run CONFIG gets a warning that the setting cannot be
// checked, and notifications are used.
func TestConfigRefused(t *testing.T) {
	rdb := needRedis(t)
	setKeyspaceEvents(t, rdb, "Kghx", true)
	ctx := context.Background()
	user := uniqueName(t, "regbridge")
	if err := rdb.Do(ctx, "ACL", "SETUSER", user, "on", ">pw", "~*", "&*", "+@all", "-config").Err(); err != nil {
		// Only a server without ACLs (before Redis 6) may excuse the test,
		// and only outside CI; any other refusal is a failure.
		major := redisMajor(t, rdb)
		if major >= 6 || os.Getenv("CI") != "" {
			t.Fatalf("ACL SETUSER on Redis %d: %v", major, err)
		}
		t.Skipf("Redis %d has no ACL users (needs Redis 6 or later): %v", major, err)
	}
	t.Cleanup(func() { rdb.Do(context.Background(), "ACL", "DELUSER", user) })
	table := uniqueName(t, "location")
	prefix := table + ":entry::"
	cleanPrefix(t, rdb, table)
	log, logs := newLogger(t)
	w := newWatcher(t, Config{Table: table, Username: user, Password: "pw"}, log)
	var rec recorder
	startRun(t, w, rec.sink())
	rec.waitFor(t, 0, "baseline", func(source.Batch) bool { return true })
	if logs.count("cannot read notify-keyspace-events") != 1 {
		t.Fatalf("no warning about the refused CONFIG GET:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "pw") && strings.Contains(logs.String(), "password") {
		t.Errorf("password in the log")
	}
	n := rec.count()
	hset(t, rdb, prefix+"uloc-a", kamailioEntry{ruid: "uloc-a", user: "alice", contact: "sip:alice@192.0.2.1", expires: time.Now().Add(time.Hour)}.fields(time.UTC))
	rec.waitFor(t, n, "change seen as an event", func(b source.Batch) bool { return !b.Full && len(b.Contacts) == 1 })
}

// redisMajor is the major version of the server rdb talks to.
func redisMajor(t *testing.T, rdb *goredis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "server").Result()
	if err != nil {
		t.Fatalf("INFO server: %v", err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			major, _, _ := strings.Cut(v, ".")
			if n, err := strconv.Atoi(major); err == nil {
				return n
			}
		}
	}
	t.Fatalf("no redis_version in INFO server:\n%s", info)
	return 0
}

// A registrar writing local time in another zone than tz= says is
// detected from the last_modified of a binding it has just written.
func TestClockWarning(t *testing.T) {
	tests := []struct {
		name      string
		registrar string // the zone the registrar writes in
		watcher   string // tz= given to regbridge
		wantWarn  bool
	}{
		{"zones match", "Europe/Berlin", "Europe/Berlin", false},
		{"registrar in Berlin, tz=UTC", "Europe/Berlin", "UTC", true},
		{"registrar in Kolkata, tz=UTC", "Asia/Kolkata", "UTC", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb := needRedis(t)
			setKeyspaceEvents(t, rdb, "Kghx", true)
			table := uniqueName(t, "location")
			prefix := table + ":entry::"
			cleanPrefix(t, rdb, table)
			log, logs := newLogger(t)
			w := newWatcher(t, Config{Table: table, Location: mustZone(t, tt.watcher)}, log)
			var rec recorder
			startRun(t, w, rec.sink())
			rec.waitFor(t, 0, "baseline", func(source.Batch) bool { return true })
			for i, ruid := range []string{"uloc-a", "uloc-b"} {
				n := rec.count()
				e := kamailioEntry{ruid: ruid, user: "alice", contact: "sip:alice@192.0.2.1", expires: time.Now().Add(time.Hour)}
				hset(t, rdb, prefix+ruid, e.fields(mustZone(t, tt.registrar)))
				rec.waitFor(t, n, "change "+ruid, func(b source.Batch) bool { return !b.Full && len(b.Contacts) == 1 })
				want := 0
				if tt.wantWarn {
					want = 1
				}
				if got := logs.count("is tz= the registrar's time zone?"); got != want {
					t.Fatalf("after change %d: %d warnings, want %d", i+1, got, want)
				}
			}
		})
	}
}

// clientIDs lists the ids of w's connections, found by their client
// name; with pubsub only those subscribed to a pattern.
func clientIDs(t testing.TB, rdb *goredis.Client, w *Watcher, pubsub bool) []string {
	t.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, line := range strings.Split(list, "\n") {
		f := make(map[string]string)
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			f[k] = v
		}
		if f["name"] == w.clientName && (!pubsub || (f["psub"] != "" && f["psub"] != "0")) {
			ids = append(ids, f["id"])
		}
	}
	return ids
}
