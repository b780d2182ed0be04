package stores

import (
	"strings"
	"testing"

	"github.com/regbridge/regbridge/source"
)

// TestRegistered: every built-in scheme is registered, in the order
// messages list them, and every one refuses a parameter it does not know
// without repeating the password.
func TestRegistered(t *testing.T) {
	want := "kamailio+sqlite, kamailio+mysql, kamailio+postgres, opensips+sqlite, opensips+mysql, opensips+postgres, " +
		"kamailio+redis, redis, asterisk+astdb, asterisk+mysql, asterisk+postgres"
	if got := source.SchemeNames(); got != want {
		t.Errorf("schemes = %s\nwant %s", got, want)
	}
	for _, s := range source.Schemes() {
		raw := s.Name + "://user:secretpw@db.example/1?nosuch=1"
		if s.Name == "redis" {
			raw += "&layout=generic" // says which parameters count
		}
		_, err := source.Open(raw, source.Options{})
		if err == nil || !strings.Contains(err.Error(), "nosuch") || strings.Contains(err.Error(), "secretpw") {
			t.Errorf("%s: Open = %v, want an error naming nosuch without the password", s.Name, err)
		}
		if s.Table != nil {
			if ddl, err := s.Table.Schema(s.Table.Default); err != nil || len(ddl) == 0 || len(s.Table.Columns) == 0 {
				t.Errorf("%s: Table schema %v, %v; columns %v", s.Name, ddl, err, s.Table.Columns)
			}
		}
	}
}
