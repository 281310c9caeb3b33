package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

func (s suite) links(t *testing.T) {
	s.test(t, "RoundTrip", testLinkRoundTrip)
	s.test(t, "ZeroValues", testLinkZeroValues)
	s.test(t, "SealedPasswordNilVsEmpty", testLinkSealedPasswordNilVsEmpty)
	s.test(t, "NoAliasing", testLinkNoAliasing)
	s.test(t, "DuplicateUserID", testLinkDuplicateUserID)
	s.test(t, "DuplicateEmail", testLinkDuplicateEmail)
	s.test(t, "EmptyEmailsNotUnique", testLinkEmptyEmailsNotUnique)
	s.test(t, "EmailsComparedAsGiven", testLinkEmailsComparedAsGiven)
	s.test(t, "NotFound", testLinkNotFound)
	s.test(t, "UpdateCAS", testLinkUpdateCAS)
	s.test(t, "UpdateEmail", testLinkUpdateEmail)
	s.test(t, "UpdateErrorOrder", testLinkUpdateErrorOrder)
	s.test(t, "UpdateLease", testLinkUpdateLease)
	s.test(t, "UpdateKeepLease", testLinkUpdateKeepLease)
	s.test(t, "UpdateWithoutOwner", testLinkUpdateWithoutOwner)
	s.test(t, "LapsedLeaseStillHeld", testLinkLapsedLeaseStillHeld)
	s.test(t, "WakeVolumes", testLinkWakeVolumes)
	s.test(t, "WakeVolumesAtomic", testLinkWakeVolumesAtomic)
	s.test(t, "Events", testLinkEvents)
	s.test(t, "EventsNotStoredOnError", testLinkEventsNotStoredOnError)
	s.test(t, "Claim", testLinkClaim)
	s.test(t, "ClaimLimitOrder", testLinkClaimLimitOrder)
	s.test(t, "ClaimConcurrent", testLinkClaimConcurrent)
	s.test(t, "UpdateConcurrentCAS", testLinkUpdateConcurrentCAS)
	s.test(t, "CreateConcurrent", testLinkCreateConcurrent)
	s.test(t, "List", testLinkList)
	s.test(t, "ListEmailPrefix", testLinkListEmailPrefix)
}

func createLink(t testing.TB, st mlmsoft.Store, l mlmsoft.Link, evs ...mlmsoft.Event) mlmsoft.Link {
	t.Helper()
	got, err := st.CreateLink(t.Context(), l, evs...)
	mustOK(t, "CreateLink "+l.UserID, err)
	return got
}

func getLink(t testing.TB, st mlmsoft.Store, userID string) mlmsoft.Link {
	t.Helper()
	got, err := st.GetLink(t.Context(), userID)
	mustOK(t, "GetLink "+userID, err)
	return got
}

func updateLink(t testing.TB, st mlmsoft.Store, u mlmsoft.LinkUpdate) mlmsoft.Link {
	t.Helper()
	got, err := st.UpdateLink(t.Context(), u)
	mustOK(t, fmt.Sprintf("UpdateLink %s (owner %q)", u.Link.UserID, u.Owner), err)
	return got
}

func claimLinks(t testing.TB, st mlmsoft.Store, owner string, now time.Time, lease time.Duration, limit int) []mlmsoft.Link {
	t.Helper()
	got, err := st.ClaimLinks(t.Context(), mlmsoft.LinkClaim{Owner: owner, Now: now, Lease: lease, Limit: limit})
	mustOK(t, "ClaimLinks by "+owner, err)
	return got
}

func linkIDs(ls []mlmsoft.Link) []string {
	ids := make([]string, len(ls))
	for i, l := range ls {
		ids[i] = l.UserID
	}
	return ids
}

// pendingLink is a minimal link due at t0+due (never, for due < 0).
func pendingLink(userID string, due time.Duration) mlmsoft.Link {
	l := mlmsoft.Link{UserID: userID, State: mlmsoft.LinkPending, CreatedAt: at(0), UpdatedAt: at(0)}
	if due >= 0 {
		l.NextAttemptAt = at(due)
	}
	return l
}

// leased returns l as a claim by owner at now for d leaves it.
func leased(l mlmsoft.Link, owner string, now time.Time, d time.Duration) mlmsoft.Link {
	l.Lease = mlmsoft.Lease{Owner: owner, Until: now.Add(d)}
	return l
}

// noEvents fails t if an event is owed (claimable at any time).
func noEvents(t testing.TB, st mlmsoft.Store, what string) {
	t.Helper()
	got, err := st.ClaimEvents(t.Context(), mlmsoft.EventClaim{Owner: "noevents-" + what, Now: at(10000 * hour), Lease: minute, Limit: 100})
	mustOK(t, "ClaimEvents", err)
	if len(got) > 0 {
		t.Errorf("%s: events %v stored, want none", what, eventIDs(got))
	}
}

func testLinkRoundTrip(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	in := fullLink(t, "u01", 1)
	want := in
	want.Version = 1 // CreateLink stores 1, and no lease, whatever it is given
	want.Lease = mlmsoft.Lease{}

	got, err := st.CreateLink(ctx, in)
	mustOK(t, "CreateLink", err)
	same(t, "CreateLink result", want, got)
	same(t, "GetLink", want, getLink(t, st, "u01"))
	got, err = st.GetLinkByEmail(ctx, in.Email)
	mustOK(t, "GetLinkByEmail", err)
	same(t, "GetLinkByEmail", want, got)
	list, err := st.ListLinks(ctx, mlmsoft.LinkFilter{})
	mustOK(t, "ListLinks", err)
	if len(list) != 1 {
		t.Fatalf("ListLinks = %v, want [u01]", linkIDs(list))
	}
	same(t, "ListLinks", want, list[0])

	now := at(1000 * hour)
	claimed := claimLinks(t, st, "w1", now, minute, 10)
	if len(claimed) != 1 {
		t.Fatalf("ClaimLinks = %v, want [u01]", linkIDs(claimed))
	}
	want = leased(want, "w1", now, minute)
	same(t, "ClaimLinks result", want, claimed[0])

	// An update writes every field but UserID, Version and Lease, and an
	// update without an owner leaves the lease as it is.
	upd := fullLink(t, "u01", 2)
	upd.Version = 1
	want2 := upd
	want2.Version = 2
	want2.Lease = want.Lease
	same(t, "UpdateLink result", want2, updateLink(t, st, mlmsoft.LinkUpdate{Link: upd}))
	same(t, "GetLink after UpdateLink", want2, getLink(t, st, "u01"))
	got, err = st.GetLinkByEmail(ctx, upd.Email)
	mustOK(t, "GetLinkByEmail of the new email", err)
	same(t, "GetLinkByEmail after UpdateLink", want2, got)

	// Zero values are written too.
	zero := mlmsoft.Link{UserID: "u01", Version: 2}
	want3 := zero
	want3.Version = 3
	want3.Lease = want.Lease
	same(t, "UpdateLink to zero values", want3, updateLink(t, st, mlmsoft.LinkUpdate{Link: zero}))
	same(t, "GetLink after UpdateLink to zero values", want3, getLink(t, st, "u01"))
}

