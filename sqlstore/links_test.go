package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// t0 is a non-UTC time with nanoseconds: stores keep it in UTC to the
// microsecond.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 891234567, time.FixedZone("UTC+3", 3*3600))

// stored is t as a Store gives it back.
func stored(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

func fullLink(id string) mlmsoft.Link {
	return mlmsoft.Link{
		UserID: id, Email: id + "@example.com",
		FirstName: "Åsa", LastName: "O'Brien; DROP TABLE x", Phone: "+1 555", CountryID: "SE",
		SponsorUserID: "sponsor", SponsorAccountID: 42,
		State: mlmsoft.LinkCreated, AccountID: 7, MLMUserID: 8, LinkedVia: mlmsoft.LinkedViaWebhook,
		DocumentID:     99,
		SealedPassword: []byte{0, 1, 2, 255},
		CreateSentAt:   t0, AcceptedAt: t0.Add(time.Millisecond),
		Attempts: 3, NextAttemptAt: t0.Add(time.Second), LastError: "boom",
		LeaseOwner: "w1", LeaseUntil: t0.Add(time.Minute),
		CreatedAt: t0.Add(-time.Hour), UpdatedAt: t0, LinkedAt: t0.Add(time.Hour),
		Version: 17, // CreateLink stores 1
	}
}

func wantLink(l mlmsoft.Link, version int64) mlmsoft.Link {
	for _, p := range []*time.Time{&l.CreateSentAt, &l.AcceptedAt, &l.NextAttemptAt, &l.LeaseUntil, &l.CreatedAt, &l.UpdatedAt, &l.LinkedAt} {
		*p = stored(*p)
	}
	l.Version = version
	return l
}

func checkLink(t *testing.T, what string, got, want mlmsoft.Link) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func TestLinkRoundTrip(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		in := fullLink("u1")
		got, err := s.CreateLink(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "CreateLink", got, wantLink(in, 1))
		got, err = s.GetLink(ctx, "u1")
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "GetLink", got, wantLink(in, 1))
		got, err = s.GetLinkByEmail(ctx, "u1@example.com")
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "GetLinkByEmail", got, wantLink(in, 1))

		// Zero values stay zero: nil password, zero times, empty email.
		bare := mlmsoft.Link{UserID: "u2", State: mlmsoft.LinkPending}
		got, err = s.CreateLink(ctx, bare)
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "bare CreateLink", got, wantLink(bare, 1))
		if got.SealedPassword != nil {
			t.Fatalf("nil password came back as %#v", got.SealedPassword)
		}

		// UpdateLink replaces every field.
		up := fullLink("u2")
		up.Email, up.SealedPassword, up.Version = "other@example.com", nil, 1
		got, err = s.UpdateLink(ctx, up)
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "UpdateLink", got, wantLink(up, 2))
		back := got
		back.Version = 2
		back.Email, back.CreateSentAt, back.LeaseOwner, back.LeaseUntil = "", time.Time{}, "", time.Time{}
		got, err = s.UpdateLink(ctx, back)
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "UpdateLink to zeros", got, wantLink(back, 3))
	})
}

func TestLinkErrors(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		mustCreate := func(l mlmsoft.Link) mlmsoft.Link {
			t.Helper()
			got, err := s.CreateLink(ctx, l)
			if err != nil {
				t.Fatal(err)
			}
			return got
		}
		a := mustCreate(mlmsoft.Link{UserID: "a", Email: "a@x", State: mlmsoft.LinkPending})
		mustCreate(mlmsoft.Link{UserID: "b", Email: "b@x", State: mlmsoft.LinkPending})
		// Any number of links without an email.
		mustCreate(mlmsoft.Link{UserID: "c", State: mlmsoft.LinkPending})
		mustCreate(mlmsoft.Link{UserID: "d", State: mlmsoft.LinkPending})

		for _, l := range []mlmsoft.Link{
			{UserID: "a", Email: "new@x"}, // same user
			{UserID: "e", Email: "a@x"},   // same email
			{UserID: "c"},                 // same user, no email
		} {
			if _, err := s.CreateLink(ctx, l); !errors.Is(err, mlmsoft.ErrDuplicate) {
				t.Errorf("CreateLink(%s, %s) = %v, want ErrDuplicate", l.UserID, l.Email, err)
			}
		}
		// Emails compare exactly (the plugin lower-cases them).
		mustCreate(mlmsoft.Link{UserID: "A", Email: "A@x", State: mlmsoft.LinkPending})

		if _, err := s.GetLink(ctx, "zz"); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Errorf("GetLink(missing) = %v, want ErrNotFound", err)
		}
		if _, err := s.GetLinkByEmail(ctx, "zz@x"); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Errorf("GetLinkByEmail(missing) = %v, want ErrNotFound", err)
		}
		if _, err := s.GetLinkByEmail(ctx, ""); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Errorf("GetLinkByEmail(\"\") = %v, want ErrNotFound", err)
		}
		if _, err := s.UpdateLink(ctx, mlmsoft.Link{UserID: "zz", Version: 1}); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Errorf("UpdateLink(missing) = %v, want ErrNotFound", err)
		}
		stale := a
		stale.Version = 5
		if _, err := s.UpdateLink(ctx, stale); !errors.Is(err, mlmsoft.ErrConflict) {
			t.Errorf("UpdateLink(stale) = %v, want ErrConflict", err)
		}
		taken := a
		taken.Email = "b@x"
		if _, err := s.UpdateLink(ctx, taken); !errors.Is(err, mlmsoft.ErrDuplicate) {
			t.Errorf("UpdateLink(email taken) = %v, want ErrDuplicate", err)
		}
		// Nothing was written by the failures.
		got, err := s.GetLink(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "after failed updates", got, a)
		if _, err := s.CreateLink(ctx, mlmsoft.Link{}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Errorf("CreateLink(no user) = %v, want ErrInvalidInput", err)
		}
	})
}

