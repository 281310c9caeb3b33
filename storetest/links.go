package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

func (s suite) links(t *testing.T) {
	s.test(t, "CreateGet", testLinkCreateGet)
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
	s.test(t, "UpdateConcurrentCAS", testLinkUpdateConcurrentCAS)
	s.test(t, "CreateConcurrent", testLinkCreateConcurrent)
	s.test(t, "Claim", testLinkClaim)
	s.test(t, "ClaimLimitOrder", testLinkClaimLimitOrder)
	s.test(t, "ClaimLeaseExpiry", testLinkClaimLeaseExpiry)
	s.test(t, "ClaimConcurrent", testLinkClaimConcurrent)
	s.test(t, "List", testLinkList)
	s.test(t, "Count", testLinkCount)
}

// fullLink returns a link with every field set to a value a careless store
// could mangle: large ids, non-ASCII text, binary bytes, distinct times.
func fullLink(id string) mlmsoft.Link {
	return mlmsoft.Link{
		UserID:           id,
		Email:            id + "@example.com",
		FirstName:        "Zoë",
		LastName:         "O'Brien-Łukasz",
		Phone:            "+1 555 0100",
		CountryID:        "US",
		SponsorUserID:    "sponsor-1",
		SponsorAccountID: 1<<53 + 1,
		State:            mlmsoft.LinkCreated,
		AccountID:        1<<62 + 3,
		MLMUserID:        9007199254740993,
		LinkedVia:        mlmsoft.LinkedViaDocument,
		DocumentID:       123456789012,
		SealedPassword:   []byte{0x00, 0x01, 0xfe, 0xff, 0x00, 'a'},
		CreateSentAt:     at(time.Second + time.Millisecond),
		AcceptedAt:       at(2*time.Second + 999*time.Millisecond),
		Attempts:         7,
		NextAttemptAt:    at(-time.Minute),
		LastError:        `upstream: 503 "busy" \ 100%`,
		LeaseOwner:       "worker-a",
		LeaseUntil:       at(-time.Hour),
		CreatedAt:        at(-48 * time.Hour),
		UpdatedAt:        at(-time.Hour + time.Millisecond),
		LinkedAt:         at(3 * time.Second),
		Version:          42,
	}
}

func createLink(t *testing.T, st mlmsoft.Store, l mlmsoft.Link) mlmsoft.Link {
	t.Helper()
	got, err := st.CreateLink(t.Context(), l)
	mustOK(t, "CreateLink "+l.UserID, err)
	return got
}

func getLink(t *testing.T, st mlmsoft.Store, userID string) mlmsoft.Link {
	t.Helper()
	got, err := st.GetLink(t.Context(), userID)
	mustOK(t, "GetLink "+userID, err)
	return got
}

func linkIDs(ls []mlmsoft.Link) []string {
	ids := make([]string, len(ls))
	for i, l := range ls {
		ids[i] = l.UserID
	}
	return ids
}

func testLinkCreateGet(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	in := fullLink("u01")
	want := in
	want.Version = 1 // CreateLink stores 1 whatever it is given

	got, err := st.CreateLink(ctx, in)
	mustOK(t, "CreateLink", err)
	same(t, "CreateLink result", want, got)

	got = getLink(t, st, "u01")
	same(t, "GetLink", want, got)

	got, err = st.GetLinkByEmail(ctx, in.Email)
	mustOK(t, "GetLinkByEmail", err)
	same(t, "GetLinkByEmail", want, got)
}

func testLinkZeroValues(t *testing.T, st mlmsoft.Store) {
	in := mlmsoft.Link{UserID: "u01", State: mlmsoft.LinkPending}
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
	ctx := t.Context()
	l := fullLink("u01")
	l.SealedPassword = []byte{}
	createLink(t, st, l)
	got := getLink(t, st, "u01")
	if got.SealedPassword == nil || len(got.SealedPassword) != 0 {
		t.Errorf("empty SealedPassword read back as %s, want empty and non-nil", fmtBytes(got.SealedPassword))
	}

	got.SealedPassword = nil
	_, err := st.UpdateLink(ctx, got)
	mustOK(t, "UpdateLink to nil", err)
	got = getLink(t, st, "u01")
	if got.SealedPassword != nil {
		t.Errorf("SealedPassword updated to nil read back as %s", fmtBytes(got.SealedPassword))
	}

	got.SealedPassword = []byte{}
	_, err = st.UpdateLink(ctx, got)
	mustOK(t, "UpdateLink to empty", err)
	got = getLink(t, st, "u01")
	if got.SealedPassword == nil || len(got.SealedPassword) != 0 {
		t.Errorf("SealedPassword updated to empty read back as %s", fmtBytes(got.SealedPassword))
	}
}

