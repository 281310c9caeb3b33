package memstore

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// TestIndexesMatchBruteForce drives a Store with random operations (claims
// with times moving back and forth included) and checks after each one that
// the indexes agree with the records, and that every claim returns what a
// scan of all records says it should.
func TestIndexesMatchBruteForce(t *testing.T) {
	t.Parallel()
	seeds, ops := 3, 1500
	if testing.Short() {
		seeds, ops = 2, 500
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			t.Parallel()
			runRandomOps(t, rand.New(rand.NewPCG(seed, 7)), ops)
		})
	}
}

func runRandomOps(t *testing.T, rng *rand.Rand, ops int) {
	ctx := context.Background()
	s := New()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tm := func() time.Time { return base.Add(time.Duration(rng.IntN(12)) * time.Minute) }
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	users := []string{"a", "b", "c", "d", "e", "f"}
	owners := []string{"", "w1", "w2", "w3"}
	emails := []string{"", "", "x@example.com", "y@example.com", "z@example.com"}
	vstates := []mlmsoft.VolumeState{
		mlmsoft.VolumePending, mlmsoft.VolumeSending, mlmsoft.VolumeDelivered, mlmsoft.VolumeParked,
		mlmsoft.VolumeUncertain, mlmsoft.VolumeRejected, mlmsoft.VolumeSkipped,
	}
	lstates := []mlmsoft.LinkState{mlmsoft.LinkPending, mlmsoft.LinkCreated, mlmsoft.LinkLinked, mlmsoft.LinkFailed}
	keys := 0
	for op := range ops {
		switch rng.IntN(10) {
		case 0, 1:
			var batch []mlmsoft.VolumeChange
			for range 1 + rng.IntN(3) {
				key := fmt.Sprint("k", keys)
				if keys > 0 && rng.IntN(8) == 0 {
					key = fmt.Sprint("k", rng.IntN(keys)) // a repeat, maybe a conflicting one
				} else {
					keys++
				}
				st := mlmsoft.VolumePending
				if rng.IntN(4) == 0 {
					st = vstates[rng.IntN(len(vstates))]
				}
				batch = append(batch, mlmsoft.VolumeChange{
					UserID: pick(users), IdempotencyKey: key, Alias: "PV", State: st,
					NextAttemptAt: tm(), CreatedAt: tm(),
				})
			}
			_, _ = s.EnqueueVolumes(ctx, batch)
		case 2, 3:
			c := mlmsoft.VolumeClaim{Owner: pick(owners[1:]), Now: tm(), Lease: time.Duration(rng.IntN(4)) * time.Minute, Limit: 1 + rng.IntN(3)}
			for _, u := range users {
				if rng.IntN(6) == 0 {
					c.Exclude = append(c.Exclude, u)
				}
			}
			want := s.bruteClaimVolumes(c)
			got, err := s.ClaimVolumes(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("op %d: ClaimVolumes(%+v) = %v, a scan says %v", op, c, volIDs(got), volIDs(want))
			}
		case 4:
			if len(s.vols) == 0 {
				continue
			}
			u := mlmsoft.VolumeUpdate{
				ID: 1 + rng.Int64N(int64(len(s.vols))), Owner: pick(owners), Release: rng.IntN(2) == 0,
				State: vstates[rng.IntN(len(vstates))], NextAttemptAt: tm(), UpdatedAt: tm(),
			}
			if rng.IntN(3) == 0 {
				u.From = []mlmsoft.VolumeState{vstates[rng.IntN(len(vstates))]}
			}
			_, _ = s.UpdateVolume(ctx, u)
		case 5:
			_ = s.ReleaseVolumeUser(ctx, pick(owners), pick(users))
		case 6:
			_ = s.WakeVolumes(ctx, pick(users), tm())
		case 7:
			l := mlmsoft.Link{
				UserID: pick(users), Email: pick(emails), State: lstates[rng.IntN(len(lstates))],
				NextAttemptAt: tm(), LeaseOwner: pick(owners), LeaseUntil: tm(),
			}
			if cur, err := s.GetLink(ctx, l.UserID); err == nil {
				l.Version = cur.Version
				if rng.IntN(5) == 0 {
					l.Version--
				}
				_, _ = s.UpdateLink(ctx, l)
			} else {
				_, _ = s.CreateLink(ctx, l)
			}
		case 8, 9:
			c := mlmsoft.LinkClaim{Owner: pick(owners[1:]), Now: tm(), Lease: time.Duration(rng.IntN(4)) * time.Minute, Limit: 1 + rng.IntN(3)}
			want := s.bruteClaimLinks(c)
			got, err := s.ClaimLinks(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(linkUserIDs(got), want) {
				t.Fatalf("op %d: ClaimLinks(%+v) = %v, a scan says %v", op, c, linkUserIDs(got), want)
			}
		}
		s.checkIndexes(t, op)
	}
}

func volIDs(cs []mlmsoft.VolumeChange) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s#%d", c.UserID, c.Seq))
	}
	return out
}

func linkUserIDs(ls []mlmsoft.Link) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.UserID)
	}
	return out
}

