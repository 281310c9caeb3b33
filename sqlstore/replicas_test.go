package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// TestVolumeWorkersTwoPools runs workers on two connection pools, as two
// replicas would, against one outbox: every change is delivered exactly
// once, each user's changes in Seq order, and no user is held by two
// workers at once.
func TestVolumeWorkersTwoPools(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		ctx := testCtx(t)
		stores := []*Store{db.store(), db.store()}
		users, perUser, workers := 12, 5, 6
		if testing.Short() {
			users, workers = 6, 4
		}
		var batch []mlmsoft.VolumeChange
		for i := range perUser {
			for u := range users {
				batch = append(batch, change(fmt.Sprintf("u%02d", u), fmt.Sprintf("u%02d-%d", u, i), "1"))
			}
		}
		for i := range batch {
			batch[i] = due(batch[i])
		}
		mustEnqueue(t, stores[0], batch...)
		total := int64(len(batch))

		var (
			mu        sync.Mutex
			holder    = map[string]string{}
			delivered = map[string][]int64{}
			count     atomic.Int64
			wg        sync.WaitGroup
			errs      = make(chan error, 100)
		)
		deadline := time.Now().Add(time.Minute)
		for w := range workers {
			s, owner := stores[w%2], fmt.Sprint("w", w)
			wg.Go(func() {
				for count.Load() < total && time.Now().Before(deadline) {
					got, err := s.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: owner, Now: t0, Lease: time.Hour, Limit: 2})
					if err != nil {
						errs <- err
						return
					}
					for _, hc := range got {
						h := hc.Change
						mu.Lock()
						if other, ok := holder[h.UserID]; ok {
							errs <- fmt.Errorf("%s holds %s, claimed by %s too", other, h.UserID, owner)
						}
						holder[h.UserID] = owner
						mu.Unlock()
					}
					for _, hc := range got {
						h := hc.Change
						mu.Lock()
						delete(holder, h.UserID) // before the release makes it claimable
						delivered[h.UserID] = append(delivered[h.UserID], h.Seq)
						mu.Unlock()
						_, err := s.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: h.ID, Owner: owner,
							From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, State: mlmsoft.VolumeDelivered,
							DeliveredAt: t0, UpdatedAt: t0}) // ends the lease
						if err != nil {
							errs <- err
							return
						}
						count.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := count.Load(); n != total {
			t.Fatalf("%d of %d changes delivered", n, total)
		}
		for u, seqs := range delivered {
			if want := []int64{1, 2, 3, 4, 5}; !slices.Equal(seqs, want) {
				t.Errorf("%s delivered in order %v, want %v", u, seqs, want)
			}
		}
	})
}

// TestClaimVolumesSkipLocked holds the row lock of one volume user in
// another transaction (as a worker inside UpdateVolume does): a claim skips
// that user at once instead of waiting for it.
func TestClaimVolumesSkipLocked(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		if _, ok := db.b.dialect.(SQLite); ok {
			t.Skip("SQLite has no row locks; writers take turns")
		}
		s, ctx := db.store(), testCtx(t)
		mustEnqueue(t, s, due(change("a", "a1", "1")), due(change("b", "b1", "1")))
		tx, err := db.pool().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var owner string
		if err := tx.QueryRowContext(ctx, s.sql("SELECT lease_owner FROM {p}volume_users WHERE user_id = ? FOR UPDATE"), "a").Scan(&owner); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		start := time.Now()
		got, err := s.ClaimVolumes(cctx, mlmsoft.VolumeClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"b#1"}; !slices.Equal(heads(changes(got)), want) {
			t.Fatalf("claim with a locked = %q, want %q", heads(changes(got)), want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("claim waited %v for the lock", d)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		got, err = s.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"a#1"}; !slices.Equal(heads(changes(got)), want) {
			t.Fatalf("claim after unlock = %q, want %q", heads(changes(got)), want)
		}
	})
}

// TestClaimSeesCommittedHead: while another transaction delivers a user's
// head (holding the user's lock, as UpdateVolume does), a claim neither
// waits nor returns the old head; once that commits, the next change is the
// head.
func TestClaimSeesCommittedHead(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		if _, ok := db.b.dialect.(SQLite); ok {
			t.Skip("SQLite has no row locks; writers take turns")
		}
		s, ctx := db.store(), testCtx(t)
		vs := mustEnqueue(t, s, due(change("a", "a1", "1")), due(change("a", "a2", "1")))
		tx, err := db.pool().BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		u := operator(vs[0].ID, []mlmsoft.VolumeState{mlmsoft.VolumePending}, mlmsoft.VolumeDelivered, time.Time{})
		set, err := s.updateArgs(u)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.updateVolume(ctx, tx, u, set); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		got, err := s.ClaimVolumes(cctx, mlmsoft.VolumeClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: 5})
		if err != nil || len(got) != 0 {
			t.Fatalf("claim while a is locked = %q, %v; want nothing", heads(changes(got)), err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		got, err = s.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"a#2"}; !slices.Equal(heads(changes(got)), want) {
			t.Fatalf("claim after commit = %q, want %q", heads(changes(got)), want)
		}
	})
}

// TestWriteHonoursContext: a cancelled context stops a write, and the
// store keeps working.
func TestWriteHonoursContext(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.store()
		ctx, cancel := context.WithCancel(testCtx(t))
		cancel()
		if _, err := s.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{change("a", "k", "1")}); !errors.Is(err, context.Canceled) {
			t.Fatalf("enqueue with a cancelled context = %v, want context.Canceled", err)
		}
		got := mustEnqueue(t, s, change("a", "k", "1"))
		if got[0].Seq != 1 {
			t.Fatalf("seq after a cancelled enqueue = %d, want 1", got[0].Seq)
		}
	})
}
