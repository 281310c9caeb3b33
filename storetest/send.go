package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// The tests of VolumeUpdate.Send: a worker's update that continues its run
// over the user's queue in the same atomic write.
func (s suite) sends(t *testing.T) {
	s.test(t, "Chain", testSendChain)
	s.test(t, "Cases", testSendCases)
	s.test(t, "SkipsFinal", testSendSkipsFinal)
	s.test(t, "Events", testSendEvents)
	s.test(t, "NothingOnError", testSendNothingOnError)
	s.test(t, "Claim", testSendClaim)
}

// marked returns c as VolumeUpdate.Send must leave it: sending, one more
// attempt, sent and updated at at, sent to account.
func marked(c mlmsoft.VolumeChange, at time.Time, account int64) mlmsoft.VolumeChange {
	c.State = mlmsoft.VolumeSending
	c.Attempts++
	c.SentAt, c.UpdatedAt = at, at
	c.AccountID = account
	return c
}

// nextChange returns a full change of user, pending, without a DocumentID
// and due at t0+d: one Send may mark.
func nextChange(t testing.TB, user, key string, seed int, d time.Duration) mlmsoft.VolumeChange {
	t.Helper()
	c := fullChange(t, user, key, seed)
	c.DocumentID = 0
	c.NextAttemptAt = at(d)
	return c
}

func testSendChain(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	v := enqueue(t, st, nextChange(t, "ua", "k1", 1, 0), nextChange(t, "ua", "k2", 2, 0), nextChange(t, "ua", "k3", 3, 30*minute))
	wantHeads(t, "claim", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w1", Now: now, Lease: minute}), "ua#1")

	// The worker marks the head sending itself, then delivers it and has
	// the store mark the next one.
	u := mlmsoft.VolumeUpdate{ID: v[0].ID, Owner: "w1", From: []mlmsoft.VolumeState{mlmsoft.VolumePending},
		State: mlmsoft.VolumeSending, Attempts: 1, SentAt: now, AccountID: 42, UpdatedAt: now, KeepLease: true, LeaseUntil: now.Add(minute)}
	stored := updateVolume(t, st, u).Change

	sendAt := now.Add(time.Second)
	until := sendAt.Add(5 * minute)
	d := deliver(v[0].ID, "w1", sendAt)
	d.From, d.AccountID = []mlmsoft.VolumeState{mlmsoft.VolumeSending}, 42
	d.Send, d.LeaseUntil = &mlmsoft.VolumeSend{At: sendAt, AccountID: 4242}, until
	res := updateVolume(t, st, d)
	same(t, "Change delivered with Send", applyUpdate(t, stored, d), res.Change)
	want := marked(v[1], sendAt, 4242)
	same(t, "Next marked by Send", want, res.Next)
	same(t, "GetVolumes of the change Send marked", want, getVolume(t, st, v[1].ID))

	// The lease is kept until LeaseUntil.
	wantHeads(t, "claim just before LeaseUntil", claimAt(t, st, "w2", until.Add(-ms)))

	// The next is due at 30m: the run goes on while Send.At is not before it.
	d = deliver(v[1].ID, "w1", sendAt)
	d.From, d.Send, d.LeaseUntil = []mlmsoft.VolumeState{mlmsoft.VolumeSending}, &mlmsoft.VolumeSend{At: at(30 * minute), AccountID: 7}, until
	res = updateVolume(t, st, d)
	want = marked(v[2], at(30*minute), 7)
	same(t, "second Next", want, res.Next)

	// The lease ends at LeaseUntil: then another worker may take the user,
	// and finds the change marked sending at its head.
	wantHeads(t, "claim just before LeaseUntil", claimAt(t, st, "w2", until.Add(-ms)))
	got := claimAt(t, st, "w3", until)
	wantHeads(t, "claim at LeaseUntil", got, "ua#3")
	same(t, "head claimed at LeaseUntil", want, got[0])
	_, err := st.UpdateVolume(ctx, deliver(v[2].ID, "w1", until))
	wantErr(t, "update by w1 after w3 took the user", err, mlmsoft.ErrLeaseLost)

	// The last change has no next: the lease ends.
	d = deliver(v[2].ID, "w3", until)
	d.From, d.Send, d.LeaseUntil = []mlmsoft.VolumeState{mlmsoft.VolumeSending}, &mlmsoft.VolumeSend{At: until, AccountID: 7}, until.Add(hour)
	res = updateVolume(t, st, d)
	if res.Next.ID != 0 {
		t.Errorf("Send with no next change returned Next %s, want ID 0", heads([]mlmsoft.VolumeChange{res.Next}))
	}
	if res.Change.State != mlmsoft.VolumeDelivered {
		t.Errorf("last change %s, want delivered", res.Change.State)
	}
	_, err = st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: v[2].ID, Owner: "w3", From: mlmsoft.VolumeStates, State: mlmsoft.VolumeDelivered})
	wantErr(t, "update by w3 after its run ended", err, mlmsoft.ErrLeaseLost)
	enqueue(t, st, change("ua", "k4"))
	wantHeads(t, "claim after the run ended", claimAt(t, st, "w4", until), "ua#4")
}

