package sqlwatch_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// TestPagedScan reads a table of 1,500 rows on the real servers in pages
// of 100 (reconcile_rate=1000) while another connection updates rows,
// inserts new ones and deletes some of its own: every row that is there
// for the whole scan must come exactly once, keys in increasing order,
// and nothing else may come twice.
func TestPagedScan(t *testing.T) {
	servers := []struct {
		name    string
		open    func(testing.TB) *sqltest.DB
		ddl     string
		dialect func(sqlwatch.Endpoint) (sqlwatch.Dialect, error)
	}{
		{"mysql", sqltest.MySQL, "CREATE TABLE t (k VARCHAR(64) PRIMARY KEY, e DATETIME NOT NULL, n INT NOT NULL, u VARCHAR(64) NULL)",
			func(e sqlwatch.Endpoint) (sqlwatch.Dialect, error) { return sqlwatch.NewMySQL(e) }},
		{"postgres", sqltest.Postgres, "CREATE TABLE t (k VARCHAR(64) PRIMARY KEY, e TIMESTAMP WITHOUT TIME ZONE NOT NULL, n INTEGER NOT NULL, u VARCHAR(64) NULL)",
			func(e sqlwatch.Endpoint) (sqlwatch.Dialect, error) { return sqlwatch.NewPostgres(e) }},
	}
	const rows = 1500
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			db := srv.open(t)
			db.Exec(t, srv.ddl)
			var vals []string
			for i := range rows {
				vals = append(vals, fmt.Sprintf("('uloc-%05d', '2030-01-01 00:00:00', 0, NULL)", i))
			}
			db.Exec(t, "INSERT INTO t (k, e, n, u) VALUES "+strings.Join(vals, ","))
			d, err := srv.dialect(db.Endpoint)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			s, err := d.Open(ctx, &table)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			p, ok := s.(sqlwatch.Partial)
			if !ok {
				t.Fatalf("%T is not Partial", s)
			}

			// The registrar: refreshes of existing rows, new rows
			// (keys between and after the old ones), deletions of
			// its new rows, until the scan is over.
			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			changes := 0
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(1, 2))
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					default:
					}
					var err error
					switch i % 3 {
					case 0:
						_, err = db.TryExec(fmt.Sprintf("UPDATE t SET n = n + 1 WHERE k = 'uloc-%05d'", r.IntN(rows)))
					case 1:
						_, err = db.TryExec(fmt.Sprintf("INSERT INTO t (k, e, n) VALUES ('uloc-%05d-new%d', '2030-01-01 00:00:00', 0)", r.IntN(rows), i))
					case 2:
						_, err = db.TryExec(fmt.Sprintf("DELETE FROM t WHERE k = 'uloc-%05d-new%d'", r.IntN(rows), i-1))
					}
					if err != nil {
						t.Error(err)
						return
					}
					changes++
					time.Sleep(time.Millisecond)
				}
			}()
			seen := map[string]int{}
			var order []string
			start := time.Now()
			err = sqlwatch.PagedScan(ctx, p, "k", 0, 1000, func(row []sqlwatch.Value) {
				k := string(row[0].AppendText(nil))
				seen[k]++
				order = append(order, k)
			})
			took := time.Since(start)
			close(done)
			wg.Wait()
			if err != nil {
				t.Fatal(err)
			}
			for i := range rows {
				if k := fmt.Sprintf("uloc-%05d", i); seen[k] != 1 {
					t.Errorf("%s read %d times, want once", k, seen[k])
				}
			}
			for k, n := range seen {
				if n > 1 {
					t.Errorf("%s read %d times", k, n)
				}
			}
			for i := 1; i < len(order); i++ {
				if order[i] <= order[i-1] {
					t.Fatalf("key %q after %q: not in key order", order[i], order[i-1])
				}
			}
			// 15 pages at 1,000 rows/s: the pauses make it take at
			// least 1.4 s (a lower bound, not a speed).
			if took < 1400*time.Millisecond {
				t.Errorf("%d rows at reconcile_rate=1000 took %v: not paced", len(order), took)
			}
			if changes == 0 {
				t.Error("no change was made during the scan")
			}
			t.Logf("%d rows in %v with %d changes beside", len(order), took, changes)
		})
	}
}

func TestParseReconcileRate(t *testing.T) {
	for q, want := range map[string]string{
		"":                                 "",
		"cdc=trigger&reconcile_rate=50000": "",
		"cdc=logical&reconcile_rate=100":   "",
		"cdc=trigger&reconcile_rate=abc":   `reconcile_rate="abc" is not a number of rows per second`,
		"cdc=trigger&reconcile_rate=":      `reconcile_rate="" is not a number`,
		"cdc=trigger&reconcile_rate=99":    `from 100 up (such as 50000)`,
		"cdc=trigger&reconcile_rate=-5":    `leave it out to read the whole table in one query`,
		"reconcile_rate=50000":             "add cdc=trigger or cdc=logical, or leave it out",
	} {
		v, _ := url.ParseQuery(q)
		_, err := sqlwatch.ParseReconcileRate(v)
		if (err == nil) != (want == "") || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("%q: %v, want %q", q, err, want)
		}
		// The URL parameters as a whole say the same.
		if _, err2 := sqlwatch.ParseReadParams(v); (err2 == nil) != (err == nil) {
			t.Errorf("%q: ParseReadParams %v, parseReconcileRate %v", q, err2, err)
		}
	}
}

// TestReconcileRateReachesWatcher: the parameter of a server URL ends up
// in the watcher's configuration.
func TestReconcileRateReachesWatcher(t *testing.T) {
	u, _ := url.Parse("kamailio+mysql://u@127.0.0.1/kam?cdc=trigger&reconcile_rate=20000")
	c, err := sqlwatch.ParseServerURL(u, true)
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Watch(); w.ReconcileRate != 20000 {
		t.Errorf("ReconcileRate %d, want 20000", w.ReconcileRate)
	}
}
