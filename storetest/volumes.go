package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

func (s suite) volumes(t *testing.T) {
	s.test(t, "EnqueueAssigns", testVolumeEnqueueAssigns)
	s.test(t, "EnqueueEmpty", testVolumeEnqueueEmpty)
	s.test(t, "ZeroValues", testVolumeZeroValues)
	s.test(t, "Amounts", testVolumeAmounts)
	s.test(t, "Idempotent", testVolumeIdempotent)
	s.test(t, "IdempotencyConflict", testVolumeIdempotencyConflict)
	s.test(t, "IdempotencyWithinBatch", testVolumeIdempotencyWithinBatch)
	s.test(t, "EnqueueConcurrent", testVolumeEnqueueConcurrent)
	s.test(t, "EnqueueConcurrentSameKey", testVolumeEnqueueConcurrentSameKey)
	s.test(t, "GetVolumes", testVolumeGetVolumes)
	s.test(t, "ClaimHeadOnly", testVolumeClaimHeadOnly)
	s.test(t, "ClaimHeadStates", testVolumeClaimHeadStates)
	s.test(t, "ClaimOrderLimit", testVolumeClaimOrderLimit)
	s.test(t, "ClaimExclude", testVolumeClaimExclude)
	s.test(t, "ClaimLease", testVolumeClaimLease)
	s.test(t, "UpdateFields", testVolumeUpdateFields)
	s.test(t, "UpdateNotFound", testVolumeUpdateNotFound)
	s.test(t, "UpdateFrom", testVolumeUpdateFrom)
	s.test(t, "UpdateLeaseLost", testVolumeUpdateLeaseLost)
	s.test(t, "UpdateExpiredLeaseNotTaken", testVolumeUpdateExpiredLeaseNotTaken)
	s.test(t, "UpdateOperator", testVolumeUpdateOperator)
	s.test(t, "UpdateRelease", testVolumeUpdateRelease)
	s.test(t, "UpdateConcurrentFrom", testVolumeUpdateConcurrentFrom)
	s.test(t, "ReleaseUser", testVolumeReleaseUser)
	s.test(t, "Wake", testVolumeWake)
	s.test(t, "List", testVolumeList)
	s.test(t, "Count", testVolumeCount)
}

// change returns a pending change of user, due at t0.
func change(user, key string) mlmsoft.VolumeChange {
	return mlmsoft.VolumeChange{
		UserID:         user,
		BatchID:        "batch-" + key,
		IdempotencyKey: key,
		Alias:          "PV",
		Amount:         mlmsoft.MustAmount("10"),
		OrderID:        "order-" + key,
		State:          mlmsoft.VolumePending,
		NextAttemptAt:  at(0),
		CreatedAt:      at(0),
		UpdatedAt:      at(0),
	}
}

// due returns change(user, key) due at t0+d.
func due(user, key string, d time.Duration) mlmsoft.VolumeChange {
	c := change(user, key)
	c.NextAttemptAt = at(d)
	return c
}

// fullChange returns a change with every field set, ID and Seq included
// (which the store must replace).
func fullChange(user, key string) mlmsoft.VolumeChange {
	return mlmsoft.VolumeChange{
		ID:             987654,
		UserID:         user,
		Seq:            77,
		BatchID:        "batch/" + key,
		IdempotencyKey: "idem:" + key,
		Alias:          "Status",
		Amount:         mlmsoft.MustAmount("-12.5"),
		OrderID:        "order #" + key,
		State:          mlmsoft.VolumePending,
		Attempts:       2,
		NextAttemptAt:  at(90*time.Second + 7*time.Millisecond),
		LastError:      `timeout "ü" 100%`,
		DocumentID:     1<<53 + 1,
		AccountID:      1<<62 + 5,
		CreatedAt:      at(-time.Hour),
		UpdatedAt:      at(-time.Minute),
		SentAt:         at(-30 * time.Second),
		DeliveredAt:    at(-20 * time.Second),
		ResolvedBy:     "ops@example.com",
		ResolvedNote:   "retried by hand",
		ResolvedAt:     at(-10 * time.Second),
	}
}

func enqueue(t *testing.T, st mlmsoft.Store, cs ...mlmsoft.VolumeChange) []mlmsoft.VolumeChange {
	t.Helper()
	got, err := st.EnqueueVolumes(t.Context(), cs)
	mustOK(t, "EnqueueVolumes", err)
	if len(got) != len(cs) {
		t.Fatalf("EnqueueVolumes of %d changes returned %d", len(cs), len(got))
	}
	return got
}

func getVolume(t *testing.T, st mlmsoft.Store, id int64) mlmsoft.VolumeChange {
	t.Helper()
	got, err := st.GetVolumes(t.Context(), []int64{id})
	mustOK(t, fmt.Sprintf("GetVolumes(%d)", id), err)
	if len(got) != 1 {
		t.Fatalf("GetVolumes(%d) returned %d changes", id, len(got))
	}
	return got[0]
}

func listVolumes(t *testing.T, st mlmsoft.Store, f mlmsoft.VolumeFilter) []mlmsoft.VolumeChange {
	t.Helper()
	got, err := st.ListVolumes(t.Context(), f)
	mustOK(t, "ListVolumes", err)
	return got
}