func testLinkZeroValues(t *testing.T, st mlmsoft.Store) {
	in := mlmsoft.Link{UserID: "u01"}
	want := in
	want.Version = 1
	same(t, "CreateLink result", want, createLink(t, st, in))
	got := getLink(t, st, "u01")
	same(t, "GetLink", want, got)
	if got.SealedPassword != nil {
		t.Errorf("nil SealedPassword read back as %s", fmtBytes(got.SealedPassword))
	}
}

func testLinkSealedPasswordNilVsEmpty(t *testing.T, st mlmsoft.Store) {
	check := func(what string, wantNil bool) {
		t.Helper()
		got := getLink(t, st, "u01").SealedPassword
		if wantNil && got != nil {
			t.Errorf("%s: SealedPassword read back as %s, want nil", what, fmtBytes(got))
		}
		if !wantNil && (got == nil || len(got) != 0) {
			t.Errorf("%s: SealedPassword read back as %s, want empty and not nil", what, fmtBytes(got))
		}
	}
	l := fullLink(t, "u01", 1)
	l.SealedPassword = []byte{}
	l = createLink(t, st, l)
	check("created empty", false)
	l.SealedPassword = nil
	l = updateLink(t, st, mlmsoft.LinkUpdate{Link: l})
	check("updated to nil", true)
	l.SealedPassword = []byte{}
	updateLink(t, st, mlmsoft.LinkUpdate{Link: l})
	check("updated to empty", false)

	l = fullLink(t, "u02", 2)
	l.SealedPassword = nil
	createLink(t, st, l)
	if got := getLink(t, st, "u02").SealedPassword; got != nil {
		t.Errorf("created nil: SealedPassword read back as %s, want nil", fmtBytes(got))
	}
}

func testLinkNoAliasing(t *testing.T, st mlmsoft.Store) {
	check := func(what string) {
		t.Helper()
		if got := getLink(t, st, "u01"); string(got.SealedPassword) != "sealed" {
			t.Errorf("%s: stored SealedPassword became %q", what, got.SealedPassword)
		}
	}
	l := fullLink(t, "u01", 1)
	l.SealedPassword = []byte("sealed")
	created := createLink(t, st, l)
	l.SealedPassword[0] = 'X'
	check("after changing the slice given to CreateLink")
	created.SealedPassword[1] = 'X'
	check("after changing the slice CreateLink returned")
	got := getLink(t, st, "u01")
	got.SealedPassword[2] = 'X'
	check("after changing the slice GetLink returned")

	got = getLink(t, st, "u01")
	got.SealedPassword = []byte("sealed")
	updated := updateLink(t, st, mlmsoft.LinkUpdate{Link: got})
	got.SealedPassword[3] = 'X'
	check("after changing the slice given to UpdateLink")
	updated.SealedPassword[4] = 'X'
	check("after changing the slice UpdateLink returned")
}

func testLinkDuplicateUserID(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	first := createLink(t, st, fullLink(t, "u01", 1))
	dup := fullLink(t, "u01", 2)
	_, err := st.CreateLink(ctx, dup, fullEvent(t, "e1", 1, 0))
	wantErr(t, "CreateLink with a taken UserID", err, mlmsoft.ErrDuplicate)
	same(t, "link after the duplicate create", first, getLink(t, st, "u01"))
	_, err = st.GetLinkByEmail(ctx, dup.Email)
	wantErr(t, "GetLinkByEmail of the refused link", err, mlmsoft.ErrNotFound)
	noEvents(t, st, "after a refused CreateLink")
}

func testLinkDuplicateEmail(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	first := createLink(t, st, fullLink(t, "u01", 1))
	dup := fullLink(t, "u02", 2)
	dup.Email = first.Email
	_, err := st.CreateLink(ctx, dup, fullEvent(t, "e1", 1, 0))
	wantErr(t, "CreateLink with a taken Email", err, mlmsoft.ErrDuplicate)
	_, err = st.GetLink(ctx, "u02")
	wantErr(t, "GetLink of the refused link", err, mlmsoft.ErrNotFound)
	got, err := st.GetLinkByEmail(ctx, first.Email)
	mustOK(t, "GetLinkByEmail", err)
	same(t, "link owning the email", first, got)
	noEvents(t, st, "after a refused CreateLink")
}

func testLinkEmptyEmailsNotUnique(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	for _, id := range []string{"u01", "u02", "u03"} {
		createLink(t, st, mlmsoft.Link{UserID: id, State: mlmsoft.LinkPending})
	}
	l := getLink(t, st, "u02")
	l.FirstName = "Ann"
	updateLink(t, st, mlmsoft.LinkUpdate{Link: l})
	l = getLink(t, st, "u01")
	l.Email = "ann@example.com"
	l = updateLink(t, st, mlmsoft.LinkUpdate{Link: l})
	l.Email = ""
	updateLink(t, st, mlmsoft.LinkUpdate{Link: l})
	_, err := st.GetLinkByEmail(ctx, "ann@example.com")
	wantErr(t, "GetLinkByEmail of a cleared email", err, mlmsoft.ErrNotFound)
	_, err = st.GetLinkByEmail(ctx, "")
	wantErr(t, `GetLinkByEmail("")`, err, mlmsoft.ErrNotFound)
	all, err := st.ListLinks(ctx, mlmsoft.LinkFilter{})
	mustOK(t, "ListLinks", err)
	wantIDs(t, "ListLinks", linkIDs(all), []string{"u01", "u02", "u03"})
}

