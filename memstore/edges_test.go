package memstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	st := memstore.New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := map[string]error{}
	_, calls["CreateLink"] = st.CreateLink(ctx, mlmsoft.Link{UserID: "u"})
	_, calls["GetLink"] = st.GetLink(ctx, "u")
	_, calls["GetLinkByEmail"] = st.GetLinkByEmail(ctx, "u@example.com")
	_, calls["UpdateLink"] = st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: mlmsoft.Link{UserID: "u"}})
	_, calls["ClaimLinks"] = st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w", Now: t0, Limit: 1})
	_, calls["ListLinks"] = st.ListLinks(ctx, mlmsoft.LinkFilter{})
	_, calls["EnqueueVolumes"] = st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{UserID: "u", IdempotencyKey: "k"}})
	_, calls["GetVolumes"] = st.GetVolumes(ctx, []int64{1})
	_, calls["ClaimVolumes"] = st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: t0, Limit: 1})
	_, calls["UpdateVolume"] = st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: 1})
	_, calls["ListVolumes"] = st.ListVolumes(ctx, mlmsoft.VolumeFilter{})
	_, calls["PurgeVolumes"] = st.PurgeVolumes(ctx, t0, 1)
	_, calls["ClaimEvents"] = st.ClaimEvents(ctx, mlmsoft.EventClaim{Owner: "w", Now: t0, Limit: 1})
	calls["UpdateEvent"] = st.UpdateEvent(ctx, mlmsoft.EventUpdate{ID: "e", Owner: "w"})
	_, calls["Counts"] = st.Counts(ctx)
	for name, err := range calls {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a canceled context: %v, want context.Canceled", name, err)
		}
	}
	if _, err := st.GetLink(context.Background(), "u"); !errors.Is(err, mlmsoft.ErrNotFound) {
		t.Errorf("CreateLink with a canceled context stored the link: GetLink err %v", err)
	}
}

func TestClaimArguments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memstore.New()
	if _, err := st.CreateLink(ctx, mlmsoft.Link{UserID: "u", NextAttemptAt: t0}, mlmsoft.Event{ID: "e", NextAttemptAt: t0}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{UserID: "u", IdempotencyKey: "k", NextAttemptAt: t0}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Now: t0, Lease: time.Minute, Limit: 1}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
		t.Errorf("ClaimLinks without Owner: %v, want ErrInvalidInput", err)
	}
	if _, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Now: t0, Lease: time.Minute, Limit: 1}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
		t.Errorf("ClaimVolumes without Owner: %v, want ErrInvalidInput", err)
	}
	if _, err := st.ClaimEvents(ctx, mlmsoft.EventClaim{Now: t0, Lease: time.Minute, Limit: 1}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
		t.Errorf("ClaimEvents without Owner: %v, want ErrInvalidInput", err)
	}
	for _, limit := range []int{0, -1} {
		ls, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: limit})
		if err != nil || len(ls) != 0 {
			t.Errorf("ClaimLinks with Limit %d: %d links, %v; want none", limit, len(ls), err)
		}
		vs, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: limit})
		if err != nil || len(vs) != 0 {
			t.Errorf("ClaimVolumes with Limit %d: %d changes, %v; want none", limit, len(vs), err)
		}
		es, err := st.ClaimEvents(ctx, mlmsoft.EventClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: limit})
		if err != nil || len(es) != 0 {
			t.Errorf("ClaimEvents with Limit %d: %d events, %v; want none", limit, len(es), err)
		}
		if n, err := st.PurgeVolumes(ctx, t0.Add(time.Hour), limit); err != nil || n != 0 {
			t.Errorf("PurgeVolumes with limit %d: %d, %v; want 0", limit, n, err)
		}
	}
	// Nothing was leased by the refused or empty claims.
	if ls, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: 1}); err != nil || len(ls) != 1 {
		t.Errorf("ClaimLinks: %d links, %v; want 1", len(ls), err)
	}
	if vs, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: 1}); err != nil || len(vs) != 1 {
		t.Errorf("ClaimVolumes: %d changes, %v; want 1", len(vs), err)
	}
	if es, err := st.ClaimEvents(ctx, mlmsoft.EventClaim{Owner: "w", Now: t0, Lease: time.Minute, Limit: 1}); err != nil || len(es) != 1 {
		t.Errorf("ClaimEvents: %d events, %v; want 1", len(es), err)
	}
}

