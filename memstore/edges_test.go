package memstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
)

func TestCanceledContext(t *testing.T) {
	t.Parallel()
	st := memstore.New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	calls := map[string]error{}
	_, calls["CreateLink"] = st.CreateLink(ctx, mlmsoft.Link{UserID: "u"})
	_, calls["GetLink"] = st.GetLink(ctx, "u")
	_, calls["GetLinkByEmail"] = st.GetLinkByEmail(ctx, "u@example.com")
	_, calls["UpdateLink"] = st.UpdateLink(ctx, mlmsoft.Link{UserID: "u"})
	_, calls["ClaimLinks"] = st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w", Now: now, Limit: 1})
	_, calls["ListLinks"] = st.ListLinks(ctx, mlmsoft.LinkFilter{})
	_, calls["CountLinks"] = st.CountLinks(ctx)
	_, calls["EnqueueVolumes"] = st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{UserID: "u", IdempotencyKey: "k"}})
	_, calls["GetVolumes"] = st.GetVolumes(ctx, []int64{1})
	_, calls["ClaimVolumes"] = st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: now, Limit: 1})
	_, calls["UpdateVolume"] = st.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: 1})
	calls["ReleaseVolumeUser"] = st.ReleaseVolumeUser(ctx, "w", "u")
	calls["WakeVolumes"] = st.WakeVolumes(ctx, "u", now)
	_, calls["ListVolumes"] = st.ListVolumes(ctx, mlmsoft.VolumeFilter{})
	_, calls["CountVolumes"] = st.CountVolumes(ctx)
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
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, err := st.CreateLink(ctx, mlmsoft.Link{UserID: "u", State: mlmsoft.LinkPending}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{UserID: "u", IdempotencyKey: "k", State: mlmsoft.VolumePending}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Now: now, Lease: time.Minute, Limit: 1}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
		t.Errorf("ClaimLinks without Owner: %v, want ErrInvalidInput", err)
	}
	if _, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Now: now, Lease: time.Minute, Limit: 1}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
		t.Errorf("ClaimVolumes without Owner: %v, want ErrInvalidInput", err)
	}
	for _, limit := range []int{0, -1} {
		ls, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w", Now: now, Lease: time.Minute, Limit: limit})
		if err != nil || len(ls) != 0 {
			t.Errorf("ClaimLinks with Limit %d: %d links, %v; want none", limit, len(ls), err)
		}
		vs, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: now, Lease: time.Minute, Limit: limit})
		if err != nil || len(vs) != 0 {
			t.Errorf("ClaimVolumes with Limit %d: %d changes, %v; want none", limit, len(vs), err)
		}
	}
	// Nothing was leased by the refused or empty claims.
	ls, err := st.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "w", Now: now, Lease: time.Minute, Limit: 1})
	if err != nil || len(ls) != 1 {
		t.Errorf("ClaimLinks: %d links, %v; want 1", len(ls), err)
	}
	vs, err := st.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w", Now: now, Lease: time.Minute, Limit: 1})
	if err != nil || len(vs) != 1 {
		t.Errorf("ClaimVolumes: %d changes, %v; want 1", len(vs), err)
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
