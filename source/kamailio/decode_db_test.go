package kamailio

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

func utc(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

// wallCases are DATETIME/TIMESTAMP texts as db_mysql/db_postgres write
// them with the registrar in Europe/Berlin, and the instants they mean.
// want holds the acceptable answers (two in the ambiguous fall-back hour,
// where Kamailio's own mktime guesses too); none means a bad row.
var wallCases = []struct {
	name, text string
	want       []time.Time
}{
	{"winter (CET, UTC+1)", "2026-01-15 13:00:00", []time.Time{utc(2026, 1, 15, 12, 0, 0)}},
	{"summer (CEST, UTC+2)", "2026-07-15 14:00:00", []time.Time{utc(2026, 7, 15, 12, 0, 0)}},
	{"last second before spring forward", "2026-03-29 01:59:59", []time.Time{utc(2026, 3, 29, 0, 59, 59)}},
	{"first second after spring forward", "2026-03-29 03:00:00", []time.Time{utc(2026, 3, 29, 1, 0, 0)}},
	{"fall-back hour is ambiguous", "2026-10-25 02:30:00", []time.Time{utc(2026, 10, 25, 0, 30, 0), utc(2026, 10, 25, 1, 30, 0)}},
	{"first second after fall back", "2026-10-25 03:00:00", []time.Time{utc(2026, 10, 25, 2, 0, 0)}},
	{"permanent: epoch 0 in the registrar's zone", "1970-01-01 01:00:00", []time.Time{{}}},
	{"epoch 0 written in UTC is not permanent in Berlin", "1970-01-01 00:00:00", []time.Time{time.Unix(-3600, 0).UTC()}},
	{"un-registered marker epoch 10", "1970-01-01 01:00:10", []time.Time{time.Unix(10, 0).UTC()}},
	{"fraction of a second", "2026-01-15 13:00:00.25", []time.Time{utc(2026, 1, 15, 12, 0, 0).Add(250 * time.Millisecond)}},
	{"column default (row made by kamctl)", "2030-05-28 21:32:15", []time.Time{utc(2030, 5, 28, 19, 32, 15)}},
	{"impossible date", "2026-02-30 10:00:00", nil},
	{"MySQL zero date", "0000-00-00 00:00:00", nil},
	{"PostgreSQL infinity", "infinity", nil},
	{"garbage", "soon", nil},
}

// mysqlStores overrides a wall case's answer where MySQL stores the text
// differently.
var mysqlStores = map[string][]time.Time{
	"fraction of a second": {utc(2026, 1, 15, 12, 0, 0)}, // DATETIME(0) drops it
}

func TestDecodeTimeWallClock(t *testing.T) {
	berlin := mustLoad(t, registrarTZ)
	for _, tt := range wallCases {
		t.Run(tt.name, func(t *testing.T) {
			var v sqlwatch.Value
			v.SetText([]byte(tt.text))
			got, ok := decodeTime(&v, timeWall, berlin)
			checkTime(t, got, ok, tt.want)
		})
	}
}

func checkTime(t *testing.T, got time.Time, ok bool, want []time.Time) {
	t.Helper()
	if len(want) == 0 {
		if ok {
			t.Errorf("decoded to %v, want a bad row", got)
		}
		return
	}
	if !ok || !slices.ContainsFunc(want, got.Equal) {
		t.Errorf("decoded to %v (ok=%v), want one of %v", got, ok, want)
	}
	if ok && !got.IsZero() && got.Location() != time.UTC {
		t.Errorf("decoded in %v, want UTC", got.Location())
	}
}

var epochCases = []struct {
	name  string
	value int64
	want  []time.Time
}{
	{"epoch", 1768478400, []time.Time{utc(2026, 1, 15, 12, 0, 0)}},
	{"permanent", 0, []time.Time{{}}},
	{"un-registered marker", 10, []time.Time{time.Unix(10, 0).UTC()}},
	{"negative", -5, nil},
	{"after year 9999", 253402300800, nil},
}

func TestDecodeTimeEpoch(t *testing.T) {
	for _, tt := range epochCases {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range []sqlwatch.Value{{Kind: sqlwatch.Int, Int: tt.value}, {Kind: sqlwatch.Text, Bytes: fmt.Appendf(nil, "%d", tt.value)}} {
				got, ok := decodeTime(&v, timeEpoch, time.UTC)
				checkTime(t, got, ok, tt.want)
			}
		})
	}
}

