package kamailio

// Kamailio's location table on database servers, for tools that set up a
// store of their own (regload) and for documentation: column names, types,
// defaults and indexes are Kamailio's, so what regbridge reads from such a
// table is what it would read from a real registrar.

import (
	"strings"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// MySQLSchema returns the DDL of Kamailio's utils/kamctl/mysql
// usrloc-create.sql and standard-create.sql (table version 9) for
// MariaDB/MySQL, the version table only where missing, with t as the
// location table's name (a validated identifier).
func MySQLSchema(t string) []string {
	q := sqlwatch.QuoteMySQL
	return []string{
		"CREATE TABLE IF NOT EXISTS `version` (\n" +
			"    `id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,\n" +
			"    `table_name` VARCHAR(32) NOT NULL,\n" +
			"    `table_version` INT UNSIGNED DEFAULT 0 NOT NULL,\n" +
			"    CONSTRAINT table_name_idx UNIQUE (`table_name`)\n)",
		"CREATE TABLE " + q(t) + ` (
    ` + "`id` INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL," + `
    ` + mysqlColumns + `
    CONSTRAINT ruid_idx UNIQUE (` + "`ruid`" + `)
)`,
		"CREATE INDEX account_contact_idx ON " + q(t) + " (`username`, `domain`, `contact`)",
		"CREATE INDEX expires_idx ON " + q(t) + " (`expires`)",
		"CREATE INDEX tcpcon_idx ON " + q(t) + " (`connection_id`)",
		"CREATE INDEX connection_idx ON " + q(t) + " (`server_id`, `connection_id`)",
		"INSERT INTO `version` (`table_name`, `table_version`) VALUES ('" + t + "', '9')",
	}
}

var mysqlColumns = strings.Join([]string{
	"`ruid` VARCHAR(64) DEFAULT '' NOT NULL,",
	"`username` VARCHAR(64) DEFAULT '' NOT NULL,",
	"`domain` VARCHAR(64) DEFAULT NULL,",
	"`contact` VARCHAR(512) DEFAULT '' NOT NULL,",
	"`received` VARCHAR(128) DEFAULT NULL,",
	"`path` VARCHAR(512) DEFAULT NULL,",
	"`expires` DATETIME DEFAULT '2030-05-28 21:32:15' NOT NULL,",
	"`q` FLOAT(10,2) DEFAULT 1.0 NOT NULL,",
	"`callid` VARCHAR(255) DEFAULT 'Default-Call-ID' NOT NULL,",
	"`cseq` INT(11) DEFAULT 1 NOT NULL,",
	"`last_modified` DATETIME DEFAULT '2000-01-01 00:00:01' NOT NULL,",
	"`flags` INT(11) DEFAULT 0 NOT NULL,",
	"`cflags` INT(11) DEFAULT 0 NOT NULL,",
	"`user_agent` VARCHAR(255) DEFAULT '' NOT NULL,",
	"`socket` VARCHAR(64) DEFAULT NULL,",
	"`methods` INT(11) DEFAULT NULL,",
	"`instance` VARCHAR(255) DEFAULT NULL,",
	"`reg_id` INT(11) DEFAULT 0 NOT NULL,",
	"`server_id` INT(11) DEFAULT 0 NOT NULL,",
	"`connection_id` INT(11) DEFAULT 0 NOT NULL,",
	"`keepalive` INT(11) DEFAULT 0 NOT NULL,",
	"`partition` INT(11) DEFAULT 0 NOT NULL,",
}, "\n    ")

// PostgresSchema returns the DDL of Kamailio's utils/kamctl/postgres
// usrloc-create.sql and standard-create.sql (table version 9) for
// PostgreSQL, the version table only where missing, with t as the
// location table's name (a validated identifier).
func PostgresSchema(t string) []string {
	return locationSchema(sqlwatch.QuotePostgres, "SERIAL", t, false)
}

// Columns are the columns regbridge reads from Kamailio's location table.
func Columns() []string { return append([]string(nil), columns[:]...) }
