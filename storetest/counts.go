package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

func (s suite) counts(t *testing.T) {
	s.test(t, "Empty", testCountEmpty)
	s.test(t, "Links", testCountLinks)
	s.test(t, "Volumes", testCountVolumes)
	s.test(t, "Events", testCountEvents)
}

func counts(t testing.TB, st mlmsoft.Store) mlmsoft.Counts {
	t.Helper()
	c, err := st.Counts(t.Context())
	mustOK(t, "Counts", err)
	return c
}

func testCountEmpty(t *testing.T, st mlmsoft.Store) {
	c := counts(t, st)
	if !countsEqual(nil, c.Links) || !countsEqual(nil, c.Volumes) || !c.OldestOpen.IsZero() || c.Events != 0 || c.FailingEvents != 0 {
		t.Errorf("Counts of an empty store = %+v, want nothing counted", c)
	}
}

func testCountLinks(t *testing.T, st mlmsoft.Store) {
	check := func(what string, want map[mlmsoft.LinkState]int) {
		t.Helper()
		if got := counts(t, st).Links; !countsEqual(want, got) {
			t.Errorf("%s: Counts.Links = %v, want %v", what, got, want)
		}
	}
	P, C, L, F := mlmsoft.LinkPending, mlmsoft.LinkCreated, mlmsoft.LinkLinked, mlmsoft.LinkFailed
	for i, s := range []mlmsoft.LinkState{P, L, C, L, P, L, "paused"} {
		createLink(t, st, mlmsoft.Link{UserID: fmt.Sprintf("u%02d", i), State: s, NextAttemptAt: at(0)})
	}
	check("after creates", map[mlmsoft.LinkState]int{P: 2, C: 1, L: 3, "paused": 1})
	l := getLink(t, st, "u01")
	l.State = F
	updateLink(t, st, mlmsoft.LinkUpdate{Link: l})
	l = getLink(t, st, "u06")
	l.State = P
	updateLink(t, st, mlmsoft.LinkUpdate{Link: l})
	check("after updates", map[mlmsoft.LinkState]int{P: 3, C: 1, L: 2, F: 1})
	_, err := st.UpdateLink(t.Context(), mlmsoft.LinkUpdate{Link: withVersion(l, 1)})
	wantErr(t, "UpdateLink with a stale version", err, mlmsoft.ErrConflict)
	claimLinks(t, st, "w", at(hour), minute, 100)
	check("after a refused update and a claim", map[mlmsoft.LinkState]int{P: 3, C: 1, L: 2, F: 1})
}