func TestServerCodec(t *testing.T) {
	tests := []struct {
		typ  string
		want timeCodec
		err  bool
	}{
		{"DATETIME", timeWall, false},  // MySQL, Kamailio's DDL
		{"TIMESTAMP", timeWall, false}, // PostgreSQL TIMESTAMP WITHOUT TIME ZONE; MySQL TIMESTAMP
		{"BIGINT", timeEpoch, false},   // MySQL, expires_type=1
		{"UNSIGNED BIGINT", timeEpoch, false},
		{"INT8", timeEpoch, false}, // PostgreSQL bigint
		{"TIMESTAMPTZ", 0, true},
		{"VARCHAR", 0, true},
	}
	for _, tt := range tests {
		got, err := serverCodec("expires", tt.typ)
		if (err != nil) != tt.err || (err == nil && got != tt.want) {
			t.Errorf("serverCodec(%s) = %v, %v; want %v (error %v)", tt.typ, got, err, tt.want, tt.err)
		}
	}
}

// TestDecodeDB writes each case into a real Kamailio table the way
// db_mysql/db_postgres would and reads it through the watcher: column-type
// detection, the driver's text and the decoding together.
func TestDecodeDB(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			db := srv.open(t)
			berlin := mustLoad(t, registrarTZ)
			t.Run("wall clock", func(t *testing.T) {
				srv.createTable(t, db, "loc_wall", false)
				w := kamWriter{db: db, srv: srv, table: "loc_wall", loc: berlin}
				var want = map[string][]time.Time{}
				for i, tt := range wallCases {
					ruid := fmt.Sprintf("uloc-case-%d", i)
					b := kamBinding{ruid: ruid, user: "alice", contact: fmt.Sprintf("sip:alice@192.0.2.%d", i+1), callid: "c", cseq: 1}
					w.insert(t, b)
					if _, err := db.TryExec("UPDATE loc_wall SET expires = ? WHERE ruid = ?", tt.text, ruid); err != nil {
						w.delete(t, ruid) // the server itself refuses this text
						continue
					}
					want[ruid] = tt.want
					if m, ok := mysqlStores[tt.name]; ok && srv.name == "mysql" {
						want[ruid] = m
					}
				}
				checkDecoded(t, srv, db, "loc_wall", want)
			})
			t.Run("BIGINT epoch", func(t *testing.T) {
				srv.createTable(t, db, "loc_epoch", true)
				w := kamWriter{db: db, srv: srv, table: "loc_epoch", epoch: true}
				want := map[string][]time.Time{}
				for i, tt := range epochCases {
					ruid := fmt.Sprintf("uloc-case-%d", i)
					w.insert(t, kamBinding{ruid: ruid, user: "alice", contact: fmt.Sprintf("sip:alice@192.0.2.%d", i+1), callid: "c", cseq: 1})
					db.Exec(t, "UPDATE loc_epoch SET expires = ? WHERE ruid = ?", tt.value, ruid)
					want[ruid] = tt.want
				}
				checkDecoded(t, srv, db, "loc_epoch", want)
			})
			t.Run("time zone column type refused", func(t *testing.T) {
				if srv.name != "postgres" {
					t.Skip("MySQL has no time-zone-aware column type")
				}
				srv.createTable(t, db, "loc_tz", false)
				db.Exec(t, "ALTER TABLE loc_tz ALTER COLUMN expires TYPE TIMESTAMPTZ")
				_, err := newDBWatcherFor(t, srv, db, "loc_tz").Snapshot(t.Context())
				if err == nil || !strings.Contains(err.Error(), "TIMESTAMPTZ") {
					t.Errorf("Snapshot = %v, want an error naming the column type", err)
				}
			})
		})
	}
}

func newDBWatcherFor(t *testing.T, srv server, db *sqltest.DB, table string) *sqlwatch.Watcher {
	t.Helper()
	log, _ := newLogger(t)
	w, err := srv.newWatcher(DBConfig{Endpoint: db.Endpoint, Table: table, TZ: registrarTZ}, log)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// checkDecoded reads table and compares each case's expiry; rows whose
// case wants nothing must have been skipped.
func checkDecoded(t *testing.T, srv server, db *sqltest.DB, table string, want map[string][]time.Time) {
	t.Helper()
	w := newDBWatcherFor(t, srv, db, table)
	got, err := w.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byRUID := map[string]source.Contact{}
	for _, c := range got {
		byRUID[c.Key] = c
	}
	bad := 0
	for ruid, ws := range want {
		c, ok := byRUID[ruid]
		if len(ws) == 0 {
			bad++
			if ok {
				t.Errorf("%s: decoded to %v, want a bad row", ruid, c.Expires)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: skipped, want one of %v", ruid, ws)
			continue
		}
		checkTime(t, c.Expires, true, ws)
		if c.Modified.IsZero() || time.Since(c.Modified).Abs() > time.Minute {
			t.Errorf("%s: last_modified decoded to %v, want about now", ruid, c.Modified)
		}
	}
	if s := w.Stats().Skipped; s != uint64(bad) {
		t.Errorf("Stats().Skipped = %d, want %d", s, bad)
	}
}
