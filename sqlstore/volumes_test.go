package sqlstore

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
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

// due returns c due at t0.
func due(c mlmsoft.VolumeChange) mlmsoft.VolumeChange {
	c.NextAttemptAt = t0
	return c
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

func heads(vs []mlmsoft.VolumeChange) []string {
	var out []string
	for _, v := range vs {
		out = append(out, fmt.Sprintf("%s#%d", v.UserID, v.Seq))
	}
	return out
}

func claimVolumes(t *testing.T, s *Store, owner string, now time.Time, limit int) []mlmsoft.VolumeChange {
	t.Helper()
	got, err := s.ClaimVolumes(testCtx(t), mlmsoft.VolumeClaim{Owner: owner, Now: now, Lease: time.Minute, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return changes(got)
}

// changes returns the changes of claimed heads.
func changes(claimed []mlmsoft.ClaimedVolume) []mlmsoft.VolumeChange {
	var out []mlmsoft.VolumeChange
	for _, h := range claimed {
		out = append(out, h.Change)
	}
	return out
}

func mustUpdate(t *testing.T, s *Store, u mlmsoft.VolumeUpdate) mlmsoft.VolumeUpdated {
	t.Helper()
	got, err := s.UpdateVolume(testCtx(t), u)
	if err != nil {
		t.Fatal(err)
	}
	checkHeads(t, s)
	return got
}

// delivered is the update of a worker delivering change c.
func delivered(c mlmsoft.VolumeChange, owner string) mlmsoft.VolumeUpdate {
	return mlmsoft.VolumeUpdate{ID: c.ID, Owner: owner, From: []mlmsoft.VolumeState{c.State},
		State: mlmsoft.VolumeDelivered, Attempts: c.Attempts, DeliveredAt: t0, UpdatedAt: t0}
}

// operator is an operator's update moving change id to state.
func operator(id int64, from []mlmsoft.VolumeState, state mlmsoft.VolumeState, next time.Time) mlmsoft.VolumeUpdate {
	return mlmsoft.VolumeUpdate{ID: id, From: from, State: state, NextAttemptAt: next, ResolvedBy: "op", UpdatedAt: t0}
}

// checkHeads compares every user's stored head with the head computed from
// the changes themselves.
func checkHeads(t *testing.T, s *Store) {
	t.Helper()
	ctx := testCtx(t)
	all, err := s.ListVolumes(ctx, mlmsoft.VolumeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	type head struct {
		id, seq      int64
		due, created time.Time
	}
	want := map[string]head{}
	for _, v := range all { // by id: by seq within a user
		if _, ok := want[v.UserID]; !ok {
			want[v.UserID] = head{}
		}
		if h := want[v.UserID]; h.id == 0 && !v.State.Final() {
			want[v.UserID] = head{v.ID, v.Seq, v.NextAttemptAt, v.CreatedAt}
		}
	}
	rows, err := s.DB().QueryContext(ctx, s.sql("SELECT user_id, head_id, head_seq, head_due, head_created_at FROM {p}volume_users"))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]head{}
	for rows.Next() {
		var (
			user string
			h    head
		)
		if err := rows.Scan(&user, nullInt64{&h.id}, nullInt64{&h.seq}, s.t(&h.due), s.t(&h.created)); err != nil {
			t.Fatal(err)
		}
		got[user] = h
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for u, w := range want {
		if g := got[u]; g.id != w.id || g.seq != w.seq || !g.due.Equal(w.due) || !g.created.Equal(w.created) {
			t.Errorf("head of %s = %+v, want %+v", u, g, w)
		}
	}
	for u, g := range got {
		if _, ok := want[u]; !ok && g.id != 0 {
			t.Errorf("user %s without changes has head %+v", u, g)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkCounts compares Counts with counts of the rows themselves.
func checkCounts(t *testing.T, s *Store) {
	t.Helper()
	ctx := testCtx(t)
	got, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := mlmsoft.Counts{Links: map[mlmsoft.LinkState]int{}, Volumes: map[mlmsoft.VolumeState]int{}}
	links, err := s.ListLinks(ctx, mlmsoft.LinkFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		want.Links[l.State]++
	}
	vs, err := s.ListVolumes(ctx, mlmsoft.VolumeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		want.Volumes[v.State]++
		if !v.State.Final() && !v.CreatedAt.IsZero() && (want.OldestOpen.IsZero() || v.CreatedAt.Before(want.OldestOpen)) {
			want.OldestOpen = v.CreatedAt
		}
	}
	err = s.DB().QueryRowContext(ctx, s.sql("SELECT COUNT(*), COUNT(CASE WHEN attempts > 0 THEN 1 END) FROM {p}events")).
		Scan(&want.Events, &want.FailingEvents)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Counts:\n got %+v\nwant %+v", got, want)
	}
	var gotUnstamped, wantUnstamped int64
	if err := s.DB().QueryRowContext(ctx, s.q.sumUnstamped, countUnstamped).Scan(&gotUnstamped); err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if unstamped(v.State, v.UpdatedAt) {
			wantUnstamped++
		}
	}
	if gotUnstamped != wantUnstamped {
		t.Fatalf("unstamped counter = %d, want %d", gotUnstamped, wantUnstamped)
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
			change("u2", "k3", "12345678901234"),
			change("u1", "k4", "0.00000000000001"),
			change("u1", "", "0"), // no key: never deduplicated
			change("u1", "", "0"),
		}
		got := mustEnqueue(t, s, in...)
		seqs := []int64{1, 2, 1, 3, 4, 5}
		for i := range in {
			if i > 0 && got[i].ID <= got[i-1].ID {
				t.Errorf("ids not increasing: %d after %d", got[i].ID, got[i-1].ID)
			}
			checkVolume(t, fmt.Sprint("enqueued ", i), got[i], wantVolume(in[i], got[i].ID, seqs[i]))
		}
		back, err := s.GetVolumes(ctx, []int64{got[3].ID, got[0].ID, got[3].ID})
		if err != nil {
			t.Fatal(err)
		}
		for i, j := range []int{3, 0, 3} {
			checkVolume(t, fmt.Sprint("GetVolumes ", i), back[i], got[j])
		}
		if _, err := s.GetVolumes(ctx, []int64{got[0].ID, 1 << 40}); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Fatalf("GetVolumes(missing) = %v, want ErrNotFound", err)
		}
		if out, err := s.EnqueueVolumes(ctx, nil); err != nil || len(out) != 0 {
			t.Fatalf("EnqueueVolumes(nil) = %v, %v", out, err)
		}
		if _, err := s.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{Alias: "PV"}}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Fatalf("EnqueueVolumes without user = %v, want ErrInvalidInput", err)
		}
		checkHeads(t, s)
		checkCounts(t, s)
	})
}

