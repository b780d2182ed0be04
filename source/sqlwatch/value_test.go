package sqlwatch

import (
	"log/slog"
	"math"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestScanKinds(t *testing.T) {
	tests := []struct {
		name string
		src  any
		want Value
	}{
		{"NULL", nil, Value{}},
		{"int64", int64(-7), Value{Kind: Int, Int: -7}},
		{"float64", 0.5, Value{Kind: Float, Float: 0.5}},
		{"float32 (MySQL FLOAT)", float32(-1), Value{Kind: Float, Float: -1}},
		{"uint64", uint64(42), Value{Kind: Int, Int: 42}},
		{"uint64 beyond int64", uint64(math.MaxUint64), Value{Kind: Float, Float: math.MaxUint64}},
		{"bool", true, Value{Kind: Int, Int: 1}},
		{"bytes", []byte("abc"), Value{Kind: Text, Bytes: []byte("abc")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v Value
			if err := v.Scan(tt.src); err != nil {
				t.Fatal(err)
			}
			if v.Kind != tt.want.Kind || v.Int != tt.want.Int || v.Float != tt.want.Float || string(v.Bytes) != string(tt.want.Bytes) {
				t.Errorf("Scan(%v) = %+v, want %+v", tt.src, v, tt.want)
			}
		})
	}
	var v Value
	if err := v.Scan("text"); err != nil || v.Kind != Text || v.String("") != "text" {
		t.Errorf("Scan(string) = %+v, %v", v, err)
	}
	if err := v.Scan(struct{}{}); err == nil {
		t.Errorf("Scan(struct{}) succeeded")
	}
}

func TestStringReusesOld(t *testing.T) {
	v := Value{Kind: Text, Bytes: []byte("sip:alice@example.com")}
	old := strings.Clone("sip:alice@example.com")
	if allocs := testing.AllocsPerRun(100, func() {
		if v.String(old) != old {
			t.Fatal("wrong text")
		}
	}); allocs != 0 {
		t.Errorf("String(same) allocated %v times", allocs)
	}
	if got := v.String("other"); got != "sip:alice@example.com" {
		t.Errorf("String(other) = %q", got)
	}
	if got := (&Value{}).String("x"); got != "" {
		t.Errorf("NULL String = %q", got)
	}
}

func TestInt64Float64(t *testing.T) {
	tests := []struct {
		name   string
		v      Value
		i      int64
		iok    bool
		f      float64
		fok    bool
		appear string
	}{
		{"text int", Value{Kind: Text, Bytes: []byte("-42")}, -42, true, -42, true, "-42"},
		{"text plus", Value{Kind: Text, Bytes: []byte("+7")}, 7, true, 7, true, "+7"},
		{"text float", Value{Kind: Text, Bytes: []byte("0.50")}, 0, false, 0.5, true, "0.50"},
		{"text garbage", Value{Kind: Text, Bytes: []byte("12a")}, 0, false, 0, false, "12a"},
		{"text empty", Value{Kind: Text, Bytes: []byte("")}, 0, false, 0, false, ""},
		{"text 19 digits", Value{Kind: Text, Bytes: []byte("4611686018427387909")}, 4611686018427387909, true, 4611686018427387909, true, "4611686018427387909"},
		{"text max int64", Value{Kind: Text, Bytes: []byte("9223372036854775807")}, math.MaxInt64, true, math.MaxInt64, true, "9223372036854775807"},
		{"text min int64", Value{Kind: Text, Bytes: []byte("-9223372036854775808")}, math.MinInt64, true, math.MinInt64, true, "-9223372036854775808"},
		{"text beyond int64", Value{Kind: Text, Bytes: []byte("9223372036854775808")}, 0, false, 9223372036854775808, true, "9223372036854775808"},
		{"text beyond uint64", Value{Kind: Text, Bytes: []byte("99999999999999999999")}, 0, false, 99999999999999999999, true, "99999999999999999999"},
		{"integral float", Value{Kind: Float, Float: 3}, 3, true, 3, true, "3"},
		{"fractional float", Value{Kind: Float, Float: 1.5}, 0, false, 1.5, true, "1.5"},
		{"NaN", Value{Kind: Float, Float: math.NaN()}, 0, false, math.NaN(), true, "NaN"},
		{"NULL", Value{}, 0, false, 0, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if i, ok := tt.v.Int64(); i != tt.i || ok != tt.iok {
				t.Errorf("Int64 = %d, %v; want %d, %v", i, ok, tt.i, tt.iok)
			}
			f, ok := tt.v.Float64()
			if ok != tt.fok || (f != tt.f && !(math.IsNaN(f) && math.IsNaN(tt.f))) {
				t.Errorf("Float64 = %v, %v; want %v, %v", f, ok, tt.f, tt.fok)
			}
			if got := string(tt.v.AppendText(nil)); got != tt.appear {
				t.Errorf("AppendText = %q, want %q", got, tt.appear)
			}
		})
	}
}

