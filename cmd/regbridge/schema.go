package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/sethvargo/go-envconfig"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// sqlSchemes are the schemes `regbridge schema` knows a table for.
func sqlSchemes() []string {
	var names []string
	for _, s := range source.Schemes() {
		if s.Table != nil {
			names = append(names, s.Name)
		}
	}
	return names
}

const schemaUsage = `usage: regbridge schema [SCHEME|URL] [--table NAME]

Prints the SQL that creates the contact table a SQL source reads, as the
registrar's own scripts create it, for a store that lacks it. SCHEME is
one of:
  ` + "kamailio+sqlite kamailio+mysql kamailio+postgres\n  opensips+sqlite opensips+mysql opensips+postgres\n  asterisk+mysql asterisk+postgres" + `
A URL (such as "$REGBRIDGE_SOURCE") gives its scheme and ?table=; with
neither, REGBRIDGE_SOURCE does. --table names the table (default: the
registrar's, location or ps_contacts).

Examples:
  regbridge schema kamailio+postgres | psql -d kamailio
  regbridge schema kamailio+mysql | mysql kamailio
  regbridge schema kamailio+sqlite | sqlite3 /var/lib/kamailio/kamailio.db
`

// runSchema is `regbridge schema [SCHEME|URL] [--table NAME]`.
func runSchema(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	var target, table string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case isHelp(a):
			fmt.Fprint(stdout, schemaUsage)
			return 0
		case a == "--table" || a == "-table":
			if i+1 == len(args) {
				fmt.Fprintf(stderr, "regbridge schema: --table needs a name\n\n%s", schemaUsage)
				return 2
			}
			i++
			table = args[i]
		case strings.HasPrefix(a, "--table="):
			table = strings.TrimPrefix(a, "--table=")
		case target == "" && !strings.HasPrefix(a, "-"):
			target = a
		default:
			fmt.Fprintf(stderr, "regbridge schema: unknown argument %q\n\n%s", a, schemaUsage)
			return 2
		}
	}
	if target == "" {
		cfg, err := loadConfig(ctx, env)
		if err != nil {
			fmt.Fprintf(stderr, "regbridge schema: configuration: %v\n", err)
			return 2
		}
		target = cfg.Source
	}
	scheme := strings.ToLower(target)
	if strings.Contains(target, ":") {
		u, err := url.Parse(target)
		if err != nil {
			fmt.Fprintf(stderr, "regbridge schema: not a scheme or source URL\n")
			return 2
		}
		scheme = strings.ToLower(u.Scheme)
		if table == "" {
			table = u.Query().Get("table")
		}
	}
	stmts, err := schemaSQL(scheme, table)
	if err != nil {
		fmt.Fprintf(stderr, "regbridge schema: %v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "-- regbridge schema %s\n%s;\n", scheme, strings.Join(stmts, ";\n\n"))
	return 0
}

// schemaSQL is the DDL of a scheme's table; table "" is the registrar's
// default name.
func schemaSQL(scheme, table string) ([]string, error) {
	s, ok := source.Lookup(scheme)
	if !ok || s.Table == nil {
		return nil, fmt.Errorf("no table schema for %q; one of: %s", scheme, strings.Join(sqlSchemes(), ", "))
	}
	if table == "" {
		table = s.Table.Default
	}
	if !sqlwatch.ValidIdent(table) {
		return nil, fmt.Errorf("table %q is not an identifier ([A-Za-z_][A-Za-z0-9_]*)", table)
	}
	return s.Table.Schema(table)
}

// isHelp reports whether a is a request for a subcommand's help.
func isHelp(a string) bool {
	return a == "-h" || a == "-help" || a == "--help" || a == "help"
}

// wantsHelp reports whether args ask for help anywhere.
func wantsHelp(args []string) bool {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			return true
		}
	}
	return false
}

const versionUsage = `usage: regbridge version

Prints regbridge's version and the Go version it was built with.
`
