package sqlstore

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

func change(user, key, amount string) mlmsoft.VolumeChange {
	return mlmsoft.VolumeChange{
		UserID: user, IdempotencyKey: key, BatchID: "batch-" + key,
		Alias: "PV", Amount: mlmsoft.MustAmount(amount), OrderID: "order-" + key,
		State: mlmsoft.VolumePending, CreatedAt: t0, UpdatedAt: t0,
	}
}

func mustEnqueue(t *testing.T, s *Store, cs ...mlmsoft.VolumeChange) []mlmsoft.VolumeChange {
	t.Helper()
	got, err := s.EnqueueVolumes(testCtx(t), cs)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func wantVolume(v mlmsoft.VolumeChange, id, seq int64) mlmsoft.VolumeChange {
	v.ID, v.Seq = id, seq
	for _, p := range []*time.Time{&v.NextAttemptAt, &v.CreatedAt, &v.UpdatedAt, &v.SentAt, &v.DeliveredAt, &v.ResolvedAt} {
		*p = stored(*p)
	}
	return v
}

func checkVolume(t *testing.T, what string, got, want mlmsoft.VolumeChange) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func TestEnqueueRoundTrip(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		full := change("u1", "k1", "0.1")
		full.Alias, full.Attempts, full.NextAttemptAt, full.LastError = "Status", 2, t0.Add(time.Second), "e"
		full.DocumentID, full.AccountID, full.SentAt, full.DeliveredAt = 5, 6, t0.Add(2*time.Second), t0.Add(3*time.Second)
		full.ResolvedBy, full.ResolvedNote, full.ResolvedAt = "op", "note", t0.Add(4*time.Second)
		full.Seq, full.ID = 99, 99 // assigned by the store
		in := []mlmsoft.VolumeChange{
			full,
			change("u1", "k2", "-3.75"),
			change("u2", "k3", "123456789012345"),
			change("u1", "k4", "0.000000000000001"),
			change("u2", "", "-999999999999999"),
		}
		got := mustEnqueue(t, s, in...)
		seqs := []int64{1, 2, 1, 3, 2}
		for i := range in {
			if i > 0 && got[i].ID <= got[i-1].ID {
				t.Errorf("ids not increasing: %d then %d", got[i-1].ID, got[i].ID)
			}
			checkVolume(t, fmt.Sprint("enqueued ", i), got[i], wantVolume(in[i], got[i].ID, seqs[i]))
		}
		ids := []int64{got[3].ID, got[0].ID, got[3].ID}
		back, err := s.GetVolumes(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			if back[i].ID != id {
				t.Fatalf("GetVolumes order: got %d at %d, want %d", back[i].ID, i, id)
			}
		}
		checkVolume(t, "GetVolumes", back[1], got[0])
		if back[0].Amount.String() != "0.000000000000001" {
			t.Errorf("amount came back as %s", back[0].Amount)
		}
		if _, err := s.GetVolumes(ctx, []int64{got[0].ID, 1 << 40}); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Errorf("GetVolumes(missing) = %v, want ErrNotFound", err)
		}
		if out, err := s.GetVolumes(ctx, nil); err != nil || len(out) != 0 {
			t.Errorf("GetVolumes(nil) = %v, %v", out, err)
		}
		next := mustEnqueue(t, s, change("u1", "k5", "1"))
		if next[0].Seq != 4 {
			t.Errorf("next seq of u1 = %d, want 4", next[0].Seq)
		}
		if _, err := s.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{Alias: "PV"}}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Errorf("enqueue without user = %v, want ErrInvalidInput", err)
		}
	})
}

