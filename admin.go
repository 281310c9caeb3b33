package mlmsoft

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
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
// the parked and uncertain ones an operator must look at, or one user's
// queue. f.Limit zero means no limit.
func (p *Plugin) ListVolumes(ctx context.Context, f VolumeFilter) ([]VolumeChange, error) {
	for _, s := range f.States {
		if !slices.Contains(VolumeStates, s) {
			return nil, fmt.Errorf("%w: VolumeFilter.States: unknown state %q", ErrInvalidInput, s)
		}
	}
	if f.Limit < 0 {
		return nil, fmt.Errorf("%w: VolumeFilter.Limit must not be negative", ErrInvalidInput)
	}
	out, err := p.store.ListVolumes(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("mlmsoft: list volume changes: %w", err)
	}
	return out, nil
}

// Volume returns the volume change with the given id, or an error wrapping
// ErrNotFound.
func (p *Plugin) Volume(ctx context.Context, id int64) (VolumeChange, error) {
	cs, err := p.store.GetVolumes(ctx, []int64{id})
	if err != nil {
		return VolumeChange{}, fmt.Errorf("mlmsoft: volume change %d: %w", id, err)
	}
	return cs[0], nil
}

// maxNoteLen bounds an operator's note.
const maxNoteLen = 1000

// RetryVolume sends a parked change again (at once, with its attempts
// kept). by and note are stored as the audit of the action; by is required.
// Errors wrap ErrInvalidInput, ErrNotFound, ErrWrongState (the change is not
// parked) or ErrConflict (it changed meanwhile; look again).
func (p *Plugin) RetryVolume(ctx context.Context, id int64, by, note string) (VolumeChange, error) {
	return p.operate(ctx, "retry", id, by, note, []VolumeState{VolumeParked}, VolumePending)
}

// ResolveVolume settles an uncertain change: ResolveApplied marks it
// delivered, ResolveResend sends it again. Look in MLM Soft's back office
// only once the lost request has surely finished (well after SentAt plus
// Config.RequestTimeout): a request whose answer timed out may still be
// being applied, and resending it then would apply it twice. by and note
// are stored as the audit; by is required. Errors wrap ErrInvalidInput,
// ErrNotFound, ErrWrongState (the change is not uncertain) or ErrConflict.
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
// by is required. Errors wrap ErrInvalidInput, ErrNotFound, ErrWrongState
// or ErrConflict.
func (p *Plugin) SkipVolume(ctx context.Context, id int64, by, note string) (VolumeChange, error) {
	return p.operate(ctx, "skip", id, by, note, []VolumeState{VolumeParked, VolumeUncertain}, VolumeSkipped)
}

func (p *Plugin) operate(ctx context.Context, action string, id int64, by, note string, from []VolumeState, to VolumeState) (VolumeChange, error) {
	fail := func(err error) (VolumeChange, error) {
		return VolumeChange{}, fmt.Errorf("mlmsoft: %s change %d: %w", action, id, err)
	}
	if strings.TrimSpace(by) == "" {
		return fail(fmt.Errorf("%w: who acts (by) is required for the audit", ErrInvalidInput))
	}
	if len(note) > maxNoteLen {
		return fail(fmt.Errorf("%w: the note is longer than %d bytes", ErrInvalidInput, maxNoteLen))
	}
	cs, err := p.store.GetVolumes(ctx, []int64{id})
	if err != nil {
		return fail(err)
	}
	c := cs[0]
	if !slices.Contains(from, c.State) {
		return fail(fmt.Errorf("%w: it is %s, not %s", ErrWrongState, c.State, joinStates(from)))
	}
	u := p.update("", c)
	now := u.UpdatedAt
	u.State, u.ResolvedBy, u.ResolvedNote, u.ResolvedAt = to, by, note, now
	switch to {
	case VolumePending:
		// Sent afresh: a document of an earlier send (which failed, or
		// whose outcome is unknown) is not polled again.
		u.NextAttemptAt, u.DocumentID, u.LastError = now, 0, ""
	case VolumeDelivered:
		u.DeliveredAt, u.NextAttemptAt = now, time.Time{}
	default:
		u.NextAttemptAt = time.Time{}
	}
	r, err := p.writeVolume(ctx, p.withEvents(c, u))
	if errors.Is(err, ErrConflict) {
		return fail(fmt.Errorf("%w: it changed while the action was taken", err))
	}
	if err != nil {
		return fail(err)
	}
	p.log.Info("operator action on volume change", "action", action, "change", id, "user", c.UserID, "by", by)
	return r.Change, nil
}

func joinStates(ss []VolumeState) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, " or ")
}
