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
// statement is written to be re-run safely (CREATE TABLE IF NOT EXISTS with
// its indexes inline) should a previous run have stopped halfway.
//
// Keep the server's default strict sql_mode (STRICT_TRANS_TABLES): without
// it, a value longer than its column (255 characters for user ids and
// idempotency keys, 320 for emails) would be cut instead of refused. The
// zero value is ready to use.
type MySQL struct{}

// Name returns "mysql".
func (MySQL) Name() string { return "mysql" }

func (MySQL) bind(q string) string               { return bindQuestion(q) }
func (MySQL) timeValue(t time.Time) (any, error) { return t.Format(wallClockLayout), nil }
func (MySQL) wallClockUTC() bool                 { return true }
func (MySQL) nullsFirst() string                 { return "" } // NULLs sort first in MySQL
func (MySQL) forUpdate() string                  { return " FOR UPDATE" }

// skipLocked locks every table of the join: MariaDB has no FOR UPDATE OF.
func (MySQL) skipLocked(_ string) string { return " FOR UPDATE SKIP LOCKED" }

func (MySQL) seqUpsert() string {
	return `INSERT INTO {p}volume_users (user_id, last_seq, lease_owner, lease_until) VALUES (?, ?, '', NULL)
ON DUPLICATE KEY UPDATE last_seq = last_seq + ?`
}
func (MySQL) seqReturning() bool { return false }
func (MySQL) returningID() bool  { return false }

// MySQL server error numbers.
const (
	mysqlDupEntry = 1062
	mysqlDeadlock = 1213
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
func (MySQL) migrationsDir() string              { return "migrations/mysql" }
