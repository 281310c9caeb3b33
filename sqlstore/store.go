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
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// TablePrefixDefault is the table prefix used when Config.TablePrefix is
// empty: the tables are mlmsoft_links, mlmsoft_volume_users,
// mlmsoft_volume_changes and mlmsoft_schema_migrations.
const TablePrefixDefault = "mlmsoft_"

// maxTablePrefix keeps the longest derived name (an index name) within the
// identifier limits of PostgreSQL (63) and MySQL (64).
const maxTablePrefix = 32

// Config tunes a Store. The zero value is ready to use.
type Config struct {
	// TablePrefix is put before every table and index name. It must start
	// with a lower-case ASCII letter or an underscore, hold only lower-case
	// ASCII letters, digits and underscores, and be at most 32 characters
	// long. Zero: TablePrefixDefault. Stores with different prefixes share a
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
// kept in the database.
//
// Make one with New (or OpenSQLite) and call Migrate before using it; the
// zero Store is not usable. Every
// method returns the errors mlmsoft.Store documents, wrapping the driver's
// error with what was being done otherwise.
type Store struct {
	db       *sql.DB
	d        Dialect
	prefix   string
	q        queries
	writeSem chan struct{} // SQLite: the in-process queue of writers
	owned    bool          // Close closes db
}

var _ mlmsoft.Store = (*Store)(nil)

// New returns a Store over db, which must be opened with a driver of dialect
// d; it does not touch the database (call Migrate). The host opens db with the
// driver of its choice and keeps owning it: Close does not close it. New
// returns an error wrapping mlmsoft.ErrInvalidConfig when db or d is nil or
// cfg is invalid.
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
	if d.txMode() == txImmediate {
		s.writeSem = make(chan struct{}, 1)
	}
	s.q = buildQueries(s)
	return s, nil
}

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

// querier is what both a transaction and a dedicated connection offer.
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
	for attempt := 1; ; attempt++ {
		err := s.tryTx(ctx, fn)
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
// its own (database/sql cannot ask for an immediate transaction). Writers of
// this Store first queue on writeSem, so they wait in Go rather than in
// SQLite's busy handler; other processes are waited for by busy_timeout.
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

// marks returns n comma-separated placeholders.
func marks(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// anys converts a slice of string-like values to arguments.
func anys[T ~string](vs []T) []any {
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

// errNoRows reports whether err says a query found nothing.
func errNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
