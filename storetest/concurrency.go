package storetest

import (
	"cmp"
	"errors"
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
	s.test(t, "LeaseLapse", testLeaseLapse)
}

// workerBooks is what the workers of testVolumeWorkers saw, kept apart
// from the store to check it.
type workerBooks struct {
	t         *testing.T
	mu        sync.Mutex
	holder    map[string]string  // user -> worker working on it, as the workers see it
	delivered map[string][]int64 // user -> Seqs in delivery order
	done      map[int64]string   // id -> worker that delivered it
	enqueued  map[int64]string   // id -> user
	count     atomic.Int64
}

// take records that owner works on user, which nobody else may do.
func (b *workerBooks) take(user, owner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h, ok := b.holder[user]; ok {
		b.t.Errorf("%s works on %s while %s does", owner, user, h)
	}
	b.holder[user] = owner
}

// drop records that owner stops working on user: from then on the store
// may give the user to another.
func (b *workerBooks) drop(user, owner string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.holder[user] == owner {
		delete(b.holder, user)
	}
}

// expect checks that c is the change owner should work on next: the
// lowest Seq of its user not delivered.
func (b *workerBooks) expect(owner string, c mlmsoft.VolumeChange) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if want := int64(len(b.delivered[c.UserID]) + 1); c.Seq != want {
		b.t.Errorf("%s was given %s#%d, want %s#%d (the head)", owner, c.UserID, c.Seq, c.UserID, want)
		return false
	}
	return true
}

// deliveredBy records that owner delivers c. Workers record it before the
// update that may let the user go, so that the next worker to get the user
// finds it in the books.
func (b *workerBooks) deliveredBy(owner string, c mlmsoft.VolumeChange) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if w, ok := b.done[c.ID]; ok {
		b.t.Errorf("%s delivered %s#%d, which %s delivered already", owner, c.UserID, c.Seq, w)
	}
	b.done[c.ID] = owner
	b.delivered[c.UserID] = append(b.delivered[c.UserID], c.Seq)
	b.count.Add(1)
}

