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
	var advice interface{ Advice(u *url.URL) string }
	switch {
	case errors.As(err, &schemaErr):
		msg := "REGBRIDGE_SOURCE: " + schemaErr.Error()
		if alt, ok := matchingScheme(scheme, schemaErr.Have); ok {
			return fmt.Sprintf("%s; it looks like %s: use %s", msg, alt.Table.What, withScheme(u, alt))
		}
		return fmt.Sprintf("%s; it is not the table %s reads: point ?table= at the registrar's contact table (`regbridge schema %s` prints the one expected)", msg, scheme, scheme)
	case errors.As(err, &noFile):
		msg := fmt.Sprintf("REGBRIDGE_SOURCE: %v; give the path of the file the registrar writes", noFile)
		if s, ok := source.Lookup(scheme); ok && slices.Contains(s.Params, "create") {
			q := u.Query()
			q.Set("create", "true")
			u.RawQuery = q.Encode()
			msg += fmt.Sprintf(", or add ?create=true to create it with the registrar's schema (%s)", u.Redacted())
		}
		return msg
	case errors.As(err, &advice):
		return fmt.Sprintf("REGBRIDGE_SOURCE: %v: use %s", err, advice.Advice(u))
	}
	return "REGBRIDGE_SOURCE: " + err.Error()
}

// matchingScheme is the other scheme on the same store (the same +suffix)
// whose columns the table has.
func matchingScheme(scheme string, have []string) (source.Scheme, bool) {
	_, store, _ := strings.Cut(scheme, "+")
	for _, alt := range source.Schemes() {
		if alt.Name == scheme || alt.Table == nil || !strings.HasSuffix(alt.Name, "+"+store) {
			continue
		}
		if !slices.ContainsFunc(alt.Table.Columns, func(c string) bool { return !slices.Contains(have, c) }) {
			return alt, true
		}
	}
	return source.Scheme{}, false
}

// withScheme is the source URL with another scheme, password hidden, and
// without parameters the new scheme does not take.
func withScheme(u *url.URL, alt source.Scheme) string {
	v := *u
	v.Scheme = alt.Name
	q := v.Query()
	for k := range q {
		if !slices.Contains(alt.Params, k) {
			q.Del(k)
		}
	}
	v.RawQuery = q.Encode()
	return v.Redacted()
}