func TestEventIDTaken(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memstore.New()
	l, err := st.CreateLink(ctx, mlmsoft.Link{UserID: "u1"}, mlmsoft.Event{ID: "e1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateLink(ctx, mlmsoft.Link{UserID: "u2"}, mlmsoft.Event{ID: "e1"}); !errors.Is(err, mlmsoft.ErrDuplicate) {
		t.Errorf("CreateLink with a taken event id: %v, want ErrDuplicate", err)
	}
	if _, err := st.CreateLink(ctx, mlmsoft.Link{UserID: "u3"}, mlmsoft.Event{ID: "e3"}, mlmsoft.Event{ID: "e3"}); !errors.Is(err, mlmsoft.ErrDuplicate) {
		t.Errorf("CreateLink with an event id given twice: %v, want ErrDuplicate", err)
	}
	if _, err := st.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l, Events: []mlmsoft.Event{{ID: "e1"}}}); !errors.Is(err, mlmsoft.ErrDuplicate) {
		t.Errorf("UpdateLink with a taken event id: %v, want ErrDuplicate", err)
	}
	cs, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{UserID: "u1", IdempotencyKey: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	u := mlmsoft.VolumeUpdate{ID: cs[0].ID, From: []mlmsoft.VolumeState{""}, State: mlmsoft.VolumeDelivered, Events: []mlmsoft.Event{{ID: "e1"}}}
	if _, err := st.UpdateVolume(ctx, u); !errors.Is(err, mlmsoft.ErrDuplicate) {
		t.Errorf("UpdateVolume with a taken event id: %v, want ErrDuplicate", err)
	}
	// Nothing of the refused writes was stored.
	for _, id := range []string{"u2", "u3"} {
		if _, err := st.GetLink(ctx, id); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Errorf("GetLink(%s) after a refused create: %v, want ErrNotFound", id, err)
		}
	}
	if got, _ := st.GetLink(ctx, "u1"); got.Version != 1 {
		t.Errorf("u1 at Version %d after a refused update, want 1", got.Version)
	}
	if got, _ := st.GetVolumes(ctx, []int64{cs[0].ID}); got[0].State != "" {
		t.Errorf("change in state %q after a refused update, want the empty state", got[0].State)
	}
	if c, _ := st.Counts(ctx); c.Events != 1 {
		t.Errorf("%d events stored, want 1", c.Events)
	}
}

func TestUpdateVolumeEdges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memstore.New()
	cs, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{
		{UserID: "u", IdempotencyKey: "k1", State: mlmsoft.VolumePending, NextAttemptAt: t0},
		{UserID: "u", IdempotencyKey: "k2", State: mlmsoft.VolumePending, NextAttemptAt: t0},
	})
	if err != nil {
		t.Fatal(err)
	}
	// An empty From matches no state.
	if _, err := st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: cs[0].ID, State: mlmsoft.VolumeDelivered}); !errors.Is(err, mlmsoft.ErrConflict) {
		t.Errorf("UpdateVolume with no From: %v, want ErrConflict", err)
	}
	// Send without an owner marks nothing.
	res, err := st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: cs[0].ID, From: []mlmsoft.VolumeState{mlmsoft.VolumePending},
		State: mlmsoft.VolumeDelivered, Send: &mlmsoft.VolumeSend{At: t0}})
	if err != nil || res.Next.ID != 0 {
		t.Errorf("operator UpdateVolume with Send: Next %d, %v; want none", res.Next.ID, err)
	}
	// KeepLease with Send keeps the lease even when no change was marked.
	if _, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{UserID: "v", IdempotencyKey: "k3", State: mlmsoft.VolumePending, NextAttemptAt: t0}}); err != nil {
		t.Fatal(err)
	}
	hs, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w1", Now: t0, Lease: time.Minute, Limit: 10})
	if err != nil || len(hs) != 2 {
		t.Fatalf("claim: %d heads, %v", len(hs), err)
	}
	for _, h := range hs {
		_, err := st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: h.Change.ID, Owner: "w1", From: []mlmsoft.VolumeState{mlmsoft.VolumePending},
			State: mlmsoft.VolumeDelivered, KeepLease: true, LeaseUntil: t0.Add(time.Hour), Send: &mlmsoft.VolumeSend{At: t0}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{UserID: "v", IdempotencyKey: "k4", State: mlmsoft.VolumePending, NextAttemptAt: t0}}); err != nil {
		t.Fatal(err)
	}
	if hs, _ := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w2", Now: t0.Add(time.Hour - time.Millisecond), Lease: time.Minute, Limit: 10}); len(hs) != 0 {
		t.Errorf("claim while w1 keeps v: %d heads, want none", len(hs))
	}
}

func TestEmptyEmailNotFound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := memstore.New()
	if _, err := st.CreateLink(ctx, mlmsoft.Link{UserID: "u"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetLinkByEmail(ctx, ""); !errors.Is(err, mlmsoft.ErrNotFound) {
		t.Errorf("GetLinkByEmail(\"\"): %v, want ErrNotFound", err)
	}
}