func TestEnqueueIdempotency(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		first := mustEnqueue(t, s, change("u", "k1", "10"), change("u", "k2", "20"))

		// Same keys, same content: the stored changes come back, nothing new.
		again := change("u", "k2", "20.0")
		again.BatchID, again.CreatedAt = "other batch", t0.Add(time.Hour) // not compared
		got := mustEnqueue(t, s, again, change("u", "k3", "30"), change("u", "k3", "30"), change("u", "k1", "10"))
		checkVolume(t, "repeat of k2", got[0], first[1])
		checkVolume(t, "repeat of k1", got[3], first[0])
		if got[1].ID != got[2].ID || got[1].Seq != 3 {
			t.Errorf("k3 twice in one call: ids %d, %d seq %d; want one change at seq 3", got[1].ID, got[2].ID, got[1].Seq)
		}

		// Different content under a stored key, or a key repeated in the
		// call with different content: nothing of the call is stored.
		for _, batch := range [][]mlmsoft.VolumeChange{
			{change("u", "new1", "1"), change("u", "k1", "11")},
			{change("u", "new1", "1"), change("v", "k1", "10")},
			{change("u", "new1", "1"), func() mlmsoft.VolumeChange { c := change("u", "k1", "10"); c.Alias = "GV"; return c }()},
			{change("u", "new1", "1"), func() mlmsoft.VolumeChange { c := change("u", "k1", "10"); c.OrderID = "o"; return c }()},
			{change("u", "new1", "1"), change("u", "new2", "1"), change("u", "new2", "2")},
		} {
			if _, err := s.EnqueueVolumes(ctx, batch); !errors.Is(err, mlmsoft.ErrIdempotencyConflict) {
				t.Errorf("conflicting batch: err = %v, want ErrIdempotencyConflict", err)
			}
		}
		all, err := s.ListVolumes(ctx, mlmsoft.VolumeFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 3 {
			t.Fatalf("%d changes stored, want 3: %+v", len(all), all)
		}
		// Empty keys never collide; the queue continues at 4.
		got = mustEnqueue(t, s, change("u", "", "1"), change("u", "", "1"))
		if got[0].ID == got[1].ID || got[0].Seq != 4 || got[1].Seq != 5 {
			t.Errorf("keyless changes: %+v", got)
		}
	})
}

// TestEnqueueConcurrentSeq enqueues for one user from many goroutines and
// two pools while a reader checks that the visible queue never has a gap:
// Seq order is commit order.
func TestEnqueueConcurrentSeq(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		ctx := testCtx(t)
		stores := []*Store{db.store(), db.store()}
		const writers, batches = 6, 6
		var (
			wg   sync.WaitGroup
			done atomic.Bool
			errs = make(chan error, writers+1)
		)
		wg.Go(func() { // the reader
			for !done.Load() {
				vs, err := stores[1].ListVolumes(ctx, mlmsoft.VolumeFilter{UserID: "u"})
				if err != nil {
					errs <- err
					return
				}
				for i, v := range vs {
					if v.Seq != int64(i+1) {
						errs <- fmt.Errorf("visible queue has seq %d at position %d", v.Seq, i+1)
						return
					}
				}
			}
		})
		var writersWG sync.WaitGroup
		for w := range writers {
			s := stores[w%2]
			writersWG.Go(func() {
				for b := range batches {
					// Two users in both orders: the user rows are locked in
					// a fixed order, so this cannot deadlock.
					batch := []mlmsoft.VolumeChange{
						change("u", fmt.Sprintf("w%d-b%d-1", w, b), "1"),
						change("v", fmt.Sprintf("w%d-b%d-v", w, b), "1"),
						change("u", fmt.Sprintf("w%d-b%d-2", w, b), "2"),
					}
					if w%2 == 1 {
						batch[0], batch[1] = batch[1], batch[0]
					}
					got, err := s.EnqueueVolumes(ctx, batch)
					if err != nil {
						errs <- err
						return
					}
					var us []mlmsoft.VolumeChange
					for _, c := range got {
						if c.UserID == "u" {
							us = append(us, c)
						}
					}
					if us[1].Seq != us[0].Seq+1 || us[1].Amount.String() != "2" {
						errs <- fmt.Errorf("a batch's changes of u are not consecutive: %d, %d", us[0].Seq, us[1].Seq)
					}
				}
			})
		}
		writersWG.Wait()
		done.Store(true)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		for user, n := range map[string]int{"u": 2 * writers * batches, "v": writers * batches} {
			vs, err := stores[0].ListVolumes(ctx, mlmsoft.VolumeFilter{UserID: user})
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != n {
				t.Fatalf("%s has %d changes, want %d", user, len(vs), n)
			}
			for i, v := range vs { // ordered by ID
				if v.Seq != int64(i+1) {
					t.Fatalf("%s: change %d (by id) has seq %d", user, i+1, v.Seq)
				}
			}
		}
	})
}

// setState moves a change to state as an operator would.
func setState(t *testing.T, s *Store, id int64, state mlmsoft.VolumeState) {
	t.Helper()
	if _, err := s.UpdateVolume(testCtx(t), mlmsoft.VolumeUpdate{ID: id, State: state, UpdatedAt: t0}); err != nil {
		t.Fatal(err)
	}
}

