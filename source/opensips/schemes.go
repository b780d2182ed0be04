package opensips

import (
	"net/url"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// Schemes are the source URL schemes this package reads
// (source/stores registers them):
//
//	opensips+sqlite:///abs/path.db or opensips+sqlite:rel/path.db [?table=&tz=]
//	opensips+mysql://user:pass@host[:3306]/db and opensips+postgres://user:pass@host[:5432]/db
//	  [?table=&tz=&cdc=&changelog_poll=&reconcile=&incremental=&slot=&slot_lag_warn=, driver parameters]
func Schemes() []source.Scheme {
	sqlite := source.Scheme{Name: "opensips+sqlite", Params: []string{"table", "tz"}, Open: openSQLiteURL, Table: table("sqlite")}
	return append([]source.Scheme{sqlite}, sqlwatch.ServerSchemes("opensips", table, NewServer)...)
}

func table(store string) *source.Table {
	return &source.Table{What: "an OpenSIPS usrloc table", Default: DefaultTable, Columns: Columns(),
		Schema: func(t string) ([]string, error) { return Schema(store, t) }}
}

func openSQLiteURL(u *url.URL, o source.Options) (source.Source, error) {
	path, q, err := sqlwatch.ParseFileURL(u, "table", "tz")
	if err != nil {
		return nil, err
	}
	return source.Built(NewSQLite(SQLiteConfig{Path: path, Table: q.Get("table"), Domain: o.Domain, TZ: q.Get("tz"), PollInterval: o.PollInterval}, o.Log))
}
