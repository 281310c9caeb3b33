package sqlstore

import "time"

// Postgres is the Dialect of PostgreSQL 10 or later, made for the pgx driver
// (github.com/jackc/pgx/v5/stdlib, driver name "pgx"). Keys are TEXT COLLATE
// "C" so that they compare byte by byte, times are TIMESTAMPTZ (microsecond
// precision), claims lock with FOR UPDATE SKIP LOCKED, and Migrate holds a
// transaction-scoped advisory lock while it runs every pending migration in
// one transaction. The zero value is ready to use.
type Postgres struct{}

// Name returns "postgres".
func (Postgres) Name() string { return "postgres" }

func (Postgres) bind(q string) string               { return bindDollar(q) }
func (Postgres) timeValue(t time.Time) (any, error) { return t, nil }
func (Postgres) wallClockUTC() bool                 { return false }
func (Postgres) nullsFirst() string                 { return " NULLS FIRST" }
func (Postgres) forUpdate() string                  { return " FOR UPDATE" }
func (Postgres) skipLocked(alias string) string     { return " FOR UPDATE OF " + alias + " SKIP LOCKED" }

func (Postgres) seqUpsert() string {
	return `INSERT INTO {p}volume_users AS u (user_id, last_seq, lease_owner, lease_until) VALUES (?, ?, '', NULL)
ON CONFLICT (user_id) DO UPDATE SET last_seq = u.last_seq + EXCLUDED.last_seq
RETURNING last_seq`
}
func (Postgres) seqReturning() bool { return true }
func (Postgres) returningID() bool  { return true }

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
func (Postgres) migrationsDir() string              { return "migrations/postgres" }
