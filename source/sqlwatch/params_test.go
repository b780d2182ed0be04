package sqlwatch

import (
	"net/url"
	"strings"
	"testing"
)

func TestParseReadParamsLogical(t *testing.T) {
	for _, c := range []struct {
		name, query string
		want        ReadParams
		err         string // part of the error; "" for none
	}{
		{"logical", "cdc=logical", ReadParams{CDC: CDCLogical}, ""},
		{"slot and warn", "cdc=logical&slot=reg_1&slot_lag_warn=512MiB", ReadParams{CDC: CDCLogical, Slot: "reg_1", SlotLagWarn: 512 << 20}, ""},
		{"decimal unit", "cdc=logical&slot_lag_warn=2GB", ReadParams{CDC: CDCLogical, SlotLagWarn: 2e9}, ""},
		{"unknown mode", "cdc=binlog", ReadParams{}, "cdc="},
		{"upper-case slot", "cdc=logical&slot=Reg", ReadParams{}, "slot="},
		{"empty slot", "cdc=logical&slot=", ReadParams{}, "slot="},
		{"long slot", "cdc=logical&slot=" + strings.Repeat("a", 64), ReadParams{}, "slot="},
		{"bad size", "cdc=logical&slot_lag_warn=lots", ReadParams{}, "slot_lag_warn="},
		{"unknown unit", "cdc=logical&slot_lag_warn=5PB", ReadParams{}, "slot_lag_warn="},
		{"zero size", "cdc=logical&slot_lag_warn=0", ReadParams{}, "slot_lag_warn="},
		{"slot without logical", "cdc=trigger&slot=x", ReadParams{}, "need cdc=logical"},
	} {
		q, _ := url.ParseQuery(c.query)
		got, err := ParseReadParams(q)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one naming %q", c.name, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err == "" && got != c.want:
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestReadParamsForDriver(t *testing.T) {
	logical := ReadParams{CDC: CDCLogical}
	if err := logical.ForDriver(DriverMySQL); err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Errorf("cdc=logical on MySQL: %v, want an error naming PostgreSQL", err)
	}
	if err := logical.ForDriver(DriverPostgres); err != nil {
		t.Errorf("cdc=logical on PostgreSQL: %v", err)
	}
	if err := (ReadParams{CDC: CDCTrigger}).ForDriver(DriverMySQL); err != nil {
		t.Errorf("cdc=trigger on MySQL: %v", err)
	}
}
