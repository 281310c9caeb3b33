package sqlstore

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/mlmsoft-go/mlmsoft"
)

func appliedVersions(t *testing.T, s *Store) []int64 {
	t.Helper()
	rows, err := s.DB().QueryContext(testCtx(t), s.sql("SELECT version FROM {p}schema_migrations ORDER BY version"))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantVersions(t *testing.T, s *Store) []int64 {
	t.Helper()
	ms, err := s.migrations()
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, m := range ms {
		out = append(out, m.version)
	}
	return out
}

func TestMigrateIdempotent(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.rawStore()
		ctx := testCtx(t)
		for i := range 3 {
			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("Migrate #%d: %v", i+1, err)
			}
		}
		if got, want := appliedVersions(t, s), wantVersions(t, s); !slices.Equal(got, want) {
			t.Fatalf("applied versions %v, want %v", got, want)
		}
		// The schema works.
		if _, err := s.CreateLink(ctx, mlmsoft.Link{UserID: "u1", State: mlmsoft.LinkPending}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestMigrateConcurrent migrates one fresh database from several pools at
// once, as replicas starting together do.
func TestMigrateConcurrent(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		ctx := testCtx(t)
		stores := make([]*Store, 4)
		for i := range stores {
			stores[i] = db.rawStore()
		}
		var wg sync.WaitGroup
		errs := make([]error, len(stores))
		for i, s := range stores {
			wg.Go(func() { errs[i] = s.Migrate(ctx) })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		if got, want := appliedVersions(t, stores[0]), wantVersions(t, stores[0]); !slices.Equal(got, want) {
			t.Fatalf("applied versions %v, want %v", got, want)
		}
	})
}

// TestMigrationsMatch checks every dialect has the same migration versions
// and names, and that the statements split as expected.
func TestMigrationsMatch(t *testing.T) {
	t.Parallel()
	var first []migration
	for i, b := range backends {
		s, err := New(&sqlDBStub, b.dialect, Config{TablePrefix: "x_"})
		if err != nil {
			t.Fatal(err)
		}
		ms, err := s.migrations()
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		if len(ms) == 0 {
			t.Fatalf("%s: no migrations", b.name)
		}
		for _, m := range ms {
			for _, stmt := range m.statements {
				if stmt == "" || stmt[len(stmt)-1] == ';' {
					t.Errorf("%s %d: bad statement %q", b.name, m.version, stmt)
				}
				if slices.Contains([]byte(stmt), '{') {
					t.Errorf("%s %d: prefix not filled in: %q", b.name, m.version, stmt)
				}
			}
		}
		if i == 0 {
			first = ms
			continue
		}
		if len(ms) != len(first) {
			t.Fatalf("%s has %d migrations, %s %d", b.name, len(ms), backends[0].name, len(first))
		}
		for j := range ms {
			if ms[j].version != first[j].version || ms[j].name != first[j].name {
				t.Errorf("%s migration %d is %d_%s, %s has %d_%s", b.name, j, ms[j].version, ms[j].name,
					backends[0].name, first[j].version, first[j].name)
			}
		}
	}
}
