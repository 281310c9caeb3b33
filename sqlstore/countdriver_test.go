package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"strings"
	"sync"
	"sync/atomic"
)

// stmtCounter counts what a Store sends to the database through a wrapped
// driver: statements (by their first words), transaction starts and ends.
type stmtCounter struct {
	stmts, begins, commits, rollbacks atomic.Int64

	mu    sync.Mutex
	kinds map[string]int64
	log   []string // when logging
	keep  bool
}

func (c *stmtCounter) reset() {
	c.stmts.Store(0)
	c.begins.Store(0)
	c.commits.Store(0)
	c.rollbacks.Store(0)
	c.mu.Lock()
	c.kinds, c.log = nil, nil
	c.mu.Unlock()
}

func (c *stmtCounter) statement(query string) {
	q := strings.TrimSpace(query)
	switch u := strings.ToUpper(q); {
	case strings.HasPrefix(u, "BEGIN"), strings.HasPrefix(u, "START TRANSACTION"):
		c.begins.Add(1)
		return
	case u == "COMMIT":
		c.commits.Add(1)
		return
	case u == "ROLLBACK":
		c.rollbacks.Add(1)
		return
	}
	c.stmts.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kinds == nil {
		c.kinds = make(map[string]int64)
	}
	word, _, _ := strings.Cut(q, " ")
	c.kinds[strings.ToUpper(word)]++
	if c.keep {
		c.log = append(c.log, q)
	}
}

// snapshot returns the statements and transactions counted so far.
func (c *stmtCounter) snapshot() (stmts, txs int64) {
	return c.stmts.Load(), c.begins.Load()
}

// countingConnector wraps the connector of a driver.
type countingConnector struct {
	base driver.Connector
	c    *stmtCounter
}

func (k countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := k.base.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, c: k.c}, nil
}

func (k countingConnector) Driver() driver.Driver { return k.base.Driver() }

// countingConn forwards everything to the driver's connection, counting.
type countingConn struct {
	driver.Conn
	c *stmtCounter
}

func (cc *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	cc.c.begins.Add(1)
	tx, err := cc.Conn.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return countingTx{tx, cc.c}, nil
}

func (cc *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	res, err := cc.Conn.(driver.ExecerContext).ExecContext(ctx, query, args)
	if err != driver.ErrSkip { // else database/sql prepares it: counted then
		cc.c.statement(query)
	}
	return res, err
}

func (cc *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	rows, err := cc.Conn.(driver.QueryerContext).QueryContext(ctx, query, args)
	if err != driver.ErrSkip {
		cc.c.statement(query)
	}
	return rows, err
}

func (cc *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := cc.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	return countingStmt{st, cc.c, query}, nil
}

func (cc *countingConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := cc.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (cc *countingConn) ResetSession(ctx context.Context) error {
	if r, ok := cc.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (cc *countingConn) IsValid() bool {
	if v, ok := cc.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

type countingTx struct {
	driver.Tx
	c *stmtCounter
}

func (t countingTx) Commit() error   { t.c.commits.Add(1); return t.Tx.Commit() }
func (t countingTx) Rollback() error { t.c.rollbacks.Add(1); return t.Tx.Rollback() }

// countingStmt counts prepared statements when they run (the mysql driver
// prepares unless interpolateParams is set).
type countingStmt struct {
	driver.Stmt
	c     *stmtCounter
	query string
}

func (s countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.c.statement(s.query)
	return s.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (s countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.c.statement(s.query)
	return s.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
}

func (s countingStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

// countingPool opens a pool to the test database whose statements c
// counts.
func (db *testDB) countingPool(c *stmtCounter) *sql.DB {
	db.t.Helper()
	probe, err := sql.Open(db.driver(), db.dsn)
	if err != nil {
		db.t.Fatal(err)
	}
	defer probe.Close()
	var base driver.Connector
	if dc, ok := probe.Driver().(driver.DriverContext); ok {
		if base, err = dc.OpenConnector(db.dsn); err != nil {
			db.t.Fatal(err)
		}
	} else {
		base = dsnConnector{probe.Driver(), db.dsn}
	}
	p := sql.OpenDB(countingConnector{base, c})
	p.SetMaxOpenConns(8)
	p.SetMaxIdleConns(8)
	if db.first == nil {
		db.first = p
		if db.cleanup {
			db.t.Cleanup(db.dropTables)
		}
	}
	db.t.Cleanup(func() { p.Close() })
	return p
}

type dsnConnector struct {
	d   driver.Driver
	dsn string
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.d }
