package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// TablePrefixDefault is the table prefix used when Config.TablePrefix is
// empty: the tables are mlmsoft_links, mlmsoft_volume_users,
// mlmsoft_volume_changes, mlmsoft_events, mlmsoft_counts and
// mlmsoft_schema_migrations.
const TablePrefixDefault = "mlmsoft_"

// maxTablePrefix keeps the longest derived name (an index name) within the
// identifier limits of PostgreSQL (63) and MySQL (64).
const maxTablePrefix = 32

// Config tunes a Store. The zero value is ready to use.
type Config struct {
	// TablePrefix is put before every table and index name (and, on
	// PostgreSQL, the name of the NOTIFY channel). It must start with a
	// lower-case ASCII letter or an underscore, hold only lower-case ASCII
	// letters, digits and underscores, and be at most 32 characters long.
	// Zero: TablePrefixDefault. Stores with different prefixes share a
	// database without seeing each other.
	TablePrefix string
}

func (c Config) validate() error {
	p := c.TablePrefix
	if len(p) > maxTablePrefix {
		return fmt.Errorf("%w: sqlstore: Config.TablePrefix is longer than %d characters", mlmsoft.ErrInvalidConfig, maxTablePrefix)
	}
	for i := 0; i < len(p); i++ {
		ch := p[i]
		ok := ch == '_' || ch >= 'a' && ch <= 'z' || i > 0 && ch >= '0' && ch <= '9'
		if !ok {
			return fmt.Errorf("%w: sqlstore: Config.TablePrefix %q must match [a-z_][a-z0-9_]*", mlmsoft.ErrInvalidConfig, p)
		}
	}
	return nil
}

// Store is an mlmsoft.Store kept in a SQL database through database/sql. It
// is safe for concurrent use by many goroutines, and by many processes
// sharing one database: claims lock rows with FOR UPDATE SKIP LOCKED
// (PostgreSQL, MySQL) or run under SQLite's single write lock, and leases are
// kept in the database. It also implements mlmsoft.TxStore on every dialect,
// and mlmsoft.WorkListener (ListenForWork) on PostgreSQL.
//
// Make one with New (or OpenSQLite) and call Migrate before using it; the
// zero Store is not usable. Every method returns the errors mlmsoft.Store
// documents, wrapping the driver's error with what was being done otherwise.
type Store struct {
	db       *sql.DB
	d        Dialect
	prefix   string
	channel  string // the NOTIFY channel (PostgreSQL)
	q        queries
	writeSem chan struct{} // SQLite: the in-process queue of writers
	owned    bool          // Close closes db

	// declined counts the deliveries deliverInOne left to the general
	// way (for tests).
	declined atomic.Int64
}

var (
	_ mlmsoft.Store        = (*Store)(nil)
	_ mlmsoft.TxStore      = (*Store)(nil)
	_ mlmsoft.WorkListener = (*Store)(nil)
)

