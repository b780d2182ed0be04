package kamailio

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
)

// With incremental reads a poll that sees a change sends only the changed
// rows; what last_modified cannot show is caught at once by the
// fingerprint of the known state (reconcile is an hour away here).
func TestIncrementalReads(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			f := newCDCFixture(t, srv, DBConfig{PollInterval: 20 * time.Millisecond}, false)
			for i := range 3 {
				f.kw.insert(t, bindingN(i))
			}
			f.rec.WaitFor(t, 1, "inserts", func(b source.Batch) bool { _, ok := byKey(b)[bindingN(2).ruid]; return ok })
			b := bindingN(1)
			b.cseq = 5
			n := f.rec.Count()
			f.kw.update(t, b)
			got := f.rec.WaitFor(t, n, "refresh", hasKey(b.ruid, false))
			if len(got.Contacts) != 1 || got.Contacts[0].CSeq != 5 {
				t.Errorf("refresh batch = %+v, want just %s with CSeq 5", got.Contacts, b.ruid)
			}
			n = f.rec.Count()
			f.kw.delete(t, bindingN(0).ruid)
			f.rec.WaitFor(t, n, "delete", hasKey(bindingN(0).ruid, true))

			// A row dated back beyond the incremental window: only the
			// state's fingerprint shows it.
			target := bindingN(2).ruid
			n = f.rec.Count()
			f.db.Exec(t, "UPDATE location SET last_modified = ?, cseq = 77 WHERE ruid = ?", f.kw.timeValue(time.Now().Add(-time.Hour)), target)
			full := f.rec.WaitFor(t, n, "full read after an old-dated write", func(b source.Batch) bool { return b.Full })
			if c := byKey(full)[target]; c.CSeq != 77 {
				t.Errorf("after old-dated write: %+v", c)
			}
			// An admin edit that leaves that old last_modified alone.
			n = f.rec.Count()
			f.db.Exec(t, "UPDATE location SET contact = 'sip:moved@192.0.2.9' WHERE ruid = ?", target)
			full = f.rec.WaitFor(t, n, "full read after an edit last_modified does not show", func(b source.Batch) bool { return b.Full })
			if c := byKey(full)[target]; c.URI != "sip:moved@192.0.2.9" {
				t.Errorf("after admin edit: %+v", c)
			}
		})
	}
}

// BenchmarkPoll compares what one changed poll costs regbridge on a
// 10,000-row table with 10 rows refreshed: a full read against an
// incremental one (CPU of the process; the server's scan is the same).
func BenchmarkPoll(b *testing.B) {
	const rows, changed = 10000, 10
	for _, srv := range servers {
		for _, full := range []bool{true, false} {
			name := srv.name + "/incremental"
			if full {
				name = srv.name + "/full"
			}
			b.Run(name, func(b *testing.B) {
				db := srv.open(b)
				srv.createTable(b, db, "location", false)
				kw := kamWriter{db: db, srv: srv, table: "location", loc: mustLoad(b, registrarTZ)}
				seed := time.Now().Add(-time.Hour) // older than the incremental window
				for i := 0; i < rows; i += 500 {
					q := ""
					for j := i; j < i+500; j++ {
						if q != "" {
							q += ","
						}
						q += fmt.Sprintf("('r-%d', 'u%d', 'sip:u%d@192.0.2.1', '%s', -1, 'c', 1, '%s', 0, 0, 'ua', '', 0, 0, 0, 0, 0, 0)",
							j, j, j, kw.timeValue(seed.Add(2*time.Hour)), kw.timeValue(seed))
					}
					db.Exec(b, "INSERT INTO location (ruid, username, contact, expires, q, callid, cseq, last_modified, flags, cflags, user_agent, socket, methods, reg_id, server_id, connection_id, keepalive, "+srv.quote("partition")+") VALUES "+q)
				}
				w, err := srv.newWatcher(DBConfig{Endpoint: db.Endpoint, Domain: "example.com", TZ: registrarTZ,
					PollInterval: time.Millisecond, ReconcileInterval: time.Hour, FullReads: full}, nil)
				if err != nil {
					b.Fatal(err)
				}
				polled := make(chan struct{}, 1)
				sink := fakeSink{apply: func(_ context.Context, bt source.Batch) error {
					select {
					case polled <- struct{}{}:
					default:
					}
					return nil
				}}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- w.Run(ctx, sink) }()
				<-polled
				var cpu time.Duration // regbridge's CPU while it polls
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					for j := range changed {
						kw.update(b, kamBinding{ruid: fmt.Sprintf("r-%d", (i*changed+j)%rows), expires: time.Now().Add(time.Hour), cseq: uint32(i + 2), ua: "ua", callid: "c"})
					}
					before := processCPU()
					b.StartTimer()
					<-polled
					b.StopTimer()
					cpu += processCPU() - before
					b.StartTimer()
				}
				b.StopTimer()
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
				cancel()
				<-done
			})
		}
	}
}

// processCPU is the user+system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
