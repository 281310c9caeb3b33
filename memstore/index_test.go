package memstore

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
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
	seeds, ops := 4, 2000
	if testing.Short() {
		seeds, ops = 2, 600
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
	tm := func() time.Time {
		if rng.IntN(6) == 0 {
			return time.Time{}
		}
		return base.Add(time.Duration(rng.IntN(12)) * time.Minute)
	}
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	users := []string{"a", "b", "c", "d", "e", "f"}
	owners := []string{"", "w1", "w2", "w3"}
	emails := []string{"", "", "x@example.com", "y@example.com", "z@example.com"}
	vstates := append(slices.Clone(mlmsoft.VolumeStates), "held")
	lstates := append(slices.Clone(mlmsoft.LinkStates), "paused")
	keys, events := 0, 0
	newEvents := func() []mlmsoft.Event {
		var out []mlmsoft.Event
		for range rng.IntN(3) {
			events++
			out = append(out, mlmsoft.Event{ID: fmt.Sprint("e", events), Attempts: rng.IntN(2), NextAttemptAt: tm(), CreatedAt: tm()})
		}
		if len(out) > 0 && rng.IntN(10) == 0 {
			out[0].ID = fmt.Sprint("e", rng.IntN(events)+1) // maybe taken
		}
		return out
	}
	eventIDs := func() []string {
		var ids []string
		for id := range s.events {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		return ids
	}
	for op := range ops {
		switch rng.IntN(16) {
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
					NextAttemptAt: tm(), CreatedAt: tm(), UpdatedAt: tm(),
				})
			}
			_, _ = s.EnqueueVolumes(ctx, batch)
		case 2, 3:
			c := mlmsoft.VolumeClaim{Owner: pick(owners[1:]), Now: tm(), Lease: time.Duration(rng.IntN(4)) * time.Minute, Limit: 1 + rng.IntN(3)}
			want := s.bruteClaimVolumes(c)
			claimed, err := s.ClaimVolumes(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			var got []mlmsoft.VolumeChange
			for _, h := range claimed {
				got = append(got, h.Change)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("op %d: ClaimVolumes(%+v) = %v, a scan says %v", op, c, volIDs(got), volIDs(want))
			}
		case 4, 5:
			if s.lastID == 0 {
				continue
			}
			u := mlmsoft.VolumeUpdate{
				ID: 1 + rng.Int64N(s.lastID), Owner: pick(owners), KeepLease: rng.IntN(3) == 0, LeaseUntil: tm(),
				State: vstates[rng.IntN(len(vstates))], NextAttemptAt: tm(), UpdatedAt: tm(), Events: newEvents(),
			}
			if r := s.vols[u.ID]; r != nil && rng.IntN(4) > 0 {
				u.From = []mlmsoft.VolumeState{r.c.State}
			} else {
				u.From = []mlmsoft.VolumeState{vstates[rng.IntN(len(vstates))]}
			}
			if rng.IntN(2) == 0 {
				u.Send = &mlmsoft.VolumeSend{At: tm(), AccountID: 7}
			}
			before := s.eventCount()
			res, err := s.UpdateVolume(ctx, u)
			if err == nil && s.eventCount() != before+len(u.Events) {
				t.Fatalf("op %d: UpdateVolume stored %d events of %d", op, s.eventCount()-before, len(u.Events))
			}
			if err == nil && res.Next.ID != 0 && (res.Next.State != mlmsoft.VolumeSending || res.Next.UserID != res.Change.UserID) {
				t.Fatalf("op %d: Send marked %+v", op, res.Next)
			}
		case 6:
			_, _ = s.PurgeVolumes(ctx, tm(), 1+rng.IntN(4))
		case 7, 8:
			l := mlmsoft.Link{
				UserID: pick(users), Email: pick(emails), State: lstates[rng.IntN(len(lstates))],
				NextAttemptAt: tm(), UpdatedAt: tm(),
			}
			if cur, err := s.GetLink(ctx, l.UserID); err == nil {
				l.Version = cur.Version
				if rng.IntN(5) == 0 {
					l.Version--
				}
				_, _ = s.UpdateLink(ctx, mlmsoft.LinkUpdate{
					Link: l, Owner: pick(owners), KeepLease: rng.IntN(3) == 0, LeaseUntil: tm(),
					WakeVolumes: rng.IntN(2) == 0, Events: newEvents(),
				})
			} else {
				_, _ = s.CreateLink(ctx, l, newEvents()...)
			}
		case 9, 10:
			c := mlmsoft.LinkClaim{Owner: pick(owners[1:]), Now: tm(), Lease: time.Duration(rng.IntN(4)) * time.Minute, Limit: 1 + rng.IntN(3)}
			want := s.bruteClaimLinks(c)
			got, err := s.ClaimLinks(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(linkUserIDs(got), want) {
				t.Fatalf("op %d: ClaimLinks(%+v) = %v, a scan says %v", op, c, linkUserIDs(got), want)
			}
		case 11, 12:
			c := mlmsoft.EventClaim{Owner: pick(owners[1:]), Now: tm(), Lease: time.Duration(rng.IntN(4)) * time.Minute, Limit: 1 + rng.IntN(3)}
			want := s.bruteClaimEvents(c)
			got, err := s.ClaimEvents(ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if ids := evIDs(got); !slices.Equal(ids, want) {
				t.Fatalf("op %d: ClaimEvents(%+v) = %v, a scan says %v", op, c, ids, want)
			}
		case 13, 14:
			ids := eventIDs()
			if len(ids) == 0 {
				continue
			}
			_ = s.UpdateEvent(ctx, mlmsoft.EventUpdate{
				ID: pick(ids), Owner: pick(owners), Done: rng.IntN(3) == 0,
				Attempts: rng.IntN(3), NextAttemptAt: tm(), LastError: "x",
			})
		case 15:
			want := s.bruteCounts()
			got, err := s.Counts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !countsMatch(got.Links, want.Links) || !countsMatch(got.Volumes, want.Volumes) || !got.OldestOpen.Equal(want.OldestOpen) ||
				got.Events != want.Events || got.FailingEvents != want.FailingEvents {
				t.Fatalf("op %d: Counts = %+v, a scan says %+v", op, got, want)
			}
		}
		s.checkIndexes(t, op)
	}
}

func (s *Store) eventCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
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

func evIDs(es []mlmsoft.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// bruteClaimVolumes is ClaimVolumes by a scan of every change, without
// leasing anything.
func (s *Store) bruteClaimVolumes(c mlmsoft.VolumeClaim) []mlmsoft.VolumeChange {
	var heads []mlmsoft.VolumeChange
	for _, q := range s.users {
		for _, r := range q.changes {
			if r.c.State.Final() {
				continue
			}
			if dueAt(r.c.NextAttemptAt, c.Now) && !q.lease.Held(c.Now) {
				heads = append(heads, r.c)
			}
			break
		}
	}
	slices.SortFunc(heads, func(a, b mlmsoft.VolumeChange) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), cmp.Compare(a.ID, b.ID))
	})
	return heads[:min(len(heads), c.Limit)]
}