func testLinkNoAliasing(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	check := func(what string) {
		t.Helper()
		if got := getLink(t, st, "u01"); string(got.SealedPassword) != "sealed" {
			t.Errorf("%s: stored SealedPassword became %q", what, got.SealedPassword)
		}
	}
	l := fullLink("u01")
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
	updated, err := st.UpdateLink(ctx, got)
	mustOK(t, "UpdateLink", err)
	got.SealedPassword[3] = 'X'
	check("after changing the slice given to UpdateLink")
	updated.SealedPassword[4] = 'X'
	check("after changing the slice UpdateLink returned")
}

func testLinkDuplicateUserID(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	first := createLink(t, st, fullLink("u01"))
	dup := fullLink("u01")
	dup.Email = "other@example.com"
	dup.FirstName = "Second"
	_, err := st.CreateLink(ctx, dup)
	wantErr(t, "CreateLink with a taken UserID", err, mlmsoft.ErrDuplicate)
	same(t, "link after the duplicate create", first, getLink(t, st, "u01"))
	_, err = st.GetLinkByEmail(ctx, "other@example.com")
	wantErr(t, "GetLinkByEmail of the refused link", err, mlmsoft.ErrNotFound)
}

func testLinkDuplicateEmail(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	first := createLink(t, st, fullLink("u01"))
	dup := fullLink("u02")
	dup.Email = first.Email
	_, err := st.CreateLink(ctx, dup)
	wantErr(t, "CreateLink with a taken Email", err, mlmsoft.ErrDuplicate)
	_, err = st.GetLink(ctx, "u02")
	wantErr(t, "GetLink of the refused link", err, mlmsoft.ErrNotFound)
	got, err := st.GetLinkByEmail(ctx, first.Email)
	mustOK(t, "GetLinkByEmail", err)
	same(t, "link owning the email", first, got)
}

func testLinkEmptyEmailsNotUnique(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	for _, id := range []string{"u01", "u02", "u03"} {
		createLink(t, st, mlmsoft.Link{UserID: id, State: mlmsoft.LinkPending})
	}
	l := getLink(t, st, "u02")
	l.FirstName = "Ann"
	_, err := st.UpdateLink(ctx, l)
	mustOK(t, "UpdateLink keeping an empty Email", err)
	l = getLink(t, st, "u01")
	l.Email = "ann@example.com"
	l, err = st.UpdateLink(ctx, l)
	mustOK(t, "UpdateLink setting an Email", err)
	l.Email = ""
	_, err = st.UpdateLink(ctx, l)
	mustOK(t, "UpdateLink clearing the Email", err)
	_, err = st.GetLinkByEmail(ctx, "ann@example.com")
	wantErr(t, "GetLinkByEmail of a cleared email", err, mlmsoft.ErrNotFound)
}

func testLinkEmailsComparedAsGiven(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	createLink(t, st, mlmsoft.Link{UserID: "u01", Email: "ann@example.com", State: mlmsoft.LinkPending})
	_, err := st.GetLinkByEmail(ctx, "Ann@Example.com")
	wantErr(t, "GetLinkByEmail with other letter case", err, mlmsoft.ErrNotFound)
	// Not the same email, so not a duplicate.
	createLink(t, st, mlmsoft.Link{UserID: "u02", Email: "Ann@Example.com", State: mlmsoft.LinkPending})
	got, err := st.GetLinkByEmail(ctx, "Ann@Example.com")
	mustOK(t, "GetLinkByEmail", err)
	if got.UserID != "u02" {
		t.Errorf("GetLinkByEmail(%q) = %q, want u02", "Ann@Example.com", got.UserID)
	}
}

