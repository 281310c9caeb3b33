package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

func (s suite) events(t *testing.T) {
	s.test(t, "RoundTrip", testEventRoundTrip)
	s.test(t, "PayloadNilVsEmpty", testEventPayloadNilVsEmpty)
	s.test(t, "NoAliasing", testEventNoAliasing)
	s.test(t, "Claim", testEventClaim)
	s.test(t, "ClaimLimitOrder", testEventClaimLimitOrder)
	s.test(t, "ClaimConcurrent", testEventClaimConcurrent)
	s.test(t, "Done", testEventDone)
	s.test(t, "Retry", testEventRetry)
	s.test(t, "UpdateErrors", testEventUpdateErrors)
	s.test(t, "LapsedLeaseStillHeld", testEventLapsedLeaseStillHeld)
}

func claimEvents(t testing.TB, st mlmsoft.Store, owner string, now time.Time, lease time.Duration, limit int) []mlmsoft.Event {
	t.Helper()
	got, err := st.ClaimEvents(t.Context(), mlmsoft.EventClaim{Owner: owner, Now: now, Lease: lease, Limit: limit})
	mustOK(t, "ClaimEvents by "+owner, err)
	return got
}

func updateEvent(t testing.TB, st mlmsoft.Store, u mlmsoft.EventUpdate) {
	t.Helper()
	mustOK(t, fmt.Sprintf("UpdateEvent(%s) by %q", u.ID, u.Owner), st.UpdateEvent(t.Context(), u))
}

func eventIDs(es []mlmsoft.Event) []string {
	ids := make([]string, len(es))
	for i, e := range es {
		ids[i] = e.ID
	}
	return ids
}

// leasedEvent returns e as a claim by owner at now for d returns it.
func leasedEvent(e mlmsoft.Event, owner string, now time.Time, d time.Duration) mlmsoft.Event {
	e.Lease = mlmsoft.Lease{Owner: owner, Until: now.Add(d)}
	return e
}

// event is a minimal event due at t0+due, created at t0+created.
func event(id string, due, created time.Duration) mlmsoft.Event {
	return mlmsoft.Event{ID: id, Kind: mlmsoft.EventVolume, UserID: "u", NextAttemptAt: at(due), CreatedAt: at(created)}
}

// addEvents stores evs with a new link each, for tests of events alone.
func addEvents(t testing.TB, st mlmsoft.Store, evs ...mlmsoft.Event) {
	t.Helper()
	for _, e := range evs {
		createLink(t, st, mlmsoft.Link{UserID: "link-of-" + e.ID}, e)
	}
}

func testEventRoundTrip(t *testing.T, st mlmsoft.Store) {
	now := at(1000 * hour)
	e := fullEvent(t, "e1", 1, 0)
	addEvents(t, st, e)
	got := claimEvents(t, st, "w1", now, minute, 10)
	if len(got) != 1 {
		t.Fatalf("ClaimEvents = %v, want [e1]", eventIDs(got))
	}
	same(t, "claimed event", leasedEvent(e, "w1", now, minute), got[0])

	// A retry writes Attempts, NextAttemptAt and LastError, and keeps the rest.
	var r mlmsoft.Event
	fill(t, &r, 2)
	updateEvent(t, st, mlmsoft.EventUpdate{ID: "e1", Owner: "w1", Attempts: r.Attempts, NextAttemptAt: r.NextAttemptAt, LastError: r.LastError})
	want := e
	want.Attempts, want.NextAttemptAt, want.LastError = r.Attempts, r.NextAttemptAt, r.LastError
	got = claimEvents(t, st, "w2", now, minute, 10)
	if len(got) != 1 {
		t.Fatalf("ClaimEvents after a retry = %v, want [e1]", eventIDs(got))
	}
	same(t, "event after a retry", leasedEvent(want, "w2", now, minute), got[0])
}