func testCountVolumes(t *testing.T, st mlmsoft.Store) {
	type want struct {
		by     map[mlmsoft.VolumeState]int
		oldest time.Time
	}
	check := func(what string, w want) {
		t.Helper()
		c := counts(t, st)
		if !countsEqual(w.by, c.Volumes) {
			t.Errorf("%s: Counts.Volumes = %v, want %v", what, c.Volumes, w.by)
		}
		if !c.OldestOpen.Equal(w.oldest) {
			t.Errorf("%s: Counts.OldestOpen = %s, want %s", what, fmtTime(c.OldestOpen), fmtTime(w.oldest))
		}
	}
	P, S, D, K, U, R, X := mlmsoft.VolumePending, mlmsoft.VolumeSending, mlmsoft.VolumeDelivered,
		mlmsoft.VolumeParked, mlmsoft.VolumeUncertain, mlmsoft.VolumeRejected, mlmsoft.VolumeSkipped
	H := mlmsoft.VolumeState("held")
	mk := func(user, key string, s mlmsoft.VolumeState, created time.Duration) mlmsoft.VolumeChange {
		c := change(user, key)
		c.State, c.CreatedAt = s, at(created)
		if s.Final() {
			c.NextAttemptAt = time.Time{}
		}
		return c
	}
	v := enqueue(t, st,
		mk("ua", "k1", P, 5*minute),
		mk("ua", "k2", P, 9*minute),
		mk("ub", "k3", S, 3*minute),
		mk("uc", "k4", D, 1*minute), // older, but final
		mk("ud", "k5", K, 2*minute),
		mk("ue", "k6", U, 4*minute),
		mk("uf", "k7", R, 0),
		mk("uf", "k8", X, 0),
		mk("ug", "k9", H, 6*minute),
	)
	check("after enqueue", want{map[mlmsoft.VolumeState]int{P: 2, S: 1, D: 1, K: 1, U: 1, R: 1, X: 1, H: 1}, at(2 * minute)})
	// A repeat adds nothing.
	enqueue(t, st, mk("ua", "k1", P, 0))
	check("after a repeat", want{map[mlmsoft.VolumeState]int{P: 2, S: 1, D: 1, K: 1, U: 1, R: 1, X: 1, H: 1}, at(2 * minute)})

	setState(t, st, v[4].ID, X, time.Time{}, at(hour)) // parked → skipped
	check("after skipping the parked one", want{map[mlmsoft.VolumeState]int{P: 2, S: 1, D: 1, U: 1, R: 1, X: 2, H: 1}, at(3 * minute)})
	setState(t, st, v[3].ID, P, at(hour), at(hour)) // delivered → pending again
	check("after reopening the delivered one", want{map[mlmsoft.VolumeState]int{P: 3, S: 1, U: 1, R: 1, X: 2, H: 1}, at(1 * minute)})

	// Send marks ua#2 sending.
	claimAt(t, st, "w1", at(hour))
	d := deliver(v[0].ID, "w1", at(hour))
	d.Send, d.LeaseUntil = &mlmsoft.VolumeSend{At: at(hour), AccountID: 1}, at(2*hour)
	if res := updateVolume(t, st, d); res.Next.ID != v[1].ID {
		t.Fatalf("Send marked %v, want ua#2", heads([]mlmsoft.VolumeChange{res.Next}))
	}
	check("after a Send", want{map[mlmsoft.VolumeState]int{P: 1, S: 2, D: 1, U: 1, R: 1, X: 2, H: 1}, at(1 * minute)})

	for _, i := range []int{1, 2, 3, 5, 8} {
		setState(t, st, v[i].ID, D, time.Time{}, at(hour))
	}
	check("once every change is final", want{map[mlmsoft.VolumeState]int{D: 6, R: 1, X: 2}, time.Time{}})
	if n := purge(t, st, at(hour), 100); n != 2 { // k7 and k8, updated at t0
		t.Errorf("PurgeVolumes = %d, want 2", n)
	}
	check("after the purge", want{map[mlmsoft.VolumeState]int{D: 6, X: 1}, time.Time{}})
	enqueue(t, st, mk("uh", "k10", U, 8*minute))
	check("after one more", want{map[mlmsoft.VolumeState]int{D: 6, X: 1, U: 1}, at(8 * minute)})
	if n := purge(t, st, at(hour).Add(ms), 100); n != 7 {
		t.Errorf("second PurgeVolumes = %d, want 7", n)
	}
	check("after the second purge", want{map[mlmsoft.VolumeState]int{U: 1}, at(8 * minute)})
}

func testCountEvents(t *testing.T, st mlmsoft.Store) {
	check := func(what string, events, failing int) {
		t.Helper()
		if c := counts(t, st); c.Events != events || c.FailingEvents != failing {
			t.Errorf("%s: Counts.Events %d, FailingEvents %d; want %d, %d", what, c.Events, c.FailingEvents, events, failing)
		}
	}
	failed := event("e3", 0, 2*ms)
	failed.Attempts = 2
	createLink(t, st, mlmsoft.Link{UserID: "u1"}, event("e1", 0, 0), event("e2", 0, ms), failed)
	check("after CreateLink", 3, 1)
	now := at(hour)
	claimEvents(t, st, "w1", now, minute, 10)
	check("after a claim", 3, 1)
	updateEvent(t, st, mlmsoft.EventUpdate{ID: "e1", Owner: "w1", Attempts: 1, NextAttemptAt: now})
	check("after e1 failed", 3, 2)
	updateEvent(t, st, mlmsoft.EventUpdate{ID: "e3", Owner: "w1", Done: true})
	check("after e3 was done", 2, 1)
	updateEvent(t, st, mlmsoft.EventUpdate{ID: "e2", Owner: "w1", Done: true})
	check("after e2 was done", 1, 1)
	claimEvents(t, st, "w2", now, minute, 10)
	updateEvent(t, st, mlmsoft.EventUpdate{ID: "e1", Owner: "w2", Attempts: 0, NextAttemptAt: now})
	check("after e1's attempts were reset", 1, 0)
}
