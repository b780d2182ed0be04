// Package xmlcheck validates rendered documents with xmllint (libxml2)
// against the RFC schemas in the repository's testdata/schema, for the
// tests of the renderers and of the SIP side (invariant 2 in
// docs/design.md). It is imported by tests only.
//
// xmllint runs offline (--nonet); catalog.xml maps the w3.org xml.xsd the
// RFC schemas import to a local stand-in.
package xmlcheck

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Schema files in testdata/schema.
const (
	// Reginfo loads reginfo.xsd (RFC 3680 5.4) and gruuinfo.xsd (RFC 5628
	// 9) together, so gr:pub-gruu is checked rather than skipped by
	// reginfo's lax wildcard.
	Reginfo     = "reginfo-with-gruuinfo.xsd"
	PIDF        = "pidf.xsd"
	Watcherinfo = "watcherinfo.xsd"
)

// Invalid is xmllint's exit status for "document does not validate"
// (XMLLINT_ERR_VALID); a schema that does not compile exits with 5 and an
// unreadable document with 1 or 4.
const Invalid = 3

// SchemaDir returns the absolute path of testdata/schema, found by
// walking up from the working directory (a package directory under go
// test) to the module root.
func SchemaDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "schema")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("xmlcheck: no go.mod above the working directory")
		}
		dir = parent
	}
}

// look returns the path of xmllint, or skips the test (fails it when CI
// is set, where schema validation must not silently disappear).
func look(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("xmllint")
	if err != nil {
		const msg = "xmllint not found: install libxml2-utils (Debian/Ubuntu) or libxml2 to run the XML schema checks"
		if os.Getenv("CI") != "" {
			t.Fatal(msg + " (required when CI is set)")
		}
		t.Skip(msg)
	}
	return path
}

// Run validates doc against schema (a file in testdata/schema) and
// returns xmllint's output and exit status (0 when doc is valid).
func Run(t testing.TB, schema string, doc []byte) (string, int) {
	t.Helper()
	bin := look(t)
	dir := SchemaDir(t)
	cmd := exec.CommandContext(t.Context(), bin, "--nonet", "--noout", "--schema", filepath.Join(dir, schema), "-")
	cmd.Env = append(os.Environ(), "XML_CATALOG_FILES="+filepath.Join(dir, "catalog.xml"))
	cmd.Stdin = bytes.NewReader(doc)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("running xmllint: %v", err)
		return "", -1
	}
}

// Validate fails t unless doc is valid against schema (Reginfo, PIDF or
// Watcherinfo).
func Validate(t testing.TB, schema string, doc []byte) {
	t.Helper()
	if out, code := Run(t, schema, doc); code != 0 {
		t.Errorf("xmllint --schema %s: exit status %d\n%s\ndocument:\n%s", schema, code, out, doc)
	}
}