func testLinkEmailsComparedAsGiven(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	createLink(t, st, mlmsoft.Link{UserID: "u01", Email: "ann@example.com", State: mlmsoft.LinkPending})
	for _, e := range []string{"Ann@Example.com", "ann@example.com ", " ann@example.com", "ann@example.co"} {
		_, err := st.GetLinkByEmail(ctx, e)
		wantErr(t, fmt.Sprintf("GetLinkByEmail(%q)", e), err, mlmsoft.ErrNotFound)
	}
	// Not the same email, so not a duplicate.
	createLink(t, st, mlmsoft.Link{UserID: "u02", Email: "Ann@Example.com", State: mlmsoft.LinkPending})
	got, err := st.GetLinkByEmail(ctx, "Ann@Example.com")
	mustOK(t, "GetLinkByEmail", err)
	if got.UserID != "u02" {
		t.Errorf("GetLinkByEmail(%q) = %q, want u02", "Ann@Example.com", got.UserID)
	}
	got, err = st.GetLinkByEmail(ctx, "ann@example.com")
	mustOK(t, "GetLinkByEmail", err)
	if got.UserID != "u01" {
		t.Errorf("GetLinkByEmail(%q) = %q, want u01", "ann@example.com", got.UserID)
	}
}

func testLinkNotFound(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	createLink(t, st, fullLink(t, "u01", 1))
	_, err := st.GetLink(ctx, "u02")
	wantErr(t, "GetLink", err, mlmsoft.ErrNotFound)
	_, err = st.GetLink(ctx, "U01")
	wantErr(t, "GetLink with other letter case", err, mlmsoft.ErrNotFound)
	_, err = st.GetLinkByEmail(ctx, "nobody@example.com")
	wantErr(t, "GetLinkByEmail", err, mlmsoft.ErrNotFound)
	l := fullLink(t, "u02", 2)
	l.Version = 1
	for _, owner := range []string{"", "w1"} {
		_, err = st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l, Owner: owner, WakeVolumes: true, Events: []mlmsoft.Event{fullEvent(t, "e1", 1, 0)}})
		wantErr(t, fmt.Sprintf("UpdateLink of a missing link, owner %q", owner), err, mlmsoft.ErrNotFound)
	}
	_, err = st.GetLink(ctx, "u02")
	wantErr(t, "GetLink after UpdateLink of a missing link", err, mlmsoft.ErrNotFound)
	noEvents(t, st, "after a refused UpdateLink")
}

func testLinkUpdateCAS(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	l := createLink(t, st, fullLink(t, "u01", 1))
	for v := int64(1); v <= 3; v++ {
		if l.Version != v {
			t.Fatalf("Version %d, want %d", l.Version, v)
		}
		l.Attempts++
		l = updateLink(t, st, mlmsoft.LinkUpdate{Link: l})
	}
	want := getLink(t, st, "u01")
	if want.Version != 4 {
		t.Errorf("Version after three updates = %d, want 4", want.Version)
	}
	for _, v := range []int64{3, 5, 0, -1} {
		stale := want
		stale.Version = v
		stale.FirstName = "stale"
		_, err := st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: stale})
		wantErr(t, fmt.Sprintf("UpdateLink with Version %d (stored 4)", v), err, mlmsoft.ErrConflict)
	}
	same(t, "GetLink after refused updates", want, getLink(t, st, "u01"))

	// Claims do not change the Version.
	l.NextAttemptAt = at(0)
	l = updateLink(t, st, mlmsoft.LinkUpdate{Link: l})
	claimed := claimLinks(t, st, "w1", at(hour), minute, 1)
	if len(claimed) != 1 || claimed[0].Version != l.Version {
		t.Fatalf("claimed %v, want u01 at Version %d", claimed, l.Version)
	}
	if got := getLink(t, st, "u01"); got.Version != l.Version {
		t.Errorf("Version after a claim = %d, want %d", got.Version, l.Version)
	}
	l.Attempts++
	got := updateLink(t, st, mlmsoft.LinkUpdate{Link: l, Owner: "w1"})
	if got.Version != l.Version+1 {
		t.Errorf("Version after the owner's update = %d, want %d", got.Version, l.Version+1)
	}
}

func testLinkUpdateEmail(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	a := createLink(t, st, fullLink(t, "u01", 1))
	b := createLink(t, st, fullLink(t, "u02", 2))
	oldA := a.Email

	a.Email = "c@example.com"
	a = updateLink(t, st, mlmsoft.LinkUpdate{Link: a})
	got, err := st.GetLinkByEmail(ctx, "c@example.com")
	mustOK(t, "GetLinkByEmail of the new email", err)
	if got.UserID != "u01" {
		t.Errorf("GetLinkByEmail(new) = %q, want u01", got.UserID)
	}
	_, err = st.GetLinkByEmail(ctx, oldA)
	wantErr(t, "GetLinkByEmail of the released email", err, mlmsoft.ErrNotFound)

	// Keeping its own email is no duplicate.
	a.Attempts++
	a = updateLink(t, st, mlmsoft.LinkUpdate{Link: a})

	taken := b
	taken.Email = "c@example.com"
	taken.FirstName = "taken"
	_, err = st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: taken})
	wantErr(t, "UpdateLink to another link's email", err, mlmsoft.ErrDuplicate)
	same(t, "link after the refused update", b, getLink(t, st, "u02"))

	// The released email is free for others.
	b.Email = oldA
	updateLink(t, st, mlmsoft.LinkUpdate{Link: b})
	n := fullLink(t, "u03", 3)
	n.Email = "u02.2.zoë@example.com" // released by u02
	createLink(t, st, n)
	same(t, "u01 at the end", a, getLink(t, st, "u01"))
}

