package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"math"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

//go:embed migrations
var migrationFS embed.FS

// migration is one numbered SQL file of a dialect.
type migration struct {
	version    int64
	name       string
	statements []string // with the table prefix filled in
}

var migrationName = regexp.MustCompile(`^([0-9]+)_([a-z0-9_]+)\.sql$`)

// migrations returns the dialect's migrations in version order.
func (s *Store) migrations() ([]migration, error) {
	dir := s.d.migrationsDir()
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			return nil, fmt.Errorf("unexpected migration file %s/%s", dir, e.Name())
		}
		v, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad migration version in %s", e.Name())
		}
		body, err := migrationFS.ReadFile(path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: m[2], statements: s.splitStatements(string(body))})
	}
	slices.SortFunc(out, func(a, b migration) int { return int(a.version - b.version) })
	for i := 1; i < len(out); i++ {
		if out[i].version == out[i-1].version {
			return nil, fmt.Errorf("two migrations numbered %d", out[i].version)
		}
	}
	return out, nil
}

// splitStatements splits a migration at the semicolons that end a line and
// fills in the table prefix. Comment-only pieces are dropped.
func (s *Store) splitStatements(body string) []string {
	var out []string
	for _, piece := range strings.Split(body, ";\n") {
		var code []string
		for _, line := range strings.Split(piece, "\n") {
			if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "--") {
				code = append(code, line)
			}
		}
		if stmt := strings.TrimSuffix(strings.TrimSpace(strings.Join(code, "\n")), ";"); stmt != "" {
			out = append(out, strings.ReplaceAll(stmt, "{p}", s.prefix))
		}
	}
	return out
}

// Migrate brings the Store's tables up to date by running, in order, the
// embedded migrations not yet recorded in the <prefix>schema_migrations
// table. It is idempotent, and safe when several processes migrate the same
// database at once: they serialize on a lock (PostgreSQL: an advisory lock,
// with every pending migration in one transaction; MySQL: GET_LOCK, as its
// DDL cannot be rolled back, each statement safe to run again; SQLite:
// BEGIN IMMEDIATE, in one transaction). Versions recorded by a newer release
// are left alone. Migrate waits for the lock until ctx is done.
//
// Migration 2 upgrades a database of the first release (store contract v1)
// in place: it adds the queue heads, the events and counts tables and the
// new indexes, computes the heads and counters from the rows there, drops
// the indexes v1's claims needed, and gives the stored changes and links
// the due times v2 reads (v1 claimed pending and sending changes, and
// pending and created links, whose next attempt was unset, at once, and
// never the others: v2 claims whatever is due). Stop every replica of the
// first release before starting one of this release on the same database:
// the first release's writes do not keep the heads and counters.
func (s *Store) Migrate(ctx context.Context) error {
	return s.migrateTo(ctx, math.MaxInt64)
}

// migrateTo applies the migrations up to version last.
func (s *Store) migrateTo(ctx context.Context, last int64) error {
	ms, err := s.migrations()
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	ms = slices.DeleteFunc(ms, func(m migration) bool { return m.version > last })
	switch s.d.txMode() {
	case txStandardSessionLockedDDL:
		err = s.migrateSessionLocked(ctx, ms)
	default:
		// One transaction, serialized by BEGIN IMMEDIATE (SQLite) or by a
		// transaction-scoped advisory lock taken first (PostgreSQL).
		err = s.inTx(ctx, func(q querier) error {
			if lock := s.d.migrationLock(); lock != "" {
				if _, err := q.ExecContext(ctx, s.d.bind(lock), s.d.migrationLockArg(s.prefix)); err != nil {
					return fmt.Errorf("lock: %w", err)
				}
			}
			return s.applyMigrations(ctx, q, ms)
		})
	}
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: %w", err)
	}
	return nil
}

// migrateSessionLocked holds a session-level named lock on a connection of
// its own while it applies the migrations on that connection.
func (s *Store) migrateSessionLocked(ctx context.Context, ms []migration) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	arg := s.d.migrationLockArg(s.prefix)
	for {
		// Wait a second at a time, so that ctx is honoured.
		var got *int64
		if err := conn.QueryRowContext(ctx, s.d.bind(s.d.migrationLock()), arg).Scan(&got); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		if got == nil {
			return fmt.Errorf("lock: the server refused it")
		}
		if *got == 1 {
			break
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
	}
	defer func() {
		var released *int64
		_ = conn.QueryRowContext(context.WithoutCancel(ctx), s.d.bind(s.d.migrationUnlock()), arg).Scan(&released)
	}()
	return s.applyMigrations(ctx, conn, ms)
}

// applyMigrations runs the migrations not yet recorded, each followed by
// its record, once the caller holds the migration lock.
func (s *Store) applyMigrations(ctx context.Context, q querier, ms []migration) error {
	if _, err := q.ExecContext(ctx, s.sql(s.d.migrationsTable())); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	rows, err := q.QueryContext(ctx, s.sql("SELECT version FROM {p}schema_migrations"))
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	applied := make(map[int64]bool)
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	record := s.sql("INSERT INTO {p}schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
	for _, m := range ms {
		if applied[m.version] {
			continue
		}
		for i, stmt := range m.statements {
			if _, err := q.ExecContext(ctx, stmt); err != nil && !s.d.ddlDone(err) {
				return fmt.Errorf("migration %04d_%s, statement %d: %w", m.version, m.name, i+1, err)
			}
		}
		now, err := s.timeArg(time.Now())
		if err != nil {
			return err
		}
		if _, err := q.ExecContext(ctx, record, m.version, m.name, now); err != nil {
			return fmt.Errorf("record migration %04d_%s: %w", m.version, m.name, err)
		}
	}
	return nil
}
