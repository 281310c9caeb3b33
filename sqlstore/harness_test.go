package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"
)

// The environment variables that enable the PostgreSQL and MySQL tests.
const (
	envPostgres = "MLMSOFT_TEST_POSTGRES_DSN"
	envMySQL    = "MLMSOFT_TEST_MYSQL_DSN"
)

// backend is one database the tests run against.
type backend struct {
	name    string
	dialect Dialect
	env     string // the variable holding the DSN; "" for SQLite
}

var backends = []backend{
	{name: "sqlite", dialect: SQLite{}},
	{name: "postgres", dialect: Postgres{}, env: envPostgres},
	{name: "mysql", dialect: MySQL{}, env: envMySQL},
}

// testDB is one isolated database for one test: a SQLite file of its own,
// or a unique table prefix in the shared PostgreSQL/MySQL database. Each
// pool is a new *sql.DB, as a separate process would have.
type testDB struct {
	t       testing.TB
	b       backend
	dsn     string
	path    string // SQLite: the database file
	prefix  string
	first   *sql.DB
	cleanup bool
}

// eachBackend runs f as a parallel subtest per backend, skipping those
// whose DSN variable is unset.
func eachBackend(t *testing.T, f func(t *testing.T, db *testDB)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f(t, newTestDB(t, b))
		})
	}
}

func newTestDB(t testing.TB, b backend) *testDB {
	t.Helper()
	db := &testDB{t: t, b: b, prefix: uniquePrefix()}
	if b.env == "" {
		db.path = filepath.Join(t.TempDir(), "mlmsoft.db")
		db.dsn = db.path + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_txlock=immediate"
		return db
	}
	db.dsn = os.Getenv(b.env)
	if db.dsn == "" {
		t.Skipf("%s tests skipped: set %s to a DSN of a scratch database (see .ci/services.sh)", b.name, b.env)
	}
	db.cleanup = true
	return db
}

func uniquePrefix() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return "t" + hex.EncodeToString(b[:]) + "_"
}

func (db *testDB) driver() string {
	switch db.b.dialect.(type) {
	case Postgres:
		return "pgx"
	case MySQL:
		return "mysql"
	default:
		return "sqlite"
	}
}

// pool opens a new connection pool to the test database.
func (db *testDB) pool() *sql.DB {
	db.t.Helper()
	p, err := sql.Open(db.driver(), db.dsn)
	if err != nil {
		db.t.Fatal(err)
	}
	p.SetMaxOpenConns(8)
	if db.first == nil {
		db.first = p
		if db.cleanup {
			// Cleanups run last-in first-out: this one runs after every
			// pool is closed, on a pool of its own.
			db.t.Cleanup(db.dropTables)
		}
	}
	db.t.Cleanup(func() { p.Close() })
	return p
}

func (db *testDB) dropTables() {
	p, err := sql.Open(db.driver(), db.dsn)
	if err != nil {
		db.t.Errorf("drop tables: %v", err)
		return
	}
	defer p.Close()
	for _, table := range []string{"events", "counts", "volume_changes", "volume_users", "links", "schema_migrations"} {
		if _, err := p.Exec("DROP TABLE IF EXISTS " + db.prefix + table); err != nil {
			db.t.Errorf("drop tables: %v", err)
		}
	}
}

// rawStore returns a Store on a new pool, not migrated.
func (db *testDB) rawStore() *Store {
	db.t.Helper()
	s, err := New(db.pool(), db.b.dialect, Config{TablePrefix: db.prefix})
	if err != nil {
		db.t.Fatal(err)
	}
	return s
}

// store returns a migrated Store on a new pool.
func (db *testDB) store() *Store {
	db.t.Helper()
	s := db.rawStore()
	if err := s.Migrate(testCtx(db.t)); err != nil {
		db.t.Fatal(err)
	}
	return s
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
