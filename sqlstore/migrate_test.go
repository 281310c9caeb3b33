package sqlstore

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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

// TestMigrateFromV1 fills a database made by migration 1 (store contract
// v1) with v1 rows, migrates it, and checks that the heads, counters,
// claims and further writes work on the rows v1 left.
func TestMigrateFromV1(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.rawStore(), testCtx(t)
		if err := s.migrateTo(ctx, 1); err != nil {
			t.Fatal(err)
		}
		insert := func(table string, cols []string, vals ...any) {
			t.Helper()
			args, err := s.args(vals...)
			if err != nil {
				t.Fatal(err)
			}
			query := "INSERT INTO {p}" + table + " (" + strings.Join(cols, ", ") + ") VALUES (" + marks(len(cols)) + ")"
			if _, err := s.DB().ExecContext(ctx, s.sql(query), args...); err != nil {
				t.Fatalf("v1 %s row: %v", table, err)
			}
		}
		none := time.Time{}
		linkCols := []string{"user_id", "email", "first_name", "last_name", "phone", "country_id", "sponsor_user_id",
			"sponsor_account_id", "state", "account_id", "mlm_user_id", "linked_via", "document_id", "sealed_password",
			"create_sent_at", "accepted_at", "attempts", "next_attempt_at", "last_error", "lease_owner", "lease_until",
			"created_at", "updated_at", "linked_at", "version"}
		link := func(id string, state mlmsoft.LinkState, next time.Time, owner string, until time.Time) {
			insert("links", linkCols, id, id+"@x", "F", "L", "", "", "", 0, string(state), 0, 0, "", 0, []byte{1},
				none, none, 1, next, "", owner, until, t0.Add(-time.Hour), t0.Add(-time.Minute), none, 3)
		}
		link("l1", mlmsoft.LinkPending, none, "", none)                                 // v1: due at once
		link("l2", mlmsoft.LinkCreated, t0.Add(time.Hour), "w-old", t0.Add(-time.Hour)) // due later
		link("l3", mlmsoft.LinkLinked, t0, "", none)                                    // v1: never claimed
		link("l4", mlmsoft.LinkFailed, none, "", none)

		user := func(id string, last int64, owner string, until time.Time) {
			insert("volume_users", []string{"user_id", "last_seq", "lease_owner", "lease_until"}, id, last, owner, until)
		}
		changeCols := volumeCols[1:]
		var id, n int64
		ids := map[string]int64{}
		vol := func(user string, seq int64, state mlmsoft.VolumeState, next time.Time) {
			n++
			key := fmt.Sprintf("%s#%d", user, seq)
			insert("volume_changes", changeCols, user, seq, "b", key, "PV", "1.5", "o",
				string(state), 1, next, "", 0, 0, t0.Add(time.Duration(n-100)*time.Minute), t0.Add(-time.Minute), none, none, "", "", none)
			err := s.DB().QueryRowContext(ctx, s.sql("SELECT id FROM {p}volume_changes WHERE idempotency_key = ?"), key).Scan(&id)
			if err != nil {
				t.Fatal(err)
			}
			ids[key] = id
		}
		user("a", 3, "", none)
		vol("a", 1, mlmsoft.VolumeDelivered, none)
		vol("a", 2, mlmsoft.VolumePending, none) // v1: due at once
		vol("a", 3, mlmsoft.VolumePending, t0.Add(time.Hour))
		user("b", 2, "", none)
		vol("b", 1, mlmsoft.VolumeParked, t0) // v1: blocked, whatever its time
		vol("b", 2, mlmsoft.VolumePending, t0)
		user("c", 2, "w-old", t0.Add(-time.Hour))
		vol("c", 1, mlmsoft.VolumeDelivered, none)
		vol("c", 2, mlmsoft.VolumeSkipped, none)
		user("d", 1, "w-old", t0.Add(time.Minute)) // leased by a v1 worker
		vol("d", 1, mlmsoft.VolumeSending, t0.Add(-time.Minute))
		user("e", 1, "", none)
		vol("e", 1, mlmsoft.VolumeUncertain, none)

		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		if got, want := appliedVersions(t, s), wantVersions(t, s); !slices.Equal(got, want) {
			t.Fatalf("applied versions %v, want %v", got, want)
		}
		checkHeads(t, s)
		checkCounts(t, s)
		counts, err := s.Counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantVolumes := map[mlmsoft.VolumeState]int{mlmsoft.VolumeDelivered: 2, mlmsoft.VolumePending: 3, mlmsoft.VolumeParked: 1,
			mlmsoft.VolumeSkipped: 1, mlmsoft.VolumeSending: 1, mlmsoft.VolumeUncertain: 1}
		if !maps.Equal(counts.Volumes, wantVolumes) || len(counts.Links) != 4 || !counts.OldestOpen.Equal(stored(t0.Add(-98*time.Minute))) {
			t.Fatalf("counts after the upgrade = %+v", counts)
		}

		// Claims: what v1 would have claimed, and nothing else.
		if got := claimVolumes(t, s, "w1", t0, 10); !slices.Equal(heads(got), []string{"a#2"}) {
			t.Fatalf("volume claim after the upgrade = %v, want [a#2]", heads(got))
		}
		if got := claimVolumes(t, s, "w2", t0.Add(time.Minute), 10); !slices.Equal(heads(got), []string{"a#2", "d#1"}) {
			t.Fatalf("volume claim once the leases lapsed = %v, want [a#2 d#1]", heads(got))
		}
		links, err := s.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w3", Now: t0, Lease: time.Minute, Limit: 10})
		if err != nil || len(links) != 1 || links[0].UserID != "l1" || links[0].Version != 3 {
			t.Fatalf("link claim after the upgrade = %+v, %v; want l1", links, err)
		}
		links, err = s.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w4", Now: t0.Add(time.Hour), Lease: time.Minute, Limit: 10})
		if err != nil || len(links) != 2 || links[0].UserID != "l1" || links[1].UserID != "l2" {
			t.Fatalf("link claim at +1h = %+v, %v; want l1 (lease lapsed), l2", links, err)
		}

		// Writes go on from where v1 left: seqs, heads, Send, operators.
		got := mustEnqueue(t, s, due(change("a", "new-a", "1")), due(change("c", "new-c", "1")))
		if got[0].Seq != 4 || got[1].Seq != 3 || got[0].ID <= id {
			t.Fatalf("enqueued after the upgrade: %+v", got)
		}
		checkHeads(t, s)
		u := delivered(mlmsoft.VolumeChange{ID: ids["a#2"], State: mlmsoft.VolumePending}, "w2")
		u.Send, u.LeaseUntil = &mlmsoft.VolumeSend{At: t0.Add(time.Hour)}, t0.Add(2*time.Hour)
		if next := mustUpdate(t, s, u).Next; next.ID != ids["a#3"] || next.State != mlmsoft.VolumeSending {
			t.Fatalf("Send after the upgrade marked %+v, want a#3", next)
		}
		mustUpdate(t, s, operator(ids["b#1"], []mlmsoft.VolumeState{mlmsoft.VolumeParked}, mlmsoft.VolumeSkipped, time.Time{}))
		if got := claimVolumes(t, s, "w5", t0.Add(time.Minute), 10); !slices.Equal(heads(got), []string{"b#2", "c#3"}) {
			t.Fatalf("claim after skipping b#1 = %v, want [b#2 c#3]", heads(got))
		}
		checkCounts(t, s)
	})
}

// TestMigrateMySQLResumes: MySQL runs migrations outside transactions, so a
// run that stopped halfway left some statements applied; the next run must
// finish the job.
func TestMigrateMySQLResumes(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, backends[2])
	probe := db.rawStore()
	ms, err := probe.migrations()
	if err != nil {
		t.Fatal(err)
	}
	last := ms[len(ms)-1]
	for _, cut := range []int{1, len(last.statements) / 2, len(last.statements) - 2, len(last.statements)} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			db := newTestDB(t, backends[2])
			s, ctx := db.rawStore(), testCtx(t)
			if err := s.migrateTo(ctx, last.version-1); err != nil {
				t.Fatal(err)
			}
			for _, stmt := range last.statements[:cut] {
				if _, err := s.DB().ExecContext(ctx, strings.ReplaceAll(stmt, probe.prefix, s.prefix)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Migrate(ctx); err != nil {
				t.Fatalf("migrate after %d statements: %v", cut, err)
			}
			mustEnqueue(t, s, due(change("u", "1", "1")))
			checkHeads(t, s)
			checkCounts(t, s)
		})
	}
}
