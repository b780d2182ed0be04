package asterisk

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

func text(s string) sqlwatch.Value {
	var v sqlwatch.Value
	if err := v.Scan(s); err != nil {
		panic(err)
	}
	return v
}

func TestDecodeAstDB(t *testing.T) {
	uri := "sip:1001@192.0.2.10:5060;transport=udp;ob"
	id := contactID("1001", uri)
	exp := time.Unix(1795000000, 0).UTC()
	asterisk := astContact{aor: "1001", uri: uri, callID: "a84b4c76e66710", userAgent: `Zoiper <&"5">`, path: "<sip:edge;lr>", expires: exp}.json()
	tests := []struct {
		name, key, value, domain string
		want                     source.Contact
		wantErr                  string
	}{
		{
			name: "as Asterisk writes it", key: "/registrar/contact/" + id, value: asterisk, domain: "pbx.example.com",
			want: source.Contact{Key: id, AOR: "sip:1001@pbx.example.com", URI: uri, Expires: exp, Q: -1, CallID: "a84b4c76e66710", UserAgent: `Zoiper <&"5">`, Path: "<sip:edge;lr>"},
		},
		{
			name: "no domain configured", key: "/registrar/contact/" + id, value: asterisk,
			want: source.Contact{Key: id, AOR: "sip:1001", URI: uri, Expires: exp, Q: -1, CallID: "a84b4c76e66710", UserAgent: `Zoiper <&"5">`, Path: "<sip:edge;lr>"},
		},
		{
			name: "AOR named user@host", key: "/registrar/contact/alice@example.org;@0123", domain: "pbx.example.com",
			value: `{"uri":"sips:alice@192.0.2.7","expiration_time":"1795000000"}`,
			want:  source.Contact{Key: "alice@example.org;@0123", AOR: "sip:alice@example.org", URI: "sips:alice@192.0.2.7", Expires: exp, Q: -1},
		},
		{
			name: "lenient: numbers, null, unknown members, missing ones", key: "/registrar/contact/1002;@ff",
			value: `{"uri":"sip:1002@h","expiration_time":1795000000,"user_agent":null,"x_new_field":{"a":1},"qualify_frequency":60}`,
			want:  source.Contact{Key: "1002;@ff", AOR: "sip:1002", URI: "sip:1002@h", Expires: exp, Q: -1},
		},
		{
			name: "expiration 0 is permanent", key: "/registrar/contact/1002;@ff", value: `{"uri":"sip:1002@h","expiration_time":"0"}`,
			want: source.Contact{Key: "1002;@ff", AOR: "sip:1002", URI: "sip:1002@h", Q: -1},
		},
		{name: "static contact id", key: "/registrar/contact/1001@@abc", value: asterisk, wantErr: "contact id"},
		{name: "no AOR before ;@", key: "/registrar/contact/;@abc", value: asterisk, wantErr: "contact id"},
		{name: "nothing after ;@", key: "/registrar/contact/1001;@", value: asterisk, wantErr: "contact id"},
		{name: "space in the id", key: "/registrar/contact/10 01;@ab", value: asterisk, wantErr: "contact id"},
		{name: "other family", key: "/registrar/contactx/1001;@ab", value: asterisk, wantErr: "outside"},
		{name: "not JSON", key: "/registrar/contact/1001;@ab", value: "uri=sip:x", wantErr: "JSON"},
		{name: "JSON array", key: "/registrar/contact/1001;@ab", value: `["sip:x"]`, wantErr: "JSON"},
		{name: "uri as an object", key: "/registrar/contact/1001;@ab", value: `{"uri":{"s":"sip:x"}}`, wantErr: "JSON"},
		{name: "uri not SIP", key: "/registrar/contact/1001;@ab", value: `{"uri":"mailto:x@y","expiration_time":"1"}`, wantErr: "uri"},
		{name: "no expiration", key: "/registrar/contact/1001;@ab", value: `{"uri":"sip:x@y"}`, wantErr: "expiration_time"},
		{name: "negative expiration", key: "/registrar/contact/1001;@ab", value: `{"uri":"sip:x@y","expiration_time":"-1"}`, wantErr: "expiration_time"},
		{name: "fractional expiration", key: "/registrar/contact/1001;@ab", value: `{"uri":"sip:x@y","expiration_time":"1.5"}`, wantErr: "expiration_time"},
		{name: "year 10000", key: "/registrar/contact/1001;@ab", value: `{"uri":"sip:x@y","expiration_time":"253402300800"}`, wantErr: "expiration_time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &astdbLayout{prefix: "/registrar/contact/", domain: tt.domain}
			var c source.Contact
			err := l.Decode([]sqlwatch.Value{text(tt.key), text(tt.value)}, &c)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, errBadRow) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want a bad-row error naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if c != tt.want {
				t.Errorf("got  %+v\nwant %+v", c, tt.want)
			}
		})
	}
}

