package redis

import (
	"strings"
	"testing"
	"time"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		name    string
		url     string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{
			name: "kamailio defaults", url: "kamailio+redis://127.0.0.1",
			check: func(t *testing.T, c Config) {
				if c.Addr != "127.0.0.1:6379" || c.DB != 0 || c.Layout != LayoutKamailio || c.Table != "location" ||
					c.Location != time.UTC || c.Events != EventsAuto || c.Reconcile != DefaultReconcile {
					t.Errorf("got %+v", c)
				}
				if c.keyPrefix() != "location:entry::" {
					t.Errorf("prefix %q", c.keyPrefix())
				}
			},
		},
		{
			name: "kamailio with everything", url: "kamailio+redis://kam:s3cret@redis.example:6380/5?table=v2:location_pbx&tz=Europe/Berlin&events=off&reconcile=30s",
			check: func(t *testing.T, c Config) {
				if c.Addr != "redis.example:6380" || c.DB != 5 || c.Username != "kam" || c.Password != "s3cret" ||
					c.Location.String() != "Europe/Berlin" || c.Events != EventsOff || c.Reconcile != 30*time.Second {
					t.Errorf("got %+v", c)
				}
				if c.keyPrefix() != "v2:location_pbx:entry::" {
					t.Errorf("prefix %q", c.keyPrefix())
				}
			},
		},
		{
			name: "redis with kamailio layout", url: "redis://[::1]:6379/2?layout=kamailio&tz=UTC",
			check: func(t *testing.T, c Config) {
				if c.Addr != "[::1]:6379" || c.DB != 2 || c.Layout != LayoutKamailio {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "generic defaults", url: "redis://localhost/0?layout=generic",
			check: func(t *testing.T, c Config) {
				if c.Layout != LayoutGeneric || c.keyPrefix() != DefaultPrefix || c.Addr != "localhost:6379" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "generic with prefix", url: "redis://:pw@localhost?layout=generic&prefix=pbx:bindings:",
			check: func(t *testing.T, c Config) {
				if c.keyPrefix() != "pbx:bindings:" || c.Password != "pw" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{name: "redis without layout", url: "redis://localhost", wantErr: "layout"},
		{name: "unknown layout", url: "redis://localhost?layout=opensips", wantErr: "layout"},
		{name: "kamailio+redis with generic layout", url: "kamailio+redis://localhost?layout=generic", wantErr: "layout"},
		{name: "prefix on kamailio", url: "kamailio+redis://localhost?prefix=x:", wantErr: "prefix"},
		{name: "tz on generic", url: "redis://localhost?layout=generic&tz=UTC", wantErr: "tz"},
		{name: "unknown tz", url: "kamailio+redis://localhost?tz=Mars/Olympus", wantErr: "tz"},
		{name: "db not a number", url: "kamailio+redis://localhost/x", wantErr: "database"},
		{name: "negative db", url: "kamailio+redis://localhost/-1", wantErr: "database"},
		{name: "no host", url: "kamailio+redis:///0", wantErr: "host"},
		{name: "opaque", url: "kamailio+redis:localhost", wantErr: "host"},
		{name: "bad events", url: "kamailio+redis://localhost?events=sometimes", wantErr: "Events"},
		{name: "bad reconcile", url: "kamailio+redis://localhost?reconcile=soon", wantErr: "reconcile"},
		{name: "tiny reconcile", url: "kamailio+redis://localhost?reconcile=1ns", wantErr: "Reconcile"},
		{name: "empty table", url: "kamailio+redis://localhost?table=", wantErr: "table"},
		{name: "table with a space", url: "kamailio+redis://localhost?table=a%20b", wantErr: "Table"},
		{name: "typo", url: "kamailio+redis://localhost?tabel=location", wantErr: "tabel"},
		{name: "other scheme", url: "rediss://localhost", wantErr: "scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseURL(tt.url)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseURL error = %v, want one naming %s", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), ":pw@") {
					t.Errorf("error repeats the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"defaults", Config{Addr: "h:1"}, ""},
		{"no addr", Config{}, "Addr"},
		{"addr without port", Config{Addr: "localhost"}, "Addr"},
		{"negative db", Config{Addr: "h:1", DB: -1}, "DB"},
		{"domain with @", Config{Addr: "h:1", Domain: "a@b"}, "Domain"},
		{"prefix with kamailio layout", Config{Addr: "h:1", Prefix: "x"}, "Prefix"},
		{"table with generic layout", Config{Addr: "h:1", Layout: LayoutGeneric, Table: "location"}, "Table"},
		{"prefix with control char", Config{Addr: "h:1", Layout: LayoutGeneric, Prefix: "a\x01"}, "Prefix"},
		{"poll interval too short", Config{Addr: "h:1", PollInterval: time.Microsecond}, "PollInterval"},
		{"negative reconcile", Config{Addr: "h:1", Reconcile: -time.Second}, "Reconcile"},
		{"unknown layout", Config{Addr: "h:1", Layout: "x"}, "Layout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}