// New returns a Store over db, which must be opened with a driver of dialect
// d; it does not touch the database (call Migrate). The host opens db with the
// driver of its choice and keeps owning it: Close does not close it. New
// returns an error wrapping mlmsoft.ErrInvalidConfig when db or d is nil or
// cfg is invalid.
//
// # Connection pool
//
// Every worker of the plugin holds a connection while it writes, and on
// PostgreSQL ListenForWork holds one for as long as it listens. Size db's
// pool for that: at least PoolSize(workers) connections, where workers is
// Volumes.Concurrency + Linking.Concurrency + the hook workers, both open
// and idle, plus what the host's own code uses of the same *sql.DB:
//
//	n := sqlstore.PoolSize(volumes + linking + hooks) + appConns
//	db.SetMaxOpenConns(n) // or leave it unlimited
//	db.SetMaxIdleConns(n)
//
// database/sql keeps only 2 idle connections by default: with more
// concurrent workers than that, connections are closed as soon as they are
// put back and opened again at the next write, which on PostgreSQL means a
// new server process (and TLS handshake) per write. OpenSQLite sizes its own
// pool.
func New(db *sql.DB, d Dialect, cfg Config) (*Store, error) {
	if db == nil {
		return nil, fmt.Errorf("%w: sqlstore: db is nil", mlmsoft.ErrInvalidConfig)
	}
	if d == nil {
		return nil, fmt.Errorf("%w: sqlstore: dialect is nil", mlmsoft.ErrInvalidConfig)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Store{db: db, d: d, prefix: cmp.Or(cfg.TablePrefix, TablePrefixDefault)}
	s.channel = s.prefix + "work"
	if d.txMode() == txImmediate {
		s.writeSem = make(chan struct{}, 1)
	}
	s.q = buildQueries(s)
	return s, nil
}

// PoolSize returns how many connections a Store needs, open and idle, to
// serve workers concurrent workers (the plugin's volume, linking and hook
// workers together) without waiting for a connection or reconnecting: one
// per worker, one for ListenForWork, and a few for claims, webhook and
// check-auth handlers and Stats. Add the connections the host's own code
// takes from the same pool. See New.
func PoolSize(workers int) int { return max(workers, 0) + poolHeadroom }

// poolHeadroom is what PoolSize adds to the workers.
const poolHeadroom = 5

// DB returns the database the Store uses.
func (s *Store) DB() *sql.DB { return s.db }

// Dialect returns the Store's dialect.
func (s *Store) Dialect() Dialect { return s.d }

// TablePrefix returns the prefix of the Store's tables.
func (s *Store) TablePrefix() string { return s.prefix }

// Close closes the database if the Store opened it (OpenSQLite); a database
// given to New is left open for its owner. Close is safe to call more than
// once; the Store must not be used afterwards.
func (s *Store) Close() error {
	if !s.owned {
		return nil
	}
	return s.db.Close()
}

// sql returns query with the table prefix filled in and the placeholders of
// the dialect. Only the prefix, validated by Config.validate, is ever put in
// SQL text; values always travel as arguments.
func (s *Store) sql(query string) string {
	return s.d.bind(strings.ReplaceAll(query, "{p}", s.prefix))
}

// querier is what a transaction, a dedicated connection and the pool offer.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// maxTxAttempts bounds how often a transaction is run again after a
// transient failure (deadlock, serialization failure, busy SQLite file).
const maxTxAttempts = 6

// inTx runs fn in a write transaction, running it again (from the start)
// after a transient failure. fn must not have effects outside the
// transaction, and must only use q (never s.db) while it runs.
func (s *Store) inTx(ctx context.Context, fn func(q querier) error) error {
	return s.retry(ctx, func() error { return s.tryTx(ctx, fn) })
}

// inStatement runs fn, which makes one write of a single statement, on the
// pool without a transaction of its own (a statement is atomic), running it
// again after a transient failure. On SQLite it runs in a transaction like
// every write, so that it queues with the others.
func (s *Store) inStatement(ctx context.Context, fn func(q querier) error) error {
	if s.d.txMode() == txImmediate {
		return s.inTx(ctx, fn)
	}
	return s.retry(ctx, func() error { return fn(s.db) })
}

// retry runs try until it succeeds, fails for good or has run
// maxTxAttempts times.
func (s *Store) retry(ctx context.Context, try func() error) error {
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil || attempt >= maxTxAttempts || !s.d.retryable(err) || ctx.Err() != nil {
			return err
		}
		// Jittered exponential pause: 2ms, 4ms, ... up to 64ms.
		d := time.Duration(1<<attempt) * time.Millisecond
		d = d/2 + rand.N(d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

func (s *Store) tryTx(ctx context.Context, fn func(q querier) error) error {
	if s.d.txMode() == txImmediate {
		return s.immediateTx(ctx, fn)
	}
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// immediateTx runs fn between BEGIN IMMEDIATE and COMMIT on a connection of
// its own (database/sql cannot ask for an immediate transaction unless the
// DSN does). Writers of this Store first queue on writeSem, so they wait in
// Go rather than in SQLite's busy handler; other processes, and host
// transactions, are waited for by busy_timeout.
func (s *Store) immediateTx(ctx context.Context, fn func(q querier) error) (err error) {
	select {
	case s.writeSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.writeSem }()

	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("get connection: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	done := false
	defer func() {
		if done {
			return
		}
		// Roll back even when ctx is cancelled; a connection that cannot
		// roll back must not go back to the pool inside a transaction.
		if _, rerr := conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK"); rerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	if err := fn(conn); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	done = true
	return nil
}

// savepoint is the name of the savepoint the TxStore methods take in the
// host's transaction.
const savepoint = "mlmsoft_store"

// inSavepoint runs fn on the host's transaction tx under a savepoint: when
// fn fails, its statements are rolled back to the savepoint and tx stays
// usable; tx is never committed or rolled back. With again, a failure after
// which again(err) is true runs fn once more (up to maxTxAttempts times).
func (s *Store) inSavepoint(ctx context.Context, tx *sql.Tx, again func(error) bool, fn func(q querier) error) error {
	if tx == nil {
		return fmt.Errorf("%w: sqlstore: tx is nil", mlmsoft.ErrInvalidInput)
	}
	for attempt := 1; ; attempt++ {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT "+savepoint); err != nil {
			return fmt.Errorf("savepoint: %w", err)
		}
		err := fn(tx)
		if err == nil {
			if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT "+savepoint); err != nil {
				return fmt.Errorf("release savepoint: %w", err)
			}
			return nil
		}
		// Undo our statements, even when ctx is done, and drop the
		// savepoint.
		bg := context.WithoutCancel(ctx)
		if _, rerr := tx.ExecContext(bg, "ROLLBACK TO SAVEPOINT "+savepoint); rerr != nil {
			return errors.Join(err, fmt.Errorf("roll back to savepoint: %w", rerr))
		}
		if _, rerr := tx.ExecContext(bg, "RELEASE SAVEPOINT "+savepoint); rerr != nil {
			return errors.Join(err, fmt.Errorf("release savepoint: %w", rerr))
		}
		if again == nil || !again(err) || attempt >= maxTxAttempts || ctx.Err() != nil {
			return err
		}
	}
}

// stmt is one statement with its arguments. Its text holds {p} and ?
// placeholders: it is bound when run (see writes).
type stmt struct {
	sql  string
	args []any
}

// writes collects the blind writes of a transaction (statements whose
// result is not needed: inserting events, bumping counters, moving a head)
// so that they travel together: on PostgreSQL as one statement of
// data-modifying WITH clauses, elsewhere one after another.
type writes struct {
	stmts  []stmt
	counts counts
	notify bool // signal listeners at commit (PostgreSQL)
}

func (w *writes) add(query string, args ...any) { w.stmts = append(w.stmts, stmt{query, args}) }

// run sends the collected writes on q.
func (s *Store) run(ctx context.Context, q querier, w *writes) error {
	all := w.stmts
	if c, ok := s.countsStmt(w.counts); ok {
		all = append(all[:len(all):len(all)], c)
	}
	if !s.d.writableCTE() {
		for _, st := range all {
			if _, err := q.ExecContext(ctx, s.sql(st.sql), st.args...); err != nil {
				return err
			}
		}
		return nil
	}
	notify := w.notify && s.d.notify() != ""
	if len(all) == 0 && !notify {
		return nil
	}
	if len(all) == 1 && !notify {
		_, err := q.ExecContext(ctx, s.sql(all[0].sql), all[0].args...)
		return err
	}
	var (
		b    strings.Builder
		args []any
	)
	for i, st := range all {
		if i == 0 {
			b.WriteString("WITH ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "w%d AS (%s)", i, st.sql)
		args = append(args, st.args...)
	}
	if notify {
		b.WriteString(" " + s.d.notify())
		args = append(args, s.channel)
	} else {
		b.WriteString(" SELECT 1")
	}
	_, err := q.ExecContext(ctx, s.sql(b.String()), args...)
	return err
}

// timeArg is the argument for a time column: NULL for the zero time,
// otherwise the time in UTC truncated to microseconds in the dialect's form.
func (s *Store) timeArg(t time.Time) (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	return s.d.timeValue(t.UTC().Truncate(time.Microsecond))
}

// args builds an argument list, converting time.Time values with timeArg.
func (s *Store) args(vals ...any) ([]any, error) {
	out := make([]any, len(vals))
	for i, v := range vals {
		if t, ok := v.(time.Time); ok {
			a, err := s.timeArg(t)
			if err != nil {
				return nil, err
			}
			v = a
		}
		out[i] = v
	}
	return out, nil
}

// storedTime is t as the database gives it back: UTC, to the microsecond.
func storedTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// storedBytes is b as the database gives it back: nil stays nil, anything
// else is a copy.
func storedBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}

// timeCol scans a time column into *dst: NULL is the zero time, anything
// else a UTC time.
type timeCol struct {
	dst  *time.Time
	wall bool // the driver's time carries UTC wall clock in another location
}

func (s *Store) t(dst *time.Time) timeCol { return timeCol{dst: dst, wall: s.d.wallClockUTC()} }

// Scan implements sql.Scanner.
func (c timeCol) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.dst = time.Time{}
	case time.Time:
		if c.wall {
			x = time.Date(x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond(), time.UTC)
		}
		*c.dst = x.UTC()
	case string:
		return c.parse(x)
	case []byte:
		return c.parse(string(x))
	default:
		return fmt.Errorf("sqlstore: cannot read %T as a time", v)
	}
	return nil
}

func (c timeCol) parse(s string) error {
	for _, layout := range []string{"2006-01-02 15:04:05.999999999", time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			*c.dst = t.UTC()
			return nil
		}
	}
	return fmt.Errorf("sqlstore: cannot read %q as a time", s)
}

// bytesCol scans a BLOB column into *dst: NULL is nil, any other value a
// non-nil slice, even when empty (some drivers give a zero-length BLOB as
// a nil []byte).
type bytesCol struct{ dst *[]byte }

// Scan implements sql.Scanner.
func (c bytesCol) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*c.dst = nil
	case []byte:
		*c.dst = append(make([]byte, 0, len(x)), x...)
	case string:
		*c.dst = []byte(x)
	default:
		return fmt.Errorf("sqlstore: cannot read %T as bytes", v)
	}
	return nil
}