// TestEnqueueManyUsers enqueues more changes and users in one call than
// one statement takes.
func TestEnqueueManyUsers(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.store()
		var in []mlmsoft.VolumeChange
		for i := range 2*volumeInsertChunk + 7 {
			in = append(in, due(change(fmt.Sprint("u", i%(inChunk+3)), fmt.Sprint("k", i), "1")))
		}
		got := mustEnqueue(t, s, in...)
		for i := range in {
			if want := int64(i/(inChunk+3) + 1); got[i].Seq != want {
				t.Fatalf("change %d has seq %d, want %d", i, got[i].Seq, want)
			}
		}
		again := mustEnqueue(t, s, in...)
		if !reflect.DeepEqual(again, got) {
			t.Fatal("enqueueing again did not return the stored changes")
		}
		checkHeads(t, s)
		checkCounts(t, s)
	})
}

func TestEnqueueIdempotency(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		first := mustEnqueue(t, s, change("u", "k1", "1"), change("u", "k2", "2"))
		// Stored keys and repeats within the call come back as stored.
		c3 := change("u", "k3", "3")
		got := mustEnqueue(t, s, change("u", "k2", "2"), c3, c3, change("u", "k1", "1"))
		if got[0] != first[1] || got[3] != first[0] || got[1] != got[2] || got[1].Seq != 3 {
			t.Fatalf("idempotent enqueue = %v", heads(got))
		}
		for _, bad := range [][]mlmsoft.VolumeChange{
			{change("u", "k1", "1.5")},                            // other amount
			{change("v", "k1", "1")},                              // other user
			{change("u", "k9", "1"), change("u", "k9", "2")},      // repeat differs
			{change("u", "k10", "1"), change("other", "k2", "2")}, // all or none
		} {
			if _, err := s.EnqueueVolumes(ctx, bad); !errors.Is(err, mlmsoft.ErrIdempotencyConflict) {
				t.Errorf("EnqueueVolumes(%v) = %v, want ErrIdempotencyConflict", heads(bad), err)
			}
		}
		all, _ := s.ListVolumes(ctx, mlmsoft.VolumeFilter{})
		if len(all) != 3 {
			t.Fatalf("%d changes stored, want 3", len(all))
		}
		checkCounts(t, s)
	})
}