func testLinkUpdateErrorOrder(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	a := createLink(t, st, pendingLink("u01", 0))
	b := createLink(t, st, mlmsoft.Link{UserID: "u02", Email: "b@example.com"})
	claimLinks(t, st, "w1", now, minute, 1) // u01, to w1

	// Each case breaks every rule from its error on; the first one checked
	// is the one reported.
	bad := a
	bad.Email = b.Email         // ErrDuplicate
	bad.Version = a.Version + 7 // ErrConflict
	bad.LastError = "must not be written"
	ev := []mlmsoft.Event{fullEvent(t, "e1", 1, 0)}
	missing := bad
	missing.UserID = "u09"
	for _, c := range []struct {
		what string
		u    mlmsoft.LinkUpdate
		want error
	}{
		{"missing link, wrong owner, stale version, taken email", mlmsoft.LinkUpdate{Link: missing, Owner: "w2", Events: ev}, mlmsoft.ErrNotFound},
		{"wrong owner, stale version, taken email", mlmsoft.LinkUpdate{Link: bad, Owner: "w2", Events: ev}, mlmsoft.ErrLeaseLost},
		{"stale version, taken email (owner w1)", mlmsoft.LinkUpdate{Link: bad, Owner: "w1", Events: ev}, mlmsoft.ErrConflict},
		{"stale version, taken email (no owner)", mlmsoft.LinkUpdate{Link: bad, Events: ev}, mlmsoft.ErrConflict},
	} {
		_, err := st.UpdateLink(ctx, c.u)
		wantErr(t, "UpdateLink, "+c.what, err, c.want)
	}
	bad.Version = a.Version
	for _, owner := range []string{"", "w1"} {
		_, err := st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: bad, Owner: owner, Events: ev})
		wantErr(t, fmt.Sprintf("UpdateLink, taken email (owner %q)", owner), err, mlmsoft.ErrDuplicate)
	}
	same(t, "u01 after refused updates", leased(a, "w1", now, minute), getLink(t, st, "u01"))
	same(t, "u02 after refused updates", b, getLink(t, st, "u02"))
	noEvents(t, st, "after refused updates")
	// The lease was not ended by the refused updates of its owner.
	if got := claimLinks(t, st, "w3", now, minute, 10); len(got) != 0 {
		t.Errorf("claim after refused updates = %v, want none (w1 holds u01)", linkIDs(got))
	}
}

func testLinkUpdateLease(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	createLink(t, st, pendingLink("u01", 0))
	l := claimLinks(t, st, "w1", now, minute, 10)
	if len(l) != 1 {
		t.Fatalf("claim = %v, want [u01]", linkIDs(l))
	}
	same(t, "claimed link", leased(getLink(t, st, "u01"), "w1", now, minute), l[0])

	// Another worker's update, and one by an owner that never claimed it,
	// are refused while w1 holds the link.
	for _, owner := range []string{"w2", "w1x"} {
		_, err := st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l[0], Owner: owner})
		wantErr(t, "UpdateLink by "+owner+", not holding the lease", err, mlmsoft.ErrLeaseLost)
	}

	// The owner's update ends the lease; the Lease it was given is ignored.
	u := l[0]
	u.Attempts = 1
	u.Lease = mlmsoft.Lease{Owner: "w1", Until: now.Add(hour)}
	want := u
	want.Version++
	want.Lease = mlmsoft.Lease{}
	got := updateLink(t, st, mlmsoft.LinkUpdate{Link: u, Owner: "w1"})
	same(t, "UpdateLink by the owner", want, got)
	same(t, "GetLink after the owner's update", want, getLink(t, st, "u01"))

	// Ended: another worker claims it at once, and w1 no longer holds it.
	_, err := st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: got, Owner: "w1"})
	wantErr(t, "UpdateLink by w1 after its update ended the lease", err, mlmsoft.ErrLeaseLost)
	again := claimLinks(t, st, "w2", now, minute, 10)
	wantIDs(t, "claim after the lease ended", linkIDs(again), []string{"u01"})
	if len(again) == 1 {
		same(t, "reclaimed link", leased(want, "w2", now, minute), again[0])
	}
}

func testLinkUpdateKeepLease(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	createLink(t, st, pendingLink("u01", 0))
	l := claimLinks(t, st, "w1", now, minute, 10)[0]
	until := now.Add(10 * minute)
	l.Attempts = 1
	want := l
	want.Version++
	want.Lease = mlmsoft.Lease{Owner: "w1", Until: until}
	got := updateLink(t, st, mlmsoft.LinkUpdate{Link: l, Owner: "w1", KeepLease: true, LeaseUntil: until})
	same(t, "UpdateLink with KeepLease", want, got)
	same(t, "GetLink after KeepLease", want, getLink(t, st, "u01"))

	if c := claimLinks(t, st, "w2", until.Add(-ms), minute, 10); len(c) != 0 {
		t.Errorf("claim just before LeaseUntil = %v, want none", linkIDs(c))
	}
	// w1 still holds it, and may keep it again or end it.
	got.Attempts = 2
	got = updateLink(t, st, mlmsoft.LinkUpdate{Link: got, Owner: "w1", KeepLease: true, LeaseUntil: until})
	c := claimLinks(t, st, "w2", until, minute, 10)
	wantIDs(t, "claim at LeaseUntil", linkIDs(c), []string{"u01"})
	if len(c) == 1 {
		same(t, "claimed at LeaseUntil", leased(got, "w2", until, minute), c[0])
	}
}

func testLinkUpdateWithoutOwner(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	createLink(t, st, pendingLink("u01", 0))
	l := claimLinks(t, st, "w1", now, minute, 10)[0]

	// An update without an owner needs no lease and leaves w1's alone.
	op := l
	op.State = mlmsoft.LinkLinked
	op.Lease = mlmsoft.Lease{}
	want := op
	want.Version++
	want.Lease = l.Lease
	same(t, "UpdateLink without an owner", want, updateLink(t, st, mlmsoft.LinkUpdate{Link: op}))
	same(t, "GetLink after it", want, getLink(t, st, "u01"))
	if c := claimLinks(t, st, "w2", now, minute, 10); len(c) != 0 {
		t.Errorf("claim while w1's lease holds = %v, want none", linkIDs(c))
	}
	// w1 still holds the lease; its stale version loses the race.
	_, err := st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l, Owner: "w1"})
	wantErr(t, "UpdateLink by w1 with the version it claimed", err, mlmsoft.ErrConflict)
	fresh := getLink(t, st, "u01")
	fresh.Attempts = 3
	updateLink(t, st, mlmsoft.LinkUpdate{Link: fresh, Owner: "w1"})

	// On a link nobody holds it changes no lease either: KeepLease and
	// LeaseUntil mean nothing without an owner.
	fresh = getLink(t, st, "u01")
	got := updateLink(t, st, mlmsoft.LinkUpdate{Link: fresh, KeepLease: true, LeaseUntil: now.Add(hour)})
	if got.Lease.Owner != "" {
		t.Errorf("update without an owner of a free link left lease %s, want free", fmtLease(got.Lease))
	}
	wantIDs(t, "claim after updates without an owner", linkIDs(claimLinks(t, st, "w2", now, minute, 10)), []string{"u01"})
}

