package opensips

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// Column positions in a row; columns lists their names in the same order.
const (
	colContactID = iota
	colUsername
	colDomain
	colContact
	colReceived
	colPath
	colExpires
	colQ
	colCallID
	colCSeq
	colLastModified
	colUserAgent
	colInstance
	numCols
)

// columns are the location columns read, by name: the 13 of the 19 that
// say something about the binding (flags, cflags, socket, methods,
// kv_store and attr do not reach a reginfo document).
var columns = [numCols]string{
	colContactID:    "contact_id",
	colUsername:     "username",
	colDomain:       "domain",
	colContact:      "contact",
	colReceived:     "received",
	colPath:         "path",
	colExpires:      "expires",
	colQ:            "q",
	colCallID:       "callid",
	colCSeq:         "cseq",
	colLastModified: "last_modified",
	colUserAgent:    "user_agent",
	colInstance:     "sip_instance",
}

// watchColumns are what usrloc writes on every insert and refresh
// (docs/stores.md#opensips: a refresh rewrites expires, cseq, callid,
// last_modified, ...; contact_id may be reused by another binding after a
// restart, so the contact is watched too).
var watchColumns = []string{"contact_id", "username", "domain", "contact", "expires", "callid", "cseq", "last_modified"}

// errBadRow marks a row that cannot be reported; the wrapped text says why.
var errBadRow = errors.New("bad location row")

func badRow(why string) error { return fmt.Errorf("%w: %s", errBadRow, why) }

// layout is the OpenSIPS location table for sqlwatch. One watcher owns
// it; Decode runs on one goroutine at a time.
type layout struct {
	table  string
	domain string
	loc    *time.Location
	server bool
	buf    []byte
}

var _ sqlwatch.Layout = (*layout)(nil)

func (l *layout) Table() sqlwatch.Table {
	t := sqlwatch.Table{
		Name:    l.table,
		Columns: columns[:],
		Key:     colContactID,
		Watch:   watchColumns,
		LogKey:  []int{colContactID},
	}
	// usrloc writes last_modified on insert and refresh; only for the
	// servers (incremental reads need a Partial session anyway).
	if l.server {
		t.Modified = columns[colLastModified]
	}
	return t
}

// Bind checks the time columns: expires an integer epoch, last_modified a
// date-time. SQLite declares no usable type; its values say what they are.
func (l *layout) Bind(types []string) error {
	if !l.server {
		return nil
	}
	if len(types) != numCols {
		return fmt.Errorf("got %d column types, want %d", len(types), numCols)
	}
	if t := types[colExpires]; !strings.Contains(t, "INT") {
		return fmt.Errorf("column expires has type %s; OpenSIPS writes an INT epoch", t)
	}
	if t := types[colLastModified]; t != "DATETIME" && t != "TIMESTAMP" {
		return fmt.Errorf("column last_modified has type %s; want DATETIME or TIMESTAMP (without time zone)", t)
	}
	return nil
}

// Decode turns one location row into c (sqlwatch calls it only for rows
// that are new or changed). On error c is left partly written and must be
// discarded.
func (l *layout) Decode(row []sqlwatch.Value, c *source.Contact) error {
	id, ok := row[colContactID].Int64()
	if !ok || id < 0 {
		return badRow("contact_id is not a non-negative integer")
	}
	l.buf = strconv.AppendInt(l.buf[:0], id, 10) // canonical on every backend
	c.Key = sqlwatch.Intern(l.buf, "")
	if err := shared.Decode(row, c, &l.buf, l.domain); err != nil {
		return badRow(err.Error())
	}
	if c.Expires, ok = row[colExpires].Epoch(); !ok {
		return badRow("expires is not an epoch")
	}
	if c.Modified, ok = l.modified(&row[colLastModified]); !ok {
		return badRow("last_modified is not a valid time")
	}
	c.RegID, c.Administrative = 0, false // OpenSIPS stores neither
	return nil
}

// modified decodes last_modified: OpenSIPS formats it with localtime_r,
// the wall clock in the registrar's zone, for every backend (db_sqlite
// writes it as TEXT). NULL and the column default (1900) are "unknown".
func (l *layout) modified(v *sqlwatch.Value) (time.Time, bool) {
	if v.Kind == sqlwatch.Null {
		return time.Time{}, true
	}
	t, ok := v.WallInstant(l.loc)
	if ok && t.Year() <= 1900 {
		return time.Time{}, true
	}
	return t, ok
}

// shared are the columns OpenSIPS's table shares with Kamailio's.
var shared = sqlwatch.Usrloc{Username: colUsername, Domain: colDomain, Contact: colContact, Q: colQ, CSeq: colCSeq,
	CallID: colCallID, UserAgent: colUserAgent, Instance: colInstance, InstanceName: "sip_instance", Received: colReceived, Path: colPath}