func heads(vs []mlmsoft.VolumeChange) []string {
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%s#%d", v.UserID, v.Seq))
	}
	return out
}

func TestClaimVolumes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		at := func(c mlmsoft.VolumeChange, d time.Duration) mlmsoft.VolumeChange {
			c.NextAttemptAt = t0.Add(d)
			return c
		}
		vs := mustEnqueue(t, s,
			at(change("a", "a1", "1"), -time.Second), // a: head delivered, then a#2 due
			at(change("a", "a2", "1"), -time.Minute),
			change("b", "b1", "1"),                  // b: head parked: blocked
			change("b", "b2", "1"),                  //
			at(change("c", "c1", "1"), time.Second), // c: not due yet
			change("d", "d1", "1"),                  // d: head uncertain: blocked
			change("e", "e1", "1"),                  // e: head rejected, e#2 skipped, e#3 sending
			change("e", "e2", "1"),
			at(change("e", "e3", "1"), -time.Hour),
			change("f", "f1", "1"), // f: excluded
			at(change("g", "g1", "1"), 0),
			change("h", "h1", "1"), // h: everything final
		)
		setState(t, s, vs[0].ID, mlmsoft.VolumeDelivered)
		setState(t, s, vs[2].ID, mlmsoft.VolumeParked)
		setState(t, s, vs[5].ID, mlmsoft.VolumeUncertain)
		setState(t, s, vs[6].ID, mlmsoft.VolumeRejected)
		setState(t, s, vs[7].ID, mlmsoft.VolumeSkipped)
		setState(t, s, vs[8].ID, mlmsoft.VolumeSending)
		setState(t, s, vs[11].ID, mlmsoft.VolumeDelivered)

		claim := mlmsoft.VolumeClaim{Owner: "w1", Now: t0, Lease: time.Minute, Limit: 2, Exclude: []string{"f", "zz"}}
		got, err := s.ClaimVolumes(ctx, claim)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"e#3", "a#2"}; !reflect.DeepEqual(heads(got), want) {
			t.Fatalf("first claim = %q, want %q", heads(got), want)
		}
		checkVolume(t, "claimed head", got[1], func() mlmsoft.VolumeChange {
			v, _ := s.GetVolumes(ctx, []int64{vs[1].ID})
			return v[0]
		}())
		claim.Owner, claim.Limit = "w2", 10
		got, err = s.ClaimVolumes(ctx, claim)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"g#1"}; !reflect.DeepEqual(heads(got), want) {
			t.Fatalf("second claim = %q, want %q", heads(got), want)
		}
		got, err = s.ClaimVolumes(ctx, claim)
		if err != nil || len(got) != 0 {
			t.Fatalf("third claim = %q, %v; want nothing", heads(got), err)
		}
		// After the leases expire: a, c, e and g again, and f without Exclude.
		// e#3 (its NextAttemptAt zeroed by setState) and f#1 tie on the
		// zero time, the earliest, and go by ID.
		claim.Now, claim.Exclude = t0.Add(time.Minute), nil
		got, err = s.ClaimVolumes(ctx, claim)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"e#3", "f#1", "a#2", "g#1", "c#1"}; !reflect.DeepEqual(heads(got), want) {
			t.Fatalf("claim after expiry = %q, want %q", heads(got), want)
		}
		if _, err := s.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: t0}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Errorf("claim with Limit 0 = %v, want ErrInvalidInput", err)
		}
	})
}

