package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestStaticBuild builds regbridge as the Dockerfile does (CGO off,
// stripped, version stamped) and runs the result: the distroless image
// has no libc, so the binary must be static and must start.
func TestStaticBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux")
	}
	bin := filepath.Join(t.TempDir(), "regbridge")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-trimpath",
		"-ldflags", "-s -w -X main.version=static-test", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary asks for a dynamic loader (PT_INTERP): not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}

	tests := []struct {
		name string
		args []string
		want []string
	}{
		{name: "version", args: []string{"version"}, want: []string{"regbridge static-test go1."}},
		{name: "help", args: []string{"-h"}, want: []string{"Usage:", "REGBRIDGE_SOURCE", "REGBRIDGE_ADMIN_TOKEN", "REGBRIDGE_WEBHOOK_URLS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(bin, tt.args...)
			cmd.Env = []string{} // nothing inherited: as in the image
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("regbridge %v: %v\n%s", tt.args, err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("regbridge %v output lacks %q:\n%s", tt.args, w, out)
				}
			}
		})
	}
}