// TestEnqueueConcurrentSeq: concurrent enqueues of one user, from two
// pools, with overlapping keys, give each key one change and the user
// gapless seqs.
func TestEnqueueConcurrentSeq(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		stores := []*Store{db.store(), db.store()}
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Go(func() {
				for i := range 8 {
					// Every goroutine enqueues keys k0..k7 of user u and
					// a key of its own, in different orders.
					k := fmt.Sprint("k", (i+g)%8)
					_, err := stores[g%2].EnqueueVolumes(testCtx(t), []mlmsoft.VolumeChange{
						change("u", k, "1"), change("u", fmt.Sprintf("g%d-%d", g, i), "1"), change("w"+k, "w"+k, "1")})
					if err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		s := stores[0]
		all, err := s.ListVolumes(testCtx(t), mlmsoft.VolumeFilter{UserID: "u"})
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 8+6*8 {
			t.Fatalf("%d changes of u, want %d", len(all), 8+6*8)
		}
		for i, v := range all {
			if v.Seq != int64(i+1) {
				t.Fatalf("change %d of u has seq %d", i, v.Seq)
			}
		}
		checkHeads(t, s)
		checkCounts(t, s)
	})
}

func TestClaimVolumes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.store()
		at := func(c mlmsoft.VolumeChange, d time.Duration) mlmsoft.VolumeChange {
			c.NextAttemptAt = t0.Add(d)
			return c
		}
		vs := mustEnqueue(t, s,
			at(change("a", "a1", "1"), -time.Second), // a: head delivered, then a#2 due
			at(change("a", "a2", "1"), -time.Minute),
			change("b", "b1", "1"),                  // b: head waits for a person: blocked
			at(change("b", "b2", "1"), -time.Hour),  //
			at(change("c", "c1", "1"), time.Second), // c: not due yet
			at(change("d", "d1", "1"), -time.Minute),
			at(change("e", "e1", "1"), -time.Minute), // e: same time as d: by id
		)
		mustUpdate(t, s, operator(vs[0].ID, []mlmsoft.VolumeState{mlmsoft.VolumePending}, mlmsoft.VolumeDelivered, time.Time{}))
		got := claimVolumes(t, s, "w1", t0, 2)
		if want := []string{"a#2", "d#1"}; !slices.Equal(heads(got), want) {
			t.Fatalf("claim 2 = %v, want %v", heads(got), want)
		}
		checkVolume(t, "claimed head", got[0], vs[1])
		if got := claimVolumes(t, s, "w2", t0, 5); !slices.Equal(heads(got), []string{"e#1"}) {
			t.Fatalf("claim rest = %v, want [e#1]", heads(got))
		}
		if got := claimVolumes(t, s, "w3", t0.Add(time.Second), 5); !slices.Equal(heads(got), []string{"c#1"}) {
			t.Fatalf("claim at +1s = %v, want [c#1]", heads(got))
		}
		// Lapsed leases are claimed again.
		if got := claimVolumes(t, s, "w4", t0.Add(time.Minute), 5); !slices.Equal(heads(got), []string{"a#2", "d#1", "e#1"}) {
			t.Fatalf("claim after the leases = %v", heads(got))
		}
		// A lease once lapsed and taken over is lost to the first owner.
		if _, err := s.UpdateVolume(testCtx(t), delivered(got[0], "w1")); !errors.Is(err, mlmsoft.ErrLeaseLost) {
			t.Fatalf("update by the lapsed owner = %v, want ErrLeaseLost", err)
		}
		// Operator retry of b's head makes b due.
		mustUpdate(t, s, operator(vs[2].ID, []mlmsoft.VolumeState{mlmsoft.VolumePending}, mlmsoft.VolumePending, t0))
		if got := claimVolumes(t, s, "w5", t0.Add(time.Minute), 5); !slices.Equal(heads(got), []string{"b#1"}) {
			t.Fatalf("claim after the retry = %v, want [b#1]", heads(got))
		}
		if _, err := s.ClaimVolumes(testCtx(t), mlmsoft.VolumeClaim{Owner: "w", Now: t0}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Errorf("claim without limit = %v, want ErrInvalidInput", err)
		}
	})
}