func TestListAndCountLinks(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		// Byte order: upper case before lower case, "b" before "b0".
		ids := map[string]mlmsoft.LinkState{
			"b": mlmsoft.LinkPending, "B": mlmsoft.LinkLinked, "a": mlmsoft.LinkPending,
			"b0": mlmsoft.LinkFailed, "é": mlmsoft.LinkCreated, "Z": mlmsoft.LinkPending,
		}
		for id, st := range ids {
			if _, err := s.CreateLink(ctx, mlmsoft.Link{UserID: id, State: st}); err != nil {
				t.Fatal(err)
			}
		}
		userIDs := func(ls []mlmsoft.Link) []string {
			var out []string
			for _, l := range ls {
				out = append(out, l.UserID)
			}
			return out
		}
		tests := []struct {
			f    mlmsoft.LinkFilter
			want []string
		}{
			{mlmsoft.LinkFilter{}, []string{"B", "Z", "a", "b", "b0", "é"}},
			{mlmsoft.LinkFilter{Limit: 2}, []string{"B", "Z"}},
			{mlmsoft.LinkFilter{AfterID: "Z", Limit: 3}, []string{"a", "b", "b0"}},
			{mlmsoft.LinkFilter{States: []mlmsoft.LinkState{mlmsoft.LinkPending}}, []string{"Z", "a", "b"}},
			{mlmsoft.LinkFilter{States: []mlmsoft.LinkState{mlmsoft.LinkFailed, mlmsoft.LinkCreated}, AfterID: "b"}, []string{"b0", "é"}},
		}
		for _, tt := range tests {
			got, err := s.ListLinks(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if g := userIDs(got); !reflect.DeepEqual(g, tt.want) {
				t.Errorf("ListLinks(%+v) = %q, want %q", tt.f, g, tt.want)
			}
		}
		counts, err := s.CountLinks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := map[mlmsoft.LinkState]int{mlmsoft.LinkPending: 3, mlmsoft.LinkLinked: 1, mlmsoft.LinkFailed: 1, mlmsoft.LinkCreated: 1}
		if !reflect.DeepEqual(counts, want) {
			t.Errorf("CountLinks = %v, want %v", counts, want)
		}
	})
}

