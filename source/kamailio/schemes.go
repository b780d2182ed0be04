package kamailio

import (
	"fmt"
	"net/url"
	"strconv"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// Schemes are the source URL schemes this package reads
// (source/stores registers them):
//
//	kamailio+sqlite:///abs/path.db or kamailio+sqlite:rel/path.db [?table=&create=true]
//	kamailio+mysql://user:pass@host[:3306]/db and kamailio+postgres://user:pass@host[:5432]/db
//	  [?table=&tz=&cdc=&changelog_poll=&reconcile=&incremental=&slot=&slot_lag_warn=, driver parameters]
func Schemes() []source.Scheme {
	sqlite := source.Scheme{Name: "kamailio+sqlite", Params: []string{"table", "create"}, Open: openSQLiteURL, Table: table("sqlite")}
	return append([]source.Scheme{sqlite}, sqlwatch.ServerSchemes("kamailio", table, NewServer)...)
}

func table(store string) *source.Table {
	schema := map[string]func(string) []string{"sqlite": SQLiteSchema, sqlwatch.DriverMySQL: MySQLSchema, sqlwatch.DriverPostgres: PostgresSchema}[store]
	return &source.Table{What: "a Kamailio usrloc table", Default: DefaultTable, Columns: Columns(),
		Schema: func(t string) ([]string, error) { return schema(t), nil }}
}

func openSQLiteURL(u *url.URL, o source.Options) (source.Source, error) {
	path, q, err := sqlwatch.ParseFileURL(u, "table", "create")
	if err != nil {
		return nil, err
	}
	var create bool
	if v := q.Get("create"); v != "" {
		if create, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("create=%q is not a boolean", v)
		}
	}
	return source.Built(NewSQLite(SQLiteConfig{Path: path, Table: q.Get("table"), Domain: o.Domain, Create: create, PollInterval: o.PollInterval}, o.Log))
}