func TestUpdateVolume(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		vs := mustEnqueue(t, s, due(change("u", "1", "1")), due(change("u", "2", "1")))
		pending := []mlmsoft.VolumeState{mlmsoft.VolumePending}
		for _, tt := range []struct {
			name string
			u    mlmsoft.VolumeUpdate
			want error
		}{
			{"missing", mlmsoft.VolumeUpdate{ID: 1 << 40, Owner: "x", From: pending}, mlmsoft.ErrNotFound},
			{"not leased", mlmsoft.VolumeUpdate{ID: vs[0].ID, Owner: "x", From: []mlmsoft.VolumeState{mlmsoft.VolumeParked}}, mlmsoft.ErrLeaseLost},
			{"wrong state", mlmsoft.VolumeUpdate{ID: vs[0].ID, From: []mlmsoft.VolumeState{mlmsoft.VolumeParked, mlmsoft.VolumeSending}}, mlmsoft.ErrConflict},
			{"wrong state, one", mlmsoft.VolumeUpdate{ID: vs[0].ID, From: []mlmsoft.VolumeState{mlmsoft.VolumeSending}}, mlmsoft.ErrConflict},
			{"no From", mlmsoft.VolumeUpdate{ID: vs[0].ID}, mlmsoft.ErrConflict},
			{"no From, missing", mlmsoft.VolumeUpdate{ID: 1 << 40}, mlmsoft.ErrNotFound},
			{"Send without owner", mlmsoft.VolumeUpdate{ID: vs[0].ID, From: pending, Send: &mlmsoft.VolumeSend{At: t0}}, mlmsoft.ErrInvalidInput},
		} {
			tt.u.Events = []mlmsoft.Event{{ID: "never"}}
			if _, err := s.UpdateVolume(ctx, tt.u); !errors.Is(err, tt.want) {
				t.Errorf("UpdateVolume %s = %v, want %v", tt.name, err, tt.want)
			}
		}
		if evs := claimAllEvents(t, s); len(evs) != 0 {
			t.Fatalf("refused updates stored events %v", evs)
		}

		// Every field below From is written, zero values included.
		h := claimVolumes(t, s, "w", t0, 1)[0]
		u := mlmsoft.VolumeUpdate{ID: h.ID, Owner: "w", KeepLease: true, LeaseUntil: t0.Add(time.Hour),
			From:  []mlmsoft.VolumeState{mlmsoft.VolumeDelivered, mlmsoft.VolumePending},
			State: mlmsoft.VolumeSending, Attempts: 4, NextAttemptAt: t0.Add(time.Second), LastError: "x",
			DocumentID: 3, AccountID: 4, SentAt: t0, DeliveredAt: t0.Add(time.Hour), ResolvedBy: "r",
			ResolvedNote: "n", ResolvedAt: t0.Add(2 * time.Hour), UpdatedAt: t0.Add(3 * time.Hour)}
		got := mustUpdate(t, s, u)
		want := vs[0]
		want.State, want.Attempts, want.NextAttemptAt, want.LastError = u.State, u.Attempts, stored(u.NextAttemptAt), u.LastError
		want.DocumentID, want.AccountID, want.SentAt, want.DeliveredAt = u.DocumentID, u.AccountID, stored(u.SentAt), stored(u.DeliveredAt)
		want.ResolvedBy, want.ResolvedNote, want.ResolvedAt, want.UpdatedAt = u.ResolvedBy, u.ResolvedNote, stored(u.ResolvedAt), stored(u.UpdatedAt)
		checkVolume(t, "UpdateVolume", got.Change, want)
		if got.Next.ID != 0 {
			t.Fatalf("Next without Send: %+v", got.Next)
		}
		back, _ := s.GetVolumes(ctx, []int64{h.ID})
		checkVolume(t, "GetVolumes after UpdateVolume", back[0], want)
		// KeepLease: still ours until LeaseUntil.
		if got := claimVolumes(t, s, "x", t0.Add(59*time.Minute), 5); len(got) != 0 {
			t.Fatalf("claimed %v during the kept lease", heads(got))
		}
		// Zero values.
		zero := mlmsoft.VolumeUpdate{ID: h.ID, Owner: "w", From: []mlmsoft.VolumeState{mlmsoft.VolumeSending}, State: mlmsoft.VolumePending}
		got = mustUpdate(t, s, zero)
		want = vs[0]
		want.NextAttemptAt, want.UpdatedAt = time.Time{}, time.Time{}
		checkVolume(t, "UpdateVolume to zeros", got.Change, want)
		// The lease ended: the worker cannot write again; an operator can.
		if _, err := s.UpdateVolume(ctx, zero); !errors.Is(err, mlmsoft.ErrLeaseLost) {
			t.Fatalf("update after the lease ended = %v, want ErrLeaseLost", err)
		}
		zero.Owner, zero.From = "", []mlmsoft.VolumeState{mlmsoft.VolumePending}
		mustUpdate(t, s, zero)
		checkCounts(t, s)
	})
}

