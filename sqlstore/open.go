package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/mlmsoft-go/mlmsoft"
)

// SQLiteBusyTimeoutMillis is how long (in milliseconds) a connection opened
// by OpenSQLite waits for another process's write lock before failing with
// SQLITE_BUSY.
const SQLiteBusyTimeoutMillis = 10000

// SQLiteMaxOpenConns caps the connections OpenSQLite keeps to a database
// file: in WAL mode readers work alongside the one writer, and more
// connections would only wait for the write lock.
const SQLiteMaxOpenConns = 4

// OpenSQLite opens (creating it if needed) the SQLite database file at path,
// migrates it and returns a Store with the default Config that owns the
// database: Close closes it. It needs the driver modernc.org/sqlite, which
// the host registers by importing it:
//
//	import _ "modernc.org/sqlite"
//
// Every connection gets busy_timeout (SQLiteBusyTimeoutMillis), foreign_keys
// on and synchronous FULL (a committed change survives a power loss, as an
// outbox must), and the file is put in WAL mode, so readers never wait for
// the writer. Writes are serialised as described on SQLite. The DSN also
// sets modernc.org/sqlite's _txlock=immediate, so that a transaction the
// host begins on Store.DB() starts with BEGIN IMMEDIATE, as the TxStore
// methods (CreateLinkTx, EnqueueVolumesTx) need. The pool is sized here
// (SQLiteMaxOpenConns): PoolSize does not apply.
// The path ":memory:" gives a private in-memory database, for tests and
// demos; it is held on one connection, since each SQLite connection to
// ":memory:" would see a database of its own (so, while a host transaction
// is open, every other use of the Store waits for it). path is a file name, not a
// DSN: it must not be empty nor hold '?'. Errors wrap
// mlmsoft.ErrInvalidConfig for a bad path, or the driver's error.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
	if path == "" || strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("%w: sqlstore: open SQLite: path must be a file name without '?'", mlmsoft.ErrInvalidConfig)
	}
	memory := path == ":memory:"
	dsn := fmt.Sprintf("%s?_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate",
		path, SQLiteBusyTimeoutMillis)
	if !memory {
		dsn += "&_pragma=journal_mode(WAL)"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: open SQLite (import _ \"modernc.org/sqlite\" to register the driver): %w", err)
	}
	if memory {
		db.SetMaxOpenConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
	} else {
		db.SetMaxOpenConns(SQLiteMaxOpenConns)
		db.SetMaxIdleConns(SQLiteMaxOpenConns)
	}
	s, err := New(db, SQLite{}, Config{})
	if err != nil {
		db.Close()
		return nil, err
	}
	s.owned = true
	if err := s.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}
