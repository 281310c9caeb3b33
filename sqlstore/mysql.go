package sqlstore

import "time"

// MySQL is the Dialect of MySQL 8.0.1 or later and MariaDB 10.6 or later (the
// first versions with SKIP LOCKED), made for github.com/go-sql-driver/mysql
// (driver name "mysql"). Tables are InnoDB in utf8mb4 with a binary
// collation, so keys compare byte by byte; times are DATETIME(6) holding UTC
// wall clock, written as text, so the DSN's loc and parseTime do not matter.
// Claims lock with FOR UPDATE SKIP LOCKED. No DSN option is required;
// interpolateParams=true saves a round trip per statement.
//
// MySQL commits DDL implicitly, so Migrate runs each migration outside a
// transaction under the named lock GET_LOCK takes, and every migration
// statement can be run again should a previous run have stopped halfway
// (a statement failing because its column or index exists already, or is
// gone already, counts as done).
//
// utf8mb4_bin is a PAD SPACE collation: the unique indexes hold keys that
// differ only by trailing spaces ("u1" and "u1 ") to be the same, so such a
// user id, email, idempotency key or event id is refused as a duplicate (or,
// for a user's queue or an idempotency key, taken for the other). Lookups
// by user id and email compare the bytes.
//
// Keep the server's default strict sql_mode (STRICT_TRANS_TABLES): without
// it, a value longer than its column (255 characters for user ids, event ids
// and idempotency keys, 320 for emails, 32 for states) would be cut instead
// of refused. The zero value is ready to use.
type MySQL struct{}

// Name returns "mysql".
func (MySQL) Name() string { return "mysql" }

func (MySQL) bind(q string) string               { return bindQuestion(q) }
func (MySQL) timeValue(t time.Time) (any, error) { return t.Format(wallClockLayout), nil }
func (MySQL) wallClockUTC() bool                 { return true }
func (MySQL) nullsFirst() string                 { return "" } // NULLs sort first in MySQL
func (MySQL) forUpdate() string                  { return " FOR UPDATE" }
func (MySQL) skipLocked() string                 { return " FOR UPDATE SKIP LOCKED" }

// MariaDB has no UPDATE ... RETURNING, MySQL no RETURNING at all.
func (MySQL) returning() bool { return false }

// utf8mb4_bin pads with spaces: "a" = "a " holds. Lookups by key compare
// the bytes too (the index still finds the row).
func (MySQL) keyEq(col string) string {
	return col + " = ? AND CAST(" + col + " AS BINARY) = CAST(? AS BINARY)"
}
func (MySQL) keyArgs() int { return 2 }

// MySQL cannot update a table it selects from in a subquery: claims pick
// (and lock) rows first, then update them by key.
func (MySQL) picked(col, subquery string) string { return col + " IN (" + subquery + ")" }
func (MySQL) writableCTE() bool                  { return false }

func (MySQL) upsertUsers(n int) string {
	return `INSERT INTO {p}volume_users (user_id, last_seq, lease_owner) VALUES ` + valuesRows(n, "?, ?, ''") + `
ON DUPLICATE KEY UPDATE last_seq = last_seq + VALUES(last_seq)`
}

func (MySQL) upsertCounts(n int) string {
	return `INSERT INTO {p}counts (kind, state, shard, n) VALUES ` + valuesRows(n, "?, ?, ?, ?") + `
ON DUPLICATE KEY UPDATE n = n + VALUES(n)`
}

func (MySQL) ignoreDuplicate() string { return " ON DUPLICATE KEY UPDATE id = id" }

// Binary strings compare byte by byte, without the padding rules of the
// column's collation.
func (MySQL) prefixOf(col string) string {
	return "LEFT(CAST(" + col + " AS BINARY), LENGTH(?)) = CAST(? AS BINARY)"
}

func (MySQL) notify() string { return "" }

// MySQL server error numbers.
const (
	mysqlTableExists  = 1050
	mysqlDupFieldName = 1060
	mysqlDupKeyName   = 1061
	mysqlDupEntry     = 1062
	mysqlCantDropKey  = 1091
	mysqlDeadlock     = 1213
)

func (MySQL) uniqueViolation(err error) bool {
	n, ok := mysqlNumber(err)
	return ok && n == mysqlDupEntry
}

func (MySQL) retryable(err error) bool {
	n, ok := mysqlNumber(err)
	return ok && n == mysqlDeadlock
}

func (MySQL) txMode() txMode { return txStandardSessionLockedDDL }

func (MySQL) migrationsTable() string {
	return `CREATE TABLE IF NOT EXISTS {p}schema_migrations (
	version BIGINT NOT NULL PRIMARY KEY,
	name VARCHAR(255) NOT NULL,
	applied_at DATETIME(6) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin`
}

// GET_LOCK names are server-wide and at most 64 characters: the name hashes
// the current database and the table prefix.
func (MySQL) migrationLock() string {
	return "SELECT GET_LOCK(CONCAT('mlmsoft:', SHA1(CONCAT(COALESCE(DATABASE(), ''), '/', ?))), 1)"
}
func (MySQL) migrationUnlock() string {
	return "SELECT RELEASE_LOCK(CONCAT('mlmsoft:', SHA1(CONCAT(COALESCE(DATABASE(), ''), '/', ?))))"
}
func (MySQL) migrationLockArg(prefix string) any { return prefix }

func (MySQL) ddlDone(err error) bool {
	n, ok := mysqlNumber(err)
	return ok && (n == mysqlTableExists || n == mysqlDupFieldName || n == mysqlDupKeyName || n == mysqlCantDropKey)
}

func (MySQL) migrationsDir() string { return "migrations/mysql" }
