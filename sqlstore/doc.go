// Package sqlstore keeps the plugin's links, volume outbox and hook events
// in a SQL database through database/sql: SQLite (the embedded default),
// PostgreSQL, or MySQL/MariaDB. It implements mlmsoft.Store and
// mlmsoft.TxStore on every dialect, and mlmsoft.WorkListener on PostgreSQL,
// and passes storetest.Run and storetest.RunTx.
//
// The package imports no driver: the host opens a *sql.DB with the driver of
// its choice, sizes its pool (see New and PoolSize), picks the matching
// Dialect and calls Migrate once at start-up (any number of replicas may do
// so at once):
//
//	import _ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
//
//	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
//	...
//	n := sqlstore.PoolSize(workers)
//	db.SetMaxOpenConns(n)
//	db.SetMaxIdleConns(n)
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
// Upgrading from the first release: migration 0002 moves each user's queue
// head into volume_users, and only this version keeps it there. Stop every
// process of the old version before the first new one migrates; old and
// new processes must not share the database.
//
// # Tables
//
// Every table and index name starts with Config.TablePrefix (default
// "mlmsoft_"):
//
//   - links: one row per host user, with its lease; indexed by email
//     (unique) and by next_attempt_at, which ClaimLinks reads.
//   - volume_changes: the outbox, one row per change. Only columns that
//     never change are indexed: id, (user_id, seq) (unique), the
//     idempotency key (unique) and created_at (PurgeVolumes), so that the
//     state updates of delivery touch no index (on PostgreSQL they are HOT
//     updates, with room left in each page for them).
//   - volume_users: one row per user with a volume queue: the last Seq
//     assigned, the lease on the queue, and the queue's head (the lowest-Seq
//     change not in a final state: head_id, head_seq, head_created_at, and
//     head_due, its NextAttemptAt, NULL when there is no head or it waits
//     for a person). Every write that can move a head updates it in the
//     same transaction; ClaimVolumes reads only this table, through an
//     index on head_due, so claims cost the same however many changes are
//     stored, and Counts finds the oldest open change through an index on
//     head_created_at.
//   - events: the hook events owed to the host, written in the same
//     transaction as the write that owes them and deleted once delivered;
//     indexed by due time.
//   - counts: counters of links and changes per state, each spread over
//     16 rows (shards, by a hash of the user id, or of the change id) so
//     that concurrent writers rarely share one; every write adjusts them
//     in its transaction (in a fixed row order, so they never deadlock)
//     and Counts sums them. One more counter, of final changes without an
//     UpdatedAt, tells PurgeVolumes when it must look for those, which the
//     created_at index cannot find.
//   - schema_migrations: the applied migration versions.
//
// Amounts are stored as their exact decimal text; times in UTC with
// microsecond precision, the zero time as NULL; SealedPassword and event
// payloads as BLOBs (bytea in PostgreSQL), nil as NULL.
//
// # Many replicas
//
// All workers of all replicas may share one PostgreSQL or MySQL database.
// The claims lock the rows they pick with FOR UPDATE SKIP LOCKED, so
// concurrent claims skip each other's rows instead of waiting, and the
// leases they write live in the database. Every write to a user's volume
// changes (EnqueueVolumes, UpdateVolume, and UpdateLink waking them) locks
// that user's volume_users row first, so enqueues for one user take Seq
// numbers in commit order, a head is always moved by one writer at a time,
// and a claim skips a user while it is being written to. Transactions run
// at READ COMMITTED and are retried a few times after a deadlock or
// serialization failure.
//
// # Round trips
//
// A worker's UpdateVolume that delivers a change and, with
// VolumeUpdate.Send, marks the user's next change sending is one
// transaction that locks the user, writes the change, finds the next one
// and marks it, and writes the head, lease, counters and events (SQLite: 6
// statements, MySQL: 5). On PostgreSQL it is a single statement without a
// transaction of its own (see UpdateVolume), and so are the other writes of
// a single statement (CreateLink, the claims, UpdateEvent); a transaction's
// writes whose results are not needed travel as one statement of
// data-modifying WITH clauses.
//
// SQLite has a single writer: see SQLite for how the Store queues its writes.
package sqlstore