func claimVolumes(t *testing.T, st mlmsoft.Store, c mlmsoft.VolumeClaim) []mlmsoft.VolumeChange {
	t.Helper()
	if c.Lease == 0 {
		c.Lease = time.Hour
	}
	if c.Limit == 0 {
		c.Limit = 100
	}
	got, err := st.ClaimVolumes(t.Context(), c)
	mustOK(t, "ClaimVolumes by "+c.Owner, err)
	return got
}

// heads names changes as user#seq.
func heads(cs []mlmsoft.VolumeChange) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmt.Sprintf("%s#%d", c.UserID, c.Seq)
	}
	return out
}

func wantHeads(t *testing.T, what string, got []mlmsoft.VolumeChange, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if h := heads(got); !slices.Equal(h, want) {
		t.Fatalf("%s = %v, want %v", what, h, want)
	}
}

// deliver is what a worker does with a head it holds.
func deliver(id int64, owner string, now time.Time, release bool) mlmsoft.VolumeUpdate {
	return mlmsoft.VolumeUpdate{
		ID: id, Owner: owner, From: []mlmsoft.VolumeState{mlmsoft.VolumePending, mlmsoft.VolumeSending},
		Release: release, State: mlmsoft.VolumeDelivered, Attempts: 1,
		SentAt: now, DeliveredAt: now, UpdatedAt: now,
	}
}

// setState is an operator update moving a change to state, due at next.
func setState(t *testing.T, st mlmsoft.Store, id int64, state mlmsoft.VolumeState, next, now time.Time) mlmsoft.VolumeChange {
	t.Helper()
	got, err := st.UpdateVolume(t.Context(), mlmsoft.VolumeUpdate{ID: id, State: state, NextAttemptAt: next, UpdatedAt: now})
	mustOK(t, fmt.Sprintf("UpdateVolume(%d) to %s", id, state), err)
	return got
}

func testVolumeEnqueueAssigns(t *testing.T, st mlmsoft.Store) {
	in := []mlmsoft.VolumeChange{
		fullChange("ua", "k1"), fullChange("ub", "k2"), fullChange("ua", "k3"), fullChange("ua", "k4"), fullChange("ub", "k5"),
	}
	in[2].Amount = mlmsoft.MustAmount("0.1")
	in[3].State = mlmsoft.VolumeSending
	got := enqueue(t, st, in...)
	ids := map[int64]bool{}
	for i, seq := range []int64{1, 1, 2, 3, 2} {
		want := in[i]
		want.ID, want.Seq = got[i].ID, seq
		same(t, fmt.Sprintf("EnqueueVolumes result %d", i), want, got[i])
		if got[i].ID <= 0 || ids[got[i].ID] {
			t.Errorf("result %d has ID %d: want unique and > 0", i, got[i].ID)
		}
		ids[got[i].ID] = true
	}

	// Later batches continue each user's queue.
	more := enqueue(t, st, change("ub", "k6"), change("ua", "k7"), change("uc", "k8"))
	for i, seq := range []int64{3, 4, 1} {
		if more[i].Seq != seq {
			t.Errorf("second batch, change %d (%s): Seq %d, want %d", i, more[i].UserID, more[i].Seq, seq)
		}
		if more[i].ID <= 0 || ids[more[i].ID] {
			t.Errorf("second batch, change %d has ID %d: want unique and > 0", i, more[i].ID)
		}
		ids[more[i].ID] = true
	}

	all := append(got, more...)
	askIDs := make([]int64, len(all))
	for i, c := range all {
		askIDs[i] = c.ID
	}
	stored, err := st.GetVolumes(t.Context(), askIDs)
	mustOK(t, "GetVolumes", err)
	for i := range all {
		same(t, fmt.Sprintf("GetVolumes(%d)", all[i].ID), all[i], stored[i])
	}
}

func testVolumeEnqueueEmpty(t *testing.T, st mlmsoft.Store) {
	got, err := st.EnqueueVolumes(t.Context(), nil)
	mustOK(t, "EnqueueVolumes(nil)", err)
	if len(got) != 0 {
		t.Errorf("EnqueueVolumes(nil) returned %d changes", len(got))
	}
	if all := listVolumes(t, st, mlmsoft.VolumeFilter{}); len(all) != 0 {
		t.Errorf("ListVolumes after an empty enqueue: %d changes", len(all))
	}
}

func testVolumeZeroValues(t *testing.T, st mlmsoft.Store) {
	in := mlmsoft.VolumeChange{UserID: "ua", IdempotencyKey: "k1", State: mlmsoft.VolumePending}
	got := enqueue(t, st, in)[0]
	want := in
	want.ID, want.Seq = got.ID, 1
	same(t, "EnqueueVolumes result", want, got)
	same(t, "GetVolumes", want, getVolume(t, st, got.ID))
	if !got.Amount.IsZero() {
		t.Errorf("zero Amount read back as %s", got.Amount)
	}
}

func testVolumeAmounts(t *testing.T, st mlmsoft.Store) {
	amounts := []string{"0.1", "-12.5", "123456789012345", "-123456789012345", "0", "0.000000000000001", "99999999.9999999", "-0.3", "1000000"}
	var in []mlmsoft.VolumeChange
	for i, a := range amounts {
		c := change("ua", fmt.Sprintf("k%d", i))
		c.Amount = mlmsoft.MustAmount(a)
		in = append(in, c)
	}
	got := enqueue(t, st, in...)
	for i, c := range got {
		if c.Amount != in[i].Amount {
			t.Errorf("EnqueueVolumes returned amount %s, want %s", c.Amount, in[i].Amount)
		}
		if s := getVolume(t, st, c.ID).Amount.String(); s != amounts[i] {
			t.Errorf("amount %s read back as %s", amounts[i], s)
		}
	}
}