func TestWallClock(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text string
		want time.Time // zero: rejected
	}{
		{"2026-11-22 10:30:15", time.Date(2026, 11, 22, 10, 30, 15, 0, ny)},
		{"2026-11-22T10:30:15", time.Date(2026, 11, 22, 10, 30, 15, 0, ny)},
		{"2026-11-22 10:30:15.5", time.Date(2026, 11, 22, 10, 30, 15, 5e8, ny)},
		{"2026-11-22 10:30:15.123456789", time.Date(2026, 11, 22, 10, 30, 15, 123456789, ny)},
		{"2028-02-29 00:00:00", time.Date(2028, 2, 29, 0, 0, 0, 0, ny)},
		{"1969-12-31 19:00:00", time.Unix(0, 0)},
		{"2026-02-29 00:00:00", time.Time{}},
		{"2026-13-01 00:00:00", time.Time{}},
		{"2026-11-22 24:00:00", time.Time{}},
		{"2026-11-22 10:60:00", time.Time{}},
		{"2026-11-22 10:30:60", time.Time{}},
		{"0000-00-00 00:00:00", time.Time{}},
		{"2026-11-22 10:30:15.", time.Time{}},
		{"2026-11-22 10:30:15.1234567890", time.Time{}},
		{"2026-11-22 10:30:15+01", time.Time{}},
		{"2026-11-22", time.Time{}},
		{"infinity", time.Time{}},
		{"2026/11/22 10:30:15", time.Time{}},
		{" 026-11-22 10:30:15", time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			v := Value{Kind: Text, Bytes: []byte(tt.text)}
			got, ok := v.WallClock(ny)
			if tt.want.IsZero() {
				if ok {
					t.Errorf("accepted as %v", got)
				}
				return
			}
			if !ok || !got.Equal(tt.want) {
				t.Errorf("= %v, %v; want %v", got, ok, tt.want)
			}
		})
	}
	// A time.Time from the driver (SQLite DATETIME) is a wall clock read
	// as UTC: its fields are taken, the zone replaced.
	v := Value{Kind: Time, Time: time.Date(2026, 11, 22, 10, 30, 15, 0, time.UTC)}
	if got, ok := v.WallClock(ny); !ok || !got.Equal(time.Date(2026, 11, 22, 10, 30, 15, 0, ny)) {
		t.Errorf("Time kind = %v, %v", got, ok)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		name, raw, driver string
		want              Endpoint
		own               string // expected value of own param "table"
		err               string
	}{
		{name: "mysql defaults", raw: "x+mysql://kam:secret@db.example.com/kamailio?table=location_pbx", driver: DriverMySQL,
			want: Endpoint{Addr: "db.example.com:3306", User: "kam", Password: "secret", Database: "kamailio"}, own: "location_pbx"},
		{name: "postgres with port and sslmode", raw: "x+postgres://kam@10.0.0.5:6432/kamailio?sslmode=require", driver: DriverPostgres,
			want: Endpoint{Addr: "10.0.0.5:6432", User: "kam", Database: "kamailio", Params: map[string]string{"sslmode": "require"}}},
		{name: "IPv6 default port", raw: "x+postgres://kam@[2001:db8::1]/k", driver: DriverPostgres,
			want: Endpoint{Addr: "[2001:db8::1]:5432", User: "kam", Database: "k"}},
		{name: "escaped password", raw: "x+mysql://kam:p%40ss%2Fw@h/k", driver: DriverMySQL,
			want: Endpoint{Addr: "h:3306", User: "kam", Password: "p@ss/w", Database: "k"}},
		{name: "no host", raw: "x+mysql:///k", driver: DriverMySQL, err: "no host"},
		{name: "no database", raw: "x+mysql://h", driver: DriverMySQL, err: "no database"},
		{name: "nested path", raw: "x+mysql://h/a/b", driver: DriverMySQL, err: "no database"},
		{name: "unknown parameter", raw: "x+mysql://h/k?parseTime=true", driver: DriverMySQL, err: `unknown parameter "parseTime"`},
		{name: "postgres param on mysql", raw: "x+mysql://h/k?sslmode=disable", driver: DriverMySQL, err: "known: table, tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.raw)
			if err != nil {
				t.Fatal(err)
			}
			got, own, err := ParseURL(u, tt.driver, "table")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Addr != tt.want.Addr || got.User != tt.want.User || got.Password != tt.want.Password ||
				got.Database != tt.want.Database || len(got.Params) != len(tt.want.Params) {
				t.Errorf("ParseURL = %+v, want %+v", got, tt.want)
			}
			for k, v := range tt.want.Params {
				if got.Params[k] != v {
					t.Errorf("param %s = %q, want %q", k, got.Params[k], v)
				}
			}
			if own.Get("table") != tt.own {
				t.Errorf("own table = %q, want %q", own.Get("table"), tt.own)
			}
		})
	}
}