// TestSendContinuation: a worker's update with Send marks the user's next
// change sending and keeps the lease, only when that change is pending,
// without a document and due.
func TestSendContinuation(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.store()
		at := func(c mlmsoft.VolumeChange, d time.Duration) mlmsoft.VolumeChange {
			c.NextAttemptAt = t0.Add(d)
			return c
		}
		withDoc := due(change("u", "4", "1"))
		withDoc.DocumentID = 9
		vs := mustEnqueue(t, s,
			due(change("u", "1", "1")),
			at(change("u", "2", "1"), -time.Hour),
			at(change("u", "3", "1"), time.Hour), // not due at Send.At
			withDoc,
		)
		send := &mlmsoft.VolumeSend{At: t0.Add(time.Second), AccountID: 77}
		h := claimVolumes(t, s, "w", t0, 1)[0]
		u := delivered(h, "w")
		u.Send, u.LeaseUntil = send, t0.Add(time.Hour)
		u.Events = []mlmsoft.Event{{ID: "e1", Kind: mlmsoft.EventVolume, UserID: "u", NextAttemptAt: t0}}
		got := mustUpdate(t, s, u)
		want := vs[1]
		want.State, want.Attempts, want.SentAt, want.UpdatedAt, want.AccountID = mlmsoft.VolumeSending, 1, stored(send.At), stored(send.At), 77
		checkVolume(t, "Next", got.Next, want)
		back, _ := s.GetVolumes(testCtx(t), []int64{want.ID})
		checkVolume(t, "stored Next", back[0], want)
		if got.Change.State != mlmsoft.VolumeDelivered {
			t.Fatalf("Change = %+v", got.Change)
		}
		if got := claimVolumes(t, s, "x", t0.Add(59*time.Minute), 5); len(got) != 0 {
			t.Fatalf("claimed %v while the run holds the lease", heads(got))
		}
		if evs := claimAllEvents(t, s); len(evs) != 1 || evs[0].ID != "e1" {
			t.Fatalf("events = %v", evs)
		}
		// Next (u#3) is not due at Send.At: nothing marked, lease ends.
		u = delivered(got.Next, "w")
		u.Send, u.LeaseUntil = send, t0.Add(time.Hour)
		got = mustUpdate(t, s, u)
		if got.Next.ID != 0 {
			t.Fatalf("marked %+v, not due", got.Next)
		}
		if got := claimVolumes(t, s, "x", t0.Add(time.Hour), 5); !slices.Equal(heads(got), []string{"u#3"}) {
			t.Fatalf("claim after the run = %v, want [u#3] (the lease ended)", heads(got))
		}
		// Next (u#4) has a document: not marked.
		u = delivered(vs[2], "x")
		u.Send, u.LeaseUntil = &mlmsoft.VolumeSend{At: t0.Add(time.Hour)}, t0.Add(2*time.Hour)
		if got = mustUpdate(t, s, u); got.Next.ID != 0 {
			t.Fatalf("marked %+v, which has a document", got.Next)
		}
		// The last change: no next, lease ends.
		h = claimVolumes(t, s, "y", t0.Add(time.Hour), 5)[0]
		u = delivered(h, "y")
		u.Send = send
		if got = mustUpdate(t, s, u); got.Next.ID != 0 {
			t.Fatalf("marked %+v after the last change", got.Next)
		}
		var owner string
		if err := s.DB().QueryRow(s.sql("SELECT lease_owner FROM {p}volume_users WHERE user_id = ?"), "u").Scan(&owner); err != nil || owner != "" {
			t.Fatalf("lease owner after the queue ran dry = %q, %v", owner, err)
		}
		checkCounts(t, s)
	})
}