func testSendCases(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	sendAt := now.Add(time.Second)
	until := sendAt.Add(2 * hour)
	type sendCase struct {
		name   string
		head   func(id int64) mlmsoft.VolumeUpdate // the worker's update of the head
		marked bool                                // whether next[len-1] is marked
	}
	delivered := func(id int64) mlmsoft.VolumeUpdate { return deliver(id, "w1", sendAt) }
	cases := []sendCase{
		{name: "due before Send.At", head: delivered, marked: true},
		{name: "due at Send.At", head: delivered, marked: true},
		{name: "due after Send.At", head: delivered},
		{name: "no NextAttemptAt", head: delivered},
		{name: "with a DocumentID", head: delivered},
		{name: "sending", head: delivered},
		{name: "parked", head: delivered},
		{name: "no next change", head: delivered},
		{name: "head still pending", head: func(id int64) mlmsoft.VolumeUpdate {
			return mlmsoft.VolumeUpdate{ID: id, Owner: "w1", From: openStates, State: mlmsoft.VolumePending, Attempts: 1, NextAttemptAt: now, UpdatedAt: sendAt}
		}},
		{name: "head parked", head: func(id int64) mlmsoft.VolumeUpdate {
			return mlmsoft.VolumeUpdate{ID: id, Owner: "w1", From: openStates, State: mlmsoft.VolumeParked, Attempts: 1, UpdatedAt: sendAt}
		}},
	}
	var in []mlmsoft.VolumeChange
	for i, c := range cases {
		user := fmt.Sprintf("u%02d", i)
		head := change(user, user+"-head")
		next := nextChange(t, user, user+"-next", i, hour-minute)
		switch c.name {
		case "due at Send.At":
			next.NextAttemptAt = sendAt
		case "due after Send.At":
			next.NextAttemptAt = sendAt.Add(ms)
		case "no NextAttemptAt":
			next.NextAttemptAt = time.Time{}
		case "with a DocumentID":
			next.DocumentID = 99
		case "sending":
			next.State = mlmsoft.VolumeSending
		case "parked":
			next.State = mlmsoft.VolumeParked
		}
		in = append(in, head)
		if c.name != "no next change" {
			in = append(in, next)
		}
	}
	v := enqueue(t, st, in...)
	if got := claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w1", Now: now, Lease: 10 * hour}); len(got) != len(cases) {
		t.Fatalf("claim = %v, want the head of every user", heads(got))
	}
	byKey := map[string]mlmsoft.VolumeChange{}
	for _, c := range v {
		byKey[c.IdempotencyKey] = c
	}
	for i, c := range cases {
		user := fmt.Sprintf("u%02d", i)
		head, next := byKey[user+"-head"], byKey[user+"-next"]
		u := c.head(head.ID)
		u.Send, u.LeaseUntil = &mlmsoft.VolumeSend{At: sendAt, AccountID: 31}, until
		res := updateVolume(t, st, u)
		same(t, c.name+": Change", applyUpdate(t, head, u), res.Change)
		if !c.marked {
			if res.Next.ID != 0 {
				t.Errorf("%s: Next = %s, want none (ID 0)", c.name, heads([]mlmsoft.VolumeChange{res.Next}))
			}
			if next.ID != 0 {
				same(t, c.name+": next change, not marked", next, getVolume(t, st, next.ID))
			}
			// The lease ended: w1 holds the user no more.
			_, err := st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: head.ID, Owner: "w1", From: mlmsoft.VolumeStates, State: res.Change.State})
			wantErr(t, c.name+": w1's update after Send marked nothing", err, mlmsoft.ErrLeaseLost)
			continue
		}
		want := marked(next, sendAt, 31)
		same(t, c.name+": Next", want, res.Next)
		same(t, c.name+": next change, marked", want, getVolume(t, st, next.ID))
		// The lease is kept until LeaseUntil: nobody else may claim the user,
		// and w1 may go on.
		for _, h := range claimAt(t, st, "w2", until.Add(-ms)) {
			if h.UserID == user {
				t.Errorf("%s: claimed %s before LeaseUntil, want it kept by w1", c.name, heads([]mlmsoft.VolumeChange{h}))
			}
		}
		d := deliver(next.ID, "w1", sendAt)
		d.From = []mlmsoft.VolumeState{mlmsoft.VolumeSending}
		updateVolume(t, st, d)
	}
}

