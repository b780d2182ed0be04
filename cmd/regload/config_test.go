package main

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestSettleFlag(t *testing.T) {
	cfg, err := parseFlags([]string{"--store", "sqlite:/tmp/x.db", "--settle", "35s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.settle != 35*time.Second {
		t.Fatalf("settle = %v", cfg.settle)
	}
	for _, bad := range []string{"-1s", "16m"} {
		if _, err := parseFlags([]string{"--store", "sqlite:/tmp/x.db", "--settle", bad}, io.Discard); err == nil || !strings.Contains(err.Error(), "--settle") {
			t.Fatalf("--settle %s: err = %v, want one naming --settle", bad, err)
		}
	}
}
