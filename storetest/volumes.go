package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

func (s suite) volumes(t *testing.T) {
	s.test(t, "RoundTrip", testVolumeRoundTrip)
	s.test(t, "ZeroValues", testVolumeZeroValues)
	s.test(t, "Amounts", testVolumeAmounts)
	s.test(t, "EnqueueAssigns", testVolumeEnqueueAssigns)
	s.test(t, "EnqueueEmpty", testVolumeEnqueueEmpty)
	s.test(t, "Idempotent", testVolumeIdempotent)
	s.test(t, "IdempotencyConflict", testVolumeIdempotencyConflict)
	s.test(t, "IdempotencyWithinCall", testVolumeIdempotencyWithinCall)
	s.test(t, "EnqueueConcurrent", testVolumeEnqueueConcurrent)
	s.test(t, "EnqueueConcurrentSameKey", testVolumeEnqueueConcurrentSameKey)
	s.test(t, "GetVolumes", testVolumeGetVolumes)
	s.test(t, "ClaimHeadOnly", testVolumeClaimHeadOnly)
	s.test(t, "ClaimDue", testVolumeClaimDue)
	s.test(t, "ClaimHeadMovesBack", testVolumeClaimHeadMovesBack)
	s.test(t, "ClaimOrderLimit", testVolumeClaimOrderLimit)
	s.test(t, "ClaimLease", testVolumeClaimLease)
	s.test(t, "ClaimConcurrent", testVolumeClaimConcurrent)
	s.test(t, "UpdateFields", testVolumeUpdateFields)
	s.test(t, "UpdateNotFound", testVolumeUpdateNotFound)
	s.test(t, "UpdateFrom", testVolumeUpdateFrom)
	s.test(t, "UpdateErrorOrder", testVolumeUpdateErrorOrder)
	s.test(t, "UpdateEndsLease", testVolumeUpdateEndsLease)
	s.test(t, "UpdateKeepLease", testVolumeUpdateKeepLease)
	s.test(t, "UpdateWithoutOwner", testVolumeUpdateWithoutOwner)
	s.test(t, "UpdateLeaseLost", testVolumeUpdateLeaseLost)
	s.test(t, "LapsedLeaseStillHeld", testVolumeLapsedLeaseStillHeld)
	s.test(t, "UpdateConcurrentFrom", testVolumeUpdateConcurrentFrom)
	s.test(t, "UpdateEvents", testVolumeUpdateEvents)
	s.test(t, "UnknownState", testVolumeUnknownState)
	s.test(t, "List", testVolumeList)
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

// inState returns change(user, key) in state st, due at next.
func inState(user, key string, st mlmsoft.VolumeState, next time.Time) mlmsoft.VolumeChange {
	c := change(user, key)
	c.State, c.NextAttemptAt = st, next
	return c
}

func enqueue(t testing.TB, st mlmsoft.Store, cs ...mlmsoft.VolumeChange) []mlmsoft.VolumeChange {
	t.Helper()
	got, err := st.EnqueueVolumes(t.Context(), cs)
	mustOK(t, "EnqueueVolumes", err)
	if len(got) != len(cs) {
		t.Fatalf("EnqueueVolumes of %d changes returned %d", len(cs), len(got))
	}
	return got
}

func getVolume(t testing.TB, st mlmsoft.Store, id int64) mlmsoft.VolumeChange {
	t.Helper()
	got, err := st.GetVolumes(t.Context(), []int64{id})
	mustOK(t, fmt.Sprintf("GetVolumes(%d)", id), err)
	if len(got) != 1 {
		t.Fatalf("GetVolumes(%d) returned %d changes", id, len(got))
	}
	return got[0]
}

func listVolumes(t testing.TB, st mlmsoft.Store, f mlmsoft.VolumeFilter) []mlmsoft.VolumeChange {
	t.Helper()
	got, err := st.ListVolumes(t.Context(), f)
	mustOK(t, "ListVolumes", err)
	return got
}

// claimVolumes claims with c, an hour's lease and a Limit of 100 unless c
// sets them.
func claimVolumes(t testing.TB, st mlmsoft.Store, c mlmsoft.VolumeClaim) []mlmsoft.VolumeChange {
	t.Helper()
	if c.Lease == 0 {
		c.Lease = hour
	}
	if c.Limit == 0 {
		c.Limit = 100
	}
	got, err := st.ClaimVolumes(t.Context(), c)
	mustOK(t, "ClaimVolumes by "+c.Owner, err)
	return changesOf(t, c, got)
}

// changesOf returns the changes of claimed, failing t when a claim that did
// not ask to Send marked one sending.
func changesOf(t testing.TB, c mlmsoft.VolumeClaim, claimed []mlmsoft.ClaimedVolume) []mlmsoft.VolumeChange {
	t.Helper()
	out := make([]mlmsoft.VolumeChange, len(claimed))
	for i, h := range claimed {
		if h.Sending && !c.Send {
			t.Errorf("ClaimVolumes without Send returned change %d with Sending true", h.Change.ID)
		}
		out[i] = h.Change
	}
	return out
}

func claimAt(t testing.TB, st mlmsoft.Store, owner string, now time.Time) []mlmsoft.VolumeChange {
	t.Helper()
	return claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: owner, Now: now})
}

