package sqlwatch

import (
	"errors"
	"fmt"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
)

// Some failures are not outages: a database that does not exist, a user
// the server refuses, a missing table or one of another layout stay so
// until the operator acts. Run still retries them (the fix needs no
// restart), but says once, at error level, what is wrong and what to do,
// and Stats.Problem carries the same words to /readyz.

// problem explains err when retrying cannot fix it: the cause and the fix
// in the operator's words. ok is false for an outage.
func problem(err error, table, create string) (explained string, ok bool) {
	var schema *SchemaError
	var my *mysql.MySQLError
	var pg *pgconn.PgError
	switch {
	case errors.As(err, &schema):
		return schema.Error() + ": it is not the table this source reads; point the source URL's ?table= at the registrar's contact table, or use the scheme of the registrar that wrote it", true
	case errors.Is(err, ErrNoTable):
		return noTable(table, create), true
	case errors.As(err, &my):
		switch my.Number {
		case 1049: // ER_BAD_DB_ERROR
			return noDatabase(my.Message), true
		case 1045: // ER_ACCESS_DENIED_ERROR
			return accessDenied(my.Message), true
		case 1044, 1142, 1143: // ER_DBACCESS_DENIED_ERROR, ER_TABLEACCESS_DENIED_ERROR, ER_COLUMNACCESS_DENIED_ERROR
			return noGrant(my.Message, table), true
		case 1146: // ER_NO_SUCH_TABLE
			return noTable(table, create), true
		}
	case errors.As(err, &pg):
		switch pg.Code {
		case "3D000": // invalid_catalog_name
			return noDatabase(pg.Message), true
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return accessDenied(pg.Message), true
		case "42501": // insufficient_privilege
			return noGrant(pg.Message, table), true
		case "42P01": // undefined_table
			return noTable(table, create), true
		}
	case errors.As(err, new(*NoFileError)):
		return err.Error() + ": give the path of the file the registrar writes", true
	}
	return "", false
}

func noTable(table, create string) string {
	return fmt.Sprintf("table %s does not exist: create it with the registrar's schema (%s prints the SQL for REGBRIDGE_SOURCE), or point ?table= at the registrar's table", table, create)
}

// createHint is the command that creates the table in this store.
func (w *Watcher) createHint() string {
	switch d := w.dialect.(type) {
	case *SQLite:
		return "`regbridge schema | sqlite3 " + d.path + "`"
	case *MySQL:
		return "`regbridge schema | mysql " + d.cfg.DBName + "`"
	case *Postgres:
		return "`regbridge schema | psql -d " + d.cfg.Database + "`"
	}
	return "`regbridge schema`"
}

func noDatabase(msg string) string {
	return "the database does not exist (" + strings.TrimSpace(msg) + "): fix the database name in the source URL, or create the database the registrar uses"
}

func accessDenied(msg string) string {
	return "the server refuses the user (" + strings.TrimSpace(msg) + "): fix the user and password in the source URL, or let the server admit that user from this host"
}

func noGrant(msg, table string) string {
	return fmt.Sprintf("the user may not read table %s (%s): GRANT SELECT ON it to the source URL's user", table, strings.TrimSpace(msg))
}