func testVolumeIdempotent(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	first := enqueue(t, st, change("ua", "k1"))[0]
	delivered, err := st.UpdateVolume(ctx, deliver(first.ID, "", at(time.Second), false))
	mustOK(t, "UpdateVolume", err)

	// Same key and content; other fields differ and are not stored.
	again := change("ua", "k1")
	again.BatchID = "another-batch"
	again.NextAttemptAt = at(5 * time.Minute)
	again.CreatedAt = at(5 * time.Minute)
	got := enqueue(t, st, again, change("ua", "k2"))
	same(t, "re-enqueued change", delivered, got[0])
	if got[1].Seq != 2 || got[1].ID == first.ID {
		t.Errorf("new change after a repeat: ID %d Seq %d, want a new ID and Seq 2", got[1].ID, got[1].Seq)
	}
	if all := listVolumes(t, st, mlmsoft.VolumeFilter{}); len(all) != 2 {
		t.Errorf("ListVolumes: %v, want 2 changes", heads(all))
	}
	same(t, "stored change after the repeat", delivered, getVolume(t, st, first.ID))
}

func testVolumeIdempotencyConflict(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	orig := enqueue(t, st, change("ua", "k1"))[0]
	for _, v := range []struct {
		field  string
		modify func(*mlmsoft.VolumeChange)
	}{
		{"UserID", func(c *mlmsoft.VolumeChange) { c.UserID = "ub" }},
		{"Alias", func(c *mlmsoft.VolumeChange) { c.Alias = "GV" }},
		{"Amount", func(c *mlmsoft.VolumeChange) { c.Amount = mlmsoft.MustAmount("10.5") }},
		{"OrderID", func(c *mlmsoft.VolumeChange) { c.OrderID = "order-other" }},
	} {
		bad := change("ua", "k1")
		v.modify(&bad)
		_, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{bad})
		wantErr(t, "repeat with another "+v.field, err, mlmsoft.ErrIdempotencyConflict)
		// A conflict anywhere in a batch stores none of it.
		_, err = st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{change("ua", "new-"+v.field), change("uc", "other-"+v.field), bad})
		wantErr(t, "batch ending with a repeat with another "+v.field, err, mlmsoft.ErrIdempotencyConflict)
	}
	all := listVolumes(t, st, mlmsoft.VolumeFilter{})
	if len(all) != 1 {
		t.Fatalf("after refused batches ListVolumes = %v, want only ua#1", heads(all))
	}
	same(t, "original change", orig, all[0])
	// Refused batches used no Seq and no key.
	got := enqueue(t, st, change("ua", "k2"), change("uc", "k3"))
	wantHeads(t, "next enqueue", got, "ua#2", "uc#1")
	other := change("ub", "new-UserID")
	other.Amount = mlmsoft.MustAmount("3")
	got = enqueue(t, st, other)
	wantHeads(t, "enqueue reusing a refused batch's key", got, "ub#1")
}

func testVolumeIdempotencyWithinBatch(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	got := enqueue(t, st, change("ua", "k1"), change("ua", "k2"), change("ua", "k1"))
	wantHeads(t, "batch repeating a key", got, "ua#1", "ua#2", "ua#1")
	same(t, "repeat within the batch", got[0], got[2])
	if n := len(listVolumes(t, st, mlmsoft.VolumeFilter{})); n != 2 {
		t.Errorf("%d changes stored, want 2", n)
	}
	bad := change("ua", "k3")
	bad.Amount = mlmsoft.MustAmount("11")
	_, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{change("ua", "k3"), bad})
	wantErr(t, "batch reusing a key with another amount", err, mlmsoft.ErrIdempotencyConflict)
	if n := len(listVolumes(t, st, mlmsoft.VolumeFilter{})); n != 2 {
		t.Errorf("%d changes stored after a refused batch, want 2", n)
	}
}

func testVolumeEnqueueConcurrent(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	goroutines, batches, size := 8, 4, 3
	if testing.Short() {
		goroutines, batches = 4, 2
	}
	type result struct {
		user string
		seqs []int64
		ids  []int64
	}
	results := make([][]result, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		user := []string{"ua", "ub"}[g%2] // several writers per user
		wg.Go(func() {
			for b := range batches {
				var cs []mlmsoft.VolumeChange
				for i := range size {
					cs = append(cs, change(user, fmt.Sprintf("g%d-b%d-c%d", g, b, i)))
				}
				got, err := st.EnqueueVolumes(ctx, cs)
				if err != nil {
					t.Errorf("EnqueueVolumes: %v", err)
					return
				}
				r := result{user: user}
				for _, c := range got {
					r.seqs = append(r.seqs, c.Seq)
					r.ids = append(r.ids, c.ID)
				}
				results[g] = append(results[g], r)
			}
		})
	}
	wg.Wait()
	seqs := map[string][]int64{}
	ids := map[int64]bool{}
	for _, rs := range results {
		for _, r := range rs {
			for i, s := range r.seqs {
				if s != r.seqs[0]+int64(i) {
					t.Errorf("batch of %s got Seqs %v, want consecutive", r.user, r.seqs)
					break
				}
			}
			seqs[r.user] = append(seqs[r.user], r.seqs...)
			for _, id := range r.ids {
				if ids[id] {
					t.Errorf("ID %d assigned twice", id)
				}
				ids[id] = true
			}
		}
	}
	for user, got := range seqs {
		slices.Sort(got)
		for i, s := range got {
			if s != int64(i+1) {
				t.Errorf("%s: Seqs %v, want 1..%d", user, got, len(got))
				break
			}
		}
	}
	if len(ids) != goroutines*batches*size {
		t.Errorf("%d changes stored, want %d", len(ids), goroutines*batches*size)
	}
}

