package notifier

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

// loadTestConfig reads Config as cmd/regbridge does: REGBRIDGE_ variables
// through go-envconfig, from a map.
func loadTestConfig(t *testing.T, env map[string]string) (Config, error) {
	t.Helper()
	var cfg Config
	err := envconfig.ProcessWith(t.Context(), &envconfig.Config{
		Target:   &cfg,
		Lookuper: envconfig.PrefixLookuper("REGBRIDGE_", envconfig.MapLookuper(env)),
	})
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadTestConfig(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Presence || cfg.MinInterval != 0 || cfg.TLSCert != "" || cfg.NotifyAuthUser != "" || len(cfg.Listen) != 2 {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestConfigValues(t *testing.T) {
	cfg, err := loadTestConfig(t, map[string]string{
		"REGBRIDGE_NOTIFY_MIN_INTERVAL":  "5s",
		"REGBRIDGE_PRESENCE":             "false",
		"REGBRIDGE_SIP_LISTEN":           "ws://127.0.0.1:8080",
		"REGBRIDGE_NOTIFY_AUTH_USER":     "regbridge",
		"REGBRIDGE_NOTIFY_AUTH_PASSWORD": "s3cret",
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinInterval != 5*time.Second || cfg.Presence || cfg.Listen[0].Network != "ws" ||
		cfg.NotifyAuthUser != "regbridge" || string(cfg.NotifyAuthPassword) != "s3cret" {
		t.Fatalf("values: %+v", cfg)
	}
	// The password never reaches a log line or a formatted config.
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "password", cfg.NotifyAuthPassword, "cfg", cfg)
	if s := logged.String() + fmt.Sprintf("%v %+v", cfg, cfg); strings.Contains(s, "s3cret") {
		t.Fatalf("password printed: %s", s)
	}
}

// TestConfigErrors: every bad value is refused naming its variable.
func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"negative interval", map[string]string{"REGBRIDGE_NOTIFY_MIN_INTERVAL": "-1s"}, "REGBRIDGE_NOTIFY_MIN_INTERVAL"},
		{"interval above an hour", map[string]string{"REGBRIDGE_NOTIFY_MIN_INTERVAL": "2h"}, "REGBRIDGE_NOTIFY_MIN_INTERVAL"},
		{"presence not a bool (cmd names the variable)", map[string]string{"REGBRIDGE_PRESENCE": "maybe"}, "Presence"},
		{"tls without certificate", map[string]string{"REGBRIDGE_SIP_LISTEN": "tls://127.0.0.1:5061"}, "REGBRIDGE_TLS_CERT"},
		{"key without certificate", map[string]string{"REGBRIDGE_TLS_KEY": "/k.pem"}, "REGBRIDGE_TLS_CERT"},
		{"client CA alone", map[string]string{"REGBRIDGE_TLS_CLIENT_CA": "/ca.pem"}, "REGBRIDGE_TLS_CLIENT_CA"},
		{"auth user without password", map[string]string{"REGBRIDGE_NOTIFY_AUTH_USER": "u"}, "REGBRIDGE_NOTIFY_AUTH_PASSWORD"},
		{"auth password without user", map[string]string{"REGBRIDGE_NOTIFY_AUTH_PASSWORD": "p"}, "REGBRIDGE_NOTIFY_AUTH_USER"},
		{"unknown transport", map[string]string{"REGBRIDGE_SIP_LISTEN": "sctp://127.0.0.1:5065"}, "sctp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadTestConfig(t, tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
}
