package sqlwatch

import (
	"net/url"
	"strings"
	"testing"
)

// TestFileURLForms: a file store's URL names its file absolutely (three
// slashes) or relative to the working directory (no slash, or two).
func TestFileURLForms(t *testing.T) {
	for raw, path := range map[string]string{
		"kamailio+sqlite:///var/lib/kamailio/kamailio.db": "/var/lib/kamailio/kamailio.db",
		"kamailio+sqlite:regbridge.db":                    "regbridge.db",
		"kamailio+sqlite:data/loc.db?table=location":      "data/loc.db",
		"kamailio+sqlite://rel.db":                        "rel.db",
	} {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		got, _, err := ParseFileURL(u, "table")
		if err != nil || got != path {
			t.Errorf("ParseFileURL(%q) = %q, %v; want %q", raw, got, err, path)
		}
	}
	for raw, want := range map[string]string{
		"kamailio+sqlite:":                "names no file",
		"kamailio+sqlite:x.db?tabel=loc":  `unknown parameter "tabel" for kamailio+sqlite (table, tz)`,
		"kamailio+sqlite:x.db?tz=nowhere": `tz="nowhere"`,
	} {
		u, _ := url.Parse(raw)
		if _, _, err := ParseFileURL(u, "table", "tz"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseFileURL(%q) = %v, want an error containing %s", raw, err, want)
		}
	}
}

// TestParseServerURL: the server, table, tz and read parameters of a SQL
// server source, the driver from the scheme; errors never echo the
// password.
func TestParseServerURL(t *testing.T) {
	u, _ := url.Parse("opensips+postgres://os:pw@db.example/opensips?table=loc&tz=Europe/Berlin&cdc=logical&slot=s1&sslmode=require")
	c, err := ParseServerURL(u, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Driver != DriverPostgres || c.Endpoint.Addr != "db.example:5432" || c.Endpoint.Password != "pw" || c.Table != "loc" ||
		c.TZ != "Europe/Berlin" || c.CDC != CDCLogical || c.Slot != "s1" || c.Endpoint.Params["sslmode"] != "require" {
		t.Errorf("ParseServerURL = %+v", c)
	}
	for raw, want := range map[string]string{
		"kamailio+mysql://k:pw@db/kam?cdc=logical":    "needs a PostgreSQL store",
		"kamailio+mysql://k:pw@db/kam?tz=Mars/Base":   `tz="Mars/Base"`,
		"asterisk+mysql://k:pw@db/kam?tz=UTC":         `unknown parameter "tz"`,
		"kamailio+postgres://k:pw@db/kam?tabel=x":     `unknown parameter "tabel"`,
		"kamailio+postgres://k:pw@db":                 "no database",
		"kamailio+postgres://k:pw@db/k?reconcile=-1s": "reconcile",
	} {
		u, _ := url.Parse(raw)
		_, err := ParseServerURL(u, !strings.HasPrefix(raw, "asterisk"))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "pw") {
			t.Errorf("ParseServerURL(%q) = %v, want an error containing %s (and no password)", raw, err, want)
		}
	}
}