// testVolumeWorkers runs workers that claim users and deliver their queues
// (marking each head sending first or not, continuing with Send, keeping
// the lease and finding the next change themselves, or letting go after
// one change) while writers enqueue more changes for the same users. It
// checks that no user is ever worked on by two workers at once, that each
// user's changes are delivered in Seq order, and that every change is
// delivered exactly once.
func testVolumeWorkers(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	workers, users, calls, size, writers := 6, 24, 3, 2, 3
	if testing.Short() {
		workers, users, calls, writers = 3, 8, 2, 2
	}
	total := int64(users * calls * size)
	now := at(hour) // leases of an hour from now never lapse during the test
	deadline := time.Now().Add(30 * time.Second)

	type job struct{ user, call int }
	var jobs []job
	for u := range users {
		for c := range calls {
			jobs = append(jobs, job{u, c})
		}
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(jobs), func(i, j int) { jobs[i], jobs[j] = jobs[j], jobs[i] })

	b := &workerBooks{t: t, holder: map[string]string{}, delivered: map[string][]int64{}, done: map[int64]string{}, enqueued: map[int64]string{}}
	var wg sync.WaitGroup
	for e := range writers {
		wg.Go(func() {
			for i := e; i < len(jobs); i += writers {
				j := jobs[i]
				user := fmt.Sprintf("user%02d", j.user)
				var cs []mlmsoft.VolumeChange
				for c := range size {
					cs = append(cs, change(user, fmt.Sprintf("%s-c%d-%d", user, j.call, c)))
				}
				got, err := st.EnqueueVolumes(ctx, cs)
				if err != nil {
					t.Errorf("EnqueueVolumes: %v", err)
					return
				}
				b.mu.Lock()
				for _, c := range got {
					b.enqueued[c.ID] = c.UserID
				}
				b.mu.Unlock()
			}
		})
	}
	for w := range workers {
		owner := fmt.Sprintf("worker%d", w)
		rng := rand.New(rand.NewPCG(uint64(w), 3))
		wg.Go(func() {
			for b.count.Load() < total {
				if t.Failed() {
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("%s: gave up with %d of %d changes delivered", owner, b.count.Load(), total)
					return
				}
				got, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: owner, Now: now, Lease: hour, Limit: 1 + rng.IntN(3)})
				if err != nil {
					t.Errorf("ClaimVolumes: %v", err)
					return
				}
				if len(got) == 0 {
					time.Sleep(time.Millisecond)
					continue
				}
				for _, h := range got {
					b.take(h.Change.UserID, owner)
				}
				for _, h := range got {
					if !runQueue(t, st, b, owner, h.Change, now, rng) {
						return
					}
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
		want := make([]int64, calls*size)
		for i := range want {
			want[i] = int64(i + 1)
		}
		if got := b.delivered[user]; !slices.Equal(got, want) {
			t.Errorf("%s delivered in order %v, want %v", user, got, want)
		}
	}
	if len(b.done) != len(b.enqueued) {
		t.Errorf("%d changes delivered, %d enqueued", len(b.done), len(b.enqueued))
	}
	c := counts(t, st)
	if !countsEqual(map[mlmsoft.VolumeState]int{mlmsoft.VolumeDelivered: int(total)}, c.Volumes) || !c.OldestOpen.IsZero() {
		t.Errorf("Counts.Volumes = %v, OldestOpen %s; want %d delivered", c.Volumes, fmtTime(c.OldestOpen), total)
	}
	for _, v := range listVolumes(t, st, mlmsoft.VolumeFilter{}) {
		if v.State != mlmsoft.VolumeDelivered || v.LastError != b.done[v.ID] {
			t.Errorf("%s#%d stored %s, delivered by %q; the books say delivered by %q", v.UserID, v.Seq, v.State, v.LastError, b.done[v.ID])
		}
	}
}

// runQueue is one worker's run over the queue of h's user, which it holds.
// It reports false when the test must stop.
func runQueue(t *testing.T, st mlmsoft.Store, b *workerBooks, owner string, h mlmsoft.VolumeChange, now time.Time, rng *rand.Rand) bool {
	ctx := t.Context()
	user, until := h.UserID, now.Add(hour)
	cur := h
	for {
		if !b.expect(owner, cur) {
			return false
		}
		if cur.State == mlmsoft.VolumePending && rng.IntN(2) == 0 {
			// Mark it sending first, keeping the lease.
			u := mlmsoft.VolumeUpdate{ID: cur.ID, Owner: owner, From: []mlmsoft.VolumeState{mlmsoft.VolumePending},
				State: mlmsoft.VolumeSending, Attempts: cur.Attempts + 1, SentAt: now, UpdatedAt: now, KeepLease: true, LeaseUntil: until}
			res, err := st.UpdateVolume(ctx, u)
			if err != nil {
				t.Errorf("%s: marking %s#%d sending: %v", owner, user, cur.Seq, err)
				return false
			}
			cur = res.Change
		}
		d := mlmsoft.VolumeUpdate{ID: cur.ID, Owner: owner, From: openStates, State: mlmsoft.VolumeDelivered,
			Attempts: cur.Attempts, LastError: owner, SentAt: now, DeliveredAt: now, UpdatedAt: now}
		switch style := rng.IntN(4); style {
		case 0, 1: // continue with Send
			d.Send, d.LeaseUntil = &mlmsoft.VolumeSend{At: now, AccountID: 1}, until
			b.deliveredBy(owner, cur)
			b.drop(user, owner) // the store may let go
			res, err := st.UpdateVolume(ctx, d)
			if err != nil {
				t.Errorf("%s: delivering %s#%d with Send: %v", owner, user, cur.Seq, err)
				return false
			}
			if res.Next.ID == 0 {
				return true
			}
			b.take(user, owner)
			if res.Next.State != mlmsoft.VolumeSending || res.Next.UserID != user {
				t.Errorf("%s: Send marked %s#%d %s, want one of %s sending", owner, res.Next.UserID, res.Next.Seq, res.Next.State, user)
				return false
			}
			cur = res.Next
		case 2: // keep the lease, and find the next change itself
			d.KeepLease, d.LeaseUntil = true, until
			b.deliveredBy(owner, cur)
			if _, err := st.UpdateVolume(ctx, d); err != nil {
				t.Errorf("%s: delivering %s#%d keeping the lease: %v", owner, user, cur.Seq, err)
				return false
			}
			// The lowest Seq (IDs of concurrent enqueues need not follow Seq).
			next, err := st.ListVolumes(ctx, mlmsoft.VolumeFilter{UserID: user, States: []mlmsoft.VolumeState{mlmsoft.VolumePending}})
			if err != nil {
				t.Errorf("%s: ListVolumes: %v", owner, err)
				return false
			}
			if len(next) > 0 {
				cur = slices.MinFunc(next, func(a, b mlmsoft.VolumeChange) int { return cmp.Compare(a.Seq, b.Seq) })
				continue
			}
			// Nothing left: let go with an update that changes nothing.
			b.drop(user, owner)
			if _, err := st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: cur.ID, Owner: owner, From: []mlmsoft.VolumeState{mlmsoft.VolumeDelivered},
				State: mlmsoft.VolumeDelivered, Attempts: d.Attempts, LastError: owner, SentAt: now, DeliveredAt: now, UpdatedAt: now}); err != nil {
				t.Errorf("%s: letting go of %s: %v", owner, user, err)
				return false
			}
			return true
		default: // one change, then let go
			b.deliveredBy(owner, cur)
			b.drop(user, owner)
			if _, err := st.UpdateVolume(ctx, d); err != nil {
				t.Errorf("%s: delivering %s#%d: %v", owner, user, cur.Seq, err)
				return false
			}
			return true
		}
	}
}

