package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
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
		CreatedAt: t0.Add(-time.Hour), UpdatedAt: t0, LinkedAt: t0.Add(time.Hour),
		Version: 17,                                                     // CreateLink stores 1
		Lease:   mlmsoft.Lease{Owner: "w1", Until: t0.Add(time.Minute)}, // ignored
	}
}

// wantLink is l as stored with version and lease.
func wantLink(l mlmsoft.Link, version int64, lease mlmsoft.Lease) mlmsoft.Link {
	for _, p := range []*time.Time{&l.CreateSentAt, &l.AcceptedAt, &l.NextAttemptAt, &l.CreatedAt, &l.UpdatedAt, &l.LinkedAt} {
		*p = stored(*p)
	}
	lease.Until = stored(lease.Until)
	l.Version, l.Lease = version, lease
	return l
}

func checkLink(t *testing.T, what string, got, want mlmsoft.Link) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func mustCreate(t *testing.T, s *Store, l mlmsoft.Link, events ...mlmsoft.Event) mlmsoft.Link {
	t.Helper()
	got, err := s.CreateLink(testCtx(t), l, events...)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestLinkRoundTrip(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		in := fullLink("u1")
		got := mustCreate(t, s, in)
		checkLink(t, "CreateLink", got, wantLink(in, 1, mlmsoft.Lease{}))
		got, err := s.GetLink(ctx, "u1")
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "GetLink", got, wantLink(in, 1, mlmsoft.Lease{}))
		got, err = s.GetLinkByEmail(ctx, "u1@example.com")
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "GetLinkByEmail", got, wantLink(in, 1, mlmsoft.Lease{}))

		// Zero values stay zero: nil password, zero times, empty email; an
		// empty password is not nil.
		bare := mlmsoft.Link{UserID: "u2", State: mlmsoft.LinkPending, SealedPassword: []byte{}}
		got = mustCreate(t, s, bare)
		checkLink(t, "bare CreateLink", got, wantLink(bare, 1, mlmsoft.Lease{}))
		if got, _ = s.GetLink(ctx, "u2"); got.SealedPassword == nil {
			t.Fatal("empty password came back nil")
		}

		// UpdateLink writes every field but the key, version and lease.
		up := fullLink("u2")
		up.Email, up.SealedPassword, up.Version = "other@example.com", nil, 1
		got, err = s.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: up})
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "UpdateLink", got, wantLink(up, 2, mlmsoft.Lease{}))
		if back, _ := s.GetLink(ctx, "u2"); !reflect.DeepEqual(back, got) {
			t.Fatalf("GetLink after UpdateLink:\n got %+v\nwant %+v", back, got)
		}
		back := mlmsoft.Link{UserID: "u2", Version: 2, State: mlmsoft.LinkFailed}
		got, err = s.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: back})
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "UpdateLink to zeros", got, wantLink(back, 3, mlmsoft.Lease{}))
		if stored, _ := s.GetLink(ctx, "u2"); !reflect.DeepEqual(stored, got) {
			t.Fatalf("GetLink after UpdateLink to zeros:\n got %+v\nwant %+v", stored, got)
		}
	})
}