func TestDecodeRealtime(t *testing.T) {
	null := sqlwatch.Value{}
	row := func(id, uri, exp, ua, callID, path sqlwatch.Value) []sqlwatch.Value {
		return []sqlwatch.Value{id, uri, exp, ua, callID, path, text("pbx1")}
	}
	exp := time.Unix(1795000000, 0).UTC()
	tests := []struct {
		name    string
		row     []sqlwatch.Value
		want    source.Contact
		wantErr string
	}{
		{
			name: "BIGINT expiration_time as text", row: row(text("1001;@ab"), text("sip:1001@192.0.2.1"), text("1795000000"), text("ua"), text("cid"), null),
			want: source.Contact{Key: "1001;@ab", AOR: "sip:1001@example.com", URI: "sip:1001@192.0.2.1", Expires: exp, Q: -1, CallID: "cid", UserAgent: "ua"},
		},
		{name: "NULL expiration_time", row: row(text("1001;@ab"), text("sip:1001@h"), null, null, null, null), wantErr: "expiration_time"},
		{name: "NULL uri", row: row(text("1001;@ab"), null, text("1"), null, null, null), wantErr: "uri"},
		{name: "NULL id", row: row(null, text("sip:1001@h"), text("1"), null, null, null), wantErr: "id"},
		{name: "VARCHAR expiration_time with garbage", row: row(text("1001;@ab"), text("sip:1001@h"), text("soon"), null, null, null), wantErr: "expiration_time"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &realtimeLayout{table: DefaultTable, domain: "example.com"}
			var c source.Contact
			err := l.Decode(tt.row, &c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if c != tt.want {
				t.Errorf("got  %+v\nwant %+v", c, tt.want)
			}
		})
	}
}

func TestParseAstDBURL(t *testing.T) {
	tests := []struct {
		url, path, family, wantErr string
	}{
		{url: "asterisk+astdb:///var/lib/asterisk/astdb.sqlite3", path: "/var/lib/asterisk/astdb.sqlite3", family: "registrar"},
		{url: "asterisk+astdb:astdb.sqlite3?family=pbx", path: "astdb.sqlite3", family: "pbx"},
		{url: "asterisk+astdb://rel/astdb.sqlite3", path: "rel/astdb.sqlite3", family: "registrar"},
		{url: "asterisk+astdb://", wantErr: "no file"},
		{url: "asterisk+astdb:///x?family=", wantErr: "family"},
		{url: "asterisk+astdb:///x?family=a/b", wantErr: "Family"},
		{url: "asterisk+astdb:///x?table=astdb", wantErr: "table"},
		{url: "kamailio+sqlite:///x", wantErr: "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			c, err := ParseAstDBURL(tt.url)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || c.Path != tt.path || c.Family != tt.family {
				t.Fatalf("got %+v, %v; want path %q family %q", c, err, tt.path, tt.family)
			}
		})
	}
}

func TestParseRealtimeURL(t *testing.T) {
	tests := []struct {
		name, url, wantErr string
		check              func(t *testing.T, c RealtimeConfig)
	}{
		{
			name: "mysql", url: "asterisk+mysql://ast:s3cret@db.example/asterisk",
			check: func(t *testing.T, c RealtimeConfig) {
				if c.Driver != sqlwatch.DriverMySQL || c.Endpoint.Addr != "db.example:3306" || c.Endpoint.Password != "s3cret" ||
					c.Endpoint.Database != "asterisk" || c.Table != "ps_contacts" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "postgres with table and sslmode", url: "asterisk+postgres://ast@db:5433/pbx?table=contacts_b&sslmode=require",
			check: func(t *testing.T, c RealtimeConfig) {
				if c.Driver != sqlwatch.DriverPostgres || c.Endpoint.Addr != "db:5433" || c.Table != "contacts_b" || c.Endpoint.Params["sslmode"] != "require" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "read parameters", url: "asterisk+mysql://ast@db/pbx?cdc=trigger&changelog_poll=5ms&reconcile=10m&incremental=false",
			check: func(t *testing.T, c RealtimeConfig) {
				w := c.Watch
				if w.CDC != sqlwatch.CDCTrigger || w.ChangelogPoll != 5*time.Millisecond || w.ReconcileInterval != 10*time.Minute || !w.FullReads {
					t.Errorf("got %+v", w)
				}
			},
		},
		{name: "bad cdc", url: "asterisk+mysql://ast:s3cret@db/pbx?cdc=binlog", wantErr: "cdc="},
		{name: "bad reconcile", url: "asterisk+postgres://ast:s3cret@db/pbx?reconcile=soon", wantErr: "reconcile="},
		{name: "no database", url: "asterisk+mysql://ast:s3cret@db", wantErr: "database"},
		{name: "bad table", url: "asterisk+postgres://db/pbx?table=ps-contacts", wantErr: "Table"},
		{name: "unknown parameter", url: "asterisk+mysql://ast:s3cret@db/pbx?tz=UTC", wantErr: "tz"},
		{name: "other scheme", url: "asterisk+oracle://db/pbx", wantErr: "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseRealtimeURL(tt.url)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %s", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error repeats the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRealtimeURL: %v", err)
			}
			tt.check(t, c)
		})
	}
}