// testLeaseLapse races a slow worker, whose leases have lapsed, against
// workers claiming the same users: for each user either the slow worker's
// late update succeeds (nobody claimed the user before it) and nobody else
// gets the change, or another worker claimed the user first and the slow
// worker's update fails with ErrLeaseLost.
func testLeaseLapse(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	users, claimers := 24, 3
	if testing.Short() {
		users, claimers = 8, 2
	}
	var cs []mlmsoft.VolumeChange
	for u := range users {
		cs = append(cs, change(fmt.Sprintf("user%02d", u), fmt.Sprintf("k%02d", u)))
	}
	v := enqueue(t, st, cs...)
	now := at(hour)
	slow := claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "slow", Now: now, Lease: minute, Limit: users})
	if len(slow) != users {
		t.Fatalf("slow worker claimed %d users, want %d", len(slow), users)
	}
	later := now.Add(2 * minute)

	var (
		mu         sync.Mutex
		slowOK     = map[int64]bool{}
		slowErr    = map[int64]bool{}
		claimed    = map[int64]string{}
		wg         sync.WaitGroup
		firstClaim = make(chan struct{})
		once       sync.Once
	)
	wg.Go(func() {
		// Once a claimer took the first users, the slow worker updates
		// every user, from the last: it meets the claimers, and reaches
		// users claimed from under it.
		<-firstClaim
		for _, h := range slices.Backward(slow) {
			d := deliver(h.ID, "slow", later)
			d.LastError = "slow"
			_, err := st.UpdateVolume(ctx, d)
			mu.Lock()
			switch {
			case err == nil:
				slowOK[h.ID] = true
			case errors.Is(err, mlmsoft.ErrLeaseLost):
				slowErr[h.ID] = true
			default:
				t.Errorf("slow worker's late update of %s: %v, want success or ErrLeaseLost", h.UserID, err)
			}
			mu.Unlock()
		}
	})
	for w := range claimers {
		owner := fmt.Sprintf("claimer%d", w)
		wg.Go(func() {
			defer once.Do(func() { close(firstClaim) })
			for range users + 1 {
				got, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: owner, Now: later, Lease: hour, Limit: 2})
				if err != nil {
					t.Errorf("ClaimVolumes: %v", err)
					return
				}
				if len(got) == 0 {
					return
				}
				for _, hc := range got {
					h := hc.Change
					mu.Lock()
					once.Do(func() { close(firstClaim) })
					if prev, ok := claimed[h.ID]; ok {
						t.Errorf("%s claimed %s, claimed by %s already", owner, h.UserID, prev)
					}
					claimed[h.ID] = owner
					mu.Unlock()
					d := deliver(h.ID, owner, later)
					d.LastError = owner
					if _, err := st.UpdateVolume(ctx, d); err != nil {
						t.Errorf("%s: delivering %s: %v", owner, h.UserID, err)
					}
				}
			}
		})
	}
	wg.Wait()
	for _, c := range v {
		ok, lost, by := slowOK[c.ID], slowErr[c.ID], claimed[c.ID]
		switch {
		case ok && by != "":
			t.Errorf("%s: the slow worker's late update succeeded and %s claimed it too", c.UserID, by)
		case lost && by == "":
			t.Errorf("%s: the slow worker's late update failed with ErrLeaseLost, yet nobody claimed it", c.UserID)
		case !ok && !lost:
			continue // reported above
		}
		want := by
		if ok {
			want = "slow"
		}
		if got := getVolume(t, st, c.ID); got.State != mlmsoft.VolumeDelivered || got.LastError != want {
			t.Errorf("%s stored %s by %q, want delivered by %q", c.UserID, got.State, got.LastError, want)
		}
	}
}