func testVolumeEnqueueConcurrentSameKey(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	const n = 8
	got := make([][]mlmsoft.VolumeChange, n)
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			var err error
			got[g], err = st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{change("ua", "shared"), change("ua", fmt.Sprintf("own-%d", g))})
			if err != nil {
				t.Errorf("EnqueueVolumes %d: %v", g, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	seqs := map[int64]bool{}
	for g := range n {
		if got[g][0].ID != got[0][0].ID {
			t.Errorf("the shared key was stored as %d and %d", got[0][0].ID, got[g][0].ID)
		}
		seqs[got[g][1].Seq] = true
	}
	seqs[got[0][0].Seq] = true
	all := listVolumes(t, st, mlmsoft.VolumeFilter{})
	if len(all) != n+1 || len(seqs) != n+1 {
		t.Errorf("stored %v, want %d changes with distinct Seqs", heads(all), n+1)
	}
}

func testVolumeGetVolumes(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	cs := enqueue(t, st, change("ua", "k1"), change("ub", "k2"), change("ua", "k3"))
	got, err := st.GetVolumes(ctx, []int64{cs[2].ID, cs[0].ID, cs[1].ID})
	mustOK(t, "GetVolumes", err)
	for i, j := range []int{2, 0, 1} {
		same(t, fmt.Sprintf("GetVolumes result %d", i), cs[j], got[i])
	}
	missing := slices.MaxFunc(cs, func(a, b mlmsoft.VolumeChange) int { return cmp.Compare(a.ID, b.ID) }).ID + 1000
	_, err = st.GetVolumes(ctx, []int64{cs[0].ID, missing})
	wantErr(t, "GetVolumes with a missing id", err, mlmsoft.ErrNotFound)
	got, err = st.GetVolumes(ctx, nil)
	mustOK(t, "GetVolumes(nil)", err)
	if len(got) != 0 {
		t.Errorf("GetVolumes(nil) returned %d changes", len(got))
	}
}

func testVolumeClaimHeadOnly(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	cs := enqueue(t, st, change("ua", "k1"), change("ua", "k2"), change("ua", "k3"), change("ua", "k4"))
	got := claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w1", Now: now})
	wantHeads(t, "first claim", got, "ua#1")
	same(t, "claimed head", cs[0], got[0])
	same(t, "head after the claim", cs[0], getVolume(t, st, cs[0].ID))
	wantHeads(t, "claim while held", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w2", Now: now}))

	// Each final state lets the next change become the head.
	for i, final := range []mlmsoft.VolumeState{mlmsoft.VolumeDelivered, mlmsoft.VolumeRejected, mlmsoft.VolumeSkipped} {
		owner := fmt.Sprintf("w%d", i+1)
		u := deliver(cs[i].ID, owner, now, true)
		u.State = final
		_, err := st.UpdateVolume(ctx, u)
		mustOK(t, "UpdateVolume to "+string(final), err)
		next := fmt.Sprintf("w%d", i+2)
		wantHeads(t, fmt.Sprintf("claim after ua#%d became %s", i+1, final), claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: next, Now: now}), fmt.Sprintf("ua#%d", i+2))
	}
	_, err := st.UpdateVolume(ctx, deliver(cs[3].ID, "w4", now, true))
	mustOK(t, "UpdateVolume", err)
	wantHeads(t, "claim with every change final", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w5", Now: now}))
}

func testVolumeClaimHeadStates(t *testing.T, st mlmsoft.Store) {
	now := at(time.Hour)
	m := time.Minute
	cs := enqueue(t, st,
		due("h1", "h1a", 1*m),                      // pending head: claimed
		due("h2", "h2a", 2*m),                      // sending head: claimed
		due("h3", "h3a", 0), due("h3", "h3b", 3*m), // parked head blocks
		due("h4", "h4a", 0), due("h4", "h4b", 4*m), // uncertain head blocks
		due("h5", "h5a", 0), due("h5", "h5b", 0), // delivered, rejected,
		due("h5", "h5c", 0), due("h5", "h5d", 5*m), // skipped, then the head
		due("h6", "h6a", 0),                                // only final changes
		due("h7", "h7a", 2*time.Hour), due("h7", "h7b", 0), // head not due
		due("h8", "h8a", 2*time.Hour),              // sending, not due
		due("h9", "h9a", 0), due("h9", "h9b", 6*m), // pending behind sending
	)
	byKey := map[string]mlmsoft.VolumeChange{}
	for _, c := range cs {
		byKey[c.IdempotencyKey] = c
	}
	for key, state := range map[string]mlmsoft.VolumeState{
		"h2a": mlmsoft.VolumeSending, "h3a": mlmsoft.VolumeParked, "h4a": mlmsoft.VolumeUncertain,
		"h5a": mlmsoft.VolumeDelivered, "h5b": mlmsoft.VolumeRejected, "h5c": mlmsoft.VolumeSkipped,
		"h6a": mlmsoft.VolumeDelivered, "h8a": mlmsoft.VolumeSending, "h9a": mlmsoft.VolumeSending,
	} {
		c := byKey[key]
		setState(t, st, c.ID, state, c.NextAttemptAt, at(0))
	}
	got := claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w1", Now: now})
	wantHeads(t, "claim", got, "h9#1", "h1#1", "h2#1", "h5#4")

	// Resolving the blocking heads unblocks their users.
	setState(t, st, byKey["h3a"].ID, mlmsoft.VolumeSkipped, at(0), at(time.Minute))
	setState(t, st, byKey["h4a"].ID, mlmsoft.VolumePending, at(4*m+time.Millisecond), at(time.Minute))
	got = claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w2", Now: now})
	wantHeads(t, "claim after resolving", got, "h3#2", "h4#1")
}

func testVolumeClaimOrderLimit(t *testing.T, st mlmsoft.Store) {
	now := at(time.Hour)
	for i, min := range []int{30, 10, 50, 20, 40} {
		user := fmt.Sprintf("u%d", i+1)
		// The second change is due earlier than the head; only heads count.
		enqueue(t, st, due(user, user+"a", time.Duration(min)*time.Minute), due(user, user+"b", 0))
	}
	for i, want := range [][]string{{"u2#1", "u4#1"}, {"u1#1", "u5#1"}, {"u3#1"}, nil} {
		got := claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: fmt.Sprintf("w%d", i), Now: now, Limit: 2})
		wantHeads(t, fmt.Sprintf("claim %d with Limit 2", i+1), got, want...)
	}
}

