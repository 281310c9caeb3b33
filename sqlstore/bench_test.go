package sqlstore

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// BenchmarkEnqueueClaimDeliver measures one change's trip through the
// outbox: enqueue, claim its user, mark it delivered (ending the lease).
func BenchmarkEnqueueClaimDeliver(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := newTestDB(b, be).store()
			ctx := testCtx(b)
			i := 0
			for b.Loop() {
				i++
				user := fmt.Sprint("u", i%64)
				if _, err := s.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{due(change(user, fmt.Sprint("k", i), "1.5"))}); err != nil {
					b.Fatal(err)
				}
				got, err := s.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: fmt.Sprint("w", i), Now: t0, Lease: time.Minute, Limit: 1})
				if err != nil || len(got) != 1 {
					b.Fatalf("claim = %d heads, %v", len(got), err)
				}
				_, err = s.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: got[0].Change.ID, Owner: fmt.Sprint("w", i),
					From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, State: mlmsoft.VolumeDelivered,
					DeliveredAt: t0, UpdatedAt: t0})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCounts measures Counts with a million changes stored (100,000
// users, 90% of their changes delivered). The load takes a while:
//
//	go test -run '^$' -bench Counts -benchtime 200x ./sqlstore/
func BenchmarkCounts(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := newTestDB(b, be).store()
			bulkLoad(b, s, 100000, 10, 9)
			ctx := testCtx(b)
			var c mlmsoft.Counts
			for b.Loop() {
				var err error
				if c, err = s.Counts(ctx); err != nil {
					b.Fatal(err)
				}
			}
			if c.Volumes[mlmsoft.VolumeDelivered] != 900000 || c.Volumes[mlmsoft.VolumePending] != 100000 || c.OldestOpen.IsZero() {
				b.Fatalf("counts = %+v", c)
			}
		})
	}
}

// BenchmarkDrain measures how fast workers deliver changes queued ahead,
// with a backlog of a thousand and of a hundred thousand changes, ten per
// user or one per user: each of 8 workers claims a user, marks its head
// sending and delivers its queue with Send continuation, as the plugin
// does. One op is one delivered change; the rate should not depend on the
// backlog.
//
//	go test -run '^$' -bench Drain -benchtime 500x ./sqlstore/
func BenchmarkDrain(b *testing.B) {
	for _, be := range backends {
		for _, shape := range []struct{ backlog, perUser int }{{1000, 10}, {100000, 10}, {1000, 1}, {100000, 1}} {
			b.Run(fmt.Sprintf("%s/backlog=%d/per-user=%d", be.name, shape.backlog, shape.perUser), func(b *testing.B) {
				backlog := shape.backlog
				db := newTestDB(b, be)
				s := db.store()
				s.DB().SetMaxOpenConns(16)
				s.DB().SetMaxIdleConns(16)
				bulkLoad(b, s, backlog/shape.perUser, shape.perUser, 0)
				if b.N > backlog/2 {
					b.Fatalf("deliver at most half the backlog (-benchtime %dx)", backlog/2)
				}
				b.ResetTimer()
				drainChanges(b, s, 8, b.N)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
			})
		}
	}
}

// drainChanges has workers deliver n queued changes.
func drainChanges(tb testing.TB, s *Store, workers, n int) {
	ctx := testCtx(tb)
	var (
		left = int64(n)
		mu   sync.Mutex
		wg   sync.WaitGroup
	)
	take := func() bool {
		mu.Lock()
		defer mu.Unlock()
		left--
		return left >= 0
	}
	for w := range workers {
		wg.Go(func() {
			for run := 0; ; run++ {
				owner := fmt.Sprintf("w%d-%d", w, run)
				got, err := s.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: owner, Now: t0, Lease: time.Minute, Limit: 1})
				if err != nil {
					tb.Error(err)
					return
				}
				if len(got) == 0 {
					return
				}
				up, err := s.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: got[0].Change.ID, Owner: owner, KeepLease: true,
					LeaseUntil: t0.Add(time.Minute), From: []mlmsoft.VolumeState{mlmsoft.VolumePending},
					State: mlmsoft.VolumeSending, Attempts: 1, NextAttemptAt: got[0].Change.NextAttemptAt, SentAt: t0, UpdatedAt: t0})
				if err != nil {
					tb.Error(err)
					return
				}
				c := up.Change
				for {
					if !take() {
						// Leave the change as the plugin would after a
						// crash: sending, found at the head of a claim.
						return
					}
					res, err := s.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: c.ID, Owner: owner,
						LeaseUntil: t0.Add(time.Minute), From: []mlmsoft.VolumeState{mlmsoft.VolumeSending},
						State: mlmsoft.VolumeDelivered, Attempts: c.Attempts, SentAt: c.SentAt, DeliveredAt: t0, UpdatedAt: t0,
						Send: &mlmsoft.VolumeSend{At: t0, AccountID: 1}})
					if err != nil {
						tb.Error(err)
						return
					}
					if res.Next.ID == 0 {
						break
					}
					c = res.Next
				}
			}
		})
	}
	wg.Wait()
}