// nullInt64 scans a nullable integer column: NULL is 0.
type nullInt64 struct{ dst *int64 }

// Scan implements sql.Scanner.
func (c nullInt64) Scan(v any) error {
	var n sql.NullInt64
	if err := n.Scan(v); err != nil {
		return err
	}
	*c.dst = n.Int64
	return nil
}

// nullString maps "" to NULL, for the columns where "" means none and NULL
// keeps a unique index out of the way (email, idempotency key).
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nullBytes keeps a nil slice NULL.
func nullBytes(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// nullID maps the id 0 (none) to NULL.
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// marks returns n comma-separated placeholders.
func marks(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// anys converts a slice of values to arguments.
func anys[T any](vs []T) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = v
	}
	return out
}

// strs converts a slice of string-like values to string arguments.
func strs[T ~string](vs []T) []any {
	out := make([]any, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

func fnv64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// key returns the arguments of a keyEq condition for v.
func (s *Store) key(v string) []any {
	if s.d.keyArgs() == 2 {
		return []any{v, v}
	}
	return []any{v}
}

// errNoRows reports whether err says a query found nothing.
func errNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }

// scanner is a row or rows.
type scanner interface{ Scan(dest ...any) error }

// collect runs a query and scans every row with scan.
func collect[T any](ctx context.Context, q querier, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// inChunk bounds the placeholders of one IN list, well under every
// database's limit on the number of arguments.
const inChunk = 500