func testVolumeClaimExclude(t *testing.T, st mlmsoft.Store) {
	now := at(time.Hour)
	enqueue(t, st, due("e1", "k1", time.Minute), due("e2", "k2", 2*time.Minute), due("e3", "k3", 3*time.Minute))
	got := claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w1", Now: now, Exclude: []string{"e1", "nobody", "e3"}})
	wantHeads(t, "claim excluding e1 and e3", got, "e2#1")
	got = claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w2", Now: now})
	wantHeads(t, "claim without exclusions", got, "e1#1", "e3#1")
}

func testVolumeClaimLease(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	cs := enqueue(t, st, due("ua", "k1", 0), due("ua", "k2", 0), due("ub", "k3", time.Second))
	claim := func(owner string, now time.Time) []mlmsoft.VolumeChange {
		return claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: owner, Now: now, Lease: time.Minute})
	}
	wantHeads(t, "claim by a, Limit 1", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "a", Now: now, Lease: time.Minute, Limit: 1}), "ua#1")
	wantHeads(t, "claim by b while a holds ua", claim("b", now.Add(30*time.Second)), "ub#1")
	wantHeads(t, "claim by a while it holds ua and b holds ub", claim("a", now.Add(30*time.Second)))
	// a's lease ends at now+1m, b's at now+1m30s.
	wantHeads(t, "claim by c after a's lease ended", claim("c", now.Add(time.Minute+time.Second)), "ua#1")
	wantHeads(t, "claim by d after b's lease ended", claim("d", now.Add(2*time.Minute)), "ub#1")

	_, err := st.UpdateVolume(ctx, deliver(cs[0].ID, "a", now.Add(2*time.Minute), true))
	wantErr(t, "UpdateVolume by a after c took ua", err, mlmsoft.ErrLeaseLost)
	same(t, "change after the refused update", cs[0], getVolume(t, st, cs[0].ID))
	wantHeads(t, "claim after the refused release", claim("e", now.Add(2*time.Minute)))
	_, err = st.UpdateVolume(ctx, deliver(cs[0].ID, "c", now.Add(2*time.Minute), true))
	mustOK(t, "UpdateVolume by c", err)
	wantHeads(t, "claim after c delivered and released", claim("e", now.Add(2*time.Minute)), "ua#2")
}