func TestLinkErrors(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		a := mustCreate(t, s, mlmsoft.Link{UserID: "a", Email: "a@x", State: mlmsoft.LinkPending, NextAttemptAt: t0})
		mustCreate(t, s, mlmsoft.Link{UserID: "b", Email: "b@x", State: mlmsoft.LinkPending})
		// Any number of links without an email.
		mustCreate(t, s, mlmsoft.Link{UserID: "c", State: mlmsoft.LinkPending})
		mustCreate(t, s, mlmsoft.Link{UserID: "d", State: mlmsoft.LinkPending})

		ev := mlmsoft.Event{ID: "dup-event", Kind: mlmsoft.EventLinked}
		for _, l := range []mlmsoft.Link{
			{UserID: "a", Email: "new@x"}, // same user
			{UserID: "e", Email: "a@x"},   // same email
			{UserID: "c"},                 // same user, no email
		} {
			if _, err := s.CreateLink(ctx, l, ev); !errors.Is(err, mlmsoft.ErrDuplicate) {
				t.Errorf("CreateLink(%s, %s) = %v, want ErrDuplicate", l.UserID, l.Email, err)
			}
		}
		if evs := claimAllEvents(t, s); len(evs) != 0 {
			t.Fatalf("a refused CreateLink stored events %v", evs)
		}
		// Emails compare exactly (the plugin lower-cases them).
		mustCreate(t, s, mlmsoft.Link{UserID: "A", Email: "A@x", State: mlmsoft.LinkPending})
		if _, err := s.CreateLink(ctx, mlmsoft.Link{}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Errorf("CreateLink without UserID = %v, want ErrInvalidInput", err)
		}

		if _, err := s.GetLink(ctx, "zz"); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Errorf("GetLink(missing) = %v, want ErrNotFound", err)
		}
		if _, err := s.GetLinkByEmail(ctx, "zz@x"); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Errorf("GetLinkByEmail(missing) = %v, want ErrNotFound", err)
		}
		if _, err := s.GetLinkByEmail(ctx, ""); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Errorf("GetLinkByEmail(\"\") = %v, want ErrNotFound", err)
		}

		// UpdateLink: not found, lease lost, conflict, duplicate, in that
		// order; nothing written on error.
		claimed, err := s.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w1", Now: t0, Lease: time.Minute, Limit: 5})
		if err != nil || len(claimed) != 1 || claimed[0].UserID != "a" {
			t.Fatalf("claim = %v, %v", claimed, err)
		}
		stale := a
		stale.Version = 7
		stale.Email = "b@x"
		for _, tt := range []struct {
			name string
			u    mlmsoft.LinkUpdate
			want error
		}{
			{"missing", mlmsoft.LinkUpdate{Link: mlmsoft.Link{UserID: "zz", Version: 1}, Owner: "w2"}, mlmsoft.ErrNotFound},
			{"other owner", mlmsoft.LinkUpdate{Link: stale, Owner: "w2"}, mlmsoft.ErrLeaseLost},
			{"stale version", mlmsoft.LinkUpdate{Link: stale, Owner: "w1"}, mlmsoft.ErrConflict},
			{"stale version, no owner", mlmsoft.LinkUpdate{Link: stale}, mlmsoft.ErrConflict},
			{"email taken", mlmsoft.LinkUpdate{Link: func() mlmsoft.Link { l := stale; l.Version = 1; return l }(), Owner: "w1",
				Events: []mlmsoft.Event{ev}}, mlmsoft.ErrDuplicate},
		} {
			if _, err := s.UpdateLink(ctx, tt.u); !errors.Is(err, tt.want) {
				t.Errorf("UpdateLink %s = %v, want %v", tt.name, err, tt.want)
			}
		}
		got, err := s.GetLink(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "after refused updates", got, wantLink(a, 1, mlmsoft.Lease{Owner: "w1", Until: t0.Add(time.Minute)}))
		if evs := claimAllEvents(t, s); len(evs) != 0 {
			t.Fatalf("a refused UpdateLink stored events %v", evs)
		}
	})
}

func TestListLinks(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		for _, l := range []mlmsoft.Link{
			{UserID: "u3", Email: "ab%x@y", State: mlmsoft.LinkLinked},
			{UserID: "u1", Email: "ab_c@y", State: mlmsoft.LinkPending},
			{UserID: "u2", Email: "abc@y", State: mlmsoft.LinkPending},
			{UserID: "u4", State: mlmsoft.LinkFailed},
			{UserID: "u5", Email: "é@y", State: mlmsoft.LinkCreated},
			{UserID: "u6", Email: "ab", State: mlmsoft.LinkCreated},
		} {
			mustCreate(t, s, l)
		}
		ids := func(f mlmsoft.LinkFilter) []string {
			t.Helper()
			got, err := s.ListLinks(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, l := range got {
				out = append(out, l.UserID)
			}
			return out
		}
		for _, tt := range []struct {
			f    mlmsoft.LinkFilter
			want []string
		}{
			{mlmsoft.LinkFilter{}, []string{"u1", "u2", "u3", "u4", "u5", "u6"}},
			{mlmsoft.LinkFilter{States: []mlmsoft.LinkState{mlmsoft.LinkPending, mlmsoft.LinkFailed}}, []string{"u1", "u2", "u4"}},
			{mlmsoft.LinkFilter{AfterID: "u2", Limit: 2}, []string{"u3", "u4"}},
			{mlmsoft.LinkFilter{EmailPrefix: "ab"}, []string{"u1", "u2", "u3", "u6"}},
			{mlmsoft.LinkFilter{EmailPrefix: "ab_"}, []string{"u1"}}, // no LIKE wildcards
			{mlmsoft.LinkFilter{EmailPrefix: "ab%"}, []string{"u3"}},
			{mlmsoft.LinkFilter{EmailPrefix: "ab "}, nil}, // no padding
			{mlmsoft.LinkFilter{EmailPrefix: "AB"}, nil},  // byte-wise
			{mlmsoft.LinkFilter{EmailPrefix: "é"}, []string{"u5"}},
			{mlmsoft.LinkFilter{EmailPrefix: "\xc3"}, []string{"u5"}}, // half a character
			{mlmsoft.LinkFilter{EmailPrefix: "ab", States: []mlmsoft.LinkState{mlmsoft.LinkPending}, AfterID: "u1"}, []string{"u2"}},
			{mlmsoft.LinkFilter{EmailPrefix: "ab", Limit: 1}, []string{"u1"}},
		} {
			if got := ids(tt.f); !slices.Equal(got, tt.want) {
				t.Errorf("ListLinks(%+v) = %v, want %v", tt.f, got, tt.want)
			}
		}
	})
}