// TestHeadsAfterEveryWrite moves changes through every kind of write and
// checks the stored heads after each (mustUpdate does).
func TestHeadsAfterEveryWrite(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.store()
		P, S, D, K, X := mlmsoft.VolumePending, mlmsoft.VolumeSending, mlmsoft.VolumeDelivered, mlmsoft.VolumeSkipped, mlmsoft.VolumeParked
		vs := mustEnqueue(t, s, due(change("u", "1", "1")), due(change("u", "2", "1")), change("u", "3", "1"))
		checkHeads(t, s)
		// The head is written without becoming final: its due time moves.
		mustUpdate(t, s, operator(vs[0].ID, []mlmsoft.VolumeState{P}, X, time.Time{}))
		// A change after the head is skipped: the head stays.
		mustUpdate(t, s, operator(vs[1].ID, []mlmsoft.VolumeState{P}, K, time.Time{}))
		// The head is skipped: the next open one (u#3) is the head.
		mustUpdate(t, s, operator(vs[0].ID, []mlmsoft.VolumeState{X}, K, time.Time{}))
		// A final change before the head opens again: it is the head.
		mustUpdate(t, s, operator(vs[1].ID, []mlmsoft.VolumeState{K}, P, t0))
		// The queue empties.
		mustUpdate(t, s, operator(vs[1].ID, []mlmsoft.VolumeState{P}, D, time.Time{}))
		mustUpdate(t, s, operator(vs[2].ID, []mlmsoft.VolumeState{P}, D, time.Time{}))
		// A final change opens again in an empty queue.
		mustUpdate(t, s, operator(vs[0].ID, []mlmsoft.VolumeState{K}, S, t0))
		mustUpdate(t, s, operator(vs[0].ID, []mlmsoft.VolumeState{S}, D, time.Time{}))
		// Enqueues into an empty queue, with a final change first.
		final := change("u", "4", "1")
		final.State = mlmsoft.VolumeRejected
		mustEnqueue(t, s, final, change("u", "5", "1"))
		checkHeads(t, s)
		checkCounts(t, s)
	})
}

