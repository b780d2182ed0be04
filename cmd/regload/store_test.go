package main

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// The local services of the development machines and CI
// (docs/design.md#tests-and-ci). Each test makes its own database or key prefix.
const (
	testMySQL    = "root@tcp(127.0.0.1:3306)/"
	testPostgres = "postgres://postgres@127.0.0.1:5432/"
	testRedis    = "redis://127.0.0.1:6379/0"
)

// unavailable skips the test when a service is not running, except in CI.
func unavailable(t *testing.T, what string, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s: %v", what, err)
	}
	t.Skipf("%s not available: %v", what, err)
}

// stored is one binding read back from a store.
type stored struct {
	cseq    int64
	expires time.Time
	contact string
}

// TestStores writes bindings and a refresh into each kind of store and
// reads them back as Kamailio's layout has them.
func TestStores(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 30, 15, 0, time.UTC)
	suffix := fmt.Sprintf("%06x", rand.Uint32N(1<<24))
	for _, tc := range []struct {
		name string
		// open returns the store spec and a reader of one binding.
		open func(t *testing.T) (storeSpec, func(ruid string) (stored, bool))
	}{
		{"sqlite", func(t *testing.T) (storeSpec, func(string) (stored, bool)) {
			path := filepath.Join(t.TempDir(), "loc.db")
			spec := storeSpec{kind: "sqlite", path: path, table: "location"}
			return spec, func(ruid string) (stored, bool) {
				db, err := sql.Open("sqlite", "file:"+path)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				var s stored
				var jd float64
				err = db.QueryRow(`SELECT cseq, expires, contact FROM location WHERE ruid = ?`, ruid).Scan(&s.cseq, &jd, &s.contact)
				// Kamailio's rounding rule (docs/stores.md#time-encoding).
				s.expires = time.Unix(int64(math.Round(86400*(jd-2440587.5)+0.5)), 0).UTC()
				return s, err == nil
			}
		}},
		{"mysql", func(t *testing.T) (storeSpec, func(string) (stored, bool)) {
			db := createDatabase(t, "mysql", testMySQL, "regload_test_"+suffix)
			spec, err := parseStore("mysql://"+testMySQL+"regload_test_"+suffix, "")
			if err != nil {
				t.Fatal(err)
			}
			return spec, func(ruid string) (stored, bool) {
				var s stored
				var exp string
				err := db.QueryRow("SELECT cseq, expires, contact FROM location WHERE ruid = ?", ruid).Scan(&s.cseq, &exp, &s.contact)
				s.expires, _ = time.Parse(time.DateTime, exp)
				return s, err == nil
			}
		}},
		{"postgres", func(t *testing.T) (storeSpec, func(string) (stored, bool)) {
			createDatabase(t, "pgx", testPostgres, "regload_test_"+suffix)
			url := testPostgres + "regload_test_" + suffix
			c, err := pgx.Connect(t.Context(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close(context.Background()) })
			spec, err := parseStore(url, "")
			if err != nil {
				t.Fatal(err)
			}
			return spec, func(ruid string) (stored, bool) {
				var s stored
				var exp string
				err := c.QueryRow(t.Context(), "SELECT cseq, to_char(expires, 'YYYY-MM-DD HH24:MI:SS'), contact FROM location WHERE ruid = $1", ruid).Scan(&s.cseq, &exp, &s.contact)
				s.expires, _ = time.Parse(time.DateTime, exp)
				return s, err == nil
			}
		}},
		{"redis", func(t *testing.T) (storeSpec, func(string) (stored, bool)) {
			opt, _ := redis.ParseURL(testRedis)
			c := redis.NewClient(opt)
			if err := c.Ping(t.Context()).Err(); err != nil {
				unavailable(t, "redis", err)
			}
			table := "regload_test_" + suffix
			t.Cleanup(func() {
				c.Del(context.Background(), table+"::index::timer", table+":timer::0:0")
				c.Close()
			})
			spec, err := parseStore(testRedis, table)
			if err != nil {
				t.Fatal(err)
			}
			return spec, func(ruid string) (stored, bool) {
				h, err := c.HGetAll(t.Context(), table+":entry::"+ruid).Result()
				if err != nil || len(h) == 0 {
					return stored{}, false
				}
				var s stored
				fmt.Sscan(h["cseq"], &s.cseq)
				s.expires, _ = time.Parse(time.DateTime, h["expires"])
				s.contact = h["contact"]
				return s, true
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, read := tc.open(t)
			ctx := t.Context()
			st, err := openStore(ctx, spec, 2, "")
			if err != nil {
				t.Fatal(err)
			}
			defer st.close()
			rows := []row{newRow("t1", "example.com", 0, now), newRow("t1", "example.com", 1, now)}
			if err := st.prepare(ctx, rows); err != nil {
				t.Fatal(err)
			}
			r := rows[1]
			r.cseq, r.expires = 7, now.Add(2*time.Hour)
			if err := st.refresh(ctx, 1, []row{r}); err != nil {
				t.Fatal(err)
			}
			// A batch is one transaction.
			r0 := rows[0]
			r0.cseq = 3
			r.cseq = 8
			if err := st.refresh(ctx, 1, []row{r0, r}); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				ruid    string
				cseq    int64
				expires time.Time
			}{{rows[0].ruid, 3, now.Add(bindingLifetime)}, {rows[1].ruid, 8, now.Add(2 * time.Hour)}} {
				got, ok := read(c.ruid)
				if !ok || got.cseq != c.cseq || !got.expires.Equal(c.expires) || got.contact != rows[0].contact && got.contact != rows[1].contact {
					t.Errorf("%s: %+v (found %v), want cseq %d expires %v", c.ruid, got, ok, c.cseq, c.expires)
				}
			}
			// A refresh of a missing binding is an error, not a silent no-op.
			gone := r
			gone.ruid = "uloc-missing"
			if st.refresh(ctx, 0, []row{gone}) == nil {
				t.Error("refresh of a missing ruid succeeded")
			}
			if st.refresh(ctx, 0, []row{r, gone}) == nil {
				t.Error("batch with a missing ruid succeeded")
			}
			if err := st.cleanup(ctx, rows); err != nil {
				t.Fatal(err)
			}
			for _, rw := range rows {
				if _, ok := read(rw.ruid); ok {
					t.Errorf("%s still there after cleanup", rw.ruid)
				}
			}

			// A second run finds the table in place (as after `regbridge
			// cdc install`, which needs it). Bounded: MariaDB once made
			// the look for it hang.
			rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			again, err := openStore(rctx, spec, 1, "")
			if err != nil {
				t.Fatal(err)
			}
			defer again.close()
			if err := again.prepare(rctx, rows[:1]); err != nil {
				t.Fatalf("second run: %v", err)
			}
			if err := again.refresh(rctx, 0, []row{r0}); err != nil {
				t.Errorf("second run: %v", err)
			}
			if err := again.cleanup(rctx, rows[:1]); err != nil {
				t.Error(err)
			}
		})
	}
}