func testLinkNotFound(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	createLink(t, st, fullLink("u01"))
	_, err := st.GetLink(ctx, "u02")
	wantErr(t, "GetLink", err, mlmsoft.ErrNotFound)
	_, err = st.GetLinkByEmail(ctx, "u02@example.com")
	wantErr(t, "GetLinkByEmail", err, mlmsoft.ErrNotFound)
	l := fullLink("u02")
	l.Version = 1
	_, err = st.UpdateLink(ctx, l)
	wantErr(t, "UpdateLink", err, mlmsoft.ErrNotFound)
	_, err = st.GetLink(ctx, "u02")
	wantErr(t, "GetLink after UpdateLink of a missing link", err, mlmsoft.ErrNotFound)
}

func testLinkUpdateCAS(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	createLink(t, st, fullLink("u01"))

	// Every field is replaced, zero values included.
	upd := mlmsoft.Link{
		UserID:    "u01",
		Email:     "new@example.com",
		State:     mlmsoft.LinkLinked,
		AccountID: 5,
		MLMUserID: 6,
		LinkedVia: mlmsoft.LinkedViaWebhook,
		LinkedAt:  at(10 * time.Second),
		UpdatedAt: at(10 * time.Second),
		Version:   1,
	}
	want := upd
	want.Version = 2
	got, err := st.UpdateLink(ctx, upd)
	mustOK(t, "UpdateLink", err)
	same(t, "UpdateLink result", want, got)
	same(t, "GetLink after UpdateLink", want, getLink(t, st, "u01"))

	for _, v := range []int64{1, 3, 0} {
		stale := upd
		stale.Version = v
		stale.FirstName = "stale"
		_, err = st.UpdateLink(ctx, stale)
		wantErr(t, fmt.Sprintf("UpdateLink with Version %d (stored 2)", v), err, mlmsoft.ErrConflict)
	}
	same(t, "GetLink after refused updates", want, getLink(t, st, "u01"))

	upd.Version = 2
	upd.Attempts = 1
	want = upd
	want.Version = 3
	got, err = st.UpdateLink(ctx, upd)
	mustOK(t, "second UpdateLink", err)
	same(t, "second UpdateLink result", want, got)
}

func testLinkUpdateEmail(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	a := createLink(t, st, fullLink("u01"))
	b := createLink(t, st, fullLink("u02"))
	oldA := a.Email

	a.Email = "c@example.com"
	a, err := st.UpdateLink(ctx, a)
	mustOK(t, "UpdateLink to a free email", err)
	got, err := st.GetLinkByEmail(ctx, "c@example.com")
	mustOK(t, "GetLinkByEmail of the new email", err)
	if got.UserID != "u01" {
		t.Errorf("GetLinkByEmail(new) = %q, want u01", got.UserID)
	}
	_, err = st.GetLinkByEmail(ctx, oldA)
	wantErr(t, "GetLinkByEmail of the released email", err, mlmsoft.ErrNotFound)

	// Keeping its own email is no duplicate.
	a.Attempts++
	a, err = st.UpdateLink(ctx, a)
	mustOK(t, "UpdateLink keeping the email", err)

	taken := b
	taken.Email = "c@example.com"
	_, err = st.UpdateLink(ctx, taken)
	wantErr(t, "UpdateLink to another link's email", err, mlmsoft.ErrDuplicate)
	same(t, "link after the refused update", b, getLink(t, st, "u02"))

	// The released email is free for others.
	b.Email = oldA
	_, err = st.UpdateLink(ctx, b)
	mustOK(t, "UpdateLink to a released email", err)
	n := fullLink("u03")
	n.Email = "u02@example.com"
	createLink(t, st, n)
	if got := getLink(t, st, "u01"); got.Email != "c@example.com" || got.Version != a.Version {
		t.Errorf("u01 = %q version %d, want c@example.com version %d", got.Email, got.Version, a.Version)
	}
}

