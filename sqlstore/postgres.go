package sqlstore

import "time"

// Postgres is the Dialect of PostgreSQL 10 or later, made for the pgx driver
// (github.com/jackc/pgx/v5/stdlib, driver name "pgx"). Keys are TEXT COLLATE
// "C" so that they compare byte by byte, times are TIMESTAMPTZ (microsecond
// precision), claims lock with FOR NO KEY UPDATE SKIP LOCKED, and Migrate
// holds a transaction-scoped advisory lock while it runs every pending
// migration in one transaction.
//
// Writes that need no answer from the database are sent as one statement
// (data-modifying WITH clauses), so that a delivered volume change costs
// few round trips. Enqueues and due links are signalled with NOTIFY, which
// Store.ListenForWork waits for. The zero value is ready to use.
type Postgres struct{}

// Name returns "postgres".
func (Postgres) Name() string { return "postgres" }

func (Postgres) bind(q string) string               { return bindDollar(q) }
func (Postgres) timeValue(t time.Time) (any, error) { return t, nil }
func (Postgres) wallClockUTC() bool                 { return false }
func (Postgres) nullsFirst() string                 { return " NULLS FIRST" }

// NO KEY UPDATE: the lock writers take, which does not block the foreign
// key checks of inserts into volume_changes.
func (Postgres) forUpdate() string  { return " FOR NO KEY UPDATE" }
func (Postgres) skipLocked() string { return " FOR NO KEY UPDATE SKIP LOCKED" }
func (Postgres) returning() bool    { return true }

func (Postgres) keyEq(col string) string { return col + " = ?" }
func (Postgres) keyArgs() int            { return 1 }

// ARRAY(subquery) is run once, before the UPDATE reads a row: an IN list
// could be planned as a join that runs the locking subquery again.
func (Postgres) picked(col, subquery string) string { return col + " = ANY(ARRAY(" + subquery + "))" }
func (Postgres) writableCTE() bool                  { return true }

func (Postgres) upsertUsers(n int) string {
	return `INSERT INTO {p}volume_users AS u (user_id, last_seq, lease_owner) VALUES ` + valuesRows(n, "?, ?, ''") + `
ON CONFLICT (user_id) DO UPDATE SET last_seq = u.last_seq + EXCLUDED.last_seq
RETURNING u.user_id, u.last_seq, u.head_id`
}

func (Postgres) upsertCounts(n int) string {
	return `INSERT INTO {p}counts AS c (kind, state, shard, n) VALUES ` + valuesRows(n, "?, ?, ?, ?") + `
ON CONFLICT (kind, state, shard) DO UPDATE SET n = c.n + EXCLUDED.n`
}

func (Postgres) ignoreDuplicate() string { return " ON CONFLICT (id) DO NOTHING" }

// The column is COLLATE "C": equality is byte equality.
func (Postgres) prefixOf(col string) string {
	return "left(" + col + ", char_length(?::text)) = ?::text"
}

func (Postgres) notify() string { return "SELECT pg_notify(?, '')" }

func (Postgres) uniqueViolation(err error) bool { return sqlState(err) == "23505" }

func (Postgres) retryable(err error) bool {
	s := sqlState(err)
	return s == "40001" || s == "40P01" // serialization_failure, deadlock_detected
}

func (Postgres) txMode() txMode { return txStandard }

func (Postgres) migrationsTable() string {
	return `CREATE TABLE IF NOT EXISTS {p}schema_migrations (
	version BIGINT NOT NULL PRIMARY KEY,
	name TEXT NOT NULL,
	applied_at TIMESTAMPTZ NOT NULL
)`
}

// Advisory locks are scoped to the current database; the key is a hash of
// the table prefix, so stores with different prefixes migrate in parallel.
func (Postgres) migrationLock() string              { return "SELECT pg_advisory_xact_lock(?)" }
func (Postgres) migrationUnlock() string            { return "" } // released at commit
func (Postgres) migrationLockArg(prefix string) any { return int64(fnv64("mlmsoft/migrate/" + prefix)) }
func (Postgres) ddlDone(error) bool                 { return false }
func (Postgres) migrationsDir() string              { return "migrations/postgres" }