func testLinkLapsedLeaseStillHeld(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	createLink(t, st, pendingLink("u01", 0))
	createLink(t, st, pendingLink("u02", 0))
	claimed := claimLinks(t, st, "w1", now, minute, 10)
	wantIDs(t, "claim", linkIDs(claimed), []string{"u01", "u02"})

	// u01's lease lapsed, but nobody claimed it since: w1 still holds it.
	l := claimed[0]
	l.Attempts = 1
	got := updateLink(t, st, mlmsoft.LinkUpdate{Link: l, Owner: "w1", KeepLease: true, LeaseUntil: now.Add(2 * hour)})
	if got.Lease.Owner != "w1" {
		t.Errorf("lease after w1's late update with KeepLease: %s, want w1's", fmtLease(got.Lease))
	}

	// u02's lapsed and was claimed by w2: w1's late update is refused.
	later := now.Add(30 * minute)
	wantIDs(t, "claim by w2 after the leases lapsed", linkIDs(claimLinks(t, st, "w2", later, minute, 10)), []string{"u02"})
	m := claimed[1]
	m.LastError = "late"
	_, err := st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: m, Owner: "w1"})
	wantErr(t, "UpdateLink by w1 after w2 claimed", err, mlmsoft.ErrLeaseLost)
	same(t, "u02 after w1's refused update", leased(claimed[1], "w2", later, minute), getLink(t, st, "u02"))
	m.LastError = "w2"
	updateLink(t, st, mlmsoft.LinkUpdate{Link: m, Owner: "w2"})
}

// wakeFixture enqueues, for users ua and ub, changes whose NextAttemptAt
// and state test every case of LinkUpdate.WakeVolumes woken at t0+1h.
func wakeFixture(t *testing.T, st mlmsoft.Store) (wake time.Time, v []mlmsoft.VolumeChange, woken []bool) {
	wake = at(hour)
	cases := []struct {
		user  string
		state mlmsoft.VolumeState
		next  time.Time
		woken bool
	}{
		{"ua", mlmsoft.VolumePending, at(3 * hour), true},
		{"ua", mlmsoft.VolumePending, at(30 * minute), false},   // earlier: untouched
		{"ua", mlmsoft.VolumePending, wake, false},              // equal: untouched
		{"ua", mlmsoft.VolumePending, time.Time{}, false},       // zero: untouched
		{"ua", mlmsoft.VolumeSending, at(4 * hour), true},       // any open state
		{"ua", mlmsoft.VolumeParked, at(5 * hour), true},        //
		{"ua", mlmsoft.VolumeUncertain, at(hour + ms), true},    //
		{"ua", mlmsoft.VolumeDelivered, at(6 * hour), false},    // final: untouched
		{"ua", mlmsoft.VolumeRejected, at(6 * hour), false},     //
		{"ua", mlmsoft.VolumeSkipped, at(6 * hour), false},      //
		{"ua", mlmsoft.VolumePending, at(7 * hour), true},       // not the head
		{"ub", mlmsoft.VolumePending, at(3 * hour), false},      // another user
		{"ua", mlmsoft.VolumeState("held"), at(8 * hour), true}, // a state mlmsoft may add
	}
	var in []mlmsoft.VolumeChange
	for i, c := range cases {
		ch := change(c.user, fmt.Sprintf("k%02d", i))
		ch.State, ch.NextAttemptAt = c.state, c.next
		in = append(in, ch)
		woken = append(woken, c.woken)
	}
	return wake, enqueue(t, st, in...), woken
}

func testLinkWakeVolumes(t *testing.T, st mlmsoft.Store) {
	wake, v, woken := wakeFixture(t, st)
	l := createLink(t, st, pendingLink("ua", -1))

	// Without WakeVolumes, nothing changes.
	l.UpdatedAt = wake
	l = updateLink(t, st, mlmsoft.LinkUpdate{Link: l})
	for _, c := range v {
		same(t, fmt.Sprintf("%s#%d after an update without WakeVolumes", c.UserID, c.Seq), c, getVolume(t, st, c.ID))
	}

	l.State = mlmsoft.LinkLinked
	updateLink(t, st, mlmsoft.LinkUpdate{Link: l, WakeVolumes: true})
	for i, c := range v {
		want := c
		if woken[i] {
			want.NextAttemptAt = wake
		}
		same(t, fmt.Sprintf("%s#%d (%s, due %s) after WakeVolumes at %s", c.UserID, c.Seq, c.State, fmtTime(c.NextAttemptAt), fmtTime(wake)),
			want, getVolume(t, st, c.ID))
	}
	// The head is due at the link's UpdatedAt.
	wantHeads(t, "claim at the wake time", claimVolumes(t, st, mlmsoft.VolumeClaim{Owner: "w", Now: wake}), "ua#1")
}

func testLinkWakeVolumesAtomic(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	v := enqueue(t, st, due("ua", "k1", 3*hour))
	l := createLink(t, st, pendingLink("ua", 0))
	b := createLink(t, st, mlmsoft.Link{UserID: "ub", Email: "b@example.com"})
	claimLinks(t, st, "w1", now, minute, 1)

	up := l
	up.UpdatedAt = now
	for _, c := range []struct {
		what string
		u    mlmsoft.LinkUpdate
		want error
	}{
		{"stale version", mlmsoft.LinkUpdate{Link: withVersion(up, 9), WakeVolumes: true}, mlmsoft.ErrConflict},
		{"lease lost", mlmsoft.LinkUpdate{Link: up, Owner: "w2", WakeVolumes: true}, mlmsoft.ErrLeaseLost},
		{"taken email", mlmsoft.LinkUpdate{Link: withEmail(up, b.Email), WakeVolumes: true}, mlmsoft.ErrDuplicate},
	} {
		_, err := st.UpdateLink(ctx, c.u)
		wantErr(t, "UpdateLink with WakeVolumes, "+c.what, err, c.want)
	}
	same(t, "change after refused updates with WakeVolumes", v[0], getVolume(t, st, v[0].ID))
	updateLink(t, st, mlmsoft.LinkUpdate{Link: up, Owner: "w1", WakeVolumes: true})
	want := v[0]
	want.NextAttemptAt = now
	same(t, "change after the update with WakeVolumes", want, getVolume(t, st, v[0].ID))
}

