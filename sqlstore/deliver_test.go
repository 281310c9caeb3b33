package sqlstore

import (
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// TestDeliverSeesConcurrentEnqueue: a worker delivers the last change of
// its user's queue while a host transaction enqueues another one for that
// user. Whichever commits first, the new change must end up the head (and,
// here, be marked sending by Send): on PostgreSQL the one-statement
// delivery must notice that its snapshot missed the enqueue and fall back.
func TestDeliverSeesConcurrentEnqueue(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		if _, ok := db.b.dialect.(SQLite); ok {
			t.Skip("SQLite: the host transaction holds the only write lock")
		}
		s, ctx := db.store(), testCtx(t)
		mustEnqueue(t, s, due(change("u", "1", "1")))
		h := claimVolumes(t, s, "w", t0, 1)[0]

		tx := beginHost(t, db.pool())
		added, err := s.EnqueueVolumesTx(ctx, tx, []mlmsoft.VolumeChange{due(change("u", "2", "1"))})
		if err != nil {
			t.Fatal(err)
		}
		var (
			got mlmsoft.VolumeUpdated
			wg  sync.WaitGroup
		)
		wg.Go(func() {
			u := delivered(h, "w")
			u.Send, u.LeaseUntil = &mlmsoft.VolumeSend{At: t0, AccountID: 5}, t0.Add(time.Minute)
			got, err = s.UpdateVolume(ctx, u)
		})
		time.Sleep(300 * time.Millisecond) // the delivery waits for the user's row
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if got.Next.ID != added[0].ID || got.Next.State != mlmsoft.VolumeSending {
			t.Fatalf("Next = %+v, want the change enqueued meanwhile, sending", got.Next)
		}
		if _, ok := db.b.dialect.(Postgres); ok && s.declined.Load() != 1 {
			t.Fatalf("the one-statement delivery was declined %d times, want 1", s.declined.Load())
		}
		checkHeads(t, s)
		checkCounts(t, s)
	})
}

// TestDeliverNotHead: a worker's final update of a change that is not its
// user's head is done the general way: the head stays, and Send marks it.
func TestDeliverNotHead(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.store()
		vs := mustEnqueue(t, s, due(change("u", "1", "1")), due(change("u", "2", "1")))
		claimVolumes(t, s, "w", t0, 1)
		u := delivered(vs[1], "w")
		u.Send, u.LeaseUntil = &mlmsoft.VolumeSend{At: t0}, t0.Add(time.Minute)
		got := mustUpdate(t, s, u)
		if got.Change.ID != vs[1].ID || got.Next.ID != vs[0].ID || got.Next.State != mlmsoft.VolumeSending {
			t.Fatalf("update of u#2 = %+v", got)
		}
		if _, ok := db.b.dialect.(Postgres); ok && s.declined.Load() != 1 {
			t.Fatalf("declined %d times, want 1", s.declined.Load())
		}
		checkCounts(t, s)
	})
}