// bruteClaimLinks is ClaimLinks by a scan of every link, without leasing
// anything; it returns the user ids.
func (s *Store) bruteClaimLinks(c mlmsoft.LinkClaim) []string {
	var cands []mlmsoft.Link
	for _, r := range s.links {
		if dueAt(r.l.NextAttemptAt, c.Now) && !r.l.Lease.Held(c.Now) {
			cands = append(cands, r.l)
		}
	}
	slices.SortFunc(cands, func(a, b mlmsoft.Link) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), strings.Compare(a.UserID, b.UserID))
	})
	return linkUserIDs(cands[:min(len(cands), c.Limit)])
}

// bruteClaimEvents is ClaimEvents by a scan of every event, without leasing
// anything; it returns the event ids.
func (s *Store) bruteClaimEvents(c mlmsoft.EventClaim) []string {
	var cands []mlmsoft.Event
	for _, r := range s.events {
		if !r.e.NextAttemptAt.After(c.Now) && !r.e.Lease.Held(c.Now) {
			cands = append(cands, r.e)
		}
	}
	slices.SortFunc(cands, func(a, b mlmsoft.Event) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return evIDs(cands[:min(len(cands), c.Limit)])
}

// bruteCounts is Counts by a scan of every record.
func (s *Store) bruteCounts() mlmsoft.Counts {
	c := mlmsoft.Counts{Links: map[mlmsoft.LinkState]int{}, Volumes: map[mlmsoft.VolumeState]int{}}
	for _, r := range s.links {
		c.Links[r.l.State]++
	}
	found := false
	for _, r := range s.vols {
		c.Volumes[r.c.State]++
		if !r.c.State.Final() && (!found || r.c.CreatedAt.Before(c.OldestOpen)) {
			c.OldestOpen, found = r.c.CreatedAt, true
		}
	}
	for _, r := range s.events {
		c.Events++
		if r.e.Attempts > 0 {
			c.FailingEvents++
		}
	}
	return c
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
		if p := (i - 1) / 2; i > 0 && h.less(e, &h.items[p]) {
			t.Fatalf("op %d: %s[%d] is less than its parent", op, name, i)
		}
	}
}