func withVersion(l mlmsoft.Link, v int64) mlmsoft.Link { l.Version = v; return l }
func withEmail(l mlmsoft.Link, e string) mlmsoft.Link  { l.Email = e; return l }

func testLinkEvents(t *testing.T, st mlmsoft.Store) {
	now := at(1000 * hour)
	e1, e2 := fullEvent(t, "e1", 1, 0), fullEvent(t, "e2", 2, ms)
	l := createLink(t, st, fullLink(t, "u01", 1), e1, e2)
	e3 := fullEvent(t, "e3", 3, 2*ms)
	l = updateLink(t, st, mlmsoft.LinkUpdate{Link: l, Events: []mlmsoft.Event{e3}})
	e4, e5 := fullEvent(t, "e4", 4, 3*ms), fullEvent(t, "e5", 5, 4*ms)
	updateLink(t, st, mlmsoft.LinkUpdate{Link: l, Events: []mlmsoft.Event{e4, e5}})

	got := claimEvents(t, st, "w", now, minute, 10)
	wantIDs(t, "events claimed", eventIDs(got), []string{"e1", "e2", "e3", "e4", "e5"})
	for i, e := range []mlmsoft.Event{e1, e2, e3, e4, e5} {
		if i < len(got) {
			same(t, "event "+e.ID, leasedEvent(e, "w", now, minute), got[i])
		}
	}
}

func testLinkEventsNotStoredOnError(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(hour)
	a := createLink(t, st, pendingLink("u01", 0))
	b := createLink(t, st, mlmsoft.Link{UserID: "u02", Email: "b@example.com"})
	claimLinks(t, st, "w1", now, minute, 1)
	ev := func(id string) []mlmsoft.Event { return []mlmsoft.Event{fullEvent(t, id, 1, 0)} }

	_, err := st.CreateLink(ctx, mlmsoft.Link{UserID: "u01"}, ev("e1")...)
	wantErr(t, "CreateLink of a taken UserID", err, mlmsoft.ErrDuplicate)
	_, err = st.CreateLink(ctx, mlmsoft.Link{UserID: "u03", Email: b.Email}, ev("e2")...)
	wantErr(t, "CreateLink of a taken email", err, mlmsoft.ErrDuplicate)
	_, err = st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: withVersion(a, 5), Events: ev("e3")})
	wantErr(t, "UpdateLink with a stale version", err, mlmsoft.ErrConflict)
	_, err = st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: a, Owner: "w2", Events: ev("e4")})
	wantErr(t, "UpdateLink by a worker without the lease", err, mlmsoft.ErrLeaseLost)
	_, err = st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: withEmail(a, b.Email), Events: ev("e5")})
	wantErr(t, "UpdateLink to a taken email", err, mlmsoft.ErrDuplicate)
	_, err = st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: mlmsoft.Link{UserID: "u09", Version: 1}, Events: ev("e6")})
	wantErr(t, "UpdateLink of a missing link", err, mlmsoft.ErrNotFound)
	noEvents(t, st, "after refused writes")
	c, err := st.Counts(ctx)
	mustOK(t, "Counts", err)
	if c.Events != 0 {
		t.Errorf("Counts.Events = %d after refused writes, want 0", c.Events)
	}
}

func testLinkClaim(t *testing.T, st mlmsoft.Store) {
	now := at(hour)
	seed := []mlmsoft.Link{
		pendingLink("c01", 10*minute),
		{UserID: "c02", State: mlmsoft.LinkCreated, NextAttemptAt: at(20 * minute), DocumentID: 7},
		{UserID: "c03", State: mlmsoft.LinkLinked},                                 // zero NextAttemptAt: never due
		{UserID: "c04", State: mlmsoft.LinkFailed},                                 //
		pendingLink("c05", hour+ms),                                                // due just after now
		pendingLink("c06", hour),                                                   // due exactly now
		pendingLink("c07", 1*minute),                                               // leased past now
		pendingLink("c08", 2*minute),                                               // leased, lapsed
		pendingLink("c09", 3*minute),                                               // lease ends exactly now
		{UserID: "c10", State: mlmsoft.LinkLinked, NextAttemptAt: at(40 * minute)}, // the state does not matter
		{UserID: "c11", State: mlmsoft.LinkPending},                                // zero NextAttemptAt: never due
		pendingLink("c12", 10*minute),                                              // ties with c01
		{UserID: "c13", State: mlmsoft.LinkState("paused"), NextAttemptAt: at(50 * minute)},
	}
	stored := map[string]mlmsoft.Link{}
	for _, i := range []int{11, 4, 0, 10, 7, 2, 9, 5, 1, 8, 3, 6, 12} {
		stored[seed[i].UserID] = createLink(t, st, seed[i])
	}
	// Lease c07, c08 and c09 to others, one at a time.
	for _, c := range []struct {
		owner, id string
		now       time.Time
		lease     time.Duration
	}{
		{"o1", "c07", at(1 * minute), 59*minute + ms},
		{"o2", "c08", at(2 * minute), 28 * minute},
		{"o3", "c09", at(3 * minute), 57 * minute},
	} {
		got := claimLinks(t, st, c.owner, c.now, c.lease, 1)
		if len(got) != 1 || got[0].UserID != c.id {
			t.Fatalf("claim by %s at %s = %v, want [%s]", c.owner, fmtTime(c.now), linkIDs(got), c.id)
		}
		stored[c.id] = leased(stored[c.id], c.owner, c.now, c.lease)
		same(t, "claimed "+c.id, stored[c.id], got[0])
	}

	got := claimLinks(t, st, "w1", now, 5*minute, 100)
	want := []string{"c08", "c09", "c01", "c12", "c02", "c10", "c13", "c06"}
	wantIDs(t, "ClaimLinks (earliest NextAttemptAt first, then UserID)", linkIDs(got), want)
	for _, l := range got {
		w := leased(stored[l.UserID], "w1", now, 5*minute)
		same(t, "claimed "+l.UserID, w, l)
		same(t, "GetLink of claimed "+l.UserID, w, getLink(t, st, l.UserID))
	}
	for _, id := range []string{"c03", "c04", "c05", "c07", "c11"} {
		same(t, "unclaimed "+id, stored[id], getLink(t, st, id))
	}
	for _, owner := range []string{"w2", "w1"} {
		if again := claimLinks(t, st, owner, now, 5*minute, 100); len(again) != 0 {
			t.Errorf("ClaimLinks by %s while the leases hold = %v, want none", owner, linkIDs(again))
		}
	}
	// Later, c05 is due and c07's lease has lapsed; the zero ones never are.
	later := now.Add(2 * minute)
	wantIDs(t, "ClaimLinks two minutes later", linkIDs(claimLinks(t, st, "w3", later, 5*minute, 100)), []string{"c07", "c05"})
	if again := claimLinks(t, st, "w4", at(100000*hour), minute, 100); len(again) != len(want)+2 {
		t.Errorf("ClaimLinks once every lease lapsed = %v, want every link with a NextAttemptAt", linkIDs(again))
	}
}