func testEventPayloadNilVsEmpty(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	a, b := event("e1", 0, 0), event("e2", 0, ms)
	a.Payload, b.Payload = nil, []byte{}
	addEvents(t, st, a, b)
	got := claimEvents(t, st, "w", now, minute, 10)
	wantIDs(t, "ClaimEvents", eventIDs(got), []string{"e1", "e2"})
	if len(got) == 2 {
		if got[0].Payload != nil {
			t.Errorf("nil Payload read back as %s", fmtBytes(got[0].Payload))
		}
		if got[1].Payload == nil || len(got[1].Payload) != 0 {
			t.Errorf("empty Payload read back as %s, want empty and not nil", fmtBytes(got[1].Payload))
		}
	}
}

func testEventNoAliasing(t *testing.T, st mlmsoft.Store) {
	e := event("e1", 0, 0)
	e.Payload = []byte("payload")
	addEvents(t, st, e)
	e.Payload[0] = 'X'
	got := claimEvents(t, st, "w1", at(hour), minute, 10)
	if len(got) != 1 || string(got[0].Payload) != "payload" {
		t.Fatalf("after changing the slice given to CreateLink, claimed %+v, want Payload %q", got, "payload")
	}
	got[0].Payload[1] = 'X'
	got = claimEvents(t, st, "w2", at(2*hour), minute, 10)
	if len(got) != 1 || string(got[0].Payload) != "payload" {
		t.Errorf("after changing the slice ClaimEvents returned, claimed %+v, want Payload %q", got, "payload")
	}
}

func testEventClaim(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	evs := []mlmsoft.Event{
		event("e01", 10*minute, 5*minute),
		event("e02", 10*minute, 3*minute), // same due time, created earlier
		event("e03", 10*minute, 3*minute), // same again: by ID
		event("e04", hour, 0),             // due exactly now
		event("e05", hour+ms, 0),          // not due
		event("e06", 1*minute, 0),         // leased past now
		event("e07", 2*minute, 0),         // leased, lapsed
		event("e08", 3*minute, 0),         // lease ends exactly now
		event("e09", 50*minute, -hour),    //
	}
	stored := map[string]mlmsoft.Event{}
	for _, i := range []int{8, 2, 0, 4, 6, 1, 3, 5, 7} {
		addEvents(t, st, evs[i])
		stored[evs[i].ID] = evs[i]
	}
	for _, c := range []struct {
		owner, id string
		now       time.Time
		lease     time.Duration
	}{
		{"o1", "e06", at(1 * minute), 59*minute + ms},
		{"o2", "e07", at(2 * minute), 28 * minute},
		{"o3", "e08", at(3 * minute), 57 * minute},
	} {
		got := claimEvents(t, st, c.owner, c.now, c.lease, 1)
		if len(got) != 1 || got[0].ID != c.id {
			t.Fatalf("claim by %s at %s = %v, want [%s]", c.owner, fmtTime(c.now), eventIDs(got), c.id)
		}
		stored[c.id] = leasedEvent(stored[c.id], c.owner, c.now, c.lease)
		same(t, "claimed "+c.id, stored[c.id], got[0])
	}
	got := claimEvents(t, st, "w1", now, 5*minute, 100)
	wantIDs(t, "ClaimEvents (NextAttemptAt, then CreatedAt, then ID)", eventIDs(got), []string{"e07", "e08", "e02", "e03", "e01", "e09", "e04"})
	for _, e := range got {
		same(t, "claimed "+e.ID, leasedEvent(stored[e.ID], "w1", now, 5*minute), e)
	}
	for _, owner := range []string{"w2", "w1"} {
		if again := claimEvents(t, st, owner, now, minute, 100); len(again) != 0 {
			t.Errorf("ClaimEvents by %s while the leases hold = %v, want none", owner, eventIDs(again))
		}
	}
	wantIDs(t, "ClaimEvents two minutes later", eventIDs(claimEvents(t, st, "w3", now.Add(2*minute), minute, 100)), []string{"e06", "e05"})
}