// TestRandomWrites applies random writes of every kind and checks heads
// and counters against the rows after each batch.
func TestRandomWrites(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		rnd := newRand(t)
		states := mlmsoft.VolumeStates
		users := []string{"a", "b", "c", "d"}
		for _, u := range users {
			mustCreate(t, s, mlmsoft.Link{UserID: u, State: mlmsoft.LinkPending, NextAttemptAt: t0})
		}
		now := t0
		key := 0
		rounds := 12
		if testing.Short() {
			rounds = 4
		}
		for range rounds {
			for range 15 {
				now = now.Add(time.Second)
				switch rnd.IntN(7) {
				case 0, 1: // enqueue
					var cs []mlmsoft.VolumeChange
					for i := range 1 + rnd.IntN(3) {
						key++
						c := change(users[rnd.IntN(len(users))], fmt.Sprint("k", key), "1")
						c.State = states[rnd.IntN(len(states))]
						// Created in Seq order, as the plugin does (see
						// Counts on OldestOpen).
						c.CreatedAt = now.Add(time.Duration(i) * time.Millisecond)
						if rnd.IntN(4) == 0 {
							c.UpdatedAt = time.Time{}
						}
						if rnd.IntN(3) > 0 {
							c.NextAttemptAt = now.Add(time.Duration(rnd.IntN(5)-2) * time.Second)
						}
						cs = append(cs, c)
					}
					mustEnqueue(t, s, cs...)
				case 2: // a worker's run
					for _, h := range claimVolumes(t, s, "w", now, 2) {
						u := delivered(h, "w")
						u.State = states[rnd.IntN(len(states))]
						if rnd.IntN(2) == 0 {
							u.Send = &mlmsoft.VolumeSend{At: now, AccountID: 1}
						}
						u.KeepLease = rnd.IntN(4) == 0
						u.LeaseUntil = now.Add(time.Minute)
						if rnd.IntN(4) == 0 {
							u.UpdatedAt = time.Time{}
						}
						mustUpdate(t, s, u)
					}
				case 3: // an operator
					all, _ := s.ListVolumes(ctx, mlmsoft.VolumeFilter{})
					if len(all) == 0 {
						continue
					}
					v := all[rnd.IntN(len(all))]
					next := time.Time{}
					if rnd.IntN(2) == 0 {
						next = now
					}
					u := operator(v.ID, []mlmsoft.VolumeState{v.State, mlmsoft.VolumeParked}, states[rnd.IntN(len(states))], next)
					if rnd.IntN(3) == 0 {
						u.UpdatedAt = time.Time{}
					}
					if rnd.IntN(3) == 0 {
						u.From = []mlmsoft.VolumeState{v.State} // the one-state path
					}
					mustUpdate(t, s, u)
				case 4: // a link wakes its changes
					l, _ := s.GetLink(ctx, users[rnd.IntN(len(users))])
					l.State, l.UpdatedAt = mlmsoft.LinkStates[rnd.IntN(len(mlmsoft.LinkStates))], now
					if _, err := s.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l, WakeVolumes: true}); err != nil {
						t.Fatal(err)
					}
				case 5: // purge
					if _, err := s.PurgeVolumes(ctx, now.Add(time.Duration(rnd.IntN(60))*time.Second), 1+rnd.IntN(3)); err != nil {
						t.Fatal(err)
					}
				case 6: // events
					for _, e := range claimEvents(t, s, "h", now, 2) {
						if err := s.UpdateEvent(ctx, mlmsoft.EventUpdate{ID: e.ID, Owner: "h", Done: rnd.IntN(2) == 0, Attempts: 1, NextAttemptAt: now}); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			checkHeads(t, s)
			checkCounts(t, s)
		}
	})
}