func TestUpdateVolume(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		vs := mustEnqueue(t, s, change("u", "1", "1"), change("u", "2", "2"))
		claim := func(owner string, now time.Time) []mlmsoft.VolumeChange {
			t.Helper()
			got, err := s.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: owner, Now: now, Lease: time.Minute, Limit: 5})
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		if got := claim("w1", t0); len(got) != 1 || got[0].ID != vs[0].ID {
			t.Fatalf("claim = %q", heads(got))
		}
		sending := mlmsoft.VolumeUpdate{
			ID: vs[0].ID, Owner: "w1", From: []mlmsoft.VolumeState{mlmsoft.VolumePending},
			State: mlmsoft.VolumeSending, Attempts: 1, SentAt: t0, AccountID: 77, UpdatedAt: t0,
		}
		got, err := s.UpdateVolume(ctx, sending)
		if err != nil {
			t.Fatal(err)
		}
		want := vs[0]
		want.State, want.Attempts, want.SentAt, want.AccountID, want.UpdatedAt = mlmsoft.VolumeSending, 1, stored(t0), 77, stored(t0)
		want.NextAttemptAt = time.Time{} // written as given
		checkVolume(t, "after update", got, want)

		// Wrong from-state, wrong owner, operator during a live lease,
		// missing id: each fails and writes nothing.
		for _, tc := range []struct {
			u    mlmsoft.VolumeUpdate
			want error
		}{
			{sending, mlmsoft.ErrConflict},
			{mlmsoft.VolumeUpdate{ID: vs[0].ID, Owner: "w2", State: mlmsoft.VolumeDelivered}, mlmsoft.ErrLeaseLost},
			{mlmsoft.VolumeUpdate{ID: vs[0].ID, State: mlmsoft.VolumeSkipped, UpdatedAt: t0.Add(59 * time.Second)}, mlmsoft.ErrLeaseLost},
			{mlmsoft.VolumeUpdate{ID: 1 << 40, Owner: "w1", State: mlmsoft.VolumeDelivered}, mlmsoft.ErrNotFound},
		} {
			if _, err := s.UpdateVolume(ctx, tc.u); !errors.Is(err, tc.want) {
				t.Errorf("UpdateVolume(%+v) = %v, want %v", tc.u, err, tc.want)
			}
		}
		back, err := s.GetVolumes(ctx, []int64{vs[0].ID})
		if err != nil {
			t.Fatal(err)
		}
		checkVolume(t, "after failed updates", back[0], want)

		// The lease expired but no one took it: w1 may still finish.
		late := mlmsoft.VolumeUpdate{ID: vs[0].ID, Owner: "w1", From: []mlmsoft.VolumeState{mlmsoft.VolumeSending},
			State: mlmsoft.VolumePending, Attempts: 1, NextAttemptAt: t0.Add(time.Hour), UpdatedAt: t0.Add(2 * time.Minute)}
		if _, err := s.UpdateVolume(ctx, late); err != nil {
			t.Fatalf("update after expiry, not reclaimed: %v", err)
		}
		// Another worker claims the user (its head is pending again, due
		// at t0+1h): w1 has lost the lease.
		if got := claim("w2", t0.Add(time.Hour)); len(got) != 1 || got[0].ID != vs[0].ID {
			t.Fatalf("claim by w2 = %q", heads(got))
		}
		late.From = nil
		if _, err := s.UpdateVolume(ctx, late); !errors.Is(err, mlmsoft.ErrLeaseLost) {
			t.Fatalf("update by w1 after w2 claimed = %v, want ErrLeaseLost", err)
		}
		// w2 delivers and releases: the user is free at once.
		done := mlmsoft.VolumeUpdate{ID: vs[0].ID, Owner: "w2", State: mlmsoft.VolumeDelivered,
			DeliveredAt: t0.Add(time.Hour), UpdatedAt: t0.Add(time.Hour), Release: true}
		if _, err := s.UpdateVolume(ctx, done); err != nil {
			t.Fatal(err)
		}
		if got := claim("w3", t0.Add(time.Hour)); len(got) != 1 || got[0].ID != vs[1].ID {
			t.Fatalf("claim after release = %q, want u#2", heads(got))
		}
		// An operator may act once the lease has expired.
		op := mlmsoft.VolumeUpdate{ID: vs[1].ID, State: mlmsoft.VolumeSkipped, ResolvedBy: "op",
			ResolvedNote: "dup", ResolvedAt: t0.Add(2 * time.Hour), UpdatedAt: t0.Add(2 * time.Hour)}
		got, err = s.UpdateVolume(ctx, op)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != mlmsoft.VolumeSkipped || got.ResolvedBy != "op" || !got.ResolvedAt.Equal(stored(t0.Add(2*time.Hour))) {
			t.Fatalf("operator update stored %+v", got)
		}
	})
}