func testVolumeUpdateFields(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	v := enqueue(t, st, fullChange("ua", "k1"))[0]
	wantHeads(t, "claim", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w1", Now: now}), "ua#1")

	// Every listed field is written as given, zero values included.
	u := mlmsoft.VolumeUpdate{
		ID: v.ID, Owner: "w1", From: []mlmsoft.VolumeState{mlmsoft.VolumePending},
		State: mlmsoft.VolumeSending, Attempts: 3, NextAttemptAt: now.Add(7 * time.Minute),
		DocumentID: 1 << 40, AccountID: 1<<53 + 3, SentAt: now.Add(time.Millisecond), UpdatedAt: now.Add(time.Millisecond),
	}
	want := v
	want.State, want.Attempts, want.NextAttemptAt, want.LastError = u.State, u.Attempts, u.NextAttemptAt, ""
	want.DocumentID, want.AccountID, want.SentAt, want.DeliveredAt = u.DocumentID, u.AccountID, u.SentAt, time.Time{}
	want.ResolvedBy, want.ResolvedNote, want.ResolvedAt, want.UpdatedAt = "", "", time.Time{}, u.UpdatedAt
	got, err := st.UpdateVolume(ctx, u)
	mustOK(t, "UpdateVolume", err)
	same(t, "UpdateVolume result", want, got)
	same(t, "GetVolumes after UpdateVolume", want, getVolume(t, st, v.ID))

	u = mlmsoft.VolumeUpdate{
		ID: v.ID, Owner: "w1", Release: true,
		State: mlmsoft.VolumeParked, Attempts: 4, LastError: "refused: «unknown alias»",
		AccountID: 42, SentAt: now.Add(2 * time.Second), DeliveredAt: now.Add(3 * time.Second),
		ResolvedBy: "ops", ResolvedNote: "note ü", ResolvedAt: now.Add(4 * time.Second), UpdatedAt: now.Add(5 * time.Second),
	}
	want.State, want.Attempts, want.NextAttemptAt, want.LastError = u.State, u.Attempts, time.Time{}, u.LastError
	want.DocumentID, want.AccountID, want.SentAt, want.DeliveredAt = 0, 42, u.SentAt, u.DeliveredAt
	want.ResolvedBy, want.ResolvedNote, want.ResolvedAt, want.UpdatedAt = u.ResolvedBy, u.ResolvedNote, u.ResolvedAt, u.UpdatedAt
	got, err = st.UpdateVolume(ctx, u)
	mustOK(t, "second UpdateVolume", err)
	same(t, "second UpdateVolume result", want, got)
	same(t, "GetVolumes after the second UpdateVolume", want, getVolume(t, st, v.ID))
}

func testVolumeUpdateNotFound(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	v := enqueue(t, st, change("ua", "k1"))[0]
	for _, owner := range []string{"", "w1"} {
		_, err := st.UpdateVolume(ctx, deliver(v.ID+1000, owner, at(0), true))
		wantErr(t, fmt.Sprintf("UpdateVolume of a missing id, Owner %q", owner), err, mlmsoft.ErrNotFound)
	}
	same(t, "existing change", v, getVolume(t, st, v.ID))
}

func testVolumeUpdateFrom(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	v := enqueue(t, st, change("ua", "k1"))[0]
	claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w1", Now: now})

	u := deliver(v.ID, "w1", now, true)
	u.From = []mlmsoft.VolumeState{mlmsoft.VolumeSending, mlmsoft.VolumeParked}
	_, err := st.UpdateVolume(ctx, u)
	wantErr(t, "UpdateVolume from sending or parked, when pending", err, mlmsoft.ErrConflict)
	same(t, "change after the refused update", v, getVolume(t, st, v.ID))
	wantHeads(t, "claim after the refused release", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w2", Now: now}))

	u = mlmsoft.VolumeUpdate{ID: v.ID, Owner: "w1", From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, State: mlmsoft.VolumeSending, Attempts: 1, SentAt: now, UpdatedAt: now, Release: true}
	got, err := st.UpdateVolume(ctx, u)
	mustOK(t, "UpdateVolume from pending", err)
	if got.State != mlmsoft.VolumeSending {
		t.Errorf("state %s, want sending", got.State)
	}

	// Operator updates check From too; an empty From accepts any state.
	op := mlmsoft.VolumeUpdate{ID: v.ID, From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, State: mlmsoft.VolumeSkipped, UpdatedAt: now}
	_, err = st.UpdateVolume(ctx, op)
	wantErr(t, "operator UpdateVolume from pending, when sending", err, mlmsoft.ErrConflict)
	op.From = nil
	got, err = st.UpdateVolume(ctx, op)
	mustOK(t, "operator UpdateVolume without From", err)
	if got.State != mlmsoft.VolumeSkipped {
		t.Errorf("state %s, want skipped", got.State)
	}
}

func testVolumeUpdateLeaseLost(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"))
	claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "a", Now: now, Lease: time.Minute})
	wantHeads(t, "claim by b after a's lease ended", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "b", Now: now.Add(2 * time.Minute), Lease: time.Minute}), "ua#1")

	_, err := st.UpdateVolume(ctx, deliver(v[0].ID, "a", now.Add(90*time.Second), true))
	wantErr(t, "UpdateVolume by the lease's former owner", err, mlmsoft.ErrLeaseLost)
	// The owner check covers every change of the user, not only the head.
	_, err = st.UpdateVolume(ctx, deliver(v[1].ID, "a", now.Add(90*time.Second), true))
	wantErr(t, "UpdateVolume of a later change by the former owner", err, mlmsoft.ErrLeaseLost)
	_, err = st.UpdateVolume(ctx, deliver(v[0].ID, "nobody", now.Add(90*time.Second), true))
	wantErr(t, "UpdateVolume by a worker that never held the user", err, mlmsoft.ErrLeaseLost)
	same(t, "change after refused updates", v[0], getVolume(t, st, v[0].ID))
	wantHeads(t, "claim while b holds ua", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "c", Now: now.Add(2 * time.Minute)}))

	_, err = st.UpdateVolume(ctx, deliver(v[0].ID, "b", now.Add(2*time.Minute), true))
	mustOK(t, "UpdateVolume by b", err)
	// b released the user: nobody holds it, so no worker may update it.
	_, err = st.UpdateVolume(ctx, deliver(v[1].ID, "b", now.Add(2*time.Minute), true))
	wantErr(t, "UpdateVolume by b after releasing", err, mlmsoft.ErrLeaseLost)
}

func testVolumeUpdateExpiredLeaseNotTaken(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"))
	claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "a", Now: now, Lease: time.Minute})
	// The lease ended but nobody claimed the user: a still owns it.
	got, err := st.UpdateVolume(ctx, deliver(v[0].ID, "a", now.Add(5*time.Minute), true))
	mustOK(t, "UpdateVolume by the owner of an expired, untaken lease", err)
	if got.State != mlmsoft.VolumeDelivered {
		t.Errorf("state %s, want delivered", got.State)
	}
	wantHeads(t, "claim after the release", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "b", Now: now.Add(5 * time.Minute)}), "ua#2")
}

