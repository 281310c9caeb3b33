package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

func (s suite) concurrency(t *testing.T) {
	s.test(t, "VolumeWorkers", testVolumeWorkers)
	s.test(t, "VolumeClaimers", testVolumeClaimers)
}

// testVolumeWorkers runs workers that claim, deliver and release while
// enqueuers add batches for the same users. It checks that no user is ever
// held by two workers at once, that each user's changes are delivered in Seq
// order, and that every change is delivered exactly once.
func testVolumeWorkers(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	workers, users, batches, size, enqueuers := 8, 30, 3, 2, 3
	if testing.Short() {
		workers, users, batches, enqueuers = 4, 10, 2, 2
	}
	total := int64(users * batches * size)
	now := at(time.Hour) // leases of an hour from now never end during the test
	deadline := time.Now().Add(30 * time.Second)

	type job struct{ user, batch int }
	var jobs []job
	for u := range users {
		for b := range batches {
			jobs = append(jobs, job{u, b})
		}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })

	var (
		mu        sync.Mutex
		holder    = map[string]string{}  // user -> worker holding it, as the workers see it
		delivered = map[string][]int64{} // user -> Seqs in delivery order
		done      = map[int64]bool{}     // ids delivered
		enqueued  = map[int64]string{}   // ids enqueued -> user
		count     atomic.Int64
	)
	var wg sync.WaitGroup
	for e := range enqueuers {
		wg.Go(func() {
			for i := e; i < len(jobs); i += enqueuers {
				j := jobs[i]
				user := fmt.Sprintf("user%02d", j.user)
				var cs []mlmsoft.VolumeChange
				for c := range size {
					cs = append(cs, change(user, fmt.Sprintf("%s-b%d-c%d", user, j.batch, c)))
				}
				got, err := st.EnqueueVolumes(ctx, cs)
				if err != nil {
					t.Errorf("EnqueueVolumes: %v", err)
					return
				}
				mu.Lock()
				for _, c := range got {
					enqueued[c.ID] = c.UserID
				}
				mu.Unlock()
			}
		})
	}
	for w := range workers {
		owner := fmt.Sprintf("worker%d", w)
		limit := 1 + w%3
		wg.Go(func() {
			for i := 0; count.Load() < total; i++ {
				if t.Failed() {
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("%s: gave up with %d of %d changes delivered", owner, count.Load(), total)
					return
				}
				got, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: owner, Now: now, Lease: time.Hour, Limit: limit})
				if err != nil {
					t.Errorf("ClaimVolumes: %v", err)
					return
				}
				if len(got) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				mu.Lock()
				for _, c := range got {
					if h, ok := holder[c.UserID]; ok {
						t.Errorf("%s claimed %s while %s holds it", owner, c.UserID, h)
					}
					holder[c.UserID] = owner
					delivered[c.UserID] = append(delivered[c.UserID], c.Seq)
					if done[c.ID] {
						t.Errorf("%s claimed %s#%d, delivered already", owner, c.UserID, c.Seq)
					}
					done[c.ID] = true
				}
				mu.Unlock()
				for k, c := range got {
					// Stop holding it in our books before the store lets go,
					// so a new owner never finds it in holder by our doing.
					mu.Lock()
					delete(holder, c.UserID)
					mu.Unlock()
					release := (i+k)%2 == 0
					if _, err := st.UpdateVolume(ctx, deliver(c.ID, owner, now, release)); err != nil {
						t.Errorf("%s: UpdateVolume(%s#%d): %v", owner, c.UserID, c.Seq, err)
						return
					}
					if !release {
						if err := st.ReleaseVolumeUser(ctx, owner, c.UserID); err != nil {
							t.Errorf("%s: ReleaseVolumeUser(%s): %v", owner, c.UserID, err)
							return
						}
					}
					count.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for u := range users {
		user := fmt.Sprintf("user%02d", u)
		want := make([]int64, batches*size)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if got := delivered[user]; !slices.Equal(got, want) {
			t.Errorf("%s delivered in order %v, want %v", user, got, want)
		}
	}
	if len(done) != len(enqueued) {
		t.Errorf("%d changes delivered, %d enqueued", len(done), len(enqueued))
	}
	counts, err := st.CountVolumes(ctx)
	mustOK(t, "CountVolumes", err)
	if !countsEqual(map[mlmsoft.VolumeState]int{mlmsoft.VolumeDelivered: int(total)}, counts.ByState) || !counts.OldestPending.IsZero() {
		t.Errorf("CountVolumes = %v, oldest pending %s; want %d delivered", counts.ByState, fmtTime(counts.OldestPending), total)
	}
}

// testVolumeClaimers has many goroutines claim, and never release, users
// with work: each user must be leased exactly once.
func testVolumeClaimers(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	workers, users := 8, 30
	if testing.Short() {
		workers, users = 4, 10
	}
	var cs []mlmsoft.VolumeChange
	for u := range users {
		user := fmt.Sprintf("user%02d", u)
		cs = append(cs, due(user, user+"a", time.Duration(u%5)*time.Second), due(user, user+"b", 0))
	}
	enqueue(t, st, cs...)
	now := at(time.Hour)
	var mu sync.Mutex
	owners := map[string]string{}
	var wg sync.WaitGroup
	for w := range workers {
		owner := fmt.Sprintf("worker%d", w)
		wg.Go(func() {
			for range users + 1 { // a correct store runs dry sooner
				got, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: owner, Now: now, Lease: time.Hour, Limit: 2})
				if err != nil {
					t.Errorf("ClaimVolumes: %v", err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, c := range got {
					if c.Seq != 1 {
						t.Errorf("%s claimed %s#%d, not the head", owner, c.UserID, c.Seq)
					}
					if prev, ok := owners[c.UserID]; ok {
						t.Errorf("%s leased to %s and %s", c.UserID, prev, owner)
					}
					owners[c.UserID] = owner
				}
				mu.Unlock()
			}
			t.Errorf("%s never ran out of users to claim", owner)
		})
	}
	wg.Wait()
	if len(owners) != users {
		t.Errorf("%d users claimed, want %d", len(owners), users)
	}
}