func TestEndpointLogsNoPassword(t *testing.T) {
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "db", Endpoint{Addr: "h:1", User: "u", Password: "hunter2", Database: "d"})
	if strings.Contains(b.String(), "hunter2") || !strings.Contains(b.String(), "db.addr=h:1") {
		t.Errorf("log line = %s", b.String())
	}
}

func TestFileDSNEscapes(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/var/lib/kamailio/kamailio.db", "file:/var/lib/kamailio/kamailio.db?mode=ro"},
		{"rel/k.db", "file:rel/k.db?mode=ro"},
		{"//srv/k.db", "file:/srv/k.db?mode=ro"},
		{"/a?b#c%d.db", "file:/a%3Fb%23c%25d.db?mode=ro"},
	}
	for _, tt := range tests {
		if got := FileDSN(tt.path, "ro"); got != tt.want {
			t.Errorf("FileDSN(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestDecodeTexts(t *testing.T) {
	row := []Value{{Kind: Text, Bytes: []byte("call-1")}, {}, {Kind: Int, Int: 7}, {Kind: Text, Bytes: []byte("after")}}
	var callID, agent, bad, after string
	agent = "stale"
	if err := DecodeTexts(row[:2],
		TextField{Col: 0, Name: "callid", Dst: &callID},
		TextField{Col: 1, Name: "user_agent", Dst: &agent},
	); err != nil || callID != "call-1" || agent != "" {
		t.Fatalf("DecodeTexts = %v; callid %q, user_agent %q (NULL must read as empty)", err, callID, agent)
	}
	err := DecodeTexts(row,
		TextField{Col: 2, Name: "instance", Dst: &bad},
		TextField{Col: 3, Name: "path", Dst: &after},
	)
	if err == nil || err.Error() != "instance is not a string" || after != "" {
		t.Fatalf("a number in a text column: err %v, later field %q; want the column named and nothing after it decoded", err, after)
	}
}