func testVolumeUpdateOperator(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	v := enqueue(t, st, change("ua", "k1"), change("ub", "k2"))
	claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "a", Now: now, Lease: time.Minute, Limit: 1}) // ua until now+1m

	park := func(id int64, at time.Time) error {
		_, err := st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: id, State: mlmsoft.VolumeParked, LastError: "by hand", ResolvedBy: "ops", ResolvedAt: at, UpdatedAt: at})
		return err
	}
	wantErr(t, "operator update while a lease is live", park(v[0].ID, now.Add(30*time.Second)), mlmsoft.ErrLeaseLost)
	same(t, "change after the refused operator update", v[0], getVolume(t, st, v[0].ID))
	mustOK(t, "operator update of a user nobody holds", park(v[1].ID, now.Add(30*time.Second)))
	mustOK(t, "operator update after the lease ended", park(v[0].ID, now.Add(2*time.Minute)))
	got := getVolume(t, st, v[0].ID)
	if got.State != mlmsoft.VolumeParked || got.ResolvedBy != "ops" || !got.UpdatedAt.Equal(now.Add(2*time.Minute)) {
		t.Errorf("after the operator update: state %s, ResolvedBy %q, UpdatedAt %s", got.State, got.ResolvedBy, fmtTime(got.UpdatedAt))
	}
	wantHeads(t, "claim with both heads parked", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "b", Now: now.Add(3 * time.Minute)}))
}

func testVolumeUpdateRelease(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"))
	claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "a", Now: now})
	_, err := st.UpdateVolume(ctx, deliver(v[0].ID, "a", now, false))
	mustOK(t, "UpdateVolume without Release", err)
	wantHeads(t, "claim while a still holds ua", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "b", Now: now}))

	u := deliver(v[0].ID, "a", now, true)
	u.From = []mlmsoft.VolumeState{mlmsoft.VolumeDelivered}
	_, err = st.UpdateVolume(ctx, u)
	mustOK(t, "UpdateVolume with Release", err)
	wantHeads(t, "claim after the release", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "b", Now: now}), "ua#2")
}

func testVolumeUpdateConcurrentFrom(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	v := enqueue(t, st, change("ua", "k1"))[0]
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{
				ID: v.ID, From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, State: mlmsoft.VolumeSending,
				LastError: fmt.Sprintf("writer %d", i), UpdatedAt: at(time.Second),
			})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both moved the change from pending", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, mlmsoft.ErrConflict):
			t.Errorf("writer %d: %v, want ErrConflict or success", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	if got := getVolume(t, st, v.ID); got.LastError != fmt.Sprintf("writer %d", winner) {
		t.Errorf("stored LastError %q, want the winner's (%d)", got.LastError, winner)
	}
}

func testVolumeReleaseUser(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	v := enqueue(t, st, due("ua", "k1", 0), due("ub", "k2", time.Second))
	release := func(owner, user string) {
		t.Helper()
		mustOK(t, fmt.Sprintf("ReleaseVolumeUser(%s, %s)", owner, user), st.ReleaseVolumeUser(ctx, owner, user))
	}
	wantHeads(t, "claim by a", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "a", Now: now, Limit: 1}), "ua#1")
	release("b", "ua") // not b's
	release("a", "nobody")
	wantHeads(t, "claim by c after b released a's user", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "c", Now: now}), "ub#1")
	release("a", "ub") // c's
	wantHeads(t, "claim by d after a released c's user", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "d", Now: now}))

	release("a", "ua")
	wantHeads(t, "claim by d after a released ua", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "d", Now: now}), "ua#1")
	release("a", "ua") // no longer a's
	wantHeads(t, "claim by e while d holds ua", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "e", Now: now}))
	_, err := st.UpdateVolume(ctx, deliver(v[0].ID, "d", now, true))
	mustOK(t, "UpdateVolume by d", err)
	_, err = st.UpdateVolume(ctx, deliver(v[1].ID, "a", now, true))
	wantErr(t, "UpdateVolume by a after releasing", err, mlmsoft.ErrLeaseLost)
}

