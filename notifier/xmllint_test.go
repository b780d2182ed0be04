package notifier

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Schema validation with xmllint (libxml2) against the RFC schemas copied to
// testdata/schema. xmllint runs offline (--nonet); catalog.xml maps the
// w3.org xml.xsd the RFC schemas import to a local stand-in.

const (
	schemaDir = "../testdata/schema"
	// schemaReginfo loads reginfo.xsd (RFC 3680 5.4) and gruuinfo.xsd
	// (RFC 5628 9) together, so gr:pub-gruu is checked rather than skipped
	// by reginfo's lax wildcard.
	schemaReginfo = "reginfo-with-gruuinfo.xsd"
	schemaPIDF    = "pidf.xsd"

	// xmllintInvalid is xmllint's exit status for "document does not
	// validate" (XMLLINT_ERR_VALID); a schema that does not compile exits
	// with 5 and an unreadable document with 1 or 4.
	xmllintInvalid = 3
)

// lookXMLLint returns the path of xmllint, or skips the test (fails it when
// CI is set, where schema validation must not silently disappear).
func lookXMLLint(t *testing.T) string {
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

// runXMLLint validates doc against schema (a file in testdata/schema) and
// returns xmllint's output and exit status (0 when doc is valid).
func runXMLLint(t *testing.T, schema string, doc []byte) (string, int) {
	t.Helper()
	bin := lookXMLLint(t)
	dir, err := filepath.Abs(schemaDir)
	if err != nil {
		t.Fatal(err)
	}
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

// validateXML fails t unless doc is valid against schema, a file name in
// testdata/schema (schemaReginfo or schemaPIDF).
func validateXML(t *testing.T, schema string, doc []byte) {
	t.Helper()
	if out, code := runXMLLint(t, schema, doc); code != 0 {
		t.Errorf("xmllint --schema %s: exit status %d\n%s\ndocument:\n%s", schema, code, out, doc)
	}
}

// TestSchemaHarness proves the harness can fail: the negative fixtures
// must be rejected as invalid (not merely unreadable, or rejected because
// the schema did not compile), and a minimal valid document must pass.
func TestSchemaHarness(t *testing.T) {
	tests := []struct {
		name   string
		schema string
		doc    []byte
		valid  bool
	}{
		{
			name:   "reginfo minimal",
			schema: schemaReginfo,
			doc:    []byte(`<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full"/>`),
			valid:  true,
		},
		{
			name:   "pidf minimal",
			schema: schemaPIDF,
			doc:    []byte(`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com"/>`),
			valid:  true,
		},
		{
			name:   "watcherinfo minimal",
			schema: schemaWatcherinfo,
			doc:    []byte(`<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full"/>`),
			valid:  true,
		},
		{
			name:   "RFC 3858 section 5 example",
			schema: schemaWatcherinfo,
			doc:    readFixture(t, "rfc3858-s5-watcherinfo.xml"),
			valid:  true,
		},
		{
			name:   "watcher status outside the enumeration",
			schema: schemaWatcherinfo,
			doc:    readFixture(t, "negative/winfo-bad-status.xml"),
		},
		{
			name:   "pub-gruu without uri",
			schema: schemaReginfo,
			doc:    readFixture(t, "negative/gruu-pub-missing-uri.xml"),
		},
		{
			name:   "tuple id not an NCName",
			schema: schemaPIDF,
			doc:    readFixture(t, "negative/pidf-tuple-id-not-ncname.xml"),
		},
		{
			name:   "contact state init",
			schema: schemaReginfo,
			doc: []byte(`<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">` +
				`<registration aor="sip:a@example.com" id="a" state="active">` +
				`<contact id="1" state="init" event="registered"><uri>sip:a@h</uri></contact>` +
				`</registration></reginfo>`),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := runXMLLint(t, tt.schema, tt.doc)
			switch {
			case tt.valid && code != 0:
				t.Errorf("valid document rejected (exit status %d):\n%s", code, out)
			case !tt.valid && code != xmllintInvalid:
				t.Errorf("invalid document: exit status %d, want %d (invalid):\n%s", code, xmllintInvalid, out)
			case !tt.valid && !strings.Contains(out, "Schemas validity error"):
				t.Errorf("invalid document rejected without a schema validity error:\n%s", out)
			}
		})
	}
}

// TestGoldenFilesValidate checks every golden document, including any that
// -update just wrote, against its schema.
func TestGoldenFilesValidate(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no golden files in %s", goldenDir)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			doc, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			schema := schemaReginfo
			switch base := filepath.Base(f); {
			case strings.HasPrefix(base, "pidf-"):
				schema = schemaPIDF
			case strings.HasPrefix(base, "winfo-"):
				schema = schemaWatcherinfo
			}
			checkWellFormed(t, doc)
			validateXML(t, schema, doc)
		})
	}
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(schemaDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