func testLinkUpdateConcurrentCAS(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	base := createLink(t, st, fullLink("u01"))
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			l := base
			l.LastError = fmt.Sprintf("writer %d", i)
			_, errs[i] = st.UpdateLink(ctx, l)
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
			_, errs[i] = st.CreateLink(ctx, mlmsoft.Link{UserID: fmt.Sprintf("a%02d", i), Email: "same@example.com", State: mlmsoft.LinkPending})
		})
		wg.Go(func() { // same user, different emails
			_, errs[n+i] = st.CreateLink(ctx, mlmsoft.Link{UserID: "b00", Email: fmt.Sprintf("b%02d@example.com", i), State: mlmsoft.LinkPending})
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
}

func testLinkClaim(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	now := at(time.Hour)
	m := time.Minute
	seed := []mlmsoft.Link{
		{UserID: "c01", State: mlmsoft.LinkPending, NextAttemptAt: at(10 * m)},
		{UserID: "c02", State: mlmsoft.LinkCreated, NextAttemptAt: at(20 * m), DocumentID: 7},
		{UserID: "c03", State: mlmsoft.LinkLinked, NextAttemptAt: at(0)},
		{UserID: "c04", State: mlmsoft.LinkFailed, NextAttemptAt: at(0)},
		{UserID: "c05", State: mlmsoft.LinkPending, NextAttemptAt: now.Add(time.Millisecond)},                                             // not due
		{UserID: "c06", State: mlmsoft.LinkPending, NextAttemptAt: now},                                                                   // due exactly now
		{UserID: "c07", State: mlmsoft.LinkPending, NextAttemptAt: at(5 * m), LeaseOwner: "other", LeaseUntil: now.Add(time.Millisecond)}, // live lease
		{UserID: "c08", State: mlmsoft.LinkCreated, NextAttemptAt: at(15 * m), LeaseOwner: "other", LeaseUntil: at(30 * m)},               // expired lease
		{UserID: "c09", State: mlmsoft.LinkPending, NextAttemptAt: at(25 * m), LeaseOwner: "other", LeaseUntil: now},                      // ends exactly now
		{UserID: "c10", State: mlmsoft.LinkPending, NextAttemptAt: at(1 * m), LeaseUntil: now.Add(time.Hour)},                             // free: no owner
		{UserID: "c11", State: mlmsoft.LinkPending},                                                                                       // zero NextAttemptAt: due
	}
	stored := map[string]mlmsoft.Link{}
	for _, i := range []int{4, 0, 10, 7, 2, 9, 5, 1, 8, 3, 6} {
		stored[seed[i].UserID] = createLink(t, st, seed[i])
	}

	got, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w1", Now: now, Lease: 5 * m, Limit: 100})
	mustOK(t, "ClaimLinks", err)
	wantIDs := []string{"c11", "c10", "c01", "c08", "c02", "c09", "c06"}
	if ids := linkIDs(got); !slices.Equal(ids, wantIDs) {
		t.Fatalf("ClaimLinks = %v, want %v (earliest NextAttemptAt first)", ids, wantIDs)
	}
	for _, l := range got {
		want := stored[l.UserID]
		want.LeaseOwner = "w1"
		want.LeaseUntil = now.Add(5 * m)
		want.Version++
		same(t, "claimed "+l.UserID, want, l)
		same(t, "GetLink of claimed "+l.UserID, want, getLink(t, st, l.UserID))
	}
	for _, id := range []string{"c03", "c04", "c05", "c07"} {
		same(t, "unclaimed "+id, stored[id], getLink(t, st, id))
	}

	for _, owner := range []string{"w2", "w1"} {
		again, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: owner, Now: now, Lease: 5 * m, Limit: 100})
		mustOK(t, "second ClaimLinks", err)
		if len(again) != 0 {
			t.Errorf("ClaimLinks by %s while leases hold = %v, want none", owner, linkIDs(again))
		}
	}

	// The plugin frees a link by writing LeaseOwner "" through UpdateLink;
	// it can then be claimed at once, whatever LeaseUntil says.
	free := got[2] // c01
	free.LeaseOwner = ""
	free.Attempts = 1
	_, err = st.UpdateLink(ctx, free)
	mustOK(t, "UpdateLink freeing the lease", err)
	again, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w2", Now: now, Lease: 5 * m, Limit: 100})
	mustOK(t, "ClaimLinks after a release", err)
	if ids := linkIDs(again); !slices.Equal(ids, []string{"c01"}) {
		t.Fatalf("ClaimLinks after freeing c01 = %v, want [c01]", ids)
	}
	if l := again[0]; l.LeaseOwner != "w2" || l.Version != free.Version+2 || l.Attempts != 1 {
		t.Errorf("reclaimed c01: owner %q version %d attempts %d, want w2, %d, 1", l.LeaseOwner, l.Version, l.Attempts, free.Version+2)
	}
}

