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

	// A worker claims the user, delivers the head and, in the same write,
	// has the next change marked sending.
	heads, _ := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "worker-1", Now: now, Lease: time.Minute, Limit: 10})
	h := heads[0].Change
	fmt.Println(h.UserID, h.Seq, h.Alias, h.Amount)
	res, err := st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{
		ID: h.ID, Owner: "worker-1", From: []mlmsoft.VolumeState{mlmsoft.VolumePending},
		State: mlmsoft.VolumeDelivered, Attempts: 1, SentAt: now, DeliveredAt: now, UpdatedAt: now,
		LeaseUntil: now.Add(time.Minute), Send: &mlmsoft.VolumeSend{At: now, AccountID: 700001},
	})
	fmt.Println(res.Change.State, res.Next.Seq, res.Next.State, err)
	// Output:
	// 42 pending 1 <nil>
	// true
	// 1 2
	// 42 1 PV 12.5
	// delivered 2 sending <nil>
}
