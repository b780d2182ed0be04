package digest

import (
	"net/url"
	"testing"

	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// postgresStore creates a PostgreSQL database of its own (dropped after
// the test) holding ddl and rows, and returns its REGBRIDGE_AUTH URL.
func postgresStore(t *testing.T, schema, ddl string, rows []string) string {
	t.Helper()
	db := sqltest.Postgres(t)
	for _, stmt := range append([]string{ddl}, rows...) {
		db.Exec(t, stmt)
	}
	u := url.URL{Scheme: schema + "+postgres", User: url.User(db.Endpoint.User), Host: db.Endpoint.Addr, Path: "/" + db.Name(),
		RawQuery: "sslmode=disable"}
	return u.String()
}

// TestPostgresStores reads the registrars' credential tables on a real
// PostgreSQL through the URL forms REGBRIDGE_SOURCE uses.
func TestPostgresStores(t *testing.T) {
	t.Run("kamailio", func(t *testing.T) {
		runLookups(t, openSource(t, postgresStore(t, "kamailio", kamailioDDL, kamailioRows)), kamailioLookups)
	})
	t.Run("kamailio use_domain=false", func(t *testing.T) {
		src := postgresStore(t, "kamailio", kamailioDDL, kamailioRows) + "&use_domain=false"
		runLookups(t, openSource(t, src), []lookup{
			{"alice has rows in two domains: refused", "alice", "example.com", MD5, ""},
			{"bob has one row", "bob", "anything.example", MD5, HA1(MD5, "bob", "example.com", "bob-pw")},
		})
	})
	t.Run("opensips", func(t *testing.T) {
		runLookups(t, openSource(t, postgresStore(t, "opensips", opensipsDDL, opensipsRows)), opensipsLookups)
	})
	t.Run("asterisk", func(t *testing.T) {
		runLookups(t, openSource(t, postgresStore(t, "asterisk", asteriskDDL, asteriskRows)), asteriskLookups)
	})
	t.Run("wrong table fails at open", func(t *testing.T) {
		src := postgresStore(t, "kamailio", kamailioDDL, nil) + "&table=nosuch"
		if _, _, err := Open(t.Context(), Source(src), testLog()); err == nil {
			t.Errorf("Open accepted a table that does not exist")
		}
	})
	t.Run("store outage is an error, not an unknown user", func(t *testing.T) {
		creds, closeFn, err := Open(t.Context(), Source(postgresStore(t, "kamailio", kamailioDDL, kamailioRows)), testLog())
		if err != nil {
			t.Fatal(err)
		}
		closeFn()
		if _, _, err := creds.HA1(t.Context(), "alice", "example.com", MD5); err == nil {
			t.Errorf("HA1 on a closed store: no error")
		}
	})
}
