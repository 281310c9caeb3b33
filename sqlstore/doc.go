// Package sqlstore keeps the plugin's links and volume outbox in a SQL
// database through database/sql: SQLite (the embedded default), PostgreSQL,
// or MySQL/MariaDB. It implements mlmsoft.Store and passes storetest.Run.
//
// The package imports no driver: the host opens a *sql.DB with the driver of
// its choice, picks the matching Dialect and calls Migrate once at start-up
// (any number of replicas may do so at once):
//
//	import _ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
//
//	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
//	...
//	store, err := sqlstore.New(db, sqlstore.Postgres{}, sqlstore.Config{})
//	...
//	if err := store.Migrate(ctx); err != nil { ... }
//
// The drivers it is made for are modernc.org/sqlite ("sqlite", with
// SQLite{}), github.com/jackc/pgx/v5/stdlib ("pgx", with Postgres{}) and
// github.com/go-sql-driver/mysql ("mysql", with MySQL{}; MySQL 8.0.1+ or
// MariaDB 10.6+). For a single process, OpenSQLite opens, tunes and migrates
// a SQLite file in one call.
//
// # Tables
//
// Every table name starts with Config.TablePrefix (default "mlmsoft_"):
// links (one row per host user), volume_users (one row per user with a
// volume queue: its last assigned Seq and its lease), volume_changes (the
// outbox) and schema_migrations (the applied migration versions). Amounts are
// stored as their exact decimal text; times in UTC with microsecond
// precision, the zero time as NULL; SealedPassword as a BLOB (bytea in
// PostgreSQL), nil as NULL.
//
// # Many replicas
//
// All workers of all replicas may share one PostgreSQL or MySQL database.
// ClaimLinks and ClaimVolumes lock candidate rows with FOR UPDATE SKIP LOCKED
// inside a transaction, so concurrent claims skip each other's rows instead of
// waiting, and the leases they write live in the database. Every write to a
// user's volume changes (EnqueueVolumes, UpdateVolume, ClaimVolumes) locks
// that user's volume_users row first, so enqueues for one user take Seq
// numbers in commit order and a claim always sees the user's true head.
// Transactions run at READ COMMITTED and are retried a few times after a
// deadlock or serialization failure.
//
// SQLite has a single writer: see SQLite for how the Store queues its writes.
package sqlstore
