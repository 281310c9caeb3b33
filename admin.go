package mlmsoft

import (
	"context"
	"fmt"
	"strings"
)

// Resolution is an operator's verdict on an uncertain change.
type Resolution string

// The resolutions of an uncertain change.
const (
	// ResolveApplied: MLM Soft did apply it (checked in its back office);
	// it counts as delivered and the queue moves on.
	ResolveApplied Resolution = "applied"
	// ResolveResend: MLM Soft did not apply it; send it again.
	ResolveResend Resolution = "resend"
)

// ListVolumes returns volume changes matching f, ordered by ID: for instance
// the parked and uncertain ones an operator must look at.
func (p *Plugin) ListVolumes(ctx context.Context, f VolumeFilter) ([]VolumeChange, error) {
	out, err := p.store.ListVolumes(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("mlmsoft: list volume changes: %w", err)
	}
	return out, nil
}

// RetryVolume sends a parked change again (at once, with its attempts
// kept). by and note are stored as the audit of the action; by is required.
// Errors wrap ErrInvalidInput, ErrNotFound, ErrConflict (the change is not
// parked any more) or ErrLeaseLost (a worker holds the user's queue; try
// again).
func (p *Plugin) RetryVolume(ctx context.Context, id int64, by, note string) (VolumeChange, error) {
	return p.operate(ctx, "retry", id, by, note, []VolumeState{VolumeParked}, VolumePending)
}

// ResolveVolume settles an uncertain change: ResolveApplied marks it
// delivered, ResolveResend sends it again. Look in MLM Soft's back office
// only once the lost request has surely finished (well after SentAt plus
// Config.RequestTimeout): a request whose answer timed out may still be
// being applied, and resending it then would apply it twice. by and note are stored as the
// audit; by is required. Errors wrap ErrInvalidInput, ErrNotFound,
// ErrConflict (the change is not uncertain any more) or ErrLeaseLost (a
// worker holds the user's queue; try again).
func (p *Plugin) ResolveVolume(ctx context.Context, id int64, r Resolution, by, note string) (VolumeChange, error) {
	switch r {
	case ResolveApplied:
		return p.operate(ctx, "resolve applied", id, by, note, []VolumeState{VolumeUncertain}, VolumeDelivered)
	case ResolveResend:
		return p.operate(ctx, "resolve resend", id, by, note, []VolumeState{VolumeUncertain}, VolumePending)
	}
	return VolumeChange{}, fmt.Errorf("%w: resolution %q is not %q or %q", ErrInvalidInput, r, ResolveApplied, ResolveResend)
}

// SkipVolume gives up on a parked or uncertain change: it will never be
// sent, and the user's queue moves on. by and note are stored as the audit;
// by is required. Errors wrap ErrInvalidInput, ErrNotFound, ErrConflict or
// ErrLeaseLost.
func (p *Plugin) SkipVolume(ctx context.Context, id int64, by, note string) (VolumeChange, error) {
	return p.operate(ctx, "skip", id, by, note, []VolumeState{VolumeParked, VolumeUncertain}, VolumeSkipped)
}

func (p *Plugin) operate(ctx context.Context, action string, id int64, by, note string, from []VolumeState, to VolumeState) (VolumeChange, error) {
	if strings.TrimSpace(by) == "" {
		return VolumeChange{}, fmt.Errorf("%w: %s: who acts (by) is required for the audit", ErrInvalidInput, action)
	}
	cs, err := p.store.GetVolumes(ctx, []int64{id})
	if err != nil {
		return VolumeChange{}, fmt.Errorf("mlmsoft: %s change %d: %w", action, id, err)
	}
	c := cs[0]
	now := p.clock.Now()
	u := p.update(c)
	u.Owner, u.Release, u.From = "", false, from
	u.State, u.ResolvedBy, u.ResolvedNote, u.ResolvedAt = to, by, note, now
	switch to {
	case VolumePending:
		// Sent afresh: a document of an earlier send (which failed, or
		// whose outcome is unknown) is not polled again.
		u.NextAttemptAt, u.DocumentID = now, 0
	case VolumeDelivered:
		u.DeliveredAt = now
	}
	out, err := p.storeVolume(ctx, u)
	if err != nil {
		return VolumeChange{}, fmt.Errorf("mlmsoft: %s change %d: %w", action, id, err)
	}
	p.log.Info("operator action on volume change", "action", action, "change", id, "user", c.UserID, "by", by)
	return out, nil
}