// wantHeap is the heap tag of a leasable record: none unless it can ever
// be due; the lease heap while an owner holds it not seen lapsed; else the
// due heap.
func wantHeap(eligible bool, owner string, lapsed bool) uint8 {
	switch {
	case !eligible:
		return 0
	case owner != "" && !lapsed:
		return inLeased
	default:
		return inReady
	}
}

// checkIndexes fails t unless every index agrees with the records.
func (s *Store) checkIndexes(t *testing.T, op int) {
	t.Helper()
	checkHeap(t, op, "linkHeaps.ready", &s.linkHeaps.ready)
	checkHeap(t, op, "linkHeaps.leased", &s.linkHeaps.leased)
	checkHeap(t, op, "open", &s.open)
	checkHeap(t, op, "userHeaps.ready", &s.userHeaps.ready)
	checkHeap(t, op, "userHeaps.leased", &s.userHeaps.leased)
	checkHeap(t, op, "eventHeaps.ready", &s.eventHeaps.ready)
	checkHeap(t, op, "eventHeaps.leased", &s.eventHeaps.leased)

	lcounts := map[mlmsoft.LinkState]int{}
	var ids []string
	for id, r := range s.links {
		ids = append(ids, id)
		lcounts[r.l.State]++
		if r.l.Email != "" && s.emails[r.l.Email] != r {
			t.Fatalf("op %d: email index misses %s", op, id)
		}
		if want := wantHeap(!r.l.NextAttemptAt.IsZero(), r.l.Lease.Owner, r.heap.lapsed); r.heap.in != want {
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
	if len(s.byID) != len(s.vols) {
		t.Fatalf("op %d: %d changes by ID, %d stored", op, len(s.byID), len(s.vols))
	}
	for i, r := range s.byID {
		vcounts[r.c.State]++
		if s.vols[r.c.ID] != r || s.keys[r.c.IdempotencyKey] != r || r.gone {
			t.Fatalf("op %d: change %d misfiled", op, r.c.ID)
		}
		if i > 0 && s.byID[i-1].c.ID >= r.c.ID {
			t.Fatalf("op %d: byID out of order at %d", op, i)
		}
		if open := r.heap.in == inOpen; open != !r.c.State.Final() {
			t.Fatalf("op %d: change %d (%s) in the open heap: %v", op, r.c.ID, r.c.State, open)
		}
		if r.q.changes[r.pos] != r {
			t.Fatalf("op %d: change %d not at its place in its queue", op, r.c.ID)
		}
	}
	if len(s.keys) != len(s.vols) {
		t.Fatalf("op %d: %d keys for %d changes", op, len(s.keys), len(s.vols))
	}
	if !countsMatch(vcounts, s.volCounts) {
		t.Fatalf("op %d: volume counts %v, records say %v", op, s.volCounts, vcounts)
	}
	for id, q := range s.users {
		head := len(q.changes)
		for i, r := range q.changes {
			if r.pos != i || (i > 0 && r.c.Seq <= q.changes[i-1].c.Seq) || r.c.Seq > q.lastSeq || r.q != q {
				t.Fatalf("op %d: %s's change %d at %d has Seq %d", op, id, r.c.ID, i, r.c.Seq)
			}
			if !r.c.State.Final() && head == len(q.changes) {
				head = i
			}
		}
		if q.head != head {
			t.Fatalf("op %d: %s's head at %d, want %d", op, id, q.head, head)
		}
		h := q.headRec()
		if want := wantHeap(h != nil && !h.c.NextAttemptAt.IsZero(), q.lease.Owner, q.heap.lapsed); q.heap.in != want {
			t.Fatalf("op %d: user %s in heap %d, want %d", op, id, q.heap.in, want)
		}
	}

	failing := 0
	for id, r := range s.events {
		if r.e.Attempts > 0 {
			failing++
		}
		if want := wantHeap(true, r.e.Lease.Owner, r.heap.lapsed); r.heap.in != want {
			t.Fatalf("op %d: event %s in heap %d, want %d", op, id, r.heap.in, want)
		}
	}
	if failing != s.failing {
		t.Fatalf("op %d: %d failing events counted, records say %d", op, s.failing, failing)
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