func TestClaimLinks(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		now := t0
		for _, l := range []mlmsoft.Link{
			{UserID: "due2", State: mlmsoft.LinkPending, NextAttemptAt: now.Add(-time.Second)},
			{UserID: "due1", State: mlmsoft.LinkCreated, NextAttemptAt: now.Add(-time.Minute)},
			{UserID: "due0", State: mlmsoft.LinkPending}, // zero NextAttemptAt: due, first
			{UserID: "dueNow", State: mlmsoft.LinkPending, NextAttemptAt: now},
			{UserID: "later", State: mlmsoft.LinkPending, NextAttemptAt: now.Add(time.Millisecond)},
			{UserID: "linked", State: mlmsoft.LinkLinked},
			{UserID: "failed", State: mlmsoft.LinkFailed},
			{UserID: "leased", State: mlmsoft.LinkPending, LeaseOwner: "other", LeaseUntil: now.Add(time.Second)},
			{UserID: "expired", State: mlmsoft.LinkPending, NextAttemptAt: now.Add(-time.Hour), LeaseOwner: "other", LeaseUntil: now},
			{UserID: "released", State: mlmsoft.LinkPending, NextAttemptAt: now.Add(-time.Millisecond), LeaseUntil: now.Add(time.Hour)},
		} {
			if _, err := s.CreateLink(ctx, l); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w1", Now: now, Lease: time.Minute, Limit: 4})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, l := range got {
			ids = append(ids, l.UserID)
			if l.LeaseOwner != "w1" || !l.LeaseUntil.Equal(stored(now.Add(time.Minute))) || l.Version != 2 {
				t.Errorf("claimed %s: owner %q until %v version %d", l.UserID, l.LeaseOwner, l.LeaseUntil, l.Version)
			}
		}
		if want := []string{"due0", "expired", "due1", "due2"}; !reflect.DeepEqual(ids, want) {
			t.Fatalf("first claim = %q, want %q", ids, want)
		}
		got, err = s.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w2", Now: now, Lease: time.Minute, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		ids = ids[:0]
		for _, l := range got {
			ids = append(ids, l.UserID)
		}
		if want := []string{"released", "dueNow"}; !reflect.DeepEqual(ids, want) {
			t.Fatalf("second claim = %q, want %q", ids, want)
		}
		// A claim bumps the version: the old copy is stale.
		if _, err := s.UpdateLink(ctx, mlmsoft.Link{UserID: "due0", State: mlmsoft.LinkPending, Version: 1}); !errors.Is(err, mlmsoft.ErrConflict) {
			t.Fatalf("update with pre-claim version = %v, want ErrConflict", err)
		}
		// Once the leases expire, the links come back.
		got, err = s.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w3", Now: now.Add(time.Minute), Lease: time.Minute, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 8 {
			t.Fatalf("claim after expiry got %d links, want 8", len(got))
		}
		if _, err := s.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "", Now: now, Limit: 1}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Errorf("claim without owner = %v, want ErrInvalidInput", err)
		}
	})
}

// TestClaimLinksConcurrent claims from several pools at once: no link is
// leased twice, and every due link is leased.
func TestClaimLinksConcurrent(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		ctx := testCtx(t)
		stores := []*Store{db.store(), db.store()}
		const n = 60
		for i := range n {
			if _, err := stores[0].CreateLink(ctx, mlmsoft.Link{UserID: fmt.Sprintf("u%03d", i), State: mlmsoft.LinkPending}); err != nil {
				t.Fatal(err)
			}
		}
		var (
			mu      sync.Mutex
			claimed = map[string]string{}
			wg      sync.WaitGroup
			errs    = make(chan error, 8)
		)
		for w := range 6 {
			s := stores[w%2]
			wg.Go(func() {
				for {
					got, err := s.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: fmt.Sprint("w", w), Now: t0, Lease: time.Hour, Limit: 3})
					if err != nil {
						errs <- err
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, l := range got {
						if prev, ok := claimed[l.UserID]; ok {
							errs <- fmt.Errorf("%s claimed by %s and w%d", l.UserID, prev, w)
						}
						claimed[l.UserID] = l.LeaseOwner
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if len(claimed) != n {
			t.Errorf("%d links claimed, want %d", len(claimed), n)
		}
	})
}

// TestClaimLinksSkipLocked holds a row lock on one link in another
// transaction: a claim skips that link at once instead of waiting.
func TestClaimLinksSkipLocked(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		if _, ok := db.b.dialect.(SQLite); ok {
			t.Skip("SQLite has no row locks; writers take turns")
		}
		s, ctx := db.store(), testCtx(t)
		for _, id := range []string{"a", "b"} {
			if _, err := s.CreateLink(ctx, mlmsoft.Link{UserID: id, State: mlmsoft.LinkPending}); err != nil {
				t.Fatal(err)
			}
		}
		tx, err := db.pool().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var id string
		if err := tx.QueryRowContext(ctx, s.sql("SELECT user_id FROM {p}links WHERE user_id = ? FOR UPDATE"), "a").Scan(&id); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		start := time.Now()
		got, err := s.ClaimLinks(cctx, mlmsoft.LinkClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].UserID != "b" {
			t.Fatalf("claim with a locked = %v, want just b", got)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("claim waited %v for the lock", d)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		got, err = s.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].UserID != "a" {
			t.Fatalf("claim after unlock = %v, want just a", got)
		}
	})
}
