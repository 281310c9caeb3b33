package sqlstore

import (
	"fmt"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// SQLite is the Dialect of SQLite 3.35 or later, made for the pure-Go driver
// modernc.org/sqlite (driver name "sqlite"). Times are stored as fixed-width
// UTC text with microseconds ("2006-01-02 15:04:05.000000") so that they
// compare correctly as text; years outside 0000-9999 are refused.
//
// SQLite has one writer at a time: every write transaction of a Store starts
// with BEGIN IMMEDIATE on a connection of its own, so it takes the write lock
// before reading and never fails upgrading a read lock, and the writers of
// one Store queue in-process before touching the database. Set a
// busy_timeout on every connection (OpenSQLite does) so that writers of other
// processes wait rather than fail. A host transaction given to the TxStore
// methods must have been begun IMMEDIATE too: with modernc.org/sqlite, put
// _txlock=immediate in the DSN (OpenSQLite does), so that db.BeginTx
// starts with BEGIN IMMEDIATE. The zero value is ready to use.
type SQLite struct{}

// Name returns "sqlite".
func (SQLite) Name() string { return "sqlite" }

func (SQLite) bind(q string) string { return bindQuestion(q) }

func (SQLite) timeValue(t time.Time) (any, error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return nil, fmt.Errorf("%w: time %s is outside years 0000-9999", mlmsoft.ErrInvalidInput, t)
	}
	return t.Format(wallClockLayout), nil
}

func (SQLite) wallClockUTC() bool { return true }
func (SQLite) nullsFirst() string { return "" } // NULLs sort first in SQLite
func (SQLite) forUpdate() string  { return "" } // BEGIN IMMEDIATE holds the only write lock
func (SQLite) skipLocked() string { return "" }
func (SQLite) returning() bool    { return true }

func (SQLite) keyEq(col string) string { return col + " = ?" }
func (SQLite) keyArgs() int            { return 1 }

func (SQLite) picked(col, subquery string) string { return col + " IN (" + subquery + ")" }
func (SQLite) writableCTE() bool                  { return false }

func (SQLite) upsertUsers(n int) string {
	return `INSERT INTO {p}volume_users (user_id, last_seq, lease_owner) VALUES ` + valuesRows(n, "?, ?, ''") + `
ON CONFLICT (user_id) DO UPDATE SET last_seq = last_seq + excluded.last_seq
RETURNING user_id, last_seq, head_id`
}

func (SQLite) upsertCounts(n int) string {
	return `INSERT INTO {p}counts (kind, state, shard, n) VALUES ` + valuesRows(n, "?, ?, ?, ?") + `
ON CONFLICT (kind, state, shard) DO UPDATE SET n = n + excluded.n`
}

func (SQLite) ignoreDuplicate() string { return " ON CONFLICT (id) DO NOTHING" }

// BLOBs compare byte by byte, and length and substr count bytes in them.
func (SQLite) prefixOf(col string) string {
	return "substr(CAST(" + col + " AS BLOB), 1, length(CAST(? AS BLOB))) = CAST(? AS BLOB)"
}

func (SQLite) notify() string { return "" }

// SQLite result codes (https://www.sqlite.org/rescode.html).
const (
	sqliteBusy             = 5
	sqliteLocked           = 6
	sqliteConstraintPK     = 1555
	sqliteConstraintUnique = 2067
)

func (SQLite) uniqueViolation(err error) bool {
	if code, ok := sqliteCode(err); ok {
		return code == sqliteConstraintUnique || code == sqliteConstraintPK
	}
	// Drivers without a Code method (mattn/go-sqlite3) say it in the text.
	return errorChain(err, func(e error) bool { return strings.Contains(e.Error(), "UNIQUE constraint failed") })
}

func (SQLite) retryable(err error) bool {
	if code, ok := sqliteCode(err); ok {
		return code&0xff == sqliteBusy || code&0xff == sqliteLocked
	}
	return errorChain(err, func(e error) bool {
		m := e.Error()
		return strings.Contains(m, "database is locked") || strings.Contains(m, "database table is locked")
	})
}

func (SQLite) txMode() txMode { return txImmediate }

func (SQLite) migrationsTable() string {
	return `CREATE TABLE IF NOT EXISTS {p}schema_migrations (
	version INTEGER NOT NULL PRIMARY KEY,
	name TEXT NOT NULL,
	applied_at TEXT NOT NULL
)`
}

func (SQLite) migrationLock() string         { return "" }
func (SQLite) migrationUnlock() string       { return "" }
func (SQLite) migrationLockArg(_ string) any { return nil }
func (SQLite) ddlDone(error) bool            { return false }
func (SQLite) migrationsDir() string         { return "migrations/sqlite" }