func TestReleaseWakeListCount(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		a1 := change("a", "a1", "1")
		a1.NextAttemptAt = t0.Add(time.Hour)
		a1.CreatedAt = t0.Add(time.Second)
		b1 := change("b", "b1", "1")
		b1.CreatedAt = t0.Add(-time.Second)
		vs := mustEnqueue(t, s, a1, change("a", "a2", "1"), b1, change("b", "b2", "1"))

		got, err := s.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: t0, Lease: time.Hour, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"b#1"}; !reflect.DeepEqual(heads(got), want) {
			t.Fatalf("claim = %q, want %q", heads(got), want)
		}
		// Releasing someone else's lease changes nothing.
		if err := s.ReleaseVolumeUser(ctx, "intruder", "b"); err != nil {
			t.Fatal(err)
		}
		if err := s.ReleaseVolumeUser(ctx, "w", "nobody"); err != nil {
			t.Fatal(err)
		}
		claim := mlmsoft.VolumeClaim{Owner: "x", Now: t0, Lease: time.Hour, Limit: 5}
		if got, err := s.ClaimVolumes(ctx, claim); err != nil || len(got) != 0 {
			t.Fatalf("claim while b is leased = %q, %v", heads(got), err)
		}
		if err := s.ReleaseVolumeUser(ctx, "w", "b"); err != nil {
			t.Fatal(err)
		}
		// Waking a: its head is due now.
		if err := s.WakeVolumes(ctx, "a", t0); err != nil {
			t.Fatal(err)
		}
		got, err = s.ClaimVolumes(ctx, claim)
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"b#1", "a#1"}; !reflect.DeepEqual(heads(got), want) {
			t.Fatalf("claim after release and wake = %q, want %q", heads(got), want)
		}
		// Wake never moves a change later.
		if err := s.WakeVolumes(ctx, "a", t0.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		back, err := s.GetVolumes(ctx, []int64{vs[0].ID})
		if err != nil {
			t.Fatal(err)
		}
		if !back[0].NextAttemptAt.Equal(stored(t0)) {
			t.Fatalf("NextAttemptAt after a later wake = %v, want %v", back[0].NextAttemptAt, stored(t0))
		}
		if err := s.WakeVolumes(ctx, "a", time.Time{}); err != nil {
			t.Fatal(err)
		}
		if back, _ := s.GetVolumes(ctx, []int64{vs[0].ID}); !back[0].NextAttemptAt.IsZero() {
			t.Fatalf("NextAttemptAt after waking to zero = %v", back[0].NextAttemptAt)
		}

		// x delivers b#1.
		if _, err := s.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: vs[2].ID, Owner: "x", State: mlmsoft.VolumeDelivered, Release: true}); err != nil {
			t.Fatal(err)
		}

		ids := func(vs []mlmsoft.VolumeChange) []int64 {
			var out []int64
			for _, v := range vs {
				out = append(out, v.ID)
			}
			return out
		}
		for _, tt := range []struct {
			f    mlmsoft.VolumeFilter
			want []int64
		}{
			{mlmsoft.VolumeFilter{}, ids(vs)},
			{mlmsoft.VolumeFilter{UserID: "a"}, ids(vs[:2])},
			{mlmsoft.VolumeFilter{States: []mlmsoft.VolumeState{mlmsoft.VolumePending}}, []int64{vs[0].ID, vs[1].ID, vs[3].ID}},
			{mlmsoft.VolumeFilter{States: []mlmsoft.VolumeState{mlmsoft.VolumeDelivered, mlmsoft.VolumeParked}, UserID: "b"}, []int64{vs[2].ID}},
			{mlmsoft.VolumeFilter{AfterID: vs[1].ID, Limit: 1}, []int64{vs[2].ID}},
			{mlmsoft.VolumeFilter{UserID: "nobody"}, nil},
		} {
			got, err := s.ListVolumes(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ids(got), tt.want) {
				t.Errorf("ListVolumes(%+v) = %v, want %v", tt.f, ids(got), tt.want)
			}
		}

		counts, err := s.CountVolumes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wantCounts := map[mlmsoft.VolumeState]int{mlmsoft.VolumePending: 3, mlmsoft.VolumeDelivered: 1}
		if !reflect.DeepEqual(counts.ByState, wantCounts) || !counts.OldestPending.Equal(stored(t0)) {
			t.Errorf("CountVolumes = %+v, want %v oldest %v", counts, wantCounts, t0)
		}
	})
}

func TestCountVolumesEmpty(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		counts, err := db.store().CountVolumes(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(counts.ByState) != 0 || !counts.OldestPending.IsZero() {
			t.Fatalf("CountVolumes on an empty outbox = %+v", counts)
		}
	})
}
