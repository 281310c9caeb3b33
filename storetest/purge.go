package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// The tests of PurgeVolumes, retention of final changes.
func (s suite) purges(t *testing.T) {
	s.test(t, "Rules", testPurgeRules)
	s.test(t, "ForgetsKeys", testPurgeForgetsKeys)
	s.test(t, "QueueGoesOn", testPurgeQueueGoesOn)
}

func purge(t testing.TB, st mlmsoft.Store, before time.Time, limit int) int {
	t.Helper()
	n, err := st.PurgeVolumes(t.Context(), before, limit)
	mustOK(t, fmt.Sprintf("PurgeVolumes(%s, %d)", fmtTime(before), limit), err)
	return n
}

func testPurgeRules(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	before := at(10 * hour)
	type c struct {
		user    string
		state   mlmsoft.VolumeState
		updated time.Time
		purged  bool
	}
	cases := []c{
		{"ua", mlmsoft.VolumeDelivered, at(hour), true},
		{"ua", mlmsoft.VolumePending, at(hour), false}, // open
		{"ub", mlmsoft.VolumeRejected, at(2 * hour), true},
		{"ub", mlmsoft.VolumeSkipped, before, false}, // not before
		{"uc", mlmsoft.VolumeDelivered, before.Add(-ms), true},
		{"uc", mlmsoft.VolumeParked, at(0), false},
		{"ud", mlmsoft.VolumeUncertain, at(0), false},
		{"ud", mlmsoft.VolumeSending, at(0), false},
		{"ue", mlmsoft.VolumeDelivered, at(11 * hour), false},
		{"uf", mlmsoft.VolumeSkipped, at(3 * hour), true},
		{"ug", mlmsoft.VolumeState("held"), at(0), false}, // not Final
		{"ug", mlmsoft.VolumeDelivered, time.Time{}, true},
	}
	var in []mlmsoft.VolumeChange
	for i, x := range cases {
		ch := fullChange(t, x.user, fmt.Sprintf("k%02d", i), i)
		ch.State, ch.UpdatedAt = x.state, x.updated
		in = append(in, ch)
	}
	v := enqueue(t, st, in...)
	var purged, kept []mlmsoft.VolumeChange
	for i, x := range cases {
		if x.purged {
			purged = append(purged, v[i])
		} else {
			kept = append(kept, v[i])
		}
	}
	// Lowest ID first, up to the limit.
	for i, want := range []int{2, 2, 1, 0, 0} {
		if n := purge(t, st, before, 2); n != want {
			t.Errorf("PurgeVolumes %d with limit 2 = %d, want %d", i+1, n, want)
		}
		gone := min(len(purged), 2*(i+1))
		for j, c := range purged {
			_, err := st.GetVolumes(ctx, []int64{c.ID})
			if j < gone {
				wantErr(t, fmt.Sprintf("after purge %d, GetVolumes of purged %s#%d (%s, updated %s)", i+1, c.UserID, c.Seq, c.State, fmtTime(c.UpdatedAt)), err, mlmsoft.ErrNotFound)
			} else if err != nil {
				t.Errorf("after purge %d, GetVolumes of %s#%d, not yet purged: %v", i+1, c.UserID, c.Seq, err)
			}
		}
	}
	all := listVolumes(t, st, mlmsoft.VolumeFilter{})
	wantHeads(t, "ListVolumes after the purges", all, heads(kept)...)
	for i := range all {
		same(t, "kept "+heads(all[i : i+1])[0], kept[i], all[i])
	}
}

func testPurgeForgetsKeys(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"), change("ub", "k3"))
	updateVolume(t, st, deliver(v[0].ID, "", now))
	updateVolume(t, st, deliver(v[2].ID, "", now))
	if n := purge(t, st, now.Add(ms), 10); n != 2 {
		t.Fatalf("PurgeVolumes = %d, want 2", n)
	}
	// A purged key enqueues anew, other content and all; a kept one does not.
	again := []mlmsoft.VolumeChange{change("ua", "k1"), change("ub", "k3"), change("ua", "k2")}
	again[0].Amount = mlmsoft.MustAmount("-1.5")
	again[1].UserID = "uc"
	got := enqueue(t, st, again...)
	wantHeads(t, "enqueue after the purge", got, "ua#3", "uc#1", "ua#2")
	for i, c := range got[:2] {
		want := again[i]
		want.ID, want.Seq = c.ID, c.Seq
		same(t, "re-enqueued "+want.IdempotencyKey, want, c)
		if c.ID <= v[2].ID {
			t.Errorf("re-enqueued %s has ID %d, want a new one (> %d)", want.IdempotencyKey, c.ID, v[2].ID)
		}
	}
	same(t, "k2, kept", v[1], got[2])
}

func testPurgeQueueGoesOn(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	v := enqueue(t, st,
		change("ua", "a1"), change("ua", "a2"), change("ua", "a3"),
		change("ub", "b1"), change("ub", "b2"),
		inState("uc", "c1", mlmsoft.VolumeParked, time.Time{}), inState("uc", "c2", mlmsoft.VolumeRejected, time.Time{}), change("uc", "c3"),
	)
	for _, i := range []int{0, 1, 3, 4} {
		updateVolume(t, st, deliver(v[i].ID, "", now))
	}
	if n := purge(t, st, now.Add(ms), 100); n != 5 {
		t.Fatalf("PurgeVolumes = %d, want 5", n)
	}
	// ua's head is a3; uc's parked head still holds its queue.
	wantHeads(t, "claim after the purge", claimAt(t, st, "w1", now), "ua#3")
	// Seq goes on, whether changes of the user are left or not.
	got := enqueue(t, st, change("ua", "a4"), change("ub", "b3"), change("uc", "c4"))
	wantHeads(t, "enqueue after the purge", got, "ua#4", "ub#3", "uc#4")
	wantHeads(t, "claim of the new changes", claimAt(t, st, "w2", now), "ub#3")
	updateVolume(t, st, deliver(v[2].ID, "w1", now))
	setState(t, st, v[5].ID, mlmsoft.VolumeSkipped, time.Time{}, now)
	wantHeads(t, "claim once ua#3 and uc#1 are final", claimAt(t, st, "w3", now), "uc#3", "ua#4")
}
