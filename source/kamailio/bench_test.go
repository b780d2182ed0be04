package kamailio

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/source"
)

// benchRow is a typical row as modernc returns it.
func benchRow(i int) rawRow {
	return rawRow{
		colID:           int64(i),
		colRUID:         fmt.Sprintf("uloc-5f3a2b1c-4d2-%d", i),
		colUsername:     fmt.Sprintf("user%05d", i),
		colDomain:       nil,
		colContact:      fmt.Sprintf("sip:user%05d@198.51.100.7:40000;transport=tcp;ob", i),
		colReceived:     "sip:198.51.100.7:40000;transport=tcp",
		colPath:         nil,
		colExpires:      TimeToJulian(t0.Add(time.Hour)),
		colQ:            float64(-1),
		colCallID:       "a84b4c76e66710@pc33.example.com",
		colCSeq:         int64(314159),
		colLastModified: TimeToJulian(t0),
		colUserAgent:    "Linphone/5.2.0 (belle-sip/5.2.0)",
		colInstance:     "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
		colRegID:        int64(1),
	}
}

func BenchmarkDecodeRow(b *testing.B) {
	r := benchRow(1)
	var c source.Contact
	b.ReportAllocs()
	for b.Loop() {
		if err := decodeRow(&r, "example.com", &c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshot reads a 10k-row location table, the work done after
// each data_version change.
func BenchmarkSnapshot(b *testing.B) {
	const rows = 10_000
	path := b.TempDir() + "/bench.db"
	if _, err := createDatabase(b.Context(), path, DefaultTable); err != nil {
		b.Fatal(err)
	}
	db := openWriterTB(b, path)
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	for i := range rows {
		r := benchRow(i)
		_, err := tx.Exec(`INSERT INTO location (ruid, username, contact, received, expires, q, callid, cseq,
			last_modified, user_agent, instance, reg_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r[colRUID], r[colUsername], r[colContact], r[colReceived], r[colExpires], r[colQ], r[colCallID],
			r[colCSeq], r[colLastModified], r[colUserAgent], r[colInstance], r[colRegID])
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	w, err := NewSQLite(SQLiteConfig{Path: path, Domain: "example.com"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := w.Snapshot(b.Context())
		if err != nil || len(got) != rows {
			b.Fatalf("read %d rows: %v", len(got), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/rows, "ns/row")
}

// memRowsFull is the table size of BenchmarkMemoryPerContact (the figure
// docs/performance.md quotes: one million contacts); memRowsShort is the size
// under -short, where CI runs every benchmark once to prove it still works.
const (
	memRowsFull  = 1_000_000
	memRowsShort = 20_000
)

// memRows is the table size for this run.
func memRows() int {
	if testing.Short() {
		return memRowsShort
	}
	return memRowsFull
}

// memRow is a location row (times written by when) with the spread a real
// table has: unique ruid, contact, Call-ID, instance and source address per
// binding, two bindings per AOR, and a handful of user agents. Its expiry
// is an hour or two after now: a fixed date would be in the past one day,
// and the watcher rightly drops expired rows.
func memRow(i int, when func(time.Time) any) []any {
	agents := [...]string{"Linphone/5.2.0 (belle-sip/5.2.0)", "Zoiper rv2.10.20.5", "Yealink SIP-T46U 108.86.0.45", "Obi/2.0"}
	return []any{
		fmt.Sprintf("uloc-5f3a2b1c-%x-%d", i/2, i),
		fmt.Sprintf("user%07d", i/2),
		fmt.Sprintf("sip:user%07d@198.51.%d.%d:%d;transport=tcp;ob", i/2, i%200, i%250, 40000+i%20000),
		fmt.Sprintf("sip:198.51.%d.%d:%d;transport=tcp", i%200, i%250, 40000+i%20000),
		when(memNow.Add(time.Hour + time.Duration(i%3600)*time.Second)),
		float64(-1),
		fmt.Sprintf("%016x@pc%d.example.com", uint64(i)*0x9e3779b97f4a7c15, i%100),
		int64(1 + i%1000),
		when(memNow),
		agents[i%len(agents)],
		fmt.Sprintf("<urn:uuid:%08x-0000-1000-8000-%012x>", i, i),
		int64(1),
	}
}

// memNow is when the benchmark's rows were last modified.
var memNow = time.Now().UTC().Truncate(time.Second)

// heapNow is the live heap after a full collection.
func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkMemoryPerContact loads a million-row table through the
// watcher into a bridge and reports the live heap per contact that each
// keeps (after a second, unchanged-but-for-one-row full read, so every
// buffer the steady state keeps is there), plus what one such re-read
// allocates. One iteration is the whole load: run it with -benchtime=1x.
//
//	go test ./source/kamailio -run '^$' -bench MemoryPerContact -benchtime=1x
func BenchmarkMemoryPerContact(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		julian := func(t time.Time) any { return TimeToJulian(t) }
		path := b.TempDir() + "/mem.db"
		if _, err := createDatabase(b.Context(), path, DefaultTable); err != nil {
			b.Fatal(err)
		}
		db := openWriterTB(b, path)
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		ins, err := tx.Prepare(`INSERT INTO location (ruid, username, contact, received, expires, q, callid, cseq,
			last_modified, user_agent, instance, reg_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			b.Fatal(err)
		}
		for i := range memRows() {
			if _, err := ins.Exec(memRow(i, julian)...); err != nil {
				b.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		memLoad(b, func() source.Source {
			w, err := NewSQLite(SQLiteConfig{Path: path, Domain: "example.com", PollInterval: 10 * time.Millisecond}, nil)
			if err != nil {
				b.Fatal(err)
			}
			return w
		}, func() {
			if _, err := db.Exec(`UPDATE location SET cseq = cseq + 1 WHERE ruid = ?`, memRow(0, julian)[0]); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("postgres", func(b *testing.B) {
		srv := servers[1]
		db := srv.open(b)
		srv.createTable(b, db, "location", false)
		kw := kamWriter{db: db, srv: srv, table: "location", loc: mustLoad(b, registrarTZ)}
		wall := func(t time.Time) any { return kw.timeValue(t) }
		const chunk = 1000
		var args []any
		q := ""
		for i := range memRows() {
			if q != "" {
				q += ","
			}
			n := len(args)
			q += fmt.Sprintf("($%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d,$%d)", n+1, n+2, n+3, n+4, n+5, n+6, n+7, n+8, n+9, n+10, n+11, n+12)
			args = append(args, memRow(i, wall)...)
			if (i+1)%chunk == 0 || i == memRows()-1 {
				db.Exec(b, `INSERT INTO location (ruid, username, contact, received, expires, q, callid, cseq,
					last_modified, user_agent, instance, reg_id) VALUES `+q, args...)
				q, args = "", args[:0]
			}
		}
		memLoad(b, func() source.Source {
			// FullReads: the change below is read as a whole table, the
			// costlier case; ReconcileInterval keeps the rest quiet.
			w, err := srv.newWatcher(DBConfig{Endpoint: db.Endpoint, Domain: "example.com", TZ: registrarTZ,
				PollInterval: 10 * time.Millisecond, ReconcileInterval: time.Hour, FullReads: true}, nil)
			if err != nil {
				b.Fatal(err)
			}
			return w
		}, func() {
			db.Exec(b, `UPDATE location SET cseq = cseq + 1 WHERE ruid = $1`, memRow(0, wall)[0])
		})
	})
}

// memLoad runs the source that newSource returns into a bridge, changes
// one row with change, and reports the live heap per contact.
func memLoad(b *testing.B, newSource func() source.Source, change func()) {
	memRows := memRows()
	for b.Loop() {
		base := heapNow()
		w := newSource()
		br := bridge.New(slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx, br) }()
		waitFor(b, func() bool { return br.Ready() })
		loaded := heapNow()
		// One refresh: the watcher reads the whole table again, the
		// bridge gets the one changed row and the keys of the others.
		lastFull := w.(source.Reporter).Stats().LastFull
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		change()
		waitFor(b, func() bool { return w.(source.Reporter).Stats().LastFull.After(lastFull) })
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		reread := float64(after.TotalAlloc-before.TotalAlloc) / float64(memRows)
		both := heapNow()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if n := br.Stats().Contacts; n != memRows {
			b.Fatalf("bridge tracks %d contacts, want %d", n, memRows)
		}
		br = nil
		watcherOnly := heapNow()
		runtime.KeepAlive(w)
		b.ReportMetric(float64(both-base)/float64(memRows), "total-B/contact")
		b.ReportMetric(float64(loaded-base)/float64(memRows), "after-load-B/contact")
		b.ReportMetric(float64(watcherOnly-base)/float64(memRows), "sqlwatch-B/contact")
		b.ReportMetric(float64(both-watcherOnly)/float64(memRows), "bridge-B/contact")
		b.ReportMetric(reread, "reread-alloc-B/contact")
	}
}

// waitFor polls cond (the load takes seconds, not milliseconds).
func waitFor(b *testing.B, cond func() bool) {
	for deadline := time.Now().Add(5 * time.Minute); !cond(); {
		if time.Now().After(deadline) {
			b.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