func TestClaimLinks(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		at := func(id string, d time.Duration, state mlmsoft.LinkState) mlmsoft.Link {
			l := mlmsoft.Link{UserID: id, State: state, NextAttemptAt: t0.Add(d)}
			if d == 0 {
				l.NextAttemptAt = time.Time{}
			}
			return l
		}
		for _, l := range []mlmsoft.Link{
			at("late", time.Second, mlmsoft.LinkPending),     // not due yet
			at("never", 0, mlmsoft.LinkPending),              // zero: never due
			at("b", -time.Minute, mlmsoft.LinkCreated),       // due
			at("a", -time.Minute, mlmsoft.LinkPending),       // due, same time: by id
			at("first", -time.Hour, mlmsoft.LinkLinked),      // due, whatever its state
			at("now", -time.Nanosecond, mlmsoft.LinkPending), // due at t0 (stored to the µs)
		} {
			mustCreate(t, s, l)
		}
		claim := func(owner string, now time.Time, limit int) []string {
			t.Helper()
			got, err := s.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: owner, Now: now, Lease: time.Minute, Limit: limit})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, l := range got {
				if l.Lease.Owner != owner || !l.Lease.Until.Equal(stored(now.Add(time.Minute))) || l.Version != 1 {
					t.Errorf("claimed %s: lease %+v, version %d", l.UserID, l.Lease, l.Version)
				}
				out = append(out, l.UserID)
			}
			return out
		}
		if got, want := claim("w1", t0, 2), []string{"first", "a"}; !slices.Equal(got, want) {
			t.Fatalf("claim 2 = %v, want %v", got, want)
		}
		if got, want := claim("w2", t0, 10), []string{"b", "now"}; !slices.Equal(got, want) {
			t.Fatalf("claim rest = %v, want %v", got, want)
		}
		if got := claim("w3", t0.Add(59*time.Second), 10); !slices.Equal(got, []string{"late"}) {
			t.Fatalf("claim during the leases = %v, want [late]", got)
		}
		// The leases lapse: claimed again, by anyone.
		if got, want := claim("w4", t0.Add(time.Minute), 10), []string{"first", "a", "b", "now"}; !slices.Equal(got, want) {
			t.Fatalf("claim after the leases = %v, want %v", got, want)
		}

		// A worker whose lease lapsed may still update while no one else
		// claimed; the update ends the lease, or keeps it.
		l, _ := s.GetLink(ctx, "late")
		l.Attempts = 1
		got, err := s.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l, Owner: "w3", KeepLease: true, LeaseUntil: t0.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if want := (mlmsoft.Lease{Owner: "w3", Until: stored(t0.Add(time.Hour))}); got.Lease != want || got.Version != 2 {
			t.Fatalf("kept lease = %+v v%d, want %+v v2", got.Lease, got.Version, want)
		}
		got, err = s.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: got, Owner: "w3"})
		if err != nil {
			t.Fatal(err)
		}
		if got.Lease != (mlmsoft.Lease{}) {
			t.Fatalf("ended lease = %+v", got.Lease)
		}
		if _, err := s.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: got, Owner: "w3"}); !errors.Is(err, mlmsoft.ErrLeaseLost) {
			t.Fatalf("update after the lease ended = %v, want ErrLeaseLost", err)
		}
		// An update without owner leaves the lease alone.
		a, _ := s.GetLink(ctx, "a")
		got, err = s.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: a})
		if err != nil || got.Lease != a.Lease || got.Lease.Owner != "w4" {
			t.Fatalf("update without owner: lease %+v (was %+v), %v", got.Lease, a.Lease, err)
		}

		if _, err := s.ClaimLinks(ctx, mlmsoft.LinkClaim{Now: t0, Limit: 1}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Errorf("claim without owner = %v, want ErrInvalidInput", err)
		}
	})
}

