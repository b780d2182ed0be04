package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// regcostTools skips the test naming what to install (fails it under
// CI=true, where .ci/run installs it).
func regcostTools(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := os.Stat("/usr/sbin/kamailio"); err != nil {
		missing = append(missing, "kamailio")
	}
	for _, m := range []string{"db_mysql", "db_postgres"} {
		if g, _ := filepath.Glob("/usr/lib/*/kamailio/modules/" + m + ".so"); len(g) == 0 {
			missing = append(missing, "kamailio-"+strings.TrimPrefix(m, "db_")+"-modules")
		}
	}
	if _, err := exec.LookPath("mariadb-install-db"); err != nil {
		missing = append(missing, "mariadb-server")
	}
	if g, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(g) == 0 {
		missing = append(missing, "postgresql")
	}
	if len(missing) == 0 {
		return
	}
	msg := "regload regcost needs: apt-get install " + strings.Join(missing, " ")
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (required when CI is set)")
	}
	t.Skip(msg)
}

// TestRegcost is the registrar-cost measurement in miniature: both
// database servers, a few hundred rows, a slow REGISTER rate, one cell per
// kind of mode. It checks that the tool works (every REGISTER answered,
// regbridge reading in the mode asked for, CPU measured), not any figure.
func TestRegcost(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MariaDB, PostgreSQL, Kamailio and regbridge")
	}
	regcostTools(t)
	bin := buildRegbridge(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"regcost", "--regbridge", bin, "--rows", "500", "--aors", "50",
		"--rates", "100", "--cell", "1s", "--settle", "500ms", "--children", "2",
		"--modes", "none,poll,trigger,trigger+paced,logical+reconcile", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("regload regcost exited %d:\n%s", code, errb.String())
	}
	var cells []costCell
	if err := json.Unmarshal(out.Bytes(), &cells); err != nil {
		t.Fatalf("JSON: %v\n%s", err, out.String())
	}
	want := []string{"mysql none", "mysql poll", "mysql trigger", "mysql trigger+paced",
		"postgres none", "postgres poll", "postgres trigger", "postgres trigger+paced", "postgres logical+reconcile"}
	var got []string
	var dbCPU, kamCPU float64
	for _, c := range cells {
		got = append(got, c.Store+" "+c.Mode)
		if c.Sent != 100 || c.OK != c.Sent || c.Lost != 0 || c.Failed != 0 {
			t.Errorf("%s %s: sent %d, 200 %d, failed %d, lost %d; want 100 answered with 200", c.Store, c.Mode, c.Sent, c.OK, c.Failed, c.Lost)
		}
		if c.P50ms <= 0 || c.P99ms < c.P50ms {
			t.Errorf("%s %s: p50 %v ms, p99 %v ms: want both measured", c.Store, c.Mode, c.P50ms, c.P99ms)
		}
		// CPU comes in 10 ms ticks: a short cell may show none, all the
		// cells together must.
		dbCPU += c.DBCores * c.Seconds
		kamCPU += c.KamCores * c.Seconds
		base, _, _ := strings.Cut(c.Mode, "+")
		if base != "none" && c.RBMode != base {
			t.Errorf("%s %s: regbridge read by %q", c.Store, c.Mode, c.RBMode)
		}
	}
	if dbCPU <= 0 || kamCPU <= 0 {
		t.Errorf("database servers used %v s of CPU, Kamailio %v s: want both measured", dbCPU, kamCPU)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("cells %q, want %q", got, want)
	}
}

func TestRegcostFlags(t *testing.T) {
	for _, args := range [][]string{
		{},                                     // no --regbridge
		{"--regbridge", "x", "--modes", "cdc"}, // unknown mode
		{"--regbridge", "x", "--stores", "sqlite"},
		{"--regbridge", "x", "--rates", "0"},
		{"--regbridge", "x", "--cell", "10ms"},
	} {
		var errb bytes.Buffer
		if code := run(context.Background(), append([]string{"regcost"}, args...), &bytes.Buffer{}, &errb); code != 2 {
			t.Errorf("regcost %q: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
}

func TestParseRegResponse(t *testing.T) {
	code, branch := parseRegResponse([]byte("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bK-rc-1a;rport=5\r\n\r\n"))
	if code != 200 || branch != "z9hG4bK-rc-1a" {
		t.Errorf("got %d %q", code, branch)
	}
	if code, _ := parseRegResponse([]byte("REGISTER sip:x SIP/2.0\r\n")); code != 0 {
		t.Errorf("a request parsed as status %d", code)
	}
}

func TestRegStatsQuantile(t *testing.T) {
	s := regStats{lat: []time.Duration{3, 1, 2, 4}, Lost: 1}
	if q := s.quantile(0.5); q != 3 {
		t.Errorf("p50 %v, want 3 (the lost one counts as slowest)", q)
	}
	if q := s.quantile(1); q != -1 {
		t.Errorf("max %v, want -1 (beyond every answer)", q)
	}
}
