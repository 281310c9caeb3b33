package sqlstore

import (
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// newRand returns a random source seeded by the test's name, so a failure
// repeats.
func newRand(t *testing.T) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(t.Name()))
	return rand.New(rand.NewPCG(h.Sum64(), 1))
}

func claimEvents(t *testing.T, s *Store, owner string, now time.Time, limit int) []mlmsoft.Event {
	t.Helper()
	got, err := s.ClaimEvents(testCtx(t), mlmsoft.EventClaim{Owner: owner, Now: now, Lease: time.Minute, Limit: limit})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// claimAllEvents claims every event due by a far future, under a unique
// owner, and returns their IDs' events.
func claimAllEvents(t *testing.T, s *Store) []mlmsoft.Event {
	t.Helper()
	return claimEvents(t, s, "all-"+t.Name(), t0.Add(1000*time.Hour), 1000)
}

func ids(evs []mlmsoft.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID)
	}
	return out
}

func TestEvents(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		ev := func(id string, next, created time.Duration) mlmsoft.Event {
			return mlmsoft.Event{ID: id, Kind: mlmsoft.EventLinked, UserID: "u", Payload: []byte(`{"x":1}`),
				NextAttemptAt: t0.Add(next), CreatedAt: t0.Add(created), LastError: "", Attempts: 0,
				Lease: mlmsoft.Lease{Owner: "ignored", Until: t0}}
		}
		full := ev("full", -time.Hour, -2*time.Hour)
		full.Payload, full.Attempts, full.LastError, full.Kind = []byte{0, 255}, 2, "boom", mlmsoft.EventVolume
		nilPayload := ev("nil", -time.Hour, -time.Hour)
		nilPayload.Payload = nil
		empty := ev("empty", -time.Hour, -time.Hour)
		empty.Payload = []byte{}
		zero := ev("zero", 0, 0)
		zero.NextAttemptAt, zero.CreatedAt = time.Time{}, time.Time{}
		mustCreate(t, s, mlmsoft.Link{UserID: "u"}, full, nilPayload, empty, ev("later", time.Hour, 0), zero)
		// An event written again by a retried write is the same event.
		mustCreate(t, s, mlmsoft.Link{UserID: "v"}, ev("full", 0, 0))

		got := claimEvents(t, s, "h1", t0, 3)
		// Zero NextAttemptAt first (due at once), then by NextAttemptAt,
		// CreatedAt, ID.
		if want := []string{"zero", "full", "empty"}; !slices.Equal(ids(got), want) {
			t.Fatalf("claim 3 = %v, want %v", ids(got), want)
		}
		want := full
		want.NextAttemptAt, want.CreatedAt = stored(full.NextAttemptAt), stored(full.CreatedAt)
		want.Lease = mlmsoft.Lease{Owner: "h1", Until: stored(t0.Add(time.Minute))}
		if !reflect.DeepEqual(got[1], want) {
			t.Fatalf("claimed event:\n got %+v\nwant %+v", got[1], want)
		}
		if got[2].Payload == nil || len(got[2].Payload) != 0 {
			t.Fatalf("empty payload came back as %#v", got[2].Payload)
		}
		got = claimEvents(t, s, "h2", t0, 5)
		if !slices.Equal(ids(got), []string{"nil"}) || got[0].Payload != nil {
			t.Fatalf("claim rest = %v (payload %#v), want [nil] with nil payload", ids(got), got)
		}

		// UpdateEvent: not found, lease lost, retry, done.
		for _, tt := range []struct {
			u    mlmsoft.EventUpdate
			want error
		}{
			{mlmsoft.EventUpdate{ID: "missing", Owner: "h1", Done: true}, mlmsoft.ErrNotFound},
			{mlmsoft.EventUpdate{ID: "missing", Owner: "h1"}, mlmsoft.ErrNotFound},
			{mlmsoft.EventUpdate{ID: "full", Owner: "h2", Done: true}, mlmsoft.ErrLeaseLost},
			{mlmsoft.EventUpdate{ID: "later", Owner: "", Done: true}, mlmsoft.ErrLeaseLost},
			{mlmsoft.EventUpdate{ID: "later", Owner: ""}, mlmsoft.ErrLeaseLost},
		} {
			if err := s.UpdateEvent(ctx, tt.u); !errors.Is(err, tt.want) {
				t.Errorf("UpdateEvent(%+v) = %v, want %v", tt.u, err, tt.want)
			}
		}
		if err := s.UpdateEvent(ctx, mlmsoft.EventUpdate{ID: "full", Owner: "h1", Attempts: 3, NextAttemptAt: t0.Add(time.Hour), LastError: "again"}); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateEvent(ctx, mlmsoft.EventUpdate{ID: "zero", Owner: "h1", Done: true}); err != nil {
			t.Fatal(err)
		}
		if err := s.UpdateEvent(ctx, mlmsoft.EventUpdate{ID: "zero", Owner: "h1", Done: true}); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Fatalf("second Done = %v, want ErrNotFound", err)
		}
		// The retried event's lease ended: due again at its new time; the
		// other leases lapsed.
		got = claimEvents(t, s, "h3", t0.Add(time.Hour), 5)
		if want := []string{"empty", "nil", "full", "later"}; !slices.Equal(ids(got), want) {
			t.Fatalf("claim at +1h = %v, want %v", ids(got), want)
		}
		if got[2].Attempts != 3 || got[2].LastError != "again" || got[2].Lease.Owner != "h3" {
			t.Fatalf("retried event = %+v", got[2])
		}
		if got := claimEvents(t, s, "h3b", t0.Add(time.Hour), 5); len(got) != 0 {
			t.Fatalf("claimed %v during the leases", ids(got))
		}
		// A lapsed lease is claimed again; its old owner lost it.
		got = claimEvents(t, s, "h4", t0.Add(2*time.Hour), 10)
		if want := []string{"empty", "nil", "full", "later"}; !slices.Equal(ids(got), want) {
			t.Fatalf("claim at +2h = %v, want %v", ids(got), want)
		}
		if err := s.UpdateEvent(ctx, mlmsoft.EventUpdate{ID: "full", Owner: "h3", Done: true}); !errors.Is(err, mlmsoft.ErrLeaseLost) {
			t.Fatalf("update by the lapsed owner = %v, want ErrLeaseLost", err)
		}
		checkCounts(t, s)
		if _, err := s.ClaimEvents(ctx, mlmsoft.EventClaim{Now: t0, Limit: 1}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Fatalf("claim without owner = %v", err)
		}
	})
}
