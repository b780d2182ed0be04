package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
)

// TestBadConfig: every bad setting stops start-up with exit code 2 and a
// message naming the variable.
func TestBadConfig(t *testing.T) {
	tests := []struct {
		name, key, value, want string
	}{
		{"unknown source scheme lists supported", "REGBRIDGE_SOURCE", "oracle://db", "REGBRIDGE_SOURCE: unsupported scheme \"oracle\"; supported: kamailio+sqlite"},
		{"source without scheme", "REGBRIDGE_SOURCE", "regbridge.db", "REGBRIDGE_SOURCE"},
		{"source with unknown parameter", "REGBRIDGE_SOURCE", "kamailio+sqlite:x.db?tabel=location", "REGBRIDGE_SOURCE"},
		{"poll interval not a duration", "REGBRIDGE_POLL_INTERVAL", "often", "REGBRIDGE_POLL_INTERVAL"},
		{"poll interval too small", "REGBRIDGE_POLL_INTERVAL", "1ns", "REGBRIDGE_POLL_INTERVAL"},
		{"HTTP read timeout zero", "REGBRIDGE_HTTP_READ_TIMEOUT", "0s", "REGBRIDGE_HTTP_READ_TIMEOUT"},
		{"HTTP write timeout not a duration", "REGBRIDGE_HTTP_WRITE_TIMEOUT", "soon", "REGBRIDGE_HTTP_WRITE_TIMEOUT"},
		{"HTTP idle timeout too small", "REGBRIDGE_HTTP_IDLE_TIMEOUT", "1ms", "REGBRIDGE_HTTP_IDLE_TIMEOUT"},
		{"log level", "REGBRIDGE_LOG_LEVEL", "loud", "REGBRIDGE_LOG_LEVEL"},
		{"log format", "REGBRIDGE_LOG_FORMAT", "xml", "REGBRIDGE_LOG_FORMAT"},
		{"SIP listener transport", "REGBRIDGE_SIP_LISTEN", "sctp://127.0.0.1:5065", "REGBRIDGE_SIP_LISTEN"},
		{"SIP listener without port", "REGBRIDGE_SIP_LISTEN", "udp://127.0.0.1", "REGBRIDGE_SIP_LISTEN"},
		{"min expires", "REGBRIDGE_SUBSCRIBE_MIN_EXPIRES", "0s", "REGBRIDGE_SUBSCRIBE_MIN_EXPIRES"},
		{"max below min", "REGBRIDGE_SUBSCRIBE_MAX_EXPIRES", "30s", "REGBRIDGE_SUBSCRIBE_MAX_EXPIRES"},
		{"auth source scheme", "REGBRIDGE_AUTH", "ldap://dir", "REGBRIDGE_AUTH"},
		{"auth nonce ttl (nested name, shared field name)", "REGBRIDGE_AUTH_NONCE_TTL", "forever", "REGBRIDGE_AUTH_NONCE_TTL"},
		{"open networks", "REGBRIDGE_OPEN_NETWORKS", "10.0.0.0/99", "REGBRIDGE_OPEN_NETWORKS"},
		{"limit rate", "REGBRIDGE_LIMIT_SOURCE_RATE", "fast", "REGBRIDGE_LIMIT_SOURCE_RATE"},
		{"partitions without redis state", "REGBRIDGE_PARTITIONS", "16", "REGBRIDGE_PARTITIONS: needs REGBRIDGE_STATE=redis://"},
		{"partitions not a number", "REGBRIDGE_PARTITIONS", "many", "REGBRIDGE_PARTITIONS"},
		{"partitions zero", "REGBRIDGE_PARTITIONS", "0", "REGBRIDGE_PARTITIONS: 0 is not 1 to 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			env := envconfig.MapLookuper(map[string]string{tt.key: tt.value})
			code := run(t.Context(), nil, env, &out, &errOut)
			if code != 2 {
				t.Fatalf("exit code %d, want 2 (stderr %q)", code, errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.want) {
				t.Fatalf("stderr %q does not name %q", errOut.String(), tt.want)
			}
		})
	}
}

// TestBadPartitions: a partition count out of range stops start-up even
// over a redis:// state (checked before Redis is dialled).
func TestBadPartitions(t *testing.T) {
	for _, v := range []string{"-1", "4097"} {
		var out, errOut bytes.Buffer
		env := envconfig.MapLookuper(map[string]string{"REGBRIDGE_PARTITIONS": v, "REGBRIDGE_STATE": "redis://127.0.0.1:1/0"})
		if code := run(t.Context(), nil, env, &out, &errOut); code != 2 {
			t.Fatalf("%s: exit code %d, want 2 (stderr %q)", v, code, errOut.String())
		}
		if want := "REGBRIDGE_PARTITIONS: " + v + " is not 1 to 4096"; !strings.Contains(errOut.String(), want) {
			t.Fatalf("%s: stderr %q lacks %q", v, errOut.String(), want)
		}
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := loadConfig(t.Context(), envconfig.MapLookuper(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source != "kamailio+sqlite:regbridge.db?create=true" || cfg.HTTPListen != "127.0.0.1:9065" ||
		cfg.PollInterval.String() != "1s" || len(cfg.SIP.Listen) != 2 ||
		cfg.SIP.Listen[0].String() != "udp://127.0.0.1:5065" || cfg.SIP.Listen[1].String() != "tcp://127.0.0.1:5065" {
		t.Fatalf("defaults: %+v", cfg)
	}
}

// TestHelpListsEveryVariable: -h names every variable with its default.
func TestHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if code := run(t.Context(), []string{"-h"}, envconfig.MapLookuper(nil), &out, &out); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, name := range []string{"REGBRIDGE_SOURCE", "REGBRIDGE_SIP_LISTEN", "REGBRIDGE_HTTP_LISTEN", "REGBRIDGE_POLL_INTERVAL",
		"REGBRIDGE_DOMAIN", "REGBRIDGE_LOG_LEVEL", "REGBRIDGE_LOG_FORMAT", "udp://127.0.0.1:5065,tcp://127.0.0.1:5065", "127.0.0.1:9065"} {
		if !strings.Contains(out.String(), name) {
			t.Errorf("help lacks %s:\n%s", name, out.String())
		}
	}
	if len(configVars()) < 10 {
		t.Errorf("configVars found only %d variables", len(configVars()))
	}
	for _, v := range configVars() {
		if v.desc == "" {
			t.Errorf("%s has no desc tag", v.name)
		}
	}
}
