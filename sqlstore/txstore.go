package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mlmsoft-go/mlmsoft"
)

// The mlmsoft.TxStore methods write in the host's own transaction, so that
// a host's order and its volume changes, or its new user and the pending
// link, commit or roll back together.
//
// tx must be a transaction on the Store's database (begun on the *sql.DB
// given to New, or on another pool to the same database that sees the
// same tables); the Store cannot check it. Each method runs every
// statement on tx under a savepoint: on error its own statements are rolled
// back to the savepoint and tx stays usable for the host, which alone
// commits or rolls it back. What the methods write becomes visible to
// workers when tx commits, and is gone if it rolls back.
//
// Isolation: on PostgreSQL and MySQL, begin tx at READ COMMITTED
// (sql.TxOptions{Isolation: sql.LevelReadCommitted}; MySQL's default is
// REPEATABLE READ). EnqueueVolumesTx then finds an idempotency key another
// transaction committed meanwhile, as EnqueueVolumes does; under a stricter
// isolation it may fail instead (with the database's serialization error,
// or a unique violation). A deadlock or serialization failure is returned
// as it is: on MySQL it has rolled back the whole of tx, and the host
// should run its transaction again.
//
// On SQLite, tx must start with BEGIN IMMEDIATE, taking the write lock
// before it reads, or its first write may fail with SQLITE_BUSY when
// another connection wrote since it began: open the database with
// modernc.org/sqlite's _txlock=immediate DSN parameter (OpenSQLite does),
// so that db.BeginTx does. While tx is open it holds SQLite's only write
// lock: the Store's other writes wait for it (up to busy_timeout), so do
// not call them from the goroutine that holds tx.

// GetLinkTx is GetLink inside tx: it sees links created in tx. It reads
// only, so it takes no savepoint.
func (s *Store) GetLinkTx(ctx context.Context, tx *sql.Tx, userID string) (mlmsoft.Link, error) {
	if tx == nil {
		return mlmsoft.Link{}, errNilTx
	}
	return s.getLinkFrom(ctx, tx, userID)
}

// CreateLinkTx is CreateLink inside tx, under a savepoint (see the notes
// above GetLinkTx): a duplicate leaves tx as it was.
func (s *Store) CreateLinkTx(ctx context.Context, tx *sql.Tx, l mlmsoft.Link, events ...mlmsoft.Event) (mlmsoft.Link, error) {
	if tx == nil {
		return mlmsoft.Link{}, errNilTx
	}
	return s.createLink(ctx, tx, l, events)
}

// EnqueueVolumesTx is EnqueueVolumes inside tx, under a savepoint (see the
// notes above GetLinkTx), with the same idempotency: when another
// transaction commits one of the keys first, the insert's unique violation
// is rolled back to the savepoint and the keys are read again, so the
// stored change is returned rather than stored twice.
func (s *Store) EnqueueVolumesTx(ctx context.Context, tx *sql.Tx, changes []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	if tx == nil {
		return nil, errNilTx
	}
	return s.enqueueVolumes(ctx, tx, changes)
}

var errNilTx = fmt.Errorf("%w: sqlstore: tx is nil", mlmsoft.ErrInvalidInput)