func testLinkClaimLimitOrder(t *testing.T, st mlmsoft.Store) {
	for i, m := range []int{30, 10, 50, 20, 40, 10} {
		createLink(t, st, pendingLink(fmt.Sprintf("l%d", 6-i), time.Duration(m)*minute))
	}
	// l6 30m, l5 10m, l4 50m, l3 20m, l2 40m, l1 10m
	now := at(hour)
	for i, want := range [][]string{{"l1", "l5"}, {"l3", "l6"}, {"l2", "l4"}, {}} {
		got := claimLinks(t, st, fmt.Sprintf("w%d", i), now, minute, 2)
		wantIDs(t, fmt.Sprintf("claim %d with Limit 2", i+1), linkIDs(got), want)
	}
	for i, want := range [][]string{{"l1"}, {"l5"}, {"l3", "l6", "l2", "l4"}} {
		limit := 1
		if i == 2 {
			limit = 10
		}
		got := claimLinks(t, st, fmt.Sprintf("v%d", i), now.Add(time.Duration(i+1)*minute), hour, limit)
		wantIDs(t, fmt.Sprintf("claim %d after the leases lapsed", i+1), linkIDs(got), want)
	}
}

func testLinkClaimConcurrent(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	links, workers := 40, 8
	if testing.Short() {
		links, workers = 16, 4
	}
	for i := range links {
		createLink(t, st, pendingLink(fmt.Sprintf("u%03d", i), time.Duration(i%7)*time.Second))
	}
	now := at(hour)
	var mu sync.Mutex
	owners := map[string]string{}
	var wg sync.WaitGroup
	for w := range workers {
		owner := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for range links + 1 { // a correct store runs dry sooner
				got, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: owner, Now: now, Lease: hour, Limit: 3})
				if err != nil {
					t.Errorf("ClaimLinks by %s: %v", owner, err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, l := range got {
					if l.Lease.Owner != owner {
						t.Errorf("%s claimed %s but it is leased to %q", owner, l.UserID, l.Lease.Owner)
					}
					if prev, ok := owners[l.UserID]; ok {
						t.Errorf("%s claimed by %s and %s while the lease holds", l.UserID, prev, owner)
					}
					owners[l.UserID] = owner
				}
				mu.Unlock()
			}
			t.Errorf("%s never ran out of links to claim", owner)
		})
	}
	wg.Wait()
	if len(owners) != links {
		t.Errorf("%d links claimed, want %d", len(owners), links)
	}
	for id, owner := range owners {
		if l := getLink(t, st, id); l.Lease.Owner != owner || l.Version != 1 {
			t.Errorf("%s stored with lease %s, Version %d; want %s's, 1", id, fmtLease(l.Lease), l.Version, owner)
		}
	}
}

func testLinkUpdateConcurrentCAS(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	base := createLink(t, st, fullLink(t, "u01", 1))
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			l := base
			l.LastError = fmt.Sprintf("writer %d", i)
			_, errs[i] = st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Errorf("writers %d and %d both updated version %d", winner, i, base.Version)
		case err == nil:
			winner = i
		case !errors.Is(err, mlmsoft.ErrConflict):
			t.Errorf("writer %d: %v, want ErrConflict or success", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	got := getLink(t, st, "u01")
	if want := fmt.Sprintf("writer %d", winner); got.LastError != want || got.Version != base.Version+1 {
		t.Errorf("stored LastError %q version %d, want %q version %d", got.LastError, got.Version, want, base.Version+1)
	}
}

func testLinkCreateConcurrent(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	const n = 8
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { // same email, different users
			_, errs[i] = st.CreateLink(ctx, mlmsoft.Link{UserID: fmt.Sprintf("a%02d", i), Email: "same@example.com", State: mlmsoft.LinkPending},
				mlmsoft.Event{ID: fmt.Sprintf("ea%02d", i), NextAttemptAt: at(0)})
		})
		wg.Go(func() { // same user, different emails
			_, errs[n+i] = st.CreateLink(ctx, mlmsoft.Link{UserID: "b00", Email: fmt.Sprintf("b%02d@example.com", i), State: mlmsoft.LinkPending},
				mlmsoft.Event{ID: fmt.Sprintf("eb%02d", i), NextAttemptAt: at(0)})
		})
	}
	wg.Wait()
	for g, name := range []string{"same email", "same user"} {
		ok := 0
		for _, err := range errs[g*n : (g+1)*n] {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, mlmsoft.ErrDuplicate):
				t.Errorf("%s: %v, want ErrDuplicate or success", name, err)
			}
		}
		if ok != 1 {
			t.Errorf("%s: %d creates succeeded, want 1", name, ok)
		}
	}
	all, err := st.ListLinks(ctx, mlmsoft.LinkFilter{})
	mustOK(t, "ListLinks", err)
	if len(all) != 2 {
		t.Errorf("ListLinks: %d links %v, want 2", len(all), linkIDs(all))
	}
	if evs := claimEvents(t, st, "w", at(hour), minute, 100); len(evs) != 2 {
		t.Errorf("events stored: %v, want the two of the links created", eventIDs(evs))
	}
}