func testEventClaimLimitOrder(t *testing.T, st mlmsoft.Store) {
	for i, m := range []int{30, 10, 50, 20, 40, 10} {
		addEvents(t, st, event(fmt.Sprintf("e%d", 6-i), time.Duration(m)*minute, 0))
	}
	now := at(hour)
	for i, want := range [][]string{{"e1", "e5"}, {"e3", "e6"}, {"e2", "e4"}, {}} {
		got := claimEvents(t, st, fmt.Sprintf("w%d", i), now, minute, 2)
		wantIDs(t, fmt.Sprintf("claim %d with Limit 2", i+1), eventIDs(got), want)
	}
}

func testEventClaimConcurrent(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	events, workers := 40, 8
	if testing.Short() {
		events, workers = 16, 4
	}
	var evs []mlmsoft.Event
	for i := range events {
		evs = append(evs, event(fmt.Sprintf("e%03d", i), time.Duration(i%7)*time.Second, 0))
	}
	createLink(t, st, mlmsoft.Link{UserID: "u"}, evs...)
	now := at(hour)
	var mu sync.Mutex
	owners := map[string]string{}
	var wg sync.WaitGroup
	for w := range workers {
		owner := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for range events + 1 { // a correct store runs dry sooner
				got, err := st.ClaimEvents(ctx, mlmsoft.EventClaim{Owner: owner, Now: now, Lease: hour, Limit: 3})
				if err != nil {
					t.Errorf("ClaimEvents by %s: %v", owner, err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, e := range got {
					if e.Lease.Owner != owner {
						t.Errorf("%s claimed %s but it is leased to %q", owner, e.ID, e.Lease.Owner)
					}
					if prev, ok := owners[e.ID]; ok {
						t.Errorf("%s claimed by %s and %s while the lease holds", e.ID, prev, owner)
					}
					owners[e.ID] = owner
				}
				mu.Unlock()
			}
			t.Errorf("%s never ran out of events to claim", owner)
		})
	}
	wg.Wait()
	if len(owners) != events {
		t.Errorf("%d events claimed, want %d", len(owners), events)
	}
	// Each owner settles its own.
	for id, owner := range owners {
		updateEvent(t, st, mlmsoft.EventUpdate{ID: id, Owner: owner, Done: true})
	}
	noEvents(t, st, "after every event was done")
}

func testEventDone(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	addEvents(t, st, event("e1", 0, 0), event("e2", 0, ms))
	claimEvents(t, st, "w1", now, minute, 10)
	updateEvent(t, st, mlmsoft.EventUpdate{ID: "e1", Owner: "w1", Done: true, Attempts: 3, NextAttemptAt: now})
	err := st.UpdateEvent(ctx, mlmsoft.EventUpdate{ID: "e1", Owner: "w1", Done: true})
	wantErr(t, "UpdateEvent of an event done already", err, mlmsoft.ErrNotFound)
	// e2 is still w1's; once its lease lapsed only e2 is claimed.
	wantIDs(t, "claim after e1 was done", eventIDs(claimEvents(t, st, "w2", at(100000*hour), minute, 10)), []string{"e2"})
	c, err := st.Counts(ctx)
	mustOK(t, "Counts", err)
	if c.Events != 1 {
		t.Errorf("Counts.Events = %d, want 1", c.Events)
	}
}