func updateVolume(t testing.TB, st mlmsoft.Store, u mlmsoft.VolumeUpdate) mlmsoft.VolumeUpdated {
	t.Helper()
	got, err := st.UpdateVolume(t.Context(), u)
	mustOK(t, fmt.Sprintf("UpdateVolume(%d) to %s by %q", u.ID, u.State, u.Owner), err)
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

// wantHeads stops the test unless got names want, in order.
func wantHeads(t testing.TB, what string, got []mlmsoft.VolumeChange, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if h := heads(got); !slices.Equal(h, want) {
		t.Fatalf("%s = %v, want %v", what, h, want)
	}
}

var openStates = []mlmsoft.VolumeState{mlmsoft.VolumePending, mlmsoft.VolumeSending}

// deliver is what a worker (or, with owner "", an operator) does with a
// head it holds: mark it delivered at now.
func deliver(id int64, owner string, now time.Time) mlmsoft.VolumeUpdate {
	return mlmsoft.VolumeUpdate{
		ID: id, Owner: owner, From: openStates,
		State: mlmsoft.VolumeDelivered, Attempts: 1,
		SentAt: now, DeliveredAt: now, UpdatedAt: now,
	}
}

// setState is an operator update moving a change, whatever its state, to
// state st, due at next; the other fields it writes are zero.
func setState(t testing.TB, st mlmsoft.Store, id int64, state mlmsoft.VolumeState, next, now time.Time) mlmsoft.VolumeChange {
	t.Helper()
	cur := getVolume(t, st, id)
	got, err := st.UpdateVolume(t.Context(), mlmsoft.VolumeUpdate{ID: id, From: []mlmsoft.VolumeState{cur.State}, State: state, NextAttemptAt: next, UpdatedAt: now})
	mustOK(t, fmt.Sprintf("UpdateVolume(%d) to %s", id, state), err)
	return got.Change
}

// applyUpdate returns c as UpdateVolume must store it after u: every
// field of u below From written to the field of c of the same name.
func applyUpdate(t testing.TB, c mlmsoft.VolumeChange, u mlmsoft.VolumeUpdate) mlmsoft.VolumeChange {
	t.Helper()
	cv := reflect.ValueOf(&c).Elem()
	uv := reflect.ValueOf(u)
	below := false
	for i := range uv.NumField() {
		f := uv.Type().Field(i)
		switch f.Name {
		case "From":
			below = true
			continue
		case "Send", "Events":
			continue
		}
		if !below {
			continue
		}
		dst := cv.FieldByName(f.Name)
		if !dst.IsValid() || dst.Type() != f.Type {
			t.Fatalf("storetest: VolumeUpdate.%s has no VolumeChange field to write: storetest must learn it", f.Name)
		}
		dst.Set(uv.Field(i))
	}
	return c
}

// fullUpdate returns an update of id with every field below From filled
// (seed makes the values), in state st.
func fullUpdate(t testing.TB, id int64, owner string, from []mlmsoft.VolumeState, st mlmsoft.VolumeState, seed int) mlmsoft.VolumeUpdate {
	t.Helper()
	var src mlmsoft.VolumeChange
	fill(t, &src, seed)
	src.State = st
	u := mlmsoft.VolumeUpdate{ID: id, Owner: owner, From: from}
	uv := reflect.ValueOf(&u).Elem()
	below := false
	for i := range uv.NumField() {
		f := uv.Type().Field(i)
		switch f.Name {
		case "From":
			below = true
			continue
		case "Send", "Events":
			continue
		}
		if below {
			uv.Field(i).Set(reflect.ValueOf(src).FieldByName(f.Name))
		}
	}
	return u
}

func testVolumeRoundTrip(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	in := fullChange(t, "ua", "k1", 1)
	got := enqueue(t, st, in)[0]
	want := in
	want.ID, want.Seq = got.ID, 1
	if got.ID <= 0 {
		t.Errorf("ID %d, want > 0", got.ID)
	}
	same(t, "EnqueueVolumes result", want, got)
	same(t, "GetVolumes", want, getVolume(t, st, got.ID))
	list := listVolumes(t, st, mlmsoft.VolumeFilter{})
	if len(list) != 1 {
		t.Fatalf("ListVolumes = %v, want [ua#1]", heads(list))
	}
	same(t, "ListVolumes", want, list[0])
	now := at(1000 * hour)
	claimed := claimAt(t, st, "w1", now)
	wantHeads(t, "ClaimVolumes", claimed, "ua#1")
	same(t, "ClaimVolumes result", want, claimed[0])

	// Every field below From is written as given; the others are kept.
	u := fullUpdate(t, got.ID, "w1", []mlmsoft.VolumeState{mlmsoft.VolumePending}, mlmsoft.VolumeSending, 2)
	u.KeepLease, u.LeaseUntil = true, now.Add(hour)
	want = applyUpdate(t, want, u)
	res := updateVolume(t, st, u)
	same(t, "UpdateVolume result", want, res.Change)
	if res.Next.ID != 0 {
		t.Errorf("UpdateVolume without Send returned Next %s#%d, want none (ID 0)", res.Next.UserID, res.Next.Seq)
	}
	same(t, "GetVolumes after UpdateVolume", want, getVolume(t, st, got.ID))

	// Zero values are written too.
	u = mlmsoft.VolumeUpdate{ID: got.ID, Owner: "w1", From: []mlmsoft.VolumeState{mlmsoft.VolumeSending}, State: mlmsoft.VolumeParked}
	want = applyUpdate(t, want, u)
	same(t, "UpdateVolume to zero values", want, updateVolume(t, st, u).Change)
	got2, err := st.GetVolumes(ctx, []int64{got.ID})
	mustOK(t, "GetVolumes", err)
	same(t, "GetVolumes after UpdateVolume to zero values", want, got2[0])
}

func testVolumeZeroValues(t *testing.T, st mlmsoft.Store) {
	in := mlmsoft.VolumeChange{UserID: "ua", IdempotencyKey: "k1"}
	got := enqueue(t, st, in)[0]
	want := in
	want.ID, want.Seq = got.ID, 1
	same(t, "EnqueueVolumes result", want, got)
	same(t, "GetVolumes", want, getVolume(t, st, got.ID))
	// Zero NextAttemptAt: never due.
	wantHeads(t, "claim of a change with no NextAttemptAt", claimAt(t, st, "w", at(100000*hour)))
}

func testVolumeAmounts(t *testing.T, st mlmsoft.Store) {
	amounts := []string{
		"0.1", "-3.75", "0", "12345678901234", "-12345678901234", "0.00000000000001",
		"-0.12345678901234", "9999999.9999999", "-0.3", "1000000", "12.5", "10000000000000",
	}
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
	// Amounts that differ only in their last digit are different content.
	c := change("ua", "k0")
	c.Amount = mlmsoft.MustAmount("0.1000000000001")
	_, err := st.EnqueueVolumes(t.Context(), []mlmsoft.VolumeChange{c})
	wantErr(t, "repeat of key k0 (amount 0.1) with amount 0.1000000000001", err, mlmsoft.ErrIdempotencyConflict)
}

func testVolumeEnqueueAssigns(t *testing.T, st mlmsoft.Store) {
	in := []mlmsoft.VolumeChange{
		fullChange(t, "ua", "k1", 1), fullChange(t, "ub", "k2", 2), fullChange(t, "ua", "k3", 3),
		fullChange(t, "ua", "k4", 4), fullChange(t, "ub", "k5", 5),
	}
	in[3].State = mlmsoft.VolumeDelivered
	got := enqueue(t, st, in...)
	var last int64
	for i, seq := range []int64{1, 1, 2, 3, 2} {
		want := in[i]
		want.ID, want.Seq = got[i].ID, seq
		same(t, fmt.Sprintf("EnqueueVolumes result %d", i), want, got[i])
		if got[i].ID <= last {
			t.Errorf("result %d has ID %d after %d: want IDs increasing in enqueue order", i, got[i].ID, last)
		}
		last = got[i].ID
	}

	// Later calls continue each user's queue.
	more := enqueue(t, st, change("ub", "k6"), change("ua", "k7"), change("uc", "k8"))
	for i, seq := range []int64{3, 4, 1} {
		if more[i].Seq != seq {
			t.Errorf("second call, change %d (%s): Seq %d, want %d", i, more[i].UserID, more[i].Seq, seq)
		}
		if more[i].ID <= last {
			t.Errorf("second call, change %d has ID %d after %d: want IDs increasing in enqueue order", i, more[i].ID, last)
		}
		last = more[i].ID
	}

	all := append(got, more...)
	ids := make([]int64, len(all))
	for i, c := range all {
		ids[i] = c.ID
	}
	stored, err := st.GetVolumes(t.Context(), ids)
	mustOK(t, "GetVolumes", err)
	for i := range all {
		same(t, fmt.Sprintf("GetVolumes(%d)", all[i].ID), all[i], stored[i])
	}
}

func testVolumeEnqueueEmpty(t *testing.T, st mlmsoft.Store) {
	for _, in := range [][]mlmsoft.VolumeChange{nil, {}} {
		got, err := st.EnqueueVolumes(t.Context(), in)
		mustOK(t, "EnqueueVolumes of no changes", err)
		if len(got) != 0 {
			t.Errorf("EnqueueVolumes of no changes returned %d", len(got))
		}
	}
	if all := listVolumes(t, st, mlmsoft.VolumeFilter{}); len(all) != 0 {
		t.Errorf("ListVolumes after an empty enqueue: %v", heads(all))
	}
}

func testVolumeIdempotent(t *testing.T, st mlmsoft.Store) {
	first := enqueue(t, st, change("ua", "k1"))[0]
	delivered := updateVolume(t, st, deliver(first.ID, "", at(time.Second))).Change

	// Same key and content; fields that are not content differ, and are
	// not stored.
	again := fullChange(t, "ua", "k1", 7)
	again.Alias, again.Amount, again.OrderID = first.Alias, first.Amount, first.OrderID
	got := enqueue(t, st, again, change("ua", "k2"))
	same(t, "re-enqueued change", delivered, got[0])
	if got[1].Seq != 2 || got[1].ID == first.ID {
		t.Errorf("new change after a repeat: ID %d Seq %d, want a new ID and Seq 2", got[1].ID, got[1].Seq)
	}
	if all := listVolumes(t, st, mlmsoft.VolumeFilter{}); len(all) != 2 {
		t.Errorf("ListVolumes: %v, want 2 changes", heads(all))
	}
	same(t, "stored change after the repeat", delivered, getVolume(t, st, first.ID))
	got = enqueue(t, st, change("ua", "k2"), change("ua", "k1"))
	same(t, "second repeat, k2", getVolume(t, st, got[0].ID), got[0])
	same(t, "second repeat, k1", delivered, got[1])
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
		// A conflict anywhere in a call stores none of it.
		_, err = st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{change("ua", "new-"+v.field), change("uc", "other-"+v.field), bad, change("ud", "last-"+v.field)})
		wantErr(t, "call with a repeat with another "+v.field, err, mlmsoft.ErrIdempotencyConflict)
	}
	all := listVolumes(t, st, mlmsoft.VolumeFilter{})
	if len(all) != 1 {
		t.Fatalf("after refused calls ListVolumes = %v, want only ua#1", heads(all))
	}
	same(t, "original change", orig, all[0])
	// Refused calls took no place in any queue and kept no key.
	got := enqueue(t, st, change("ua", "k2"), change("uc", "k3"), change("ud", "last-UserID"))
	wantHeads(t, "next enqueue", got, "ua#2", "uc#1", "ud#1")
	got = enqueue(t, st, change("ub", "new-UserID"))
	wantHeads(t, "enqueue reusing a refused call's key", got, "ub#1")
}

