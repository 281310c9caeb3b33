package sqlstore

import (
	"errors"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Dialect is the SQL flavour of the database behind a Store: SQLite{},
// Postgres{} or MySQL{}. A Dialect only produces SQL text and classifies the
// driver's errors; it holds no state, its zero value is ready to use and it
// is safe for concurrent use. The interface is sealed (its other methods are
// unexported): only this package's dialects satisfy it.
type Dialect interface {
	// Name returns the dialect's name: "sqlite", "postgres" or "mysql".
	Name() string

	// bind rewrites the ? placeholders of query into the dialect's own.
	bind(query string) string
	// timeValue converts a non-zero UTC time, truncated to microseconds, to
	// the value stored in a time column.
	timeValue(t time.Time) (any, error)
	// wallClockUTC reports whether times read back carry the stored wall
	// clock in an arbitrary location (the driver's), to be read as UTC.
	wallClockUTC() bool
	// nullsFirst is appended to an ascending ORDER BY term so that NULLs
	// (zero times) sort first.
	nullsFirst() string
	// forUpdate is appended to a SELECT that locks the rows it reads until
	// the transaction ends ("" when the transaction holds the only write
	// lock).
	forUpdate() string
	// skipLocked is appended to a single-table SELECT that locks the rows
	// it returns and skips rows locked by others.
	skipLocked() string
	// keyEq is the condition that the key column col equals the value
	// given as its keyArgs placeholders, byte by byte.
	keyEq(col string) string
	keyArgs() int
	// picked is the condition that col is among the values the subquery
	// (which locks the rows it picks) returns, the subquery run once.
	picked(col, subquery string) string
	// returning reports whether INSERT, UPDATE and DELETE take a RETURNING
	// clause.
	returning() bool
	// writableCTE reports whether data-modifying statements may be put in
	// a WITH clause, so that several writes travel as one statement.
	writableCTE() bool
	// upsertUsers creates or bumps the last_seq of n volume users (the
	// arguments are user id, count pairs); with returning() it returns
	// user_id, last_seq and head_id, otherwise they are read back.
	upsertUsers(n int) string
	// upsertCounts adds n (kind, state, shard, delta) rows to the counters.
	upsertCounts(n int) string
	// ignoreDuplicate is appended to an INSERT into a table whose primary
	// key is id, so that a row already there is left alone.
	ignoreDuplicate() string
	// prefixOf is a condition that col starts with the string given, byte
	// by byte, as both of its two placeholders.
	prefixOf(col string) string
	// notify is a statement that signals work to listeners when the
	// transaction commits, taking the channel as its one argument; "" when
	// the dialect has none.
	notify() string
	// uniqueViolation reports whether err is a unique-constraint violation.
	uniqueViolation(err error) bool
	// retryable reports whether err is a transient failure (deadlock,
	// serialization failure, busy database) after which the whole
	// transaction may simply be run again.
	retryable(err error) bool
	// txMode says how write transactions and migrations are run.
	txMode() txMode
	// migrationsTable creates the schema_migrations table if missing.
	migrationsTable() string
	// migrationLock and migrationUnlock take and release the lock that
	// serialises concurrent Migrate calls (see txMode); "" when none.
	migrationLock() string
	migrationUnlock() string
	migrationLockArg(prefix string) any
	// ddlDone reports whether err says a migration statement had been
	// applied already (a column or index that exists, or is gone), for
	// dialects whose migrations cannot run in a transaction.
	ddlDone(err error) bool
	// migrationsDir is the directory of the embedded migrations.
	migrationsDir() string
}

// txMode is how a dialect runs transactions.
type txMode int

const (
	// txStandard: database/sql transactions at READ COMMITTED; migrations
	// run in one transaction after a transaction-scoped advisory lock
	// (PostgreSQL).
	txStandard txMode = iota
	// txStandardSessionLockedDDL: database/sql transactions at READ
	// COMMITTED; migrations run outside transactions (DDL commits
	// implicitly) under a session-level named lock (MySQL).
	txStandardSessionLockedDDL
	// txImmediate: BEGIN IMMEDIATE on a dedicated connection, so a
	// transaction takes the database's single write lock up front and never
	// fails upgrading a read lock (SQLite). Migrations run the same way.
	txImmediate
)

// bindQuestion leaves ? placeholders as they are.
func bindQuestion(q string) string { return q }

// bindDollar rewrites ? placeholders as $1, $2, ... Queries in this package
// never hold a literal question mark.
func bindDollar(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// valuesRows returns n parenthesised rows of the same placeholders, for a
// multi-row INSERT: valuesRows(2, "?, ?") is "(?, ?), (?, ?)".
func valuesRows(n int, row string) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("("+row+"), ", n-1) + "(" + row + ")"
}

// wallClockLayout is the text form of times for SQLite and MySQL: fixed
// width, so that text comparison is time comparison in SQLite.
const wallClockLayout = "2006-01-02 15:04:05.000000"

// errorChain calls f on err and every error it wraps until f returns true.
func errorChain(err error, f func(error) bool) bool {
	for err != nil {
		if f(err) {
			return true
		}
		if multi, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range multi.Unwrap() {
				if errorChain(e, f) {
					return true
				}
			}
			return false
		}
		err = errors.Unwrap(err)
	}
	return false
}

// sqlState returns the SQLSTATE of a driver error that reports one through
// a SQLState method (pgx's *pgconn.PgError, lib/pq's *pq.Error).
func sqlState(err error) string {
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		return st.SQLState()
	}
	return ""
}

// sqliteCode returns the extended result code of a SQLite driver error that
// reports one through a Code method (modernc.org/sqlite's *sqlite.Error).
func sqliteCode(err error) (int, bool) {
	var c interface{ Code() int }
	if errors.As(err, &c) {
		return c.Code(), true
	}
	return 0, false
}

// mysqlNumber returns the server error number of a MySQL driver error.
// github.com/go-sql-driver/mysql reports it in the Number field of
// *mysql.MySQLError; the library does not import the driver, so the field
// is read by reflection, with the message ("Error 1062 ...") as a fallback.
func mysqlNumber(err error) (uint16, bool) {
	var num uint16
	found := errorChain(err, func(e error) bool {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() == reflect.Struct {
			if f := v.FieldByName("Number"); f.IsValid() && f.Kind() == reflect.Uint16 {
				num = uint16(f.Uint())
				return true
			}
		}
		rest, ok := strings.CutPrefix(e.Error(), "Error ")
		if !ok {
			return false
		}
		end := strings.IndexAny(rest, " :")
		if end < 0 {
			return false
		}
		n, perr := strconv.ParseUint(rest[:end], 10, 16)
		if perr != nil {
			return false
		}
		num = uint16(n)
		return true
	})
	return num, found
}