func testLinkList(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	states := map[string]mlmsoft.LinkState{
		"u01": mlmsoft.LinkPending, "u02": mlmsoft.LinkLinked, "u03": mlmsoft.LinkCreated,
		"u04": mlmsoft.LinkLinked, "u05": mlmsoft.LinkFailed, "u06": mlmsoft.LinkPending,
		"u1": mlmsoft.LinkState("paused"), "u10": mlmsoft.LinkCreated, "u0": mlmsoft.LinkPending,
	}
	stored := map[string]mlmsoft.Link{}
	for i, id := range []string{"u04", "u1", "u01", "u06", "u0", "u02", "u10", "u05", "u03"} {
		l := fullLink(t, id, i)
		l.State = states[id]
		stored[id] = createLink(t, st, l)
	}
	P, C, L, F := mlmsoft.LinkPending, mlmsoft.LinkCreated, mlmsoft.LinkLinked, mlmsoft.LinkFailed
	all := []string{"u0", "u01", "u02", "u03", "u04", "u05", "u06", "u1", "u10"}
	for _, tc := range []struct {
		f    mlmsoft.LinkFilter
		want []string
	}{
		{mlmsoft.LinkFilter{}, all},
		{mlmsoft.LinkFilter{States: []mlmsoft.LinkState{L}}, []string{"u02", "u04"}},
		{mlmsoft.LinkFilter{States: []mlmsoft.LinkState{F, P}}, []string{"u0", "u01", "u05", "u06"}},
		{mlmsoft.LinkFilter{States: []mlmsoft.LinkState{"paused"}}, []string{"u1"}},
		{mlmsoft.LinkFilter{States: []mlmsoft.LinkState{"other"}}, nil},
		{mlmsoft.LinkFilter{AfterID: "u03"}, []string{"u04", "u05", "u06", "u1", "u10"}},
		{mlmsoft.LinkFilter{AfterID: "u025"}, []string{"u03", "u04", "u05", "u06", "u1", "u10"}},
		{mlmsoft.LinkFilter{AfterID: "u"}, all},
		{mlmsoft.LinkFilter{AfterID: "u1"}, []string{"u10"}},
		{mlmsoft.LinkFilter{Limit: 2}, []string{"u0", "u01"}},
		{mlmsoft.LinkFilter{AfterID: "u02", Limit: 2, States: []mlmsoft.LinkState{P, C, F}}, []string{"u03", "u05"}},
		{mlmsoft.LinkFilter{AfterID: "u10"}, nil},
		{mlmsoft.LinkFilter{AfterID: "u03", States: []mlmsoft.LinkState{C}, Limit: 1}, []string{"u10"}},
	} {
		got, err := st.ListLinks(ctx, tc.f)
		mustOK(t, fmt.Sprintf("ListLinks(%+v)", tc.f), err)
		wantIDs(t, fmt.Sprintf("ListLinks(%+v)", tc.f), linkIDs(got), tc.want)
		for _, l := range got {
			same(t, "listed "+l.UserID, stored[l.UserID], l)
		}
	}
	// Keyset pagination walks every link once.
	var walked []string
	for after := ""; ; {
		page, err := st.ListLinks(ctx, mlmsoft.LinkFilter{AfterID: after, Limit: 2})
		mustOK(t, "ListLinks page", err)
		if len(page) == 0 {
			break
		}
		walked = append(walked, linkIDs(page)...)
		after = page[len(page)-1].UserID
		if len(walked) > len(all) {
			break
		}
	}
	wantIDs(t, "pages of ListLinks", walked, all)
}

func testLinkListEmailPrefix(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	emails := map[string]string{
		"u01": "ann@example.com",
		"u02": "Ann@example.com",
		"u03": "anna@example.com",
		"u04": "100%off@example.com",
		"u05": "100xoff@example.com",
		"u06": "a_b@example.com",
		"u07": "axb@example.com",
		`u08`: `a\b@example.com`,
		"u09": `a\_c@example.com`,
		"u10": "zoë@example.com",
		"u11": "",
		"u12": "a%@example.com",
		"u13": "abc@example.com",
		"u14": `a\\@example.com`,
	}
	for id, e := range emails {
		createLink(t, st, mlmsoft.Link{UserID: id, Email: e, State: mlmsoft.LinkPending})
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"", []string{"u01", "u02", "u03", "u04", "u05", "u06", "u07", "u08", "u09", "u10", "u11", "u12", "u13", "u14"}},
		{"ann", []string{"u01", "u03"}},
		{"Ann", []string{"u02"}},
		{"ANN", nil},
		{"ann@", []string{"u01"}},
		{"ann@example.com", []string{"u01"}},
		{"ann@example.com.", nil},
		{"100%", []string{"u04"}},
		{"100%off", []string{"u04"}},
		{"%", nil},
		{"a%", []string{"u12"}},
		{"_", nil},
		{"a_", []string{"u06"}},
		{"a_b", []string{"u06"}},
		{`a\`, []string{"u08", "u09", "u14"}},
		{`a\_`, []string{"u09"}},
		{`a\\`, []string{"u14"}},
		{`a\b`, []string{"u08"}},
		{"zoë", []string{"u10"}},
		{"zoe", nil},
		{"a", []string{"u01", "u03", "u06", "u07", "u08", "u09", "u12", "u13", "u14"}},
	} {
		got, err := st.ListLinks(ctx, mlmsoft.LinkFilter{EmailPrefix: tc.prefix})
		mustOK(t, fmt.Sprintf("ListLinks(EmailPrefix %q)", tc.prefix), err)
		wantIDs(t, fmt.Sprintf("ListLinks(EmailPrefix %q)", tc.prefix), linkIDs(got), tc.want)
	}
	got, err := st.ListLinks(ctx, mlmsoft.LinkFilter{EmailPrefix: "a", AfterID: "u06", Limit: 3, States: []mlmsoft.LinkState{mlmsoft.LinkPending}})
	mustOK(t, "ListLinks with every filter", err)
	wantIDs(t, "ListLinks(EmailPrefix a, AfterID u06, Limit 3)", linkIDs(got), []string{"u07", "u08", "u09"})
}
