package mlmsoft

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Defaults applied to zero Hooks fields.
const (
	HookTimeoutDefault = time.Minute
)

// Hooks are the host's callbacks, all optional.
//
// They run on the plugin's own goroutines (Hooks.Concurrency at a time),
// never on a host request, with a context of the plugin's that ends at
// Hooks.Timeout or when Shutdown gives up waiting. They are delivered at
// least once, also across crashes: an owed hook is stored with the state
// change it reports, in the same atomic write, and deleted only after the
// hook returned nil. A hook that returns an error or panics is called again
// with capped exponential backoff (Stats.Hooks counts those). So a hook may
// see an event twice (after a crash, or when it failed): each event has an
// ID, stable across calls, to deduplicate on. Events of one user may arrive
// out of order when one is retried: each carries the state at its time; read
// Plugin.Link for the current one.
//
// Events are recorded only for hooks that are set: a host that sets OnVolume
// pays one event row per change reaching a reportable state.
type Hooks struct {
	// OnLinked is called once a user's link completes (AccountID set),
	// including a relink through check-auth. Hosts typically copy the
	// account id into their own user record.
	OnLinked func(ctx context.Context, e LinkEvent) error
	// OnLinkFailed is called when the flow gives up on a link;
	// e.Link.LastError says why.
	OnLinkFailed func(ctx context.Context, e LinkEvent) error
	// OnVolume is called when a volume change reaches a state a person may
	// care about: delivered, parked, uncertain, rejected or skipped.
	OnVolume func(ctx context.Context, e VolumeEvent) error

	// Concurrency is how many hook calls run at once per process. Zero:
	// HookConcurrencyDefault.
	Concurrency int
	// Timeout bounds one hook call (its ctx ends then); it must be shorter
	// than Config.Lease. Zero: HookTimeoutDefault, or half the Lease when
	// that is shorter.
	Timeout time.Duration
	// RetryInitial and RetryMax bound the backoff between calls of a hook
	// that failed. Zero: RetryInitialDefault, RetryMaxDefault.
	RetryInitial, RetryMax time.Duration
}

func (h *Hooks) setDefaults() error {
	if h.Concurrency < 0 || h.Timeout < 0 || h.RetryInitial < 0 || h.RetryMax < 0 {
		return fmt.Errorf("%w: Hooks: Concurrency and durations must not be negative", ErrInvalidConfig)
	}
	h.Concurrency = cmp.Or(h.Concurrency, HookConcurrencyDefault)
	h.Timeout = cmp.Or(h.Timeout, HookTimeoutDefault)
	h.RetryInitial = cmp.Or(h.RetryInitial, RetryInitialDefault)
	h.RetryMax = cmp.Or(h.RetryMax, RetryMaxDefault)
	if h.RetryMax < h.RetryInitial {
		return fmt.Errorf("%w: Hooks.RetryMax must not be less than Hooks.RetryInitial", ErrInvalidConfig)
	}
	return nil
}

// LinkEvent is what OnLinked and OnLinkFailed receive.
type LinkEvent struct {
	// ID identifies the event, the same on every call: deduplicate on it.
	// IDs are UUIDv7: they sort in the order the events were made.
	ID string
	// At is when the link reached this state.
	At time.Time
	// Link is the link as it was then.
	Link LinkInfo
}

// VolumeEvent is what OnVolume receives.
type VolumeEvent struct {
	// ID identifies the event, the same on every call: deduplicate on it.
	// IDs are UUIDv7: they sort in the order the events were made.
	ID string
	// At is when the change reached this state.
	At time.Time
	// Kind is the state reached (Change.State).
	Kind VolumeState
	// Change is the change as it was then.
	Change VolumeChange
}

// linkEvents returns the event OnLinked or OnLinkFailed is owed for l, or
// nil when that hook is not set.
func (p *Plugin) linkEvents(kind EventKind, l Link, now time.Time) []Event {
	h := p.cfg.Hooks
	if (kind == EventLinked && h.OnLinked == nil) || (kind == EventLinkFailed && h.OnLinkFailed == nil) {
		return nil
	}
	return p.event(kind, l.UserID, l.Info(), now)
}

