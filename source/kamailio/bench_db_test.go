package kamailio

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// BenchmarkServerSnapshot measures, on the real servers, what one
// reconciliation of a 100,000-row and a 1,000,000-row Kamailio location
// table costs: the
// change check every poll ("fingerprint") and the full read with decoding
// ("snapshot", through the watcher's own path, including one connect). It
// reports ns/contact, allocated B/contact in steady state, and the heap a
// watcher keeps per contact. Like every benchmark it runs only with -bench;
// keep -benchtime small on shared machines (-benchtime=5x).
func BenchmarkServerSnapshot(b *testing.B) {
	sizes := []int{100_000, 1_000_000}
	if testing.Short() { // CI runs every benchmark once: prove it works, quickly
		sizes = []int{5_000}
	}
	for _, rows := range sizes {
		b.Run(fmt.Sprintf("%d", rows), func(b *testing.B) { benchmarkSnapshot(b, rows) })
	}
}

func benchmarkSnapshot(b *testing.B, rows int) {
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			db := srv.open(b)
			srv.createTable(b, db, "location", false)
			fillLocation(b, db, srv, rows)
			cfg := DBConfig{Endpoint: db.Endpoint, Domain: "example.com", TZ: registrarTZ}

			b.Run("fingerprint", func(b *testing.B) {
				var d sqlwatch.Dialect
				var err error
				if srv.name == "mysql" {
					d, err = sqlwatch.NewMySQL(db.Endpoint)
				} else {
					d, err = sqlwatch.NewPostgres(db.Endpoint)
				}
				if err != nil {
					b.Fatal(err)
				}
				t := newLayout("location", "", time.UTC, true).Table()
				s, err := d.Open(b.Context(), &t)
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				for b.Loop() {
					if _, err := s.Fingerprint(b.Context()); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows), "ns/contact")
			})

			b.Run("snapshot", func(b *testing.B) {
				w, err := srv.newWatcher(cfg, nil)
				if err != nil {
					b.Fatal(err)
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for range 2 { // both arrays in use, as in Run
					if got, err := w.Snapshot(b.Context()); err != nil || len(got) != rows {
						b.Fatalf("read %d rows: %v", len(got), err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if got, err := w.Snapshot(b.Context()); err != nil || len(got) != rows {
						b.Fatalf("read %d rows: %v", len(got), err)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows), "ns/contact")
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(rows), "heapB/contact")
				runtime.KeepAlive(w)
			})
		})
	}
}

// fillLocation inserts n realistic bindings in batches of 1000.
func fillLocation(b *testing.B, db *sqltest.DB, srv server, n int) {
	b.Helper()
	w := kamWriter{db: db, srv: srv, table: "location", loc: mustLoad(b, registrarTZ)}
	exp := w.timeValue(time.Now().Add(time.Hour).Truncate(time.Second))
	mod := w.timeValue(time.Now().Truncate(time.Second))
	const batch = 1000
	for start := 0; start < n; start += batch {
		var q strings.Builder
		fmt.Fprintf(&q, `INSERT INTO location (ruid, username, contact, received, expires, q, callid, cseq, last_modified,
			user_agent, socket, methods, instance, reg_id, connection_id, %s) VALUES `, srv.quote("partition"))
		for i := start; i < min(start+batch, n); i++ {
			if i > start {
				q.WriteString(", ")
			}
			fmt.Fprintf(&q, `('uloc-5f3a2b1c-4d2-%d', 'user%06d', 'sip:user%06d@198.51.100.7:40000;transport=tcp;ob',
				'sip:198.51.100.7:40000;transport=tcp', '%s', -1, 'a84b4c76e66710-%d@pc33.example.com', %d, '%s',
				'Linphone/5.2.0 (belle-sip/5.2.0)', 'tcp:203.0.113.1:5060', 8191,
				'<urn:uuid:00000000-0000-1000-8000-%012d>', 1, -1, 0)`, i, i, i, exp, i, 1000+i%5000, mod, i)
		}
		db.Exec(b, q.String())
	}
}