func testSendSkipsFinal(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"), inState("ua", "k2", mlmsoft.VolumeRejected, time.Time{}),
		inState("ua", "k3", mlmsoft.VolumeSkipped, at(0)), nextChange(t, "ua", "k4", 4, 0), change("ua", "k5"))
	claimAt(t, st, "w1", now)
	d := deliver(v[0].ID, "w1", now)
	d.Send, d.LeaseUntil = &mlmsoft.VolumeSend{At: now, AccountID: 8}, now.Add(hour)
	res := updateVolume(t, st, d)
	want := marked(v[3], now, 8)
	same(t, "Next past final changes", want, res.Next)
	same(t, "the change marked", want, getVolume(t, st, v[3].ID))
	same(t, "the change after it", v[4], getVolume(t, st, v[4].ID))
}

func testSendEvents(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"))
	claimAt(t, st, "w1", now)
	e := fullEvent(t, "e1", 1, 0)
	d := deliver(v[0].ID, "w1", now)
	d.Send, d.LeaseUntil, d.Events = &mlmsoft.VolumeSend{At: now, AccountID: 8}, now.Add(hour), []mlmsoft.Event{e}
	if res := updateVolume(t, st, d); res.Next.ID != v[1].ID {
		t.Errorf("Next = %s, want ua#2", heads([]mlmsoft.VolumeChange{res.Next}))
	}
	later := at(1000 * hour)
	got := claimEvents(t, st, "w", later, minute, 10)
	wantIDs(t, "events claimed", eventIDs(got), []string{"e1"})
	if len(got) == 1 {
		same(t, "event", leasedEvent(e, "w", later, minute), got[0])
	}
}

func testSendNothingOnError(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	v := enqueue(t, st, change("ua", "k1"), change("ua", "k2"))
	claimAt(t, st, "w1", now)
	for _, c := range []struct {
		what  string
		owner string
		from  []mlmsoft.VolumeState
		want  error
	}{
		{"by a worker without the lease", "w2", openStates, mlmsoft.ErrLeaseLost},
		{"from the wrong state", "w1", []mlmsoft.VolumeState{mlmsoft.VolumeParked}, mlmsoft.ErrConflict},
	} {
		d := deliver(v[0].ID, c.owner, now)
		d.From = c.from
		d.Send, d.LeaseUntil, d.Events = &mlmsoft.VolumeSend{At: now, AccountID: 8}, now.Add(hour), []mlmsoft.Event{fullEvent(t, "e-"+c.owner, 1, 0)}
		_, err := st.UpdateVolume(ctx, d)
		wantErr(t, "UpdateVolume with Send "+c.what, err, c.want)
	}
	same(t, "head after refused updates", v[0], getVolume(t, st, v[0].ID))
	same(t, "next after refused updates", v[1], getVolume(t, st, v[1].ID))
	noEvents(t, st, "after refused updates")
	// w1 still holds the user.
	wantHeads(t, "claim by w3", claimAt(t, st, "w3", now))
	updateVolume(t, st, deliver(v[0].ID, "w1", now))
}

