package kamailio

import (
	"fmt"
	"strings"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// layout is the Kamailio location table for sqlwatch: which columns, and
// how a row becomes a Contact. One watcher owns it; Decode runs on one
// goroutine at a time.
type layout struct {
	table  string
	domain string
	loc    *time.Location
	// server: times are typed columns of MySQL/PostgreSQL (Bind picks the
	// codec from the type); otherwise db_sqlite's encodings.
	server            bool
	expires, modified timeCodec
	aorBuf            []byte
}

var _ sqlwatch.Layout = (*layout)(nil)

func newLayout(table, domain string, loc *time.Location, server bool) *layout {
	return &layout{table: table, domain: domain, loc: loc, server: server}
}

func (l *layout) Table() sqlwatch.Table {
	t := sqlwatch.Table{
		Name:    l.table,
		Columns: columns[:],
		Key:     colRUID,
		Watch:   watchColumns,
		LogKey:  []int{colRUID, colID},
	}
	// usrloc writes last_modified on create and refresh
	// (docs/stores.md#sql-servers); incremental reads use it on the servers.
	if l.server {
		t.Modified = columns[colLastModified]
	}
	return t
}

// Bind picks each time column's codec from its type: DATETIME / TIMESTAMP
// (db_mysql, db_postgres: wall clock in the registrar's zone) or an integer
// type (usrloc expires_type=1, where the admin altered the columns to
// BIGINT). SQLite declares no usable type; its values say what they are.
func (l *layout) Bind(types []string) error {
	if !l.server {
		l.expires, l.modified = timeSQLite, timeSQLite
		return nil
	}
	if len(types) != numCols {
		return fmt.Errorf("got %d column types, want %d", len(types), numCols)
	}
	var err error
	if l.expires, err = serverCodec("expires", types[colExpires]); err != nil {
		return err
	}
	l.modified, err = serverCodec("last_modified", types[colLastModified])
	return err
}

func serverCodec(col, typ string) (timeCodec, error) {
	switch {
	case strings.Contains(typ, "INT"): // BIGINT, INT8, UNSIGNED BIGINT, ...
		return timeEpoch, nil
	case typ == "DATETIME", typ == "TIMESTAMP":
		return timeWall, nil
	}
	return 0, fmt.Errorf("column %s has type %s; want DATETIME or TIMESTAMP (without time zone), or BIGINT (usrloc expires_type=1)", col, typ)
}

// Decode turns one location row into c (sqlwatch calls it only for rows
// that are new or changed). On error c is left partly written and must be
// discarded.
func (l *layout) Decode(row []sqlwatch.Value, c *source.Contact) error {
	key, keyOK := row[colRUID].TextOrNull()
	if !keyOK || len(key) == 0 || !source.Printable(key) {
		return badRow("ruid is not a non-empty printable string")
	}
	c.Key = row[colRUID].String("")
	if err := shared.Decode(row, c, &l.aorBuf, l.domain); err != nil {
		return badRow("%v", err)
	}
	if row[colExpires].Kind == sqlwatch.Null {
		return badRow("expires is NULL")
	}
	var ok bool
	if c.Expires, ok = decodeTime(&row[colExpires], l.expires, l.loc); !ok {
		return badRow("expires is not a valid time")
	}
	if c.Modified, ok = decodeTime(&row[colLastModified], l.modified, l.loc); !ok {
		return badRow("last_modified is not a valid time")
	}
	if c.RegID, ok = row[colRegID].Uint32(); !ok {
		return badRow("reg_id is not an integer between 0 and 2^32-1")
	}
	c.Administrative = strings.HasPrefix(c.Key, administrativePrefix)
	return nil
}

// shared are the columns Kamailio's table shares with OpenSIPS's.
var shared = sqlwatch.Usrloc{Username: colUsername, Domain: colDomain, Contact: colContact, Q: colQ, CSeq: colCSeq,
	CallID: colCallID, UserAgent: colUserAgent, Instance: colInstance, InstanceName: "instance", Received: colReceived, Path: colPath}
