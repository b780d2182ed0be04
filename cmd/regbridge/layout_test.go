package main

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// The layers of the import graph, in the direction the data flows
// (docs/design.md#the-data-path): a package may import its own layer and
// the layers before it, never one after.
var layers = []struct {
	name     string
	prefixes []string // an import path below the module, or a subtree ("x/")
}{
	{"source", []string{"source", "source/"}},
	// substore keeps the bridge's contacts record and the notifier's
	// subscriptions; it imports only source. partition spreads that
	// state over Redis Cluster and records the bridge's contacts.
	{"bridge", []string{"bridge", "bridge/", "substore", "partition"}},
	{"notifier", []string{"notifier", "notifier/"}},
	// metrics observes every part before it and serves cmd.
	{"metrics", []string{"metrics"}},
	{"cmd", []string{"cmd/"}},
}

// testHelpers are packages imported by tests only (helpers and shared
// conformance suites): exempt from the layers, and no production
// package may import them.
var testHelpers = map[string]bool{
	// internal/conformance checks adapters against the bridge's event
	// rules, so it imports both source and bridge.
	"internal/conformance":     true,
	"source/sourcetest":        true,
	"bridge/bridgetest":        true,
	"source/sqlwatch/sqltest":  true,
	"notifier/siptest":         true,
	"notifier/render/xmlcheck": true,
	"partition/clustertest":    true,
}

const modulePath = "github.com/regbridge/regbridge"

func layerOf(pkg string) int {
	for i, l := range layers {
		for _, p := range l.prefixes {
			if pkg == p || (strings.HasSuffix(p, "/") && strings.HasPrefix(pkg, p)) {
				return i
			}
		}
	}
	return -1
}

// TestLayout: no production package imports against the data direction
// (store -> source -> bridge -> notifier, wired by cmd), every package
// has a layer, and test helpers stay out of production code.
func TestLayout(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not in PATH: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), goBin, "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, modulePath+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	problems, pkgs := layoutProblems(string(out))
	for _, p := range problems {
		t.Error(p)
	}
	if pkgs < 10 {
		t.Fatalf("go list reported %d packages of the module:\n%s", pkgs, out)
	}
}

// layoutProblems reads go list's "path imports..." lines and reports
// every import against the layers, and how many packages it saw.
func layoutProblems(out string) ([]string, int) {
	var problems []string
	pkgs := 0
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		fields := strings.Fields(line)
		pkg, ok := strings.CutPrefix(fields[0], modulePath+"/")
		if !ok {
			continue
		}
		pkgs++
		from := layerOf(pkg)
		if from < 0 && !testHelpers[pkg] {
			problems = append(problems, fmt.Sprintf("%s has no layer: add it to layers (or testHelpers) in layout_test.go", pkg))
			continue
		}
		for _, imp := range fields[1:] {
			dep, ok := strings.CutPrefix(imp, modulePath+"/")
			if !ok {
				continue
			}
			if testHelpers[dep] && !testHelpers[pkg] {
				problems = append(problems, fmt.Sprintf("%s imports the test helper %s", pkg, dep))
				continue
			}
			if testHelpers[pkg] {
				continue
			}
			if to := layerOf(dep); to > from {
				problems = append(problems, fmt.Sprintf("%s (layer %s) imports %s (layer %s), against the data direction", pkg, layers[from].name, dep, layers[to].name))
			}
		}
	}
	return problems, pkgs
}

// TestLayoutProblems: the check finds what it is for.
func TestLayoutProblems(t *testing.T) {
	m := modulePath + "/"
	out := m + "notifier " + m + "bridge " + m + "metrics\n" +
		m + "bridge " + m + "notifier/siptest\n" +
		m + "source/sourcetest " + m + "bridge\n" +
		m + "newpkg fmt\n"
	got, n := layoutProblems(out)
	want := []string{
		"notifier (layer notifier) imports metrics (layer metrics), against the data direction",
		"bridge imports the test helper notifier/siptest",
		"newpkg has no layer: add it to layers (or testHelpers) in layout_test.go",
	}
	if n != 4 || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%d packages, problems:\n%s\nwant:\n%s", n, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