func testLinkClaimLimitOrder(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	for i, min := range []int{30, 10, 50, 20, 40} {
		createLink(t, st, mlmsoft.Link{UserID: fmt.Sprintf("l%d", i+1), State: mlmsoft.LinkPending, NextAttemptAt: at(time.Duration(min) * time.Minute)})
	}
	now := at(time.Hour)
	for i, want := range [][]string{{"l2", "l4"}, {"l1", "l5"}, {"l3"}, {}} {
		got, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: fmt.Sprintf("w%d", i), Now: now, Lease: time.Minute, Limit: 2})
		mustOK(t, "ClaimLinks", err)
		if ids := linkIDs(got); !slices.Equal(ids, want) {
			t.Errorf("claim %d with Limit 2 = %v, want %v", i+1, ids, want)
		}
	}
}

func testLinkClaimLeaseExpiry(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	createLink(t, st, mlmsoft.Link{UserID: "p1", State: mlmsoft.LinkPending, NextAttemptAt: at(0)})
	now := at(time.Hour)
	claim := func(owner string, now time.Time) []mlmsoft.Link {
		t.Helper()
		got, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: owner, Now: now, Lease: time.Minute, Limit: 10})
		mustOK(t, "ClaimLinks", err)
		return got
	}
	a := claim("a", now)
	if len(a) != 1 || a[0].Version != 2 {
		t.Fatalf("first claim = %+v, want p1 at version 2", a)
	}
	if got := claim("b", now.Add(30*time.Second)); len(got) != 0 {
		t.Fatalf("claim during the lease = %v, want none", linkIDs(got))
	}
	b := claim("b", now.Add(2*time.Minute))
	if len(b) != 1 {
		t.Fatalf("claim after the lease = %v, want [p1]", linkIDs(b))
	}
	if b[0].LeaseOwner != "b" || !b[0].LeaseUntil.Equal(now.Add(3*time.Minute)) || b[0].Version != 3 {
		t.Errorf("reclaimed: owner %q until %s version %d, want b, %s, 3", b[0].LeaseOwner, fmtTime(b[0].LeaseUntil), b[0].Version, fmtTime(now.Add(3*time.Minute)))
	}
	// The first owner's late write is refused by the version check.
	late := a[0]
	late.LastError = "late"
	_, err := st.UpdateLink(ctx, late)
	wantErr(t, "UpdateLink by the owner whose lease was taken over", err, mlmsoft.ErrConflict)
}

