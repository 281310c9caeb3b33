package memstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
)

// backlog fills st with n users whose only change is not due until an hour
// after now, and n final changes: claims must not scan them.
func backlog(b *testing.B, st *memstore.Store, n int, now time.Time) {
	ctx := context.Background()
	var batch []mlmsoft.VolumeChange
	for i := range n {
		batch = append(batch,
			mlmsoft.VolumeChange{
				UserID: fmt.Sprintf("later-%d", i), IdempotencyKey: fmt.Sprintf("later-%d", i), Alias: "PV",
				Amount: mlmsoft.AmountFromInt(1), State: mlmsoft.VolumePending, NextAttemptAt: now.Add(time.Hour), CreatedAt: now,
			},
			mlmsoft.VolumeChange{
				UserID: fmt.Sprintf("done-%d", i), IdempotencyKey: fmt.Sprintf("done-%d", i), Alias: "PV",
				Amount: mlmsoft.AmountFromInt(1), State: mlmsoft.VolumeDelivered, CreatedAt: now,
			})
		if len(batch) >= 1000 || i == n-1 {
			if _, err := st.EnqueueVolumes(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// BenchmarkEnqueueClaimDeliver measures one change through the outbox:
// enqueue, claim and a delivering update that ends the lease. The backlog
// sub-benchmarks add changes that are not due or are final, to show that a
// claim does not scan them.
func BenchmarkEnqueueClaimDeliver(b *testing.B) {
	for _, n := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("backlog=%d", n), func(b *testing.B) {
			ctx := context.Background()
			st := memstore.New()
			now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
			backlog(b, st, n, now)
			amount := mlmsoft.MustAmount("12.5")
			i := 0
			for b.Loop() {
				i++
				key := fmt.Sprintf("k%d", i)
				if _, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{
					UserID: fmt.Sprintf("u%d", i%1000), IdempotencyKey: key, Alias: "PV", Amount: amount,
					OrderID: key, State: mlmsoft.VolumePending, NextAttemptAt: now, CreatedAt: now,
				}}); err != nil {
					b.Fatal(err)
				}
				heads, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: now, Lease: time.Minute, Limit: 1})
				if err != nil || len(heads) != 1 {
					b.Fatalf("claim: %d heads, %v", len(heads), err)
				}
				if _, err := st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{
					ID: heads[0].Change.ID, Owner: "w", From: []mlmsoft.VolumeState{mlmsoft.VolumePending},
					State: mlmsoft.VolumeDelivered, Attempts: 1, SentAt: now, DeliveredAt: now, UpdatedAt: now,
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSendChain measures a worker's run over one user's queue: each
// change delivered by an update that marks the next one sending (Send), so
// a queue of n changes takes one claim and n updates.
func BenchmarkSendChain(b *testing.B) {
	const n = 100
	ctx := context.Background()
	st := memstore.New()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	backlog(b, st, 10_000, now)
	round := 0
	for b.Loop() {
		round++
		batch := make([]mlmsoft.VolumeChange, n)
		for j := range batch {
			key := fmt.Sprintf("r%d-%d", round, j)
			batch[j] = mlmsoft.VolumeChange{UserID: "u", IdempotencyKey: key, Alias: "PV", Amount: mlmsoft.AmountFromInt(1),
				OrderID: key, State: mlmsoft.VolumePending, NextAttemptAt: now, CreatedAt: now}
		}
		if _, err := st.EnqueueVolumes(ctx, batch); err != nil {
			b.Fatal(err)
		}
		owner := fmt.Sprint("w", round)
		heads, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: owner, Now: now, Lease: time.Minute, Limit: 1})
		if err != nil || len(heads) != 1 {
			b.Fatalf("claim: %d heads, %v", len(heads), err)
		}
		cur, sent := heads[0].Change, 0
		for cur.ID != 0 {
			res, err := st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{
				ID: cur.ID, Owner: owner, From: []mlmsoft.VolumeState{mlmsoft.VolumePending, mlmsoft.VolumeSending},
				State: mlmsoft.VolumeDelivered, Attempts: 1, SentAt: now, DeliveredAt: now, UpdatedAt: now,
				LeaseUntil: now.Add(time.Minute), Send: &mlmsoft.VolumeSend{At: now, AccountID: 1},
			})
			if err != nil {
				b.Fatal(err)
			}
			cur = res.Next
			sent++
		}
		if sent != n {
			b.Fatalf("run delivered %d changes, want %d", sent, n)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/change")
}
