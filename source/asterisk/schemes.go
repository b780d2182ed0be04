package asterisk

import (
	"net/url"
	"slices"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// Schemes are the source URL schemes this package reads (source/stores
// registers them): SchemeAstDB (ParseAstDBURL), SchemeMySQL and
// SchemePostgres (ParseRealtimeURL).
func Schemes() []source.Scheme {
	realtime := func(driver string) source.Scheme {
		return source.Scheme{Name: "asterisk+" + driver, Params: slices.Concat([]string{"table"}, sqlwatch.ReadParamNames, sqlwatch.DriverParams[driver]),
			Open: openRealtime, Table: &source.Table{What: "an Asterisk ps_contacts table", Default: DefaultTable, Columns: RealtimeColumns(),
				Schema: func(t string) ([]string, error) { return RealtimeSchema(driver, t) }}}
	}
	return []source.Scheme{{Name: SchemeAstDB, Params: []string{"family"}, Open: openAstDB},
		realtime(sqlwatch.DriverMySQL), realtime(sqlwatch.DriverPostgres)}
}

func openAstDB(u *url.URL, o source.Options) (source.Source, error) {
	c, err := parseAstDBURL(u)
	if err != nil {
		return nil, err
	}
	c.Domain, c.Watch.PollInterval = o.Domain, o.PollInterval
	return source.Built(NewAstDB(c, o.Log))
}

func openRealtime(u *url.URL, o source.Options) (source.Source, error) {
	c, err := parseRealtimeURL(u)
	if err != nil {
		return nil, err
	}
	c.Domain, c.Watch.PollInterval = o.Domain, o.PollInterval
	return source.Built(NewRealtime(c, o.Log))
}