func testVolumeIdempotencyWithinCall(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	rep := change("ua", "k1")
	rep.BatchID, rep.NextAttemptAt = "other", at(hour) // not content
	got := enqueue(t, st, change("ua", "k1"), change("ua", "k2"), rep)
	wantHeads(t, "call repeating a key", got, "ua#1", "ua#2", "ua#1")
	same(t, "repeat within the call", got[0], got[2])
	if n := len(listVolumes(t, st, mlmsoft.VolumeFilter{})); n != 2 {
		t.Errorf("%d changes stored, want 2", n)
	}
	bad := change("ua", "k3")
	bad.Amount = mlmsoft.MustAmount("11")
	_, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{change("ua", "k3"), bad})
	wantErr(t, "call reusing a key with another amount", err, mlmsoft.ErrIdempotencyConflict)
	if n := len(listVolumes(t, st, mlmsoft.VolumeFilter{})); n != 2 {
		t.Errorf("%d changes stored after a refused call, want 2", n)
	}
	wantHeads(t, "enqueue after the refused call", enqueue(t, st, change("ua", "k3")), "ua#3")
}

func testVolumeEnqueueConcurrent(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	goroutines, calls, size := 8, 4, 3
	if testing.Short() {
		goroutines, calls = 4, 2
	}
	type result struct {
		user       string
		start, end int64 // a clock of call starts and ends
		seqs, ids  []int64
	}
	var clock atomic.Int64
	results := make([][]result, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		user := []string{"ua", "ub"}[g%2] // several writers per user
		wg.Go(func() {
			for b := range calls {
				var cs []mlmsoft.VolumeChange
				for i := range size {
					cs = append(cs, change(user, fmt.Sprintf("g%d-b%d-c%d", g, b, i)))
				}
				r := result{user: user, start: clock.Add(1)}
				got, err := st.EnqueueVolumes(ctx, cs)
				r.end = clock.Add(1)
				if err != nil {
					t.Errorf("EnqueueVolumes: %v", err)
					return
				}
				for _, c := range got {
					r.seqs = append(r.seqs, c.Seq)
					r.ids = append(r.ids, c.ID)
				}
				results[g] = append(results[g], r)
			}
		})
	}
	wg.Wait()
	var all []result
	for _, rs := range results {
		all = append(all, rs...)
	}
	seqs := map[string][]int64{}
	ids := map[int64]bool{}
	for _, r := range all {
		// One call commits at once: its changes take consecutive places.
		for i, s := range r.seqs {
			if s != r.seqs[0]+int64(i) {
				t.Errorf("a call for %s got Seqs %v, want consecutive", r.user, r.seqs)
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
		// A call that ended before another began committed first.
		for _, o := range all {
			if r.end < o.start && r.user == o.user && slices.Max(r.seqs) > slices.Min(o.seqs) {
				t.Errorf("%s: a call that returned Seqs %v before another began got later places than its %v", r.user, r.seqs, o.seqs)
			}
			if r.end < o.start && slices.Max(r.ids) > slices.Min(o.ids) {
				t.Errorf("a call that returned IDs %v before another began got later IDs than its %v", r.ids, o.ids)
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
	if len(ids) != goroutines*calls*size {
		t.Errorf("%d changes stored, want %d", len(ids), goroutines*calls*size)
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
	seqs := map[int64]bool{got[0][0].Seq: true}
	for g := range n {
		if got[g][0].ID != got[0][0].ID {
			t.Errorf("the shared key was stored as %d and %d", got[0][0].ID, got[g][0].ID)
		}
		seqs[got[g][1].Seq] = true
	}
	all := listVolumes(t, st, mlmsoft.VolumeFilter{})
	if len(all) != n+1 || len(seqs) != n+1 {
		t.Errorf("stored %v, want %d changes with distinct Seqs", heads(all), n+1)
	}
}

func testVolumeGetVolumes(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	cs := enqueue(t, st, fullChange(t, "ua", "k1", 1), fullChange(t, "ub", "k2", 2), fullChange(t, "ua", "k3", 3))
	got, err := st.GetVolumes(ctx, []int64{cs[2].ID, cs[0].ID, cs[1].ID})
	mustOK(t, "GetVolumes", err)
	if len(got) != 3 {
		t.Fatalf("GetVolumes of 3 ids returned %v", heads(got))
	}
	for i, j := range []int{2, 0, 1} {
		same(t, fmt.Sprintf("GetVolumes result %d", i), cs[j], got[i])
	}
	missing := slices.MaxFunc(cs, func(a, b mlmsoft.VolumeChange) int { return cmp.Compare(a.ID, b.ID) }).ID + 1000
	for _, ids := range [][]int64{{missing}, {cs[0].ID, missing}, {missing, cs[0].ID}, {0}, {-1}} {
		_, err = st.GetVolumes(ctx, ids)
		wantErr(t, fmt.Sprintf("GetVolumes(%v) (%d missing)", ids, missing), err, mlmsoft.ErrNotFound)
	}
	for _, ids := range [][]int64{nil, {}} {
		got, err = st.GetVolumes(ctx, ids)
		mustOK(t, "GetVolumes of no ids", err)
		if len(got) != 0 {
			t.Errorf("GetVolumes of no ids returned %v", heads(got))
		}
	}
}

func testVolumeClaimHeadOnly(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	zero := time.Time{}
	P, S, D, K, U, R, X := mlmsoft.VolumePending, mlmsoft.VolumeSending, mlmsoft.VolumeDelivered,
		mlmsoft.VolumeParked, mlmsoft.VolumeUncertain, mlmsoft.VolumeRejected, mlmsoft.VolumeSkipped
	v := enqueue(t, st,
		// ua: final changes first; the head is #4, and #5 is due earlier.
		inState("ua", "a1", D, zero), inState("ua", "a2", R, at(minute)), inState("ua", "a3", X, zero),
		inState("ua", "a4", P, at(20*minute)), inState("ua", "a5", P, at(0)),
		// ub: a parked head with no NextAttemptAt blocks a due change.
		inState("ub", "b1", K, zero), inState("ub", "b2", P, at(0)),
		// uc: an uncertain head blocks too.
		inState("uc", "c1", U, zero), inState("uc", "c2", P, at(0)),
		// ud: a sending head with a NextAttemptAt is due (its outcome was
		// never recorded).
		inState("ud", "d1", S, at(10*minute)), inState("ud", "d2", P, at(0)),
		// ue: the head is not due yet; a later change that is cannot pass it.
		inState("ue", "e1", P, now.Add(ms)), inState("ue", "e2", P, at(0)),
		// uf: every change final.
		inState("uf", "f1", D, zero), inState("uf", "f2", X, at(0)),
		// ug: a pending head with a DocumentID is due by its NextAttemptAt
		// like any other.
		inState("ug", "g1", P, at(30*minute)),
		// uh: a final change after the head changes nothing.
		inState("uh", "h1", P, at(40*minute)), inState("uh", "h2", R, at(0)),
	)
	byKey := map[string]mlmsoft.VolumeChange{}
	for _, c := range v {
		byKey[c.IdempotencyKey] = c
	}
	g1 := byKey["g1"]
	g1.DocumentID = 77
	updateVolume(t, st, mlmsoft.VolumeUpdate{ID: g1.ID, From: []mlmsoft.VolumeState{P}, State: P, NextAttemptAt: g1.NextAttemptAt, DocumentID: 77})
	byKey["g1"] = getVolume(t, st, g1.ID)

	got := claimAt(t, st, "w1", now)
	wantHeads(t, "ClaimVolumes", got, "ud#1", "ua#4", "ug#1", "uh#1")
	for _, c := range got {
		same(t, "claimed head "+heads([]mlmsoft.VolumeChange{c})[0], byKey[c.IdempotencyKey], c)
	}

	// Once a blocking head is final, the next change is the head.
	setState(t, st, byKey["b1"].ID, X, zero, now)
	setState(t, st, byKey["c1"].ID, D, zero, now)
	wantHeads(t, "claim once ub's and uc's heads are final", claimAt(t, st, "w2", now), "ub#2", "uc#2")
	// A parked head with a NextAttemptAt is due: the store reads no state
	// but through Final.
	enqueue(t, st, inState("ui", "i1", K, at(0)), inState("uj", "j1", U, at(0)))
	wantHeads(t, "claim of parked and uncertain heads with a NextAttemptAt", claimAt(t, st, "w3", now), "ui#1", "uj#1")
}

func testVolumeClaimDue(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	enqueue(t, st,
		due("ua", "a1", hour), // exactly now
		due("ub", "b1", hour+ms),
		inState("uc", "c1", mlmsoft.VolumePending, time.Time{}),
		due("ud", "d1", hour-ms),
	)
	wantHeads(t, "claim at now", claimAt(t, st, "w1", now), "ud#1", "ua#1")
	wantHeads(t, "claim a millisecond later", claimAt(t, st, "w2", now.Add(ms)), "ub#1")
	wantHeads(t, "claim once the leases lapsed (a change with no NextAttemptAt is never due)", claimAt(t, st, "w3", at(100000*hour)), "ud#1", "ua#1", "ub#1")
}

func testVolumeClaimHeadMovesBack(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	v := enqueue(t, st, due("ua", "k1", 0), due("ua", "k2", 0), due("ua", "k3", 0))
	setState(t, st, v[0].ID, mlmsoft.VolumeSkipped, time.Time{}, now)
	setState(t, st, v[1].ID, mlmsoft.VolumeDelivered, time.Time{}, now)
	// An operator reopens #1: it is the lowest-Seq change not final again.
	setState(t, st, v[0].ID, mlmsoft.VolumePending, now, now)
	wantHeads(t, "claim after #1 was reopened", claimAt(t, st, "w1", now), "ua#1")
}

func testVolumeClaimOrderLimit(t *testing.T, st mlmsoft.Store) {
	// Users whose heads are due at the same time come by their heads' IDs,
	// whatever their user ids.
	enqueue(t, st,
		due("uz", "z1", 30*minute), due("ua", "a1", 10*minute), due("um", "m1", 10*minute),
		due("ub", "b1", 20*minute), due("uy", "y1", 10*minute), due("ua", "a2", 0), due("uc", "c1", 40*minute),
	)
	now := at(hour)
	for i, want := range [][]string{{"ua#1", "um#1"}, {"uy#1", "ub#1"}, {"uz#1", "uc#1"}, nil} {
		got := claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: fmt.Sprintf("w%d", i), Now: now, Limit: 2})
		wantHeads(t, fmt.Sprintf("claim %d with Limit 2", i+1), got, want...)
	}
	got := claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "v", Now: now.Add(2 * hour), Limit: 1})
	wantHeads(t, "claim with Limit 1 after the leases lapsed", got, "ua#1")
}

func testVolumeClaimLease(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	enqueue(t, st, due("ua", "a1", 0), due("ua", "a2", 0), due("ub", "b1", 0))
	got := claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w1", Now: now, Lease: minute, Limit: 1})
	wantHeads(t, "claim by w1", got, "ua#1")
	// The lease is on the user: none of its changes is claimed meanwhile,
	// by anyone, w1 included.
	wantHeads(t, "claim by w2 while w1 holds ua", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w2", Now: now.Add(minute - ms), Lease: minute}), "ub#1")
	for _, owner := range []string{"w2", "w1"} {
		wantHeads(t, "claim by "+owner+" while both leases hold", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: owner, Now: now.Add(minute - ms), Lease: minute}))
	}
	// At the end of the lease, it has lapsed.
	wantHeads(t, "claim by w3 when w1's lease ends", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w3", Now: now.Add(minute), Lease: minute}), "ua#1")
	wantHeads(t, "claim by w4 while w3 holds ua", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w4", Now: now.Add(minute), Lease: minute}))
	// A claim at an earlier now sees the lease live.
	wantHeads(t, "claim by w5 at an earlier now", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w5", Now: now, Lease: minute}))
}

func testVolumeClaimConcurrent(t *testing.T, st mlmsoft.Store) {
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
	now := at(hour)
	var mu sync.Mutex
	owners := map[string]string{}
	var wg sync.WaitGroup
	for w := range workers {
		owner := fmt.Sprintf("worker%d", w)
		wg.Go(func() {
			for range users + 1 { // a correct store runs dry sooner
				got, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: owner, Now: now, Lease: hour, Limit: 2})
				if err != nil {
					t.Errorf("ClaimVolumes: %v", err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, hc := range got {
					c := hc.Change
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

func testVolumeUpdateFields(t *testing.T, st mlmsoft.Store) {
	v := enqueue(t, st, fullChange(t, "ua", "k1", 1))[0]
	claimAt(t, st, "w1", at(1000*hour))
	for i, s := range mlmsoft.VolumeStates {
		u := fullUpdate(t, v.ID, "w1", mlmsoft.VolumeStates, s, 10+i)
		u.KeepLease, u.LeaseUntil = true, at(1000*hour)
		want := applyUpdate(t, v, u)
		same(t, "UpdateVolume to "+string(s), want, updateVolume(t, st, u).Change)
		same(t, "GetVolumes after the update to "+string(s), want, getVolume(t, st, v.ID))
		v = want
	}
	// An operator's update writes every field too.
	u := fullUpdate(t, v.ID, "", mlmsoft.VolumeStates, mlmsoft.VolumeParked, 30)
	u.NextAttemptAt = time.Time{}
	want := applyUpdate(t, v, u)
	same(t, "operator UpdateVolume", want, updateVolume(t, st, u).Change)
	same(t, "GetVolumes after the operator's update", want, getVolume(t, st, v.ID))
}

func testVolumeUpdateNotFound(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	v := enqueue(t, st, change("ua", "k1"))[0]
	claimAt(t, st, "w1", at(hour))
	for _, owner := range []string{"", "w1", "w2"} {
		u := deliver(v.ID+1000, owner, at(0))
		u.From = nil // also a conflict, were it found
		u.Events = []mlmsoft.Event{fullEvent(t, "e1", 1, 0)}
		_, err := st.UpdateVolume(ctx, u)
		wantErr(t, fmt.Sprintf("UpdateVolume of a missing id, Owner %q", owner), err, mlmsoft.ErrNotFound)
	}
	same(t, "existing change", v, getVolume(t, st, v.ID))
	noEvents(t, st, "after refused updates")
}

func testVolumeUpdateFrom(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"))
	claimAt(t, st, "w1", now)

	for _, from := range [][]mlmsoft.VolumeState{
		{mlmsoft.VolumeSending, mlmsoft.VolumeParked},
		{mlmsoft.VolumeDelivered},
	} {
		u := deliver(v[0].ID, "w1", now)
		u.From = from
		u.Send = &mlmsoft.VolumeSend{At: now, AccountID: 5}
		_, err := st.UpdateVolume(ctx, u)
		wantErr(t, fmt.Sprintf("UpdateVolume from %v of a pending change", from), err, mlmsoft.ErrConflict)
	}
	same(t, "change after the refused updates", v[0], getVolume(t, st, v[0].ID))
	same(t, "next change after the refused updates", v[1], getVolume(t, st, v[1].ID))
	wantHeads(t, "claim after the refused updates (w1 still holds ua)", claimAt(t, st, "w2", now))

	u := mlmsoft.VolumeUpdate{ID: v[0].ID, Owner: "w1", From: []mlmsoft.VolumeState{mlmsoft.VolumeParked, mlmsoft.VolumePending},
		State: mlmsoft.VolumeSending, Attempts: 1, SentAt: now, UpdatedAt: now, KeepLease: true, LeaseUntil: now.Add(hour)}
	if got := updateVolume(t, st, u).Change; got.State != mlmsoft.VolumeSending {
		t.Errorf("state %s, want sending", got.State)
	}

	// Operators' updates are checked the same way.
	op := mlmsoft.VolumeUpdate{ID: v[0].ID, From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, State: mlmsoft.VolumeSkipped, UpdatedAt: now}
	_, err := st.UpdateVolume(ctx, op)
	wantErr(t, "operator UpdateVolume from pending, when sending", err, mlmsoft.ErrConflict)
	op.From = []mlmsoft.VolumeState{mlmsoft.VolumeSending}
	if got := updateVolume(t, st, op).Change; got.State != mlmsoft.VolumeSkipped {
		t.Errorf("state %s, want skipped", got.State)
	}
	// A final state is a state like another.
	op.From, op.State = []mlmsoft.VolumeState{mlmsoft.VolumeSkipped}, mlmsoft.VolumeDelivered
	updateVolume(t, st, op)
}

func testVolumeUpdateErrorOrder(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"))[0]
	claimAt(t, st, "w1", now)
	u := deliver(v.ID, "w2", now) // not the owner
	u.From = []mlmsoft.VolumeState{mlmsoft.VolumeParked}
	u.Events = []mlmsoft.Event{fullEvent(t, "e1", 1, 0)}
	_, err := st.UpdateVolume(ctx, u)
	wantErr(t, "UpdateVolume by a worker without the lease, from the wrong state", err, mlmsoft.ErrLeaseLost)
	u.Owner = "w1"
	_, err = st.UpdateVolume(ctx, u)
	wantErr(t, "UpdateVolume by the owner, from the wrong state", err, mlmsoft.ErrConflict)
	same(t, "change after refused updates", v, getVolume(t, st, v.ID))
	noEvents(t, st, "after refused updates")
}

func testVolumeUpdateEndsLease(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"), change("ua", "k3"))
	wantHeads(t, "claim", claimAt(t, st, "w1", now), "ua#1")

	// An update that leaves the change at the head ends the lease too.
	u := mlmsoft.VolumeUpdate{ID: v[0].ID, Owner: "w1", From: openStates, State: mlmsoft.VolumePending, Attempts: 1, NextAttemptAt: now, UpdatedAt: now}
	updateVolume(t, st, u)
	wantHeads(t, "claim by w2 after w1's update", claimAt(t, st, "w2", now), "ua#1")
	_, err := st.UpdateVolume(ctx, deliver(v[0].ID, "w1", now))
	wantErr(t, "UpdateVolume by w1 after its lease ended and w2 claimed", err, mlmsoft.ErrLeaseLost)

	updateVolume(t, st, deliver(v[0].ID, "w2", now))
	// Ended, even with nobody claiming since: w2 no longer holds the user.
	_, err = st.UpdateVolume(ctx, deliver(v[1].ID, "w2", now))
	wantErr(t, "UpdateVolume by w2 after its update ended the lease", err, mlmsoft.ErrLeaseLost)
	wantHeads(t, "claim by w3", claimAt(t, st, "w3", now), "ua#2")
}

func testVolumeUpdateKeepLease(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"), change("ua", "k3"))
	claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w1", Now: now, Lease: minute})
	until := now.Add(10 * minute)
	u := deliver(v[0].ID, "w1", now)
	u.KeepLease, u.LeaseUntil = true, until
	updateVolume(t, st, u)
	wantHeads(t, "claim just before LeaseUntil", claimAt(t, st, "w2", until.Add(-ms)))

	// w1 works on: the lease covers every change of the user.
	u = deliver(v[1].ID, "w1", now)
	u.KeepLease, u.LeaseUntil = true, until
	updateVolume(t, st, u)
	wantHeads(t, "claim just before LeaseUntil, again", claimAt(t, st, "w2", until.Add(-ms)))
	wantHeads(t, "claim at LeaseUntil", claimAt(t, st, "w2", until), "ua#3")
}

func testVolumeUpdateWithoutOwner(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"), change("ua", "k3"))
	claimAt(t, st, "w1", now)

	// An operator needs no lease, and leaves w1's as it is.
	op := mlmsoft.VolumeUpdate{ID: v[2].ID, From: openStates, State: mlmsoft.VolumeSkipped, ResolvedBy: "ops", UpdatedAt: now}
	updateVolume(t, st, op)
	op = mlmsoft.VolumeUpdate{ID: v[0].ID, From: openStates, State: mlmsoft.VolumePending, Attempts: 2, NextAttemptAt: now, UpdatedAt: now}
	updateVolume(t, st, op)
	wantHeads(t, "claim while w1 holds ua", claimAt(t, st, "w2", now))
	updateVolume(t, st, deliver(v[0].ID, "w1", now))
	wantHeads(t, "claim after w1's update", claimAt(t, st, "w2", now), "ua#2")

	// Nor does it take a lease, KeepLease or not.
	op = deliver(v[1].ID, "", now)
	op.KeepLease, op.LeaseUntil = true, now.Add(hour)
	updateVolume(t, st, op)
	enqueue(t, st, change("ua", "k4"))
	wantHeads(t, "claim by w3 while w2 holds ua", claimAt(t, st, "w3", now))
	updateVolume(t, st, mlmsoft.VolumeUpdate{ID: v[1].ID, Owner: "w2", From: []mlmsoft.VolumeState{mlmsoft.VolumeDelivered}, State: mlmsoft.VolumeDelivered, UpdatedAt: now})
	wantHeads(t, "claim by w3 after w2 let go", claimAt(t, st, "w3", now), "ua#4")
}

func testVolumeUpdateLeaseLost(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"), change("ub", "k3"))
	claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "a", Now: now, Lease: minute})
	wantHeads(t, "claim by b after a's lease lapsed", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "b", Now: now.Add(2 * minute), Lease: minute, Limit: 1}), "ua#1")

	_, err := st.UpdateVolume(ctx, deliver(v[0].ID, "a", now.Add(90*time.Second)))
	wantErr(t, "UpdateVolume by the lease's former owner", err, mlmsoft.ErrLeaseLost)
	// The owner check covers every change of the user, not only the head.
	_, err = st.UpdateVolume(ctx, deliver(v[1].ID, "a", now.Add(90*time.Second)))
	wantErr(t, "UpdateVolume of a later change by the former owner", err, mlmsoft.ErrLeaseLost)
	_, err = st.UpdateVolume(ctx, deliver(v[0].ID, "nobody", now.Add(90*time.Second)))
	wantErr(t, "UpdateVolume by a worker that never held the user", err, mlmsoft.ErrLeaseLost)
	// ub's lease lapsed too, but nobody took it: a still holds ub.
	same(t, "change after refused updates", v[0], getVolume(t, st, v[0].ID))
	updateVolume(t, st, deliver(v[2].ID, "a", now.Add(3*minute)))

	updateVolume(t, st, deliver(v[0].ID, "b", now.Add(2*minute)))
	_, err = st.UpdateVolume(ctx, deliver(v[1].ID, "b", now.Add(2*minute)))
	wantErr(t, "UpdateVolume by b after its update ended the lease", err, mlmsoft.ErrLeaseLost)
}

func testVolumeLapsedLeaseStillHeld(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"))
	claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "a", Now: now, Lease: minute})
	// Claims by others that find nothing due take nothing from a.
	wantHeads(t, "claim before the lease lapsed", claimAt(t, st, "b", now.Add(30*time.Second)))
	// Long after the lease lapsed, nobody having claimed since, a still
	// holds the user, and may keep it.
	late := now.Add(hour)
	u := deliver(v[0].ID, "a", late)
	u.KeepLease, u.LeaseUntil = true, late.Add(minute)
	if got := updateVolume(t, st, u).Change; got.State != mlmsoft.VolumeDelivered {
		t.Errorf("state %s, want delivered", got.State)
	}
	wantHeads(t, "claim while a keeps ua", claimAt(t, st, "b", late))
	updateVolume(t, st, deliver(v[1].ID, "a", late.Add(time.Hour)))
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

func testVolumeUpdateEvents(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"), change("ub", "k2"))
	claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w1", Now: now, Limit: 1})
	e1, e2, e3 := fullEvent(t, "e1", 1, 0), fullEvent(t, "e2", 2, ms), fullEvent(t, "e3", 3, 2*ms)

	u := deliver(v[0].ID, "w1", now)
	u.Events = []mlmsoft.Event{e1, e2}
	updateVolume(t, st, u)
	op := deliver(v[1].ID, "", now)
	op.Events = []mlmsoft.Event{e3}
	updateVolume(t, st, op)

	bad := deliver(v[1].ID, "", now) // delivered already
	bad.Events = []mlmsoft.Event{fullEvent(t, "e4", 4, 0)}
	_, err := st.UpdateVolume(ctx, bad)
	wantErr(t, "UpdateVolume from the wrong state", err, mlmsoft.ErrConflict)

	later := at(1000 * hour)
	got := claimEvents(t, st, "w", later, minute, 10)
	wantIDs(t, "events claimed", eventIDs(got), []string{"e1", "e2", "e3"})
	for i, e := range []mlmsoft.Event{e1, e2, e3} {
		if i < len(got) {
			same(t, "event "+e.ID, leasedEvent(e, "w", later, minute), got[i])
		}
	}
}

func testVolumeUnknownState(t *testing.T, st mlmsoft.Store) {
	// A state mlmsoft may add in a later release is stored as given, and
	// holds the queue, as every state that is not Final does.
	held := mlmsoft.VolumeState("held")
	now := at(hour)
	v := enqueue(t, st, inState("ua", "k1", held, time.Time{}), change("ua", "k2"))
	same(t, "stored change in state held", v[0], getVolume(t, st, v[0].ID))
	wantHeads(t, "claim while a held change with no NextAttemptAt is the head", claimAt(t, st, "w1", now))
	wantHeads(t, "ListVolumes(States held)", listVolumes(t, st, mlmsoft.VolumeFilter{States: []mlmsoft.VolumeState{held}}), "ua#1")
	setState(t, st, v[0].ID, held, now, now)
	wantHeads(t, "claim once the held head is due", claimAt(t, st, "w1", now), "ua#1")
	updateVolume(t, st, mlmsoft.VolumeUpdate{ID: v[0].ID, Owner: "w1", From: []mlmsoft.VolumeState{held}, State: mlmsoft.VolumeDelivered, UpdatedAt: now})
	wantHeads(t, "claim once the held change is delivered", claimAt(t, st, "w2", now), "ua#2")
}

func testVolumeList(t *testing.T, st mlmsoft.Store) {
	P, D, K := mlmsoft.VolumePending, mlmsoft.VolumeDelivered, mlmsoft.VolumeParked
	mk := func(user, key string, s mlmsoft.VolumeState, seed int) mlmsoft.VolumeChange {
		c := fullChange(t, user, key, seed)
		c.State = s
		return c
	}
	stored := enqueue(t, st, mk("ua", "k1", P, 1), mk("ub", "k2", D, 2), mk("ua", "k3", K, 3))
	stored = append(stored, enqueue(t, st, mk("uc", "k4", P, 4), mk("ub", "k5", P, 5), mk("ua", "k6", D, 6))...)
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
		{UserID: "UA"},
		{States: []mlmsoft.VolumeState{P}},
		{States: []mlmsoft.VolumeState{D, K}, UserID: "ua"},
		{States: []mlmsoft.VolumeState{mlmsoft.VolumeUncertain}},
		{AfterID: ids[2]},
		{AfterID: ids[1], UserID: "ua"},
		{Limit: 2},
		{UserID: "ub", Limit: 1},
		{AfterID: ids[0], Limit: 3, States: []mlmsoft.VolumeState{P, D}},
		{AfterID: ids[5]},
		{AfterID: -1},
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
