package sqlstore

import (
	"fmt"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// BenchmarkEnqueueClaimDeliver measures one change's trip through the
// outbox: enqueue, claim its user, mark it delivered and release the user.
func BenchmarkEnqueueClaimDeliver(b *testing.B) {
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			s := newTestDB(b, be).store()
			ctx := testCtx(b)
			i := 0
			for b.Loop() {
				i++
				user := fmt.Sprint("u", i%64)
				if _, err := s.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{change(user, fmt.Sprint("k", i), "1.5")}); err != nil {
					b.Fatal(err)
				}
				got, err := s.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: 1})
				if err != nil || len(got) != 1 {
					b.Fatalf("claim = %d heads, %v", len(got), err)
				}
				_, err = s.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: got[0].ID, Owner: "w", State: mlmsoft.VolumeDelivered,
					DeliveredAt: t0, UpdatedAt: t0, Release: true})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