// testSendClaim checks VolumeClaim.Send: the claim marks sending the heads
// it may, and only those.
func testSendClaim(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	linked := func(user string, account int64) {
		createLink(t, st, mlmsoft.Link{UserID: user, State: mlmsoft.LinkLinked, AccountID: account, CreatedAt: at(0), UpdatedAt: at(0)})
	}
	linked("ua", 42)
	createLink(t, st, pendingLink("uc", -1))
	linked("ud", 43)
	linked("ue", 44)
	linked("uf", 45)
	withDoc := nextChange(t, "ud", "d1", 4, 0)
	withDoc.DocumentID = 99
	v := enqueue(t, st,
		nextChange(t, "ua", "a1", 1, 0), nextChange(t, "ua", "a2", 2, 0), // marked
		nextChange(t, "ub", "b1", 3, 0), // no link
		nextChange(t, "uc", "c1", 5, 0), // link not linked
		withDoc,                         // a document id: its outcome is being looked up
		inState("ue", "e1", mlmsoft.VolumeSending, at(0)), // sending already
		inState("uf", "f1", mlmsoft.VolumeParked, at(0)),  // not pending
	)
	before := counts(t, st)
	got, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w1", Now: now, Lease: hour, Limit: 100, Send: true})
	mustOK(t, "ClaimVolumes with Send", err)
	byUser := map[string]mlmsoft.ClaimedVolume{}
	for _, h := range got {
		byUser[h.Change.UserID] = h
	}
	if len(got) != 6 || len(byUser) != 6 {
		t.Fatalf("ClaimVolumes with Send = %v, want the heads of ua, ub, uc, ud, ue and uf", heads(changesOf(t, mlmsoft.VolumeClaim{Send: true}, got)))
	}
	want := marked(v[0], now, 42)
	if h := byUser["ua"]; !h.Sending {
		t.Errorf("ua's pending head of a linked user: Sending false, want true")
	} else {
		same(t, "ua's head as claimed", want, h.Change)
	}
	same(t, "ua's head as stored", want, getVolume(t, st, v[0].ID))
	same(t, "ua's second change", v[1], getVolume(t, st, v[1].ID))
	for i, user := range []string{"ub", "uc", "ud", "ue", "uf"} {
		h, c := byUser[user], v[i+2]
		if h.Sending {
			t.Errorf("%s's head: Sending true, want false", user)
		}
		same(t, user+"'s head as claimed", c, h.Change)
		same(t, user+"'s head as stored", c, getVolume(t, st, c.ID))
	}
	after := counts(t, st)
	if after.Volumes[mlmsoft.VolumePending] != before.Volumes[mlmsoft.VolumePending]-1 ||
		after.Volumes[mlmsoft.VolumeSending] != before.Volumes[mlmsoft.VolumeSending]+1 {
		t.Errorf("Counts.Volumes before the claim %v, after %v; want one pending change fewer and one sending more", before.Volumes, after.Volumes)
	}

	// The users are leased as by any claim; w1 delivers the marked head.
	wantHeads(t, "claim by w2 while w1 holds the leases", claimAt(t, st, "w2", now.Add(hour-ms)))
	d := deliver(v[0].ID, "w1", now)
	d.From, d.AccountID = []mlmsoft.VolumeState{mlmsoft.VolumeSending}, 42
	updateVolume(t, st, d)
}
