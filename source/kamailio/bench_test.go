package kamailio

import (
	"fmt"
	"testing"
	"time"

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