func testEventRetry(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	e := fullEvent(t, "e1", 1, 0)
	addEvents(t, st, e)
	claimEvents(t, st, "w1", now, hour, 10)
	next := now.Add(5 * minute)
	updateEvent(t, st, mlmsoft.EventUpdate{ID: "e1", Owner: "w1", Attempts: 0, NextAttemptAt: next, LastError: ""})
	// The lease ended: w1 holds it no more, and it is due at next to anyone.
	err := st.UpdateEvent(ctx, mlmsoft.EventUpdate{ID: "e1", Owner: "w1", Done: true})
	wantErr(t, "UpdateEvent by w1 after its update ended the lease", err, mlmsoft.ErrLeaseLost)
	wantIDs(t, "claim before the new NextAttemptAt", eventIDs(claimEvents(t, st, "w2", next.Add(-ms), minute, 10)), nil)
	got := claimEvents(t, st, "w2", next, minute, 10)
	want := e
	want.Attempts, want.NextAttemptAt, want.LastError = 0, next, ""
	if len(got) != 1 {
		t.Fatalf("claim at the new NextAttemptAt = %v, want [e1]", eventIDs(got))
	}
	same(t, "event after a retry with zero values", leasedEvent(want, "w2", next, minute), got[0])
}

func testEventUpdateErrors(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	e1, e2 := fullEvent(t, "e1", 1, 0), fullEvent(t, "e2", 2, 0)
	e2.CreatedAt = e1.CreatedAt.Add(ms)
	addEvents(t, st, e1, e2)
	for _, owner := range []string{"w1", ""} {
		err := st.UpdateEvent(ctx, mlmsoft.EventUpdate{ID: "e9", Owner: owner, Done: true})
		wantErr(t, fmt.Sprintf("UpdateEvent of a missing event by %q", owner), err, mlmsoft.ErrNotFound)
	}
	// Nobody claimed e1 and e2: no owner holds their lease.
	err := st.UpdateEvent(ctx, mlmsoft.EventUpdate{ID: "e1", Owner: "w1", Done: true})
	wantErr(t, "UpdateEvent of an unclaimed event", err, mlmsoft.ErrLeaseLost)
	claimEvents(t, st, "w1", now, minute, 10)
	later := now.Add(2 * minute)
	wantIDs(t, "claim by w2 after w1's leases lapsed", eventIDs(claimEvents(t, st, "w2", later, minute, 1)), []string{"e1"})
	for _, u := range []mlmsoft.EventUpdate{
		{ID: "e1", Owner: "w1", Done: true},
		{ID: "e1", Owner: "w1", Attempts: 9, NextAttemptAt: at(0), LastError: "w1"},
		{ID: "e1", Owner: "w3", Done: true},
	} {
		err := st.UpdateEvent(ctx, u)
		wantErr(t, fmt.Sprintf("UpdateEvent %+v while w2 holds e1", u), err, mlmsoft.ErrLeaseLost)
	}
	// Nothing was written: e1 is still w2's as claimed.
	updateEvent(t, st, mlmsoft.EventUpdate{ID: "e1", Owner: "w2", Attempts: e1.Attempts, NextAttemptAt: later, LastError: e1.LastError})
	got := claimEvents(t, st, "w4", later, minute, 10)
	wantIDs(t, "claim after the refused updates", eventIDs(got), []string{"e2", "e1"})
	for _, g := range got {
		want := e2
		if g.ID == "e1" {
			want = e1
			want.NextAttemptAt = later
		}
		same(t, "event "+g.ID+" after refused updates", leasedEvent(want, "w4", later, minute), g)
	}
}

func testEventLapsedLeaseStillHeld(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	addEvents(t, st, event("e1", 0, 0), event("e2", 0, ms))
	claimEvents(t, st, "w1", now, minute, 10)
	// Long after the leases lapsed, nobody having claimed since, w1 still
	// holds them.
	updateEvent(t, st, mlmsoft.EventUpdate{ID: "e1", Owner: "w1", Done: true})
	updateEvent(t, st, mlmsoft.EventUpdate{ID: "e2", Owner: "w1", Attempts: 1, NextAttemptAt: now.Add(hour), LastError: "hook failed"})
	wantIDs(t, "claim after w1's late updates", eventIDs(claimEvents(t, st, "w2", now.Add(hour), minute, 10)), []string{"e2"})
}