// createDatabase makes database name on a server (driver "mysql" or "pgx")
// and drops it when the test ends; it returns a connection to it (MySQL).
func createDatabase(t *testing.T, driver, base, name string) *sql.DB {
	t.Helper()
	ctx := t.Context()
	switch driver {
	case "pgx":
		c, err := pgx.Connect(ctx, base+"postgres")
		if err != nil {
			unavailable(t, "postgres", err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			c, err := pgx.Connect(context.Background(), base+"postgres")
			if err == nil {
				c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
				c.Close(context.Background())
			}
		})
		return nil
	default:
		admin, err := sql.Open("mysql", base)
		if err == nil {
			err = admin.PingContext(ctx)
		}
		if err != nil {
			unavailable(t, "mysql", err)
		}
		t.Cleanup(func() {
			admin.Exec("DROP DATABASE IF EXISTS " + name)
			admin.Close()
		})
		if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
			t.Fatal(err)
		}
		db, err := sql.Open("mysql", base+name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
}

func TestParseStore(t *testing.T) {
	for _, tc := range []struct {
		in, table                  string
		kind, path, dsn, host, tab string
	}{
		{"sqlite:/tmp/x.db", "", "sqlite", "/tmp/x.db", "", "", "location"},
		{"kamailio+sqlite:///abs/x.db?create=true&table=loc2", "", "sqlite", "/abs/x.db", "", "", "loc2"},
		{"kamailio+sqlite:rel.db?table=loc2", "loc3", "sqlite", "rel.db", "", "", "loc3"},
		{"mysql://root@tcp(127.0.0.1:3306)/regload", "", "mysql", "", "root@tcp(127.0.0.1:3306)/regload", "127.0.0.1", "location"},
		{"kamailio+mysql://u:p@127.0.0.1/kam?tz=UTC&table=location_pbx", "", "mysql", "", "u:p@tcp(127.0.0.1:3306)/kam", "127.0.0.1", "location_pbx"},
		{"postgres://postgres@127.0.0.1:5432/regload?sslmode=disable&tz=UTC", "", "postgres", "", "postgres://postgres@127.0.0.1:5432/regload?sslmode=disable", "127.0.0.1", "location"},
		{"kamailio+redis://127.0.0.1:6379/2?table=v2:location&tz=UTC&events=auto", "", "redis", "", "redis://127.0.0.1:6379/2", "127.0.0.1", "v2:location"},
		{"redis://10.0.0.1/0", "", "redis", "", "redis://10.0.0.1/0", "10.0.0.1", "location"},
	} {
		s, err := parseStore(tc.in, tc.table)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if s.kind != tc.kind || s.path != tc.path || s.dsn != tc.dsn || s.host != tc.host || s.table != tc.tab {
			t.Errorf("%s: %+v, want %s %q %q %q %q", tc.in, s, tc.kind, tc.path, tc.dsn, tc.host, tc.tab)
		}
	}
	// The store server's port, to find its process for the report.
	for in, port := range map[string]uint16{
		"sqlite:/tmp/x.db":                          0,
		"mysql://root@tcp(127.0.0.1:3307)/regload":  3307,
		"kamailio+mysql://u:p@127.0.0.1/kam":        3306,
		"postgres://postgres@127.0.0.1/regload":     5432,
		"postgres://postgres@[::1]:5433/regload":    5433,
		"postgres://postgres@/regload?host=/run/pg": 0,
		"redis://127.0.0.1:6380/0":                  6380,
		"kamailio+redis://localhost/2":              6379,
	} {
		if s, err := parseStore(in, ""); err != nil || s.port != port {
			t.Errorf("%s: port %d (%v), want %d", in, s.port, err, port)
		}
	}
	for _, bad := range []string{"ftp://x", "sqlite:", "nothing", "sqlite:x.db?table=bad-name", "mysql://u@tcp(/x"} {
		if _, err := parseStore(bad, ""); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// TestRedisScriptFlushed: when Redis's script cache is flushed while
// regload writes (SCRIPT FLUSH, a restart, a failover), a batched refresh
// loads the script again and still writes every binding.
func TestRedisScriptFlushed(t *testing.T) {
	opt, _ := redis.ParseURL(testRedis)
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() }) // after the cleanups below (LIFO)
	ctx := t.Context()
	if err := c.Ping(ctx).Err(); err != nil {
		unavailable(t, "redis", err)
	}
	table := fmt.Sprintf("regload_flush_%06x", rand.Uint32N(1<<24))
	spec, err := parseStore(testRedis, table)
	if err != nil {
		t.Fatal(err)
	}
	st, err := openStore(ctx, spec, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.close() })
	now := time.Now().UTC().Truncate(time.Second)
	rows := []row{newRow("f1", "example.com", 0, now), newRow("f1", "example.com", 1, now)}
	if err := st.prepare(ctx, rows); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.cleanup(context.Background(), rows); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		c.Del(context.Background(), table+"::index::timer", table+":timer::0:0")
		if n, err := c.Keys(context.Background(), table+"*").Result(); err != nil || len(n) > 0 {
			t.Errorf("keys left behind: %v %v", n, err)
		}
	})

	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	rows[0].cseq, rows[1].cseq = 41, 42
	if err := st.refresh(ctx, 0, rows); err != nil {
		t.Fatalf("batched refresh after SCRIPT FLUSH: %v", err)
	}
	for _, r := range rows {
		got, err := c.HGet(ctx, table+":entry::"+r.ruid, "cseq").Result()
		if err != nil || got != fmt.Sprint(r.cseq) {
			t.Errorf("%s: cseq %q (%v), want %d", r.ruid, got, err, r.cseq)
		}
	}
	if ok, err := c.ScriptExists(ctx, updateEntry.Hash()).Result(); err != nil || !ok[0] {
		t.Errorf("script not loaded again after the flush: %v %v", ok, err)
	}
}

// TestStoreServerCPU checks that the store server's CPU (serverCPU, what
// the report prints) counts the work of its child processes: PostgreSQL runs each connection in a backend
// forked from the process that listens, which alone shows almost none.
func TestStoreServerCPU(t *testing.T) {
	c, err := pgx.Connect(t.Context(), testPostgres+"postgres")
	if err != nil {
		unavailable(t, "postgres", err)
	}
	defer c.Close(context.Background())
	pid, err := findPID("tcp", 5432)
	if err != nil {
		t.Fatalf("the PostgreSQL server listening on 5432: %v", err)
	}
	before := serverCPU(pid)
	alone, _ := readProc(pid)
	var n int64
	if err := c.QueryRow(t.Context(), "SELECT count(*) FROM generate_series(1, 5000000)").Scan(&n); err != nil {
		t.Fatal(err)
	}
	used := serverCPU(pid) - before
	after, _ := readProc(pid)
	t.Logf("a query of %d rows: %.2fs of CPU in the server's tree, %.2fs in the listening process itself", n, used, after.CPU-alone.CPU)
	if used < 0.1 {
		t.Fatalf("the server's tree used %.2fs of CPU for a query that takes a backend tenths of a second", used)
	}
}
