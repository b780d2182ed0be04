package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/regbridge/regbridge/notifier/render/xmlcheck"
)

// Schema names used by the rendering tests (files in testdata/schema).
const (
	schemaReginfo     = xmlcheck.Reginfo
	schemaPIDF        = xmlcheck.PIDF
	schemaWatcherinfo = xmlcheck.Watcherinfo
)

// validateXML fails t unless doc is valid against schema.
func validateXML(t *testing.T, schema string, doc []byte) {
	t.Helper()
	xmlcheck.Validate(t, schema, doc)
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
			out, code := xmlcheck.Run(t, tt.schema, tt.doc)
			switch {
			case tt.valid && code != 0:
				t.Errorf("valid document rejected (exit status %d):\n%s", code, out)
			case !tt.valid && code != xmlcheck.Invalid:
				t.Errorf("invalid document: exit status %d, want %d (invalid):\n%s", code, xmlcheck.Invalid, out)
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
	b, err := os.ReadFile(filepath.Join(xmlcheck.SchemaDir(t), name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