func testLinkClaimConcurrent(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	links, workers := 40, 8
	if testing.Short() {
		links, workers = 16, 4
	}
	for i := range links {
		createLink(t, st, mlmsoft.Link{UserID: fmt.Sprintf("u%03d", i), State: mlmsoft.LinkPending, NextAttemptAt: at(time.Duration(i%7) * time.Second)})
	}
	now := at(time.Hour)
	var mu sync.Mutex
	owners := map[string]string{}
	var wg sync.WaitGroup
	for w := range workers {
		owner := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for range links + 1 { // a correct store runs dry sooner
				got, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: owner, Now: now, Lease: time.Hour, Limit: 3})
				if err != nil {
					t.Errorf("ClaimLinks by %s: %v", owner, err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, l := range got {
					if l.LeaseOwner != owner {
						t.Errorf("%s claimed %s but it is leased to %q", owner, l.UserID, l.LeaseOwner)
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
		if l := getLink(t, st, id); l.LeaseOwner != owner || l.Version != 2 {
			t.Errorf("%s stored with owner %q version %d, want %s, 2", id, l.LeaseOwner, l.Version, owner)
		}
	}
}

func testLinkList(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	states := map[string]mlmsoft.LinkState{
		"u01": mlmsoft.LinkPending, "u02": mlmsoft.LinkLinked, "u03": mlmsoft.LinkCreated,
		"u04": mlmsoft.LinkLinked, "u05": mlmsoft.LinkFailed, "u06": mlmsoft.LinkPending,
	}
	stored := map[string]mlmsoft.Link{}
	for _, id := range []string{"u04", "u01", "u06", "u02", "u05", "u03"} {
		l := fullLink(id)
		l.State = states[id]
		stored[id] = createLink(t, st, l)
	}
	P, C, L, F := mlmsoft.LinkPending, mlmsoft.LinkCreated, mlmsoft.LinkLinked, mlmsoft.LinkFailed
	for _, tc := range []struct {
		f    mlmsoft.LinkFilter
		want []string
	}{
		{mlmsoft.LinkFilter{}, []string{"u01", "u02", "u03", "u04", "u05", "u06"}},
		{mlmsoft.LinkFilter{States: []mlmsoft.LinkState{L}}, []string{"u02", "u04"}},
		{mlmsoft.LinkFilter{States: []mlmsoft.LinkState{F, P}}, []string{"u01", "u05", "u06"}},
		{mlmsoft.LinkFilter{AfterID: "u03"}, []string{"u04", "u05", "u06"}},
		{mlmsoft.LinkFilter{AfterID: "u025"}, []string{"u03", "u04", "u05", "u06"}},
		{mlmsoft.LinkFilter{Limit: 2}, []string{"u01", "u02"}},
		{mlmsoft.LinkFilter{AfterID: "u02", Limit: 2, States: []mlmsoft.LinkState{P, C, F}}, []string{"u03", "u05"}},
		{mlmsoft.LinkFilter{AfterID: "u06"}, []string{}},
		{mlmsoft.LinkFilter{AfterID: "u03", States: []mlmsoft.LinkState{C}}, []string{}},
	} {
		got, err := st.ListLinks(ctx, tc.f)
		mustOK(t, fmt.Sprintf("ListLinks(%+v)", tc.f), err)
		if ids := linkIDs(got); !slices.Equal(ids, tc.want) {
			t.Errorf("ListLinks(%+v) = %v, want %v", tc.f, ids, tc.want)
			continue
		}
		for _, l := range got {
			same(t, "listed "+l.UserID, stored[l.UserID], l)
		}
	}
}

func testLinkCount(t *testing.T, st mlmsoft.Store) {
	ctx := t.Context()
	count := func(want map[mlmsoft.LinkState]int) {
		t.Helper()
		got, err := st.CountLinks(ctx)
		mustOK(t, "CountLinks", err)
		if !countsEqual(want, got) {
			t.Errorf("CountLinks = %v, want %v", got, want)
		}
	}
	count(map[mlmsoft.LinkState]int{})
	for i, s := range []mlmsoft.LinkState{mlmsoft.LinkPending, mlmsoft.LinkLinked, mlmsoft.LinkCreated, mlmsoft.LinkLinked, mlmsoft.LinkPending, mlmsoft.LinkLinked} {
		createLink(t, st, mlmsoft.Link{UserID: fmt.Sprintf("u%02d", i), State: s})
	}
	count(map[mlmsoft.LinkState]int{mlmsoft.LinkPending: 2, mlmsoft.LinkCreated: 1, mlmsoft.LinkLinked: 3})
	l := getLink(t, st, "u01")
	l.State = mlmsoft.LinkFailed
	_, err := st.UpdateLink(ctx, l)
	mustOK(t, "UpdateLink", err)
	count(map[mlmsoft.LinkState]int{mlmsoft.LinkPending: 2, mlmsoft.LinkCreated: 1, mlmsoft.LinkLinked: 2, mlmsoft.LinkFailed: 1})
}