func testVolumeWake(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	h := time.Hour
	in := []mlmsoft.VolumeChange{
		due("ua", "k1", 2*h), due("ua", "k2", 3*h), due("ua", "k3", 10*time.Minute),
		due("ua", "k4", 4*h), due("ua", "k5", 5*h), due("ub", "k6", 2*h),
	}
	in[3].State = mlmsoft.VolumeParked
	in[4].State = mlmsoft.VolumeSending
	v := enqueue(t, st, in...)
	wake := at(30 * time.Minute)
	mustOK(t, "WakeVolumes", st.WakeVolumes(ctx, "ua", wake))
	mustOK(t, "WakeVolumes of an unknown user", st.WakeVolumes(ctx, "nobody", wake))
	for i, woken := range []bool{true, true, false, false, false, false} {
		want := v[i]
		if woken {
			want.NextAttemptAt = wake
		}
		same(t, fmt.Sprintf("%s#%d after WakeVolumes", want.UserID, want.Seq), want, getVolume(t, st, v[i].ID))
	}
	wantHeads(t, "claim at the wake time", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w", Now: wake}), "ua#1")
}

func testVolumeList(t *testing.T, st mlmsoft.Store) {
	P, D, K := mlmsoft.VolumePending, mlmsoft.VolumeDelivered, mlmsoft.VolumeParked
	mk := func(user, key string, s mlmsoft.VolumeState) mlmsoft.VolumeChange {
		c := fullChange(user, key)
		c.State = s
		return c
	}
	stored := enqueue(t, st, mk("ua", "k1", P), mk("ub", "k2", D), mk("ua", "k3", K))
	stored = append(stored, enqueue(t, st, mk("uc", "k4", P), mk("ub", "k5", P), mk("ua", "k6", D))...)
	slices.SortFunc(stored, func(a, b mlmsoft.VolumeChange) int { return cmp.Compare(a.ID, b.ID) })
	ids := make([]int64, len(stored))
	for i, c := range stored {
		ids[i] = c.ID
	}
	// expect filters the model: the spec of ListVolumes applied to stored.
	expect := func(f mlmsoft.VolumeFilter) []mlmsoft.VolumeChange {
		out := []mlmsoft.VolumeChange{}
		for _, c := range stored {
			if (f.UserID == "" || c.UserID == f.UserID) && (len(f.States) == 0 || slices.Contains(f.States, c.State)) &&
				c.ID > f.AfterID && (f.Limit == 0 || len(out) < f.Limit) {
				out = append(out, c)
			}
		}
		return out
	}
	for _, f := range []mlmsoft.VolumeFilter{
		{},
		{UserID: "ua"},
		{UserID: "nobody"},
		{States: []mlmsoft.VolumeState{P}},
		{States: []mlmsoft.VolumeState{D, K}, UserID: "ua"},
		{States: []mlmsoft.VolumeState{mlmsoft.VolumeUncertain}},
		{AfterID: ids[2]},
		{AfterID: ids[1], UserID: "ua"},
		{Limit: 2},
		{UserID: "ub", Limit: 1},
		{AfterID: ids[0], Limit: 3, States: []mlmsoft.VolumeState{P, D}},
		{AfterID: ids[5]},
	} {
		want := expect(f)
		got := listVolumes(t, st, f)
		if !slices.Equal(heads(got), heads(want)) {
			t.Errorf("ListVolumes(%+v) = %v, want %v (by ID)", f, heads(got), heads(want))
			continue
		}
		for i := range got {
			same(t, fmt.Sprintf("ListVolumes(%+v)[%d]", f, i), want[i], got[i])
		}
	}
}

func testVolumeCount(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	counts := func(want map[mlmsoft.VolumeState]int, oldest time.Time) {
		t.Helper()
		got, err := st.CountVolumes(ctx)
		mustOK(t, "CountVolumes", err)
		if !countsEqual(want, got.ByState) {
			t.Errorf("CountVolumes.ByState = %v, want %v", got.ByState, want)
		}
		if !got.OldestPending.Equal(oldest) {
			t.Errorf("CountVolumes.OldestPending = %s, want %s", fmtTime(got.OldestPending), fmtTime(oldest))
		}
	}
	counts(map[mlmsoft.VolumeState]int{}, time.Time{})
	m := time.Minute
	mk := func(user, key string, s mlmsoft.VolumeState, created time.Duration) mlmsoft.VolumeChange {
		c := change(user, key)
		c.State, c.CreatedAt = s, at(created)
		return c
	}
	v := enqueue(t, st,
		mk("ua", "k1", mlmsoft.VolumePending, 5*m),
		mk("ub", "k2", mlmsoft.VolumeSending, 3*m),
		mk("uc", "k3", mlmsoft.VolumeDelivered, 1*m), // oldest, but final
		mk("ud", "k4", mlmsoft.VolumeParked, 2*m),
		mk("ue", "k5", mlmsoft.VolumeUncertain, 0),
		mk("uf", "k6", mlmsoft.VolumePending, 4*m),
		mk("ug", "k7", mlmsoft.VolumeRejected, 0),
		mk("ug", "k8", mlmsoft.VolumeSkipped, 0),
	)
	counts(map[mlmsoft.VolumeState]int{
		mlmsoft.VolumePending: 2, mlmsoft.VolumeSending: 1, mlmsoft.VolumeDelivered: 1, mlmsoft.VolumeParked: 1,
		mlmsoft.VolumeUncertain: 1, mlmsoft.VolumeRejected: 1, mlmsoft.VolumeSkipped: 1,
	}, at(3*m))
	setState(t, st, v[1].ID, mlmsoft.VolumeDelivered, time.Time{}, at(6*m))
	counts(map[mlmsoft.VolumeState]int{
		mlmsoft.VolumePending: 2, mlmsoft.VolumeDelivered: 2, mlmsoft.VolumeParked: 1,
		mlmsoft.VolumeUncertain: 1, mlmsoft.VolumeRejected: 1, mlmsoft.VolumeSkipped: 1,
	}, at(4*m))
	setState(t, st, v[3].ID, mlmsoft.VolumePending, time.Time{}, at(6*m))
	counts(map[mlmsoft.VolumeState]int{
		mlmsoft.VolumePending: 3, mlmsoft.VolumeDelivered: 2,
		mlmsoft.VolumeUncertain: 1, mlmsoft.VolumeRejected: 1, mlmsoft.VolumeSkipped: 1,
	}, at(2*m))
}
