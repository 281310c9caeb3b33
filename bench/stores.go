package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/go-sql-driver/mysql" // driver "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // driver "pgx"
	_ "modernc.org/sqlite"             // driver "sqlite"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/sqlstore"
)

// The stores, by the names used in flags and tables.
const (
	stMem      = "memstore"
	stSQLite   = "sqlite"
	stPostgres = "postgres"
	stMySQL    = "mysql"
)

var storeTitles = map[string]string{
	stMem:      "memstore",
	stSQLite:   "SQLite (OpenSQLite)",
	stPostgres: "PostgreSQL (sqlstore, pgx stdlib)",
	stMySQL:    "MariaDB (sqlstore, go-sql-driver)",
}

func isSQL(name string) bool { return name != stMem }

// Pool sizing as sqlstore's New doc and ExampleNew show it:
// PoolSize(Volumes.Concurrency + Linking.Concurrency + hook workers) plus
// the connections the host's own code takes (here: its concurrent
// ApplyVolumes callers), open and idle alike.
func poolSize(concurrency, callers int) int {
	return sqlstore.PoolSize(concurrency+mlmsoft.LinkConcurrencyDefault+mlmsoft.HookConcurrencyDefault) + callers
}

// env holds what the stores are opened with.
type env struct {
	pgDSN, myDSN string
	tmp          string
	concurrency  int
	callers      int
	seq          atomic.Int64
}

// storeHandle is an opened, migrated, empty store.
type storeHandle struct {
	name   string
	store  mlmsoft.Store
	sql    *sqlstore.Store // nil for memstore
	db     *sql.DB
	prefix string
	close  func()
}

func (e *env) available(name string) (bool, string) {
	switch name {
	case stPostgres:
		if e.pgDSN == "" {
			return false, "MLMSOFT_TEST_POSTGRES_DSN is not set"
		}
	case stMySQL:
		if e.myDSN == "" {
			return false, "MLMSOFT_TEST_MYSQL_DSN is not set"
		}
	}
	return true, ""
}

// mysqlDSN adds interpolateParams=true, which sqlstore's MySQL doc
// recommends (it saves a round trip per statement), unless the DSN says.
func mysqlDSN(dsn string) string {
	if strings.Contains(dsn, "interpolateParams=") {
		return dsn
	}
	if strings.Contains(dsn, "?") {
		return dsn + "&interpolateParams=true"
	}
	return dsn + "?interpolateParams=true"
}

// open opens a fresh store of kind name: memstore.New, OpenSQLite on a new
// file, or sqlstore.New with a table prefix of its own over a pool sized
// as documented, migrated. close drops its tables (or file).
func (e *env) open(ctx context.Context, name string) (*storeHandle, error) {
	n := e.seq.Add(1)
	switch name {
	case stMem:
		return &storeHandle{name: name, store: memstore.New(), close: func() {}}, nil
	case stSQLite:
		path := filepath.Join(e.tmp, fmt.Sprintf("bench-%d.db", n))
		s, err := sqlstore.OpenSQLite(ctx, path)
		if err != nil {
			return nil, err
		}
		return &storeHandle{name: name, store: s, sql: s, db: s.DB(), prefix: s.TablePrefix(), close: func() {
			s.Close()
			for _, suffix := range []string{"", "-wal", "-shm"} {
				os.Remove(path + suffix)
			}
		}}, nil
	}
	var (
		driver, dsn string
		dialect     sqlstore.Dialect
	)
	switch name {
	case stPostgres:
		driver, dsn, dialect = "pgx", e.pgDSN, sqlstore.Postgres{}
	case stMySQL:
		driver, dsn, dialect = "mysql", mysqlDSN(e.myDSN), sqlstore.MySQL{}
	default:
		return nil, fmt.Errorf("unknown store %q", name)
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	size := poolSize(e.concurrency, e.callers)
	db.SetMaxOpenConns(size)
	db.SetMaxIdleConns(size)
	prefix := fmt.Sprintf("mlmbench_%d_%d_", os.Getpid()%100000, n)
	s, err := sqlstore.New(db, dialect, sqlstore.Config{TablePrefix: prefix})
	if err != nil {
		db.Close()
		return nil, err
	}
	if err := s.Migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate %s: %w", name, err)
	}
	h := &storeHandle{name: name, store: s, sql: s, db: db, prefix: prefix}
	h.close = func() {
		dropTables(context.Background(), db, name, prefix)
		db.Close()
	}
	return h, nil
}