// TestClaimLinksConcurrent: concurrent claims from two pools never lease a
// link twice.
func TestClaimLinksConcurrent(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		stores := []*Store{db.store(), db.store()}
		ctx := testCtx(t)
		const n = 40
		for i := range n {
			mustCreate(t, stores[0], mlmsoft.Link{UserID: fmt.Sprintf("u%02d", i), State: mlmsoft.LinkPending, NextAttemptAt: t0})
		}
		var (
			mu   sync.Mutex
			seen = map[string]string{}
			wg   sync.WaitGroup
		)
		for w := range 6 {
			wg.Go(func() {
				owner := fmt.Sprint("w", w)
				for {
					got, err := stores[w%2].ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: owner, Now: t0, Lease: time.Hour, Limit: 3})
					if err != nil {
						t.Error(err)
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					for _, l := range got {
						if other, ok := seen[l.UserID]; ok {
							t.Errorf("%s claimed by %s and %s", l.UserID, other, owner)
						}
						seen[l.UserID] = owner
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(seen) != n {
			t.Fatalf("%d links claimed, want %d", len(seen), n)
		}
	})
}

// TestClaimLinksSkipLocked: a claim skips a link another transaction holds
// locked instead of waiting for it.
func TestClaimLinksSkipLocked(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		if _, ok := db.b.dialect.(SQLite); ok {
			t.Skip("SQLite has no row locks; writers take turns")
		}
		s, ctx := db.store(), testCtx(t)
		mustCreate(t, s, mlmsoft.Link{UserID: "a", NextAttemptAt: t0})
		mustCreate(t, s, mlmsoft.Link{UserID: "b", NextAttemptAt: t0})
		tx, err := db.pool().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var v int64
		if err := tx.QueryRowContext(ctx, s.sql("SELECT version FROM {p}links WHERE user_id = ? FOR UPDATE"), "a").Scan(&v); err != nil {
			t.Fatal(err)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		got, err := s.ClaimLinks(cctx, mlmsoft.LinkClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: 5})
		if err != nil || len(got) != 1 || got[0].UserID != "b" {
			t.Fatalf("claim with a locked = %v, %v; want b", got, err)
		}
	})
}

// TestUpdateLinkWakesVolumes: WakeVolumes makes the user's open changes due
// later than UpdatedAt due then, the head with them.
func TestUpdateLinkWakesVolumes(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		l := mustCreate(t, s, mlmsoft.Link{UserID: "u", State: mlmsoft.LinkCreated})
		later := func(c mlmsoft.VolumeChange, d time.Duration) mlmsoft.VolumeChange {
			c.NextAttemptAt = t0.Add(d)
			return c
		}
		vs := mustEnqueue(t, s,
			later(change("u", "1", "1"), time.Hour),
			later(change("u", "2", "1"), -time.Hour), // due already: kept
			later(change("u", "3", "1"), 2*time.Hour),
			change("u", "4", "1"), // waits for a person: kept
			later(change("v", "5", "1"), time.Hour),
		)
		if got := claimVolumes(t, s, "w", t0, 10); len(got) != 0 {
			t.Fatalf("claimed %v before the wake", heads(got))
		}
		l.State, l.UpdatedAt = mlmsoft.LinkLinked, t0
		if _, err := s.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l, WakeVolumes: true}); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetVolumes(ctx, []int64{vs[0].ID, vs[1].ID, vs[2].ID, vs[3].ID, vs[4].ID})
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []time.Time{t0, t0.Add(-time.Hour), t0, {}, t0.Add(time.Hour)} {
			if !got[i].NextAttemptAt.Equal(stored(want)) {
				t.Errorf("change %d due %v, want %v", i+1, got[i].NextAttemptAt, stored(want))
			}
		}
		checkHeads(t, s)
		if got := claimVolumes(t, s, "w", t0, 10); !slices.Equal(heads(got), []string{"u#1"}) {
			t.Fatalf("claimed %v after the wake, want u#1", heads(got))
		}
	})
}