func TestListVolumes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		vs := mustEnqueue(t, s, change("a", "1", "1"), change("b", "2", "1"), change("a", "3", "1"), change("a", "4", "1"))
		mustUpdate(t, s, operator(vs[2].ID, []mlmsoft.VolumeState{mlmsoft.VolumePending}, mlmsoft.VolumeSkipped, time.Time{}))
		for _, tt := range []struct {
			f    mlmsoft.VolumeFilter
			want []string
		}{
			{mlmsoft.VolumeFilter{}, []string{"a#1", "b#1", "a#2", "a#3"}},
			{mlmsoft.VolumeFilter{UserID: "a", AfterID: vs[0].ID}, []string{"a#2", "a#3"}},
			{mlmsoft.VolumeFilter{States: []mlmsoft.VolumeState{mlmsoft.VolumePending}, Limit: 2}, []string{"a#1", "b#1"}},
			{mlmsoft.VolumeFilter{States: []mlmsoft.VolumeState{mlmsoft.VolumeSkipped}}, []string{"a#2"}},
		} {
			got, err := s.ListVolumes(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(heads(got), tt.want) {
				t.Errorf("ListVolumes(%+v) = %v, want %v", tt.f, heads(got), tt.want)
			}
		}
	})
}

func TestPurgeVolumes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		old := func(key string, created time.Duration) mlmsoft.VolumeChange {
			c := change("u", key, "1")
			c.CreatedAt = t0.Add(created)
			return c
		}
		noCreated := old("5", 0)
		noCreated.CreatedAt = time.Time{}
		vs := mustEnqueue(t, s, old("1", -time.Hour), old("2", -3*time.Hour), old("3", -2*time.Hour), old("4", time.Hour), noCreated,
			old("6", -time.Hour))
		finish := func(i int, updated time.Time) {
			u := operator(vs[i].ID, []mlmsoft.VolumeState{mlmsoft.VolumePending}, mlmsoft.VolumeDelivered, time.Time{})
			u.UpdatedAt = updated
			mustUpdate(t, s, u)
		}
		for _, i := range []int{0, 1, 2, 4} {
			finish(i, t0.Add(-time.Minute))
		}
		finish(3, t0.Add(time.Minute)) // updated after before
		// vs[5] stays open.
		purge := func(limit int) int {
			t.Helper()
			n, err := s.PurgeVolumes(ctx, t0, limit)
			if err != nil {
				t.Fatal(err)
			}
			checkCounts(t, s)
			checkHeads(t, s)
			return n
		}
		left := func() []int64 {
			all, _ := s.ListVolumes(ctx, mlmsoft.VolumeFilter{})
			var ids []int64
			for _, v := range all {
				ids = append(ids, v.ID)
			}
			return ids
		}
		if n := purge(2); n != 2 || !slices.Equal(left(), []int64{vs[2].ID, vs[3].ID, vs[4].ID, vs[5].ID}) {
			t.Fatalf("purge 2 = %d, left %v: want the two lowest ids gone", n, left())
		}
		if n := purge(10); n != 2 || !slices.Equal(left(), []int64{vs[3].ID, vs[5].ID}) {
			t.Fatalf("purge 10 = %d, left %v", n, left())
		}
		if n := purge(10); n != 0 {
			t.Fatalf("purge with nothing left = %d", n)
		}
		// Keys are forgotten with their changes.
		again := mustEnqueue(t, s, old("1", 0))
		if again[0].ID == vs[0].ID || again[0].Seq != 7 {
			t.Fatalf("re-enqueued purged key: %+v", again[0])
		}
		if _, err := s.PurgeVolumes(ctx, t0, 0); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Fatalf("purge with limit 0 = %v, want ErrInvalidInput", err)
		}
	})
}