// volumeEvents returns the event OnVolume is owed for c, or nil when the
// hook is not set or c's state is not reported.
func (p *Plugin) volumeEvents(c VolumeChange, now time.Time) []Event {
	if p.cfg.Hooks.OnVolume == nil || c.State == VolumePending || c.State == VolumeSending {
		return nil
	}
	return p.event(EventVolume, c.UserID, c, now)
}

func (p *Plugin) event(kind EventKind, userID string, v any, now time.Time) []Event {
	payload, err := json.Marshal(v)
	if err != nil { // our own types: a bug
		panic(fmt.Sprintf("mlmsoft: encode %s event: %v", kind, err))
	}
	// Version 7 ids sort in the order they were made (within a process),
	// so owed events made at one instant are claimed in that order.
	id, err := uuid.NewV7()
	if err != nil {
		id = uuid.New()
	}
	return []Event{{ID: id.String(), Kind: kind, UserID: userID, Payload: payload, NextAttemptAt: now, CreatedAt: now}}
}

// claimEvents leases due hook events and returns a job per event.
func (p *Plugin) claimEvents(ctx context.Context, n int) ([]func(context.Context), error) {
	owner := p.owner()
	evs, err := p.store.ClaimEvents(ctx, EventClaim{Owner: owner, Now: p.clock.Now(), Lease: p.cfg.Lease, Limit: n})
	if err != nil {
		return nil, fmt.Errorf("claim hook events: %w", err)
	}
	jobs := make([]func(context.Context), len(evs))
	for i, ev := range evs {
		jobs[i] = func(ctx context.Context) { p.runEvent(ctx, owner, ev) }
	}
	return jobs, nil
}

// errNoHook says an owed event's hook is no longer set.
var errNoHook = errors.New("no hook is set for this event")

// runEvent calls the hook an event is owed, then deletes the event, or
// schedules it again when the hook failed.
func (p *Plugin) runEvent(ctx context.Context, owner string, ev Event) {
	err := p.callHook(ctx, ev)
	rec := context.WithoutCancel(ctx)
	u := EventUpdate{ID: ev.ID, Owner: owner, Done: err == nil || errors.Is(err, errNoHook)}
	switch {
	case err == nil:
	case errors.Is(err, errNoHook):
		p.log.Warn("dropping an owed hook event: its hook is no longer set", "event", ev.ID, "kind", string(ev.Kind), "user", ev.UserID)
	default:
		p.totals.hookFailures.Add(1)
		u.Attempts = ev.Attempts + 1
		u.NextAttemptAt = p.clock.Now().Add(p.hookRetry.Delay(u.Attempts))
		u.LastError = err.Error()
		p.log.Warn("host hook failed; it will be called again", "kind", string(ev.Kind), "event", ev.ID,
			"user", ev.UserID, "attempts", u.Attempts, "next", u.NextAttemptAt, "err", err)
	}
	if err := p.store.UpdateEvent(rec, u); err != nil && !errors.Is(err, ErrLeaseLost) {
		p.log.Error("recording a hook call failed; it will be called again", "event", ev.ID, "err", err)
	}
}

// callHook decodes ev and calls its hook with a bounded context, turning a
// panic into an error.
func (p *Plugin) callHook(ctx context.Context, ev Event) (err error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Hooks.Timeout)
	defer cancel()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("hook panicked: %v", r)
		}
	}()
	h := p.cfg.Hooks
	switch ev.Kind {
	case EventLinked, EventLinkFailed:
		fn := h.OnLinked
		if ev.Kind == EventLinkFailed {
			fn = h.OnLinkFailed
		}
		if fn == nil {
			return errNoHook
		}
		var l LinkInfo
		if err := json.Unmarshal(ev.Payload, &l); err != nil {
			return fmt.Errorf("decode the stored event: %w", err)
		}
		return fn(ctx, LinkEvent{ID: ev.ID, At: ev.CreatedAt, Link: l})
	case EventVolume:
		if h.OnVolume == nil {
			return errNoHook
		}
		var c VolumeChange
		if err := json.Unmarshal(ev.Payload, &c); err != nil {
			return fmt.Errorf("decode the stored event: %w", err)
		}
		return h.OnVolume(ctx, VolumeEvent{ID: ev.ID, At: ev.CreatedAt, Kind: c.State, Change: c})
	}
	return errNoHook
}