// dropTables drops every table whose name starts with prefix.
func dropTables(ctx context.Context, db *sql.DB, name, prefix string) {
	var q string
	switch name {
	case stPostgres:
		q = `SELECT tablename FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE $1`
	case stMySQL:
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?`
	default:
		return
	}
	rows, err := db.QueryContext(ctx, q, strings.ReplaceAll(prefix, "_", `\_`)+"%")
	if err != nil {
		return
	}
	var tables []string
	for rows.Next() {
		var t string
		if rows.Scan(&t) == nil {
			tables = append(tables, t)
		}
	}
	rows.Close()
	if len(tables) == 0 {
		return
	}
	switch name {
	case stPostgres:
		_, _ = db.ExecContext(ctx, "DROP TABLE IF EXISTS "+strings.Join(tables, ", ")+" CASCADE")
	case stMySQL:
		_, _ = db.ExecContext(ctx, "SET FOREIGN_KEY_CHECKS = 0")
		_, _ = db.ExecContext(ctx, "DROP TABLE IF EXISTS "+strings.Join(tables, ", "))
	}
}

// dropStale drops the tables earlier runs of the bench left behind (a run
// that was killed).
func (e *env) dropStale(ctx context.Context) {
	for _, name := range []string{stPostgres, stMySQL} {
		if ok, _ := e.available(name); !ok {
			continue
		}
		driver, dsn := "pgx", e.pgDSN
		if name == stMySQL {
			driver, dsn = "mysql", mysqlDSN(e.myDSN)
		}
		db, err := sql.Open(driver, dsn)
		if err != nil {
			continue
		}
		db.SetMaxOpenConns(1)
		dropTables(ctx, db, name, "mlmbench_")
		db.Close()
	}
}

// link stores linked links for users 0..n-1 with the fake's account ids, as
// the link worker leaves them once user/create was answered.
func link(ctx context.Context, s mlmsoft.Store, accounts []int64, from, n int) error {
	now := time.Now()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		next     atomic.Int64
	)
	next.Store(int64(from))
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= from+n {
					return
				}
				_, err := s.CreateLink(ctx, mlmsoft.Link{
					UserID: userID(i), Email: userEmail(i), State: mlmsoft.LinkLinked,
					AccountID: accounts[i], MLMUserID: accounts[i] - 600000, LinkedVia: mlmsoft.LinkedViaCreate,
					CreatedAt: now, UpdatedAt: now, LinkedAt: now,
				})
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// linkedPlugin opens store name with the first len(accounts) users linked
// to accounts and builds a plugin on it against the fake at url, started
// when start. release shuts the plugin down (if started) and closes the
// store.
func (e *env) linkedPlugin(ctx context.Context, name, url string, accounts []int64, concurrency int, start bool) (p *mlmsoft.Plugin, release func(), err error) {
	h, err := e.open(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if err := link(ctx, h.store, accounts, 0, len(accounts)); err != nil {
		h.close()
		return nil, nil, err
	}
	if p, err = newPlugin(h.store, url, concurrency, 0); err == nil && start {
		err = p.Start(ctx)
	}
	if err != nil {
		h.close()
		return nil, nil, err
	}
	if !start {
		return p, h.close, nil
	}
	return p, func() { shutdown(p); h.close() }, nil
}
