package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(*testing.T) mlmsoft.Store { return memstore.New() })
}

func ExampleNew() {
	ctx := context.Background()
	st := memstore.New()
	if _, err := st.CreateLink(ctx, mlmsoft.Link{UserID: "42", Email: "ann@example.com", State: mlmsoft.LinkPending}); err != nil {
		panic(err)
	}
	l, err := st.GetLinkByEmail(ctx, "ann@example.com")
	fmt.Println(l.UserID, l.State, l.Version, err)

	_, err = st.CreateLink(ctx, mlmsoft.Link{UserID: "43", Email: "ann@example.com"})
	fmt.Println(errors.Is(err, mlmsoft.ErrDuplicate))

	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cs, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{
		{UserID: "42", IdempotencyKey: "order-1/PV", Alias: "PV", Amount: mlmsoft.MustAmount("12.5"), OrderID: "order-1", State: mlmsoft.VolumePending, NextAttemptAt: now},
		{UserID: "42", IdempotencyKey: "order-1/GV", Alias: "GV", Amount: mlmsoft.MustAmount("0.1"), OrderID: "order-1", State: mlmsoft.VolumePending, NextAttemptAt: now},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(cs[0].Seq, cs[1].Seq)

	heads, _ := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "worker-1", Now: now, Lease: time.Minute, Limit: 10})
	for _, h := range heads {
		fmt.Println(h.UserID, h.Seq, h.Alias, h.Amount)
	}
	// Output:
	// 42 pending 1 <nil>
	// true
	// 1 2
	// 42 1 PV 12.5
}

// BenchmarkEnqueueClaimDeliver measures one change through the outbox:
// enqueue, claim and a delivering update that releases the user. The
// backlog sub-benchmarks add users whose heads are not due, to show that a
// claim does not scan them.
func BenchmarkEnqueueClaimDeliver(b *testing.B) {
	for _, backlog := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("backlog=%d", backlog), func(b *testing.B) {
			ctx := context.Background()
			st := memstore.New()
			now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
			var batch []mlmsoft.VolumeChange
			for i := range backlog {
				batch = append(batch, mlmsoft.VolumeChange{
					UserID: fmt.Sprintf("later-%d", i), IdempotencyKey: fmt.Sprintf("later-%d", i), Alias: "PV",
					Amount: mlmsoft.AmountFromInt(1), State: mlmsoft.VolumePending, NextAttemptAt: now.Add(time.Hour),
				})
				if len(batch) == 1000 || i == backlog-1 {
					if _, err := st.EnqueueVolumes(ctx, batch); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			amount := mlmsoft.MustAmount("12.5")
			i := 0
			for b.Loop() {
				i++
				key := fmt.Sprintf("k%d", i)
				if _, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{
					UserID: fmt.Sprintf("u%d", i%1000), IdempotencyKey: key, Alias: "PV", Amount: amount,
					OrderID: key, State: mlmsoft.VolumePending, NextAttemptAt: now,
				}}); err != nil {
					b.Fatal(err)
				}
				heads, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: now, Lease: time.Minute, Limit: 1})
				if err != nil || len(heads) != 1 {
					b.Fatalf("claim: %d heads, %v", len(heads), err)
				}
				if _, err := st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{
					ID: heads[0].ID, Owner: "w", From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, Release: true,
					State: mlmsoft.VolumeDelivered, Attempts: 1, SentAt: now, DeliveredAt: now, UpdatedAt: now,
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
