package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/asterisk"
	"github.com/regbridge/regbridge/source/kamailio"
	"github.com/regbridge/regbridge/source/opensips"
	redissrc "github.com/regbridge/regbridge/source/redis"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// checker is a source that can tell, before it runs, a setup it can never
// read (a table of another registrar, a missing file): Check returns only
// such errors, nil for a store that is merely unreachable.
type checker interface {
	Check(ctx context.Context) error
}

// sourceCheckTimeout bounds the start-up look at the store; a store that
// does not answer by then is an outage, which Run retries.
const sourceCheckTimeout = 3 * time.Second

// checkSource refuses a source setup that cannot work, naming the fix.
func checkSource(ctx context.Context, rawURL string, src source.Source) error {
	c, ok := src.(checker)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, sourceCheckTimeout)
	defer cancel()
	err := c.Check(ctx)
	if err == nil || ctx.Err() != nil {
		return nil
	}
	return &setupError{errors.New(explainSource(rawURL, err))}
}

// explainSource words a Check error for the operator: what is wrong and
// what to set instead. It never repeats a password.
func explainSource(rawURL string, err error) string {
	u, perr := url.Parse(rawURL)
	if perr != nil {
		return "REGBRIDGE_SOURCE: " + err.Error()
	}
	scheme := strings.ToLower(u.Scheme)
	var schemaErr *sqlwatch.SchemaError
	var noFile *sqlwatch.NoFileError
	var layoutErr *redissrc.LayoutError
	switch {
	case errors.As(err, &schemaErr):
		msg := "REGBRIDGE_SOURCE: " + schemaErr.Error()
		if alt := matchingScheme(scheme, schemaErr.Have); alt != "" {
			return fmt.Sprintf("%s; it looks like %s: use %s", msg, describeScheme(alt), withScheme(u, alt))
		}
		return fmt.Sprintf("%s; it is not the table %s reads: point ?table= at the registrar's contact table (`regbridge schema %s` prints the one expected)", msg, scheme, scheme)
	case errors.As(err, &noFile):
		msg := fmt.Sprintf("REGBRIDGE_SOURCE: %v; give the path of the file the registrar writes", noFile)
		if scheme == "kamailio+sqlite" {
			q := u.Query()
			q.Set("create", "true")
			u.RawQuery = q.Encode()
			msg += fmt.Sprintf(", or add ?create=true to create it with Kamailio's schema (%s)", u.Redacted())
		}
		return msg
	case errors.As(err, &layoutErr):
		fix := "kamailio+redis://" + u.Host + u.Path
		// db_redis keys are <table>:entry::<ruid>: name a table that is
		// not the default.
		if table, _, ok := strings.Cut(layoutErr.Key, ":entry::"); ok && table != kamailio.DefaultTable {
			fix += "?table=" + strings.ReplaceAll(url.QueryEscape(table), "%3A", ":")
		}
		if layoutErr.Found == redissrc.LayoutGeneric {
			fix = "redis://" + u.Host + u.Path + "?layout=generic"
		}
		return fmt.Sprintf("REGBRIDGE_SOURCE: %v: use %s (with the password, if any)", layoutErr, fix)
	}
	return "REGBRIDGE_SOURCE: " + err.Error()
}

// sourceColumns are the columns each SQL scheme reads, by scheme.
func sourceColumns(scheme string) []string {
	switch {
	case strings.HasPrefix(scheme, "kamailio+"):
		return kamailio.Columns()
	case strings.HasPrefix(scheme, "opensips+"):
		return opensips.Columns()
	case scheme == asterisk.SchemeMySQL || scheme == asterisk.SchemePostgres:
		return asterisk.RealtimeColumns()
	}
	return nil
}

// matchingScheme is the other scheme on the same store whose columns the
// table has, or "".
func matchingScheme(scheme string, have []string) string {
	_, store, _ := strings.Cut(scheme, "+")
	for _, alt := range supportedSources {
		if alt == scheme || !strings.HasSuffix(alt, "+"+store) {
			continue
		}
		cols := sourceColumns(alt)
		if cols != nil && !slices.ContainsFunc(cols, func(c string) bool { return !slices.Contains(have, c) }) {
			return alt
		}
	}
	return ""
}

// describeScheme names the table a scheme reads, for "it looks like".
func describeScheme(scheme string) string {
	switch {
	case strings.HasPrefix(scheme, "kamailio+"):
		return "a Kamailio usrloc table"
	case strings.HasPrefix(scheme, "opensips+"):
		return "an OpenSIPS usrloc table"
	}
	return "an Asterisk ps_contacts table"
}

// withScheme is the source URL with another scheme, password hidden, and
// without parameters the new scheme does not take (create=).
func withScheme(u *url.URL, scheme string) string {
	v := *u
	v.Scheme = scheme
	q := v.Query()
	if scheme != "kamailio+sqlite" {
		q.Del("create")
	}
	v.RawQuery = q.Encode()
	return v.Redacted()
}