// bruteClaimVolumes is ClaimVolumes by a scan of every change, without
// leasing anything.
func (s *Store) bruteClaimVolumes(c mlmsoft.VolumeClaim) []mlmsoft.VolumeChange {
	type cand struct {
		head *volRec
		seq  uint64
	}
	var cands []cand
	for _, q := range s.users {
		var head *volRec
		for _, r := range q.changes {
			if !r.c.State.Final() {
				head = r
				break
			}
		}
		if head == nil || !openState(head.c.State) || head.c.NextAttemptAt.After(c.Now) ||
			leaseLive(q.leaseOwner, q.leaseUntil, c.Now) || slices.Contains(c.Exclude, q.id) {
			continue
		}
		cands = append(cands, cand{head, q.heap.seq})
	}
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(a.head.c.NextAttemptAt.Compare(b.head.c.NextAttemptAt), cmp.Compare(a.seq, b.seq))
	})
	var out []mlmsoft.VolumeChange
	for _, x := range cands[:min(len(cands), c.Limit)] {
		out = append(out, x.head.c)
	}
	return out
}

// bruteClaimLinks is ClaimLinks by a scan of every link, without leasing
// anything; it returns the user ids.
func (s *Store) bruteClaimLinks(c mlmsoft.LinkClaim) []string {
	var cands []*linkRec
	for _, r := range s.links {
		if claimableLink(r.l.State) && !r.l.NextAttemptAt.After(c.Now) && !leaseLive(r.l.LeaseOwner, r.l.LeaseUntil, c.Now) {
			cands = append(cands, r)
		}
	}
	slices.SortFunc(cands, func(a, b *linkRec) int {
		return cmp.Or(a.l.NextAttemptAt.Compare(b.l.NextAttemptAt), cmp.Compare(a.heap.seq, b.heap.seq))
	})
	var out []string
	for _, r := range cands[:min(len(cands), c.Limit)] {
		out = append(out, r.l.UserID)
	}
	return out
}

// checkHeap fails t unless h is a heap whose entries carry their records'
// current keys and whose records know their places.
func checkHeap[T heapItem](t *testing.T, op int, name string, h *timeHeap[T]) {
	t.Helper()
	for i := range h.items {
		e := &h.items[i]
		if s := e.x.slot(); s.in != h.tag || s.idx != i {
			t.Fatalf("op %d: %s[%d] records slot %+v", op, name, i, *s)
		}
		if fresh := h.entry(e.x); fresh != *e {
			t.Fatalf("op %d: %s[%d] has a stale key", op, name, i)
		}
		if p := (i - 1) / 2; i > 0 && e.less(&h.items[p]) {
			t.Fatalf("op %d: %s[%d] is less than its parent", op, name, i)
		}
	}
}

// checkIndexes fails t unless every index agrees with the records.
func (s *Store) checkIndexes(t *testing.T, op int) {
	t.Helper()
	checkHeap(t, op, "linkReady", &s.linkReady)
	checkHeap(t, op, "linkLeased", &s.linkLeased)
	checkHeap(t, op, "open", &s.open)
	checkHeap(t, op, "userReady", &s.userReady)
	checkHeap(t, op, "userLease", &s.userLease)

	lcounts := map[mlmsoft.LinkState]int{}
	var ids []string
	for id, r := range s.links {
		ids = append(ids, id)
		lcounts[r.l.State]++
		if r.l.Email != "" && s.emails[r.l.Email] != r {
			t.Fatalf("op %d: email index misses %s", op, id)
		}
		want := uint8(0)
		switch {
		case !claimableLink(r.l.State):
		case r.l.LeaseOwner != "" && !r.heap.lapsed:
			want = inLeased
		default:
			want = inReady
		}
		if r.heap.in != want {
			t.Fatalf("op %d: link %s in heap %d, want %d", op, id, r.heap.in, want)
		}
	}
	for e, r := range s.emails {
		if r.l.Email != e {
			t.Fatalf("op %d: email index has a stale entry", op)
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, s.linkIDs) {
		t.Fatalf("op %d: linkIDs %v, links %v", op, s.linkIDs, ids)
	}
	if !countsMatch(lcounts, s.linkCounts) {
		t.Fatalf("op %d: link counts %v, records say %v", op, s.linkCounts, lcounts)
	}

	vcounts := map[mlmsoft.VolumeState]int{}
	for i, r := range s.vols {
		vcounts[r.c.State]++
		if r.c.ID != int64(i+1) || s.keys[r.c.IdempotencyKey] != r {
			t.Fatalf("op %d: change %d misplaced", op, r.c.ID)
		}
		if open := r.heap.in == inOpen; open != openState(r.c.State) {
			t.Fatalf("op %d: change %d (%s) in the open heap: %v", op, r.c.ID, r.c.State, open)
		}
	}
	if !countsMatch(vcounts, s.volCounts) {
		t.Fatalf("op %d: volume counts %v, records say %v", op, s.volCounts, vcounts)
	}
	for id, q := range s.users {
		head := len(q.changes)
		for i, r := range q.changes {
			if r.pos != i || r.c.Seq != int64(i+1) {
				t.Fatalf("op %d: %s's change %d at %d has Seq %d", op, id, r.c.ID, i, r.c.Seq)
			}
			if !r.c.State.Final() && head == len(q.changes) {
				head = i
			}
		}
		if q.head != head {
			t.Fatalf("op %d: %s's head at %d, want %d", op, id, q.head, head)
		}
		want := uint8(0)
		switch h := q.headRec(); {
		case h == nil || !openState(h.c.State):
		case q.leaseOwner != "" && !q.heap.lapsed:
			want = inLeased
		default:
			want = inReady
		}
		if q.heap.in != want {
			t.Fatalf("op %d: user %s in heap %d, want %d", op, id, q.heap.in, want)
		}
	}
}

func countsMatch[K comparable](a, b map[K]int) bool {
	for k, n := range a {
		if b[k] != n {
			return false
		}
	}
	for k, n := range b {
		if a[k] != n {
			return false
		}
	}
	return true
}
