package asterisk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

const (
	// DefaultAstDBPath is where Asterisk keeps AstDB (astdbdir plus
	// ".sqlite3").
	DefaultAstDBPath = "/var/lib/asterisk/astdb.sqlite3"
	// DefaultFamily is res_pjsip's sorcery family for contacts
	// (sorcery.conf "contact=astdb,registrar").
	DefaultFamily = "registrar"
	// DefaultAstDBReconcile forces a read now and then even when the file
	// looks unchanged. The change check (file stat, then data_version) is
	// exact, so this is only a safety net; each read is a lock Asterisk's
	// writer may trip over, hence rare.
	DefaultAstDBReconcile = 5 * time.Minute
)

// SchemeAstDB is the source URL scheme of AstDB:
// asterisk+astdb:///var/lib/asterisk/astdb.sqlite3[?family=registrar].
const SchemeAstDB = "asterisk+astdb"

// AstDBConfig configures a watcher of the contacts Asterisk's res_pjsip
// keeps in AstDB (docs/stores.md#astdb).
type AstDBConfig struct {
	// Path is the AstDB file; default DefaultAstDBPath.
	Path string
	// Family is the sorcery family; contacts are the keys
	// "/<family>/contact/<id>". Default DefaultFamily.
	Family string
	// Domain completes the AOR: an AOR named "1001" becomes
	// sip:1001@<Domain> (sip:1001 when empty).
	Domain string
	// Watch tunes polling; a zero ReconcileInterval means
	// DefaultAstDBReconcile.
	Watch sqlwatch.Config
}

// Validate fills defaults and rejects settings that can never work.
func (c *AstDBConfig) Validate() error {
	if c.Path == "" {
		c.Path = DefaultAstDBPath
	}
	if c.Family == "" {
		c.Family = DefaultFamily
	}
	if c.Watch.ReconcileInterval == 0 {
		c.Watch.ReconcileInterval = DefaultAstDBReconcile
	}
	switch {
	case strings.IndexByte(c.Path, 0) >= 0:
		return errors.New("asterisk astdb: Path must name the AstDB file")
	case !source.Printable(c.Family) || strings.IndexByte(c.Family, '/') >= 0:
		return fmt.Errorf("asterisk astdb: Family %q is not a sorcery family name", c.Family)
	case !validDomain(c.Domain):
		return fmt.Errorf("asterisk astdb: Domain %q is not a host name", c.Domain)
	}
	if err := c.Watch.Validate(); err != nil {
		return fmt.Errorf("asterisk astdb: %w", err)
	}
	return nil
}

// ParseAstDBURL reads asterisk+astdb:///abs/path.sqlite3 (three slashes)
// or asterisk+astdb:rel/path.sqlite3, with an optional family= parameter.
// Domain and Watch are the caller's.
func ParseAstDBURL(raw string) (AstDBConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return AstDBConfig{}, fmt.Errorf("not a URL: %w", err)
	}
	return parseAstDBURL(u)
}

func parseAstDBURL(u *url.URL) (AstDBConfig, error) {
	var c AstDBConfig
	if !strings.EqualFold(u.Scheme, SchemeAstDB) {
		return c, fmt.Errorf("scheme %q is not %s", u.Scheme, SchemeAstDB)
	}
	if c.Path = sqlwatch.FilePath(u); c.Path == "" {
		return c, fmt.Errorf("%s URL names no file (%s:///var/lib/asterisk/astdb.sqlite3)", SchemeAstDB, SchemeAstDB)
	}
	for k := range u.Query() {
		if k != "family" {
			return c, fmt.Errorf("unknown parameter %q for %s (family)", k, SchemeAstDB)
		}
	}
	c.Family = u.Query().Get("family")
	if u.Query().Has("family") && c.Family == "" {
		return c, errors.New("family is empty")
	}
	return c, c.Validate()
}

// NewAstDB checks cfg and returns a watcher of the AstDB file; it does no
// I/O. The file is opened read-only and read only after it changed (see
// astdbfile.go for how little it locks).
func NewAstDB(cfg AstDBConfig, log *slog.Logger) (*sqlwatch.Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "asterisk_astdb", "path", cfg.Path)
	prefix := "/" + cfg.Family + "/contact/"
	return sqlwatch.New(cfg.Watch, newAstDBFile(cfg.Path, prefix, log), &astdbLayout{prefix: prefix, domain: cfg.Domain}, log)
}

// astdbLayout decodes rows of the astdb table: key
// "/registrar/contact/<id>", value a JSON object of sorcery fields.
type astdbLayout struct {
	prefix, domain string
}

func (l *astdbLayout) Table() sqlwatch.Table {
	return sqlwatch.Table{Name: "astdb", Columns: []string{"key", "value"}, Key: 0, Watch: []string{"key", "value"}, LogKey: []int{0}}
}

// Bind accepts both declarations Asterisk has used (TEXT, VARCHAR(256)):
// SQLite returns what was stored either way.
func (l *astdbLayout) Bind([]string) error { return nil }

func (l *astdbLayout) Decode(row []sqlwatch.Value, c *source.Contact) error {
	if row[0].Kind != sqlwatch.Text || row[1].Kind != sqlwatch.Text {
		return badRow("key or value is not text")
	}
	id, ok := bytes.CutPrefix(row[0].Bytes, []byte(l.prefix))
	if !ok {
		return badRow("key outside %s", l.prefix)
	}
	var f fields
	if err := decodeAstDBValue(row[1].Bytes, &f); err != nil {
		return err
	}
	return decodeContact(string(id), &f, l.domain, c)
}

// astdbValue is the JSON object res_sorcery_astdb stores. Every member is
// a string in Asterisk's output; jsonText also takes numbers and null so
// that a value written by another tool is not rejected for its type.
type astdbValue struct {
	URI            jsonText `json:"uri"`
	ExpirationTime jsonText `json:"expiration_time"`
	UserAgent      jsonText `json:"user_agent"`
	CallID         jsonText `json:"call_id"`
	Path           jsonText `json:"path"`
}

func decodeAstDBValue(b []byte, f *fields) error {
	var v astdbValue
	if err := json.Unmarshal(b, &v); err != nil {
		return badRow("value is not a JSON object of strings: %v", err)
	}
	*f = fields{uri: string(v.URI), userAgent: string(v.UserAgent), callID: string(v.CallID), path: string(v.Path)}
	exp, err := strconv.ParseInt(string(v.ExpirationTime), 10, 64)
	f.expires, f.expiresOK = exp, err == nil
	return nil
}

// jsonText is a JSON string, number or boolean kept as its text; null is
// empty.
type jsonText string

func (t *jsonText) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = jsonText(s)
	case bytes.Equal(b, []byte("null")):
		*t = ""
	case len(b) > 0 && (b[0] == '[' || b[0] == '{'):
		return errors.New("member is not a string")
	default:
		*t = jsonText(b)
	}
	return nil
}
