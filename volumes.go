package mlmsoft

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/google/uuid"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
)

// ParkPolicy says what a permanent refusal of a change does to the rest of
// its user's queue.
type ParkPolicy string

// The park policies.
const (
	// ParkPolicyHalt parks the change and holds the user's later changes
	// until an operator retries or skips it. The default: later changes
	// (a volume after a refused status, say) may depend on it.
	ParkPolicyHalt ParkPolicy = "halt"
	// ParkPolicyContinue marks the change rejected and goes on with the
	// next one.
	ParkPolicyContinue ParkPolicy = "continue"
)

// AmbiguousPolicy says what to do when a change was sent and no answer came
// back, so it may or may not have been applied.
type AmbiguousPolicy string

// The ambiguous-outcome policies.
const (
	// AmbiguousHold marks the change uncertain and holds the user's queue
	// until an operator resolves it as applied or resend. The default: a
	// blind resend may pay a commission twice.
	AmbiguousHold AmbiguousPolicy = "hold"
	// AmbiguousResend sends it again after the retry backoff. Only for
	// tenants known to deduplicate on orderId.
	AmbiguousResend AmbiguousPolicy = "resend"
)

// Defaults for VolumeConfig.
const (
	DocumentPollInitialDefault = time.Second
	DocumentPollMaxDefault     = time.Minute
)

// VolumeConfig tunes volume delivery. Zero fields take defaults.
type VolumeConfig struct {
	// Concurrency is how many users' queues are delivered at once per
	// process. Zero: VolumeConcurrencyDefault.
	Concurrency int
	// RetryInitial and RetryMax bound the capped exponential backoff after
	// transport failures; a longer Retry-After wins. Zero:
	// RetryInitialDefault, RetryMaxDefault.
	RetryInitial, RetryMax time.Duration
	// ParkPolicy applies to permanent refusals. Zero: ParkPolicyHalt.
	ParkPolicy ParkPolicy
	// AmbiguousPolicy applies to lost answers. Zero: AmbiguousHold.
	AmbiguousPolicy AmbiguousPolicy
	// WaitForDocuments makes a change that MLM Soft queues as a document
	// hold its user's queue until the document is processed (strictest
	// ordering). Off by default: the queued answer counts as delivered.
	WaitForDocuments bool
	// DocumentPollInitial and DocumentPollMax bound document polling under
	// WaitForDocuments. Zero: DocumentPollInitialDefault,
	// DocumentPollMaxDefault.
	DocumentPollInitial, DocumentPollMax time.Duration
	// LinkRecheck is how often the changes of a user whose link is not
	// finished look again (a link finishing in this process wakes them at
	// once). Zero: LinkRecheckDefault.
	LinkRecheck time.Duration
}

func (v *VolumeConfig) setDefaults() error {
	v.Concurrency = cmp.Or(v.Concurrency, VolumeConcurrencyDefault)
	v.RetryInitial = cmp.Or(v.RetryInitial, RetryInitialDefault)
	v.RetryMax = cmp.Or(v.RetryMax, RetryMaxDefault)
	v.ParkPolicy = cmp.Or(v.ParkPolicy, ParkPolicyHalt)
	v.AmbiguousPolicy = cmp.Or(v.AmbiguousPolicy, AmbiguousHold)
	v.DocumentPollInitial = cmp.Or(v.DocumentPollInitial, DocumentPollInitialDefault)
	v.DocumentPollMax = cmp.Or(v.DocumentPollMax, DocumentPollMaxDefault)
	v.LinkRecheck = cmp.Or(v.LinkRecheck, LinkRecheckDefault)
	switch {
	case v.Concurrency < 0:
		return fmt.Errorf("%w: Volumes.Concurrency must not be negative", ErrInvalidConfig)
	case v.RetryMax < v.RetryInitial:
		return fmt.Errorf("%w: Volumes.RetryMax must not be less than Volumes.RetryInitial", ErrInvalidConfig)
	case v.DocumentPollMax < v.DocumentPollInitial:
		return fmt.Errorf("%w: Volumes.DocumentPollMax must not be less than Volumes.DocumentPollInitial", ErrInvalidConfig)
	case v.ParkPolicy != ParkPolicyHalt && v.ParkPolicy != ParkPolicyContinue:
		return fmt.Errorf("%w: Volumes.ParkPolicy %q is not halt or continue", ErrInvalidConfig, v.ParkPolicy)
	case v.AmbiguousPolicy != AmbiguousHold && v.AmbiguousPolicy != AmbiguousResend:
		return fmt.Errorf("%w: Volumes.AmbiguousPolicy %q is not hold or resend", ErrInvalidConfig, v.AmbiguousPolicy)
	}
	return nil
}

// Change is one property change the host asks for: one request to MLM
// Soft's account/volume-change.
type Change struct {
	// Alias is the volume property, e.g. "PV" or "Status". Required.
	Alias string
	// Amount is the exact decimal sent; negative for corrections.
	Amount Amount
	// OrderID is the host's order (or event) id. Required.
	OrderID string
	// IdempotencyKey makes a repeated call add nothing: a change whose key
	// is stored already is not stored again. Zero: a new UUID.
	IdempotencyKey string
}

const maxFieldLen = 191

func checkField(name, v string, required bool) error {
	if required && strings.TrimSpace(v) == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidInput, name)
	}
	if len(v) > maxFieldLen {
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalidInput, name, maxFieldLen)
	}
	if strings.ContainsFunc(v, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) {
		return fmt.Errorf("%w: %s has control characters or invalid UTF-8", ErrInvalidInput, name)
	}
	return nil
}

// ApplyVolumes validates the changes and stores them atomically, in order, at
// the end of the user's queue, then returns; the dispatcher delivers them one
// by one, after every earlier change of the same user. Changes of a user not
// linked yet wait for the link. Errors wrap ErrInvalidInput (no changes, an
// empty alias or order id, a repeated idempotency key, an unknown user),
// ErrIdempotencyConflict, or the store's error; nothing is stored on error.
func (p *Plugin) ApplyVolumes(ctx context.Context, userID string, changes ...Change) (*Batch, error) {
	if err := checkUserID(userID); err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		return nil, fmt.Errorf("%w: no changes", ErrInvalidInput)
	}
	if _, err := p.store.GetLink(ctx, userID); errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: user %q is unknown (register or link it first)", ErrInvalidInput, userID)
	} else if err != nil {
		return nil, fmt.Errorf("mlmsoft: apply volumes for %q: %w", userID, err)
	}
	now := p.clock.Now()
	batchID := uuid.NewString()
	keys := make(map[string]bool, len(changes))
	records := make([]VolumeChange, len(changes))
	for i, c := range changes {
		field := fmt.Sprintf("changes[%d]", i)
		if err := checkField(field+".Alias", c.Alias, true); err != nil {
			return nil, err
		}
		if err := checkField(field+".OrderID", c.OrderID, true); err != nil {
			return nil, err
		}
		if err := checkField(field+".IdempotencyKey", c.IdempotencyKey, false); err != nil {
			return nil, err
		}
		key := cmp.Or(c.IdempotencyKey, uuid.NewString())
		if keys[key] {
			return nil, fmt.Errorf("%w: %s.IdempotencyKey %q repeats an earlier change of the batch", ErrInvalidInput, field, key)
		}
		keys[key] = true
		records[i] = VolumeChange{
			UserID: userID, BatchID: batchID, IdempotencyKey: key,
			Alias: strings.TrimSpace(c.Alias), Amount: c.Amount, OrderID: c.OrderID,
			State: VolumePending, NextAttemptAt: now, CreatedAt: now, UpdatedAt: now,
		}
	}
	stored, err := p.store.EnqueueVolumes(ctx, records)
	if err != nil {
		return nil, fmt.Errorf("mlmsoft: apply volumes for %q: %w", userID, err)
	}
	p.log.Info("volume changes enqueued", "user", userID, "batch", batchID, "count", len(stored))
	p.wakeVolumes()
	b := &Batch{p: p, Changes: stored}
	return b, nil
}

// ErrNotDelivered is wrapped by the *BatchError that Batch.Wait returns when
// a change of the batch ended parked, uncertain, rejected or skipped.
var ErrNotDelivered = errors.New("mlmsoft: volume change not delivered")

// Batch is the handle ApplyVolumes returns.
type Batch struct {
	p *Plugin
	// Changes are the batch's changes as stored by ApplyVolumes (for a
	// repeated idempotency key: the change stored earlier).
	Changes []VolumeChange
}

// BatchError lists the changes of a batch that did not get delivered.
type BatchError struct {
	Changes []VolumeChange // the ones not delivered, as stored
}

// Error lists each undelivered change with its state and reason.
func (e *BatchError) Error() string {
	var b strings.Builder
	b.WriteString("mlmsoft: volume changes not delivered:")
	for _, c := range e.Changes {
		fmt.Fprintf(&b, " [change %d %s %s: %s", c.ID, c.Alias, c.Amount, c.State)
		if c.LastError != "" {
			b.WriteString(": " + c.LastError)
		}
		b.WriteString("]")
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrNotDelivered) true.
func (e *BatchError) Unwrap() error { return ErrNotDelivered }

// Wait blocks until every change of the batch is delivered (nil), one of them
// ends parked, uncertain, rejected or skipped (a *BatchError wrapping
// ErrNotDelivered, with the others' states in the returned slice), ctx ends,
// or the plugin shuts down (ErrNotRunning). It returns the changes as last
// read. Changes delivered by another replica are seen within
// Config.IdleRecheck.
func (b *Batch) Wait(ctx context.Context) ([]VolumeChange, error) {
	ids := make([]int64, len(b.Changes))
	for i, c := range b.Changes {
		ids[i] = c.ID
	}
	for {
		changed := b.p.changedChan()
		cur, err := b.p.store.GetVolumes(ctx, ids)
		if err != nil {
			return nil, fmt.Errorf("mlmsoft: wait for batch: %w", err)
		}
		var bad []VolumeChange
		done := true
		for _, c := range cur {
			switch c.State {
			case VolumeDelivered:
			case VolumePending, VolumeSending:
				done = false
			default:
				bad = append(bad, c)
			}
		}
		if len(bad) > 0 {
			return cur, &BatchError{Changes: bad}
		}
		if done {
			return cur, nil
		}
		select {
		case <-ctx.Done():
			return cur, ctx.Err()
		case <-b.p.stop:
			return cur, ErrNotRunning
		case <-changed:
		case <-b.p.clock.After(b.p.cfg.IdleRecheck):
		}
	}
}

// changedChan returns a channel closed at the next change of a volume state.
func (p *Plugin) changedChan() <-chan struct{} {
	p.changedMu.Lock()
	defer p.changedMu.Unlock()
	return p.changed
}

func (p *Plugin) notifyChanged() {
	p.changedMu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.changedMu.Unlock()
}

// busyUsers are the users whose heads this process is delivering.
type busyUsers struct {
	mu sync.Mutex
	m  map[string]bool
}

func (b *busyUsers) list() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, 0, len(b.m))
	for u := range b.m {
		out = append(out, u)
	}
	return out
}

func (b *busyUsers) set(u string, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]bool{}
	}
	if on {
		b.m[u] = true
	} else {
		delete(b.m, u)
	}
}

// claimVolumes leases due users and returns a job delivering each one's head.
func (p *Plugin) claimVolumes(ctx context.Context, n int) ([]func(context.Context), error) {
	heads, err := p.store.ClaimVolumes(ctx, VolumeClaim{
		Owner: p.cfg.WorkerID, Now: p.clock.Now(), Lease: p.cfg.Lease, Limit: n, Exclude: p.busy.list(),
	})
	if err != nil {
		return nil, fmt.Errorf("claim volume changes: %w", err)
	}
	jobs := make([]func(context.Context), len(heads))
	for i, c := range heads {
		p.busy.set(c.UserID, true)
		jobs[i] = func(ctx context.Context) {
			defer p.busy.set(c.UserID, false)
			if err := p.deliver(ctx, c); err != nil && !errors.Is(err, ErrLeaseLost) {
				p.log.Error("volume delivery step failed", "user", c.UserID, "change", c.ID, "err", err)
				_ = p.store.ReleaseVolumeUser(context.WithoutCancel(ctx), p.cfg.WorkerID, c.UserID)
			}
		}
	}
	return jobs, nil
}

// update returns a VolumeUpdate that rewrites c as it is, by this worker,
// releasing the user's lease; callers change what moves.
func (p *Plugin) update(c VolumeChange) VolumeUpdate {
	return VolumeUpdate{
		ID: c.ID, Owner: p.cfg.WorkerID, From: []VolumeState{c.State}, Release: true,
		State: c.State, Attempts: c.Attempts, NextAttemptAt: c.NextAttemptAt, LastError: c.LastError,
		DocumentID: c.DocumentID, AccountID: c.AccountID, SentAt: c.SentAt, DeliveredAt: c.DeliveredAt,
		ResolvedBy: c.ResolvedBy, ResolvedNote: c.ResolvedNote, ResolvedAt: c.ResolvedAt,
		UpdatedAt: p.clock.Now(),
	}
}

// store writes u, logs the move, and tells waiters and hooks.
func (p *Plugin) storeVolume(ctx context.Context, u VolumeUpdate) (VolumeChange, error) {
	c, err := p.store.UpdateVolume(ctx, u)
	if err != nil {
		return c, err
	}
	p.notifyChanged()
	switch c.State {
	case VolumePending, VolumeSending:
		p.log.Debug("volume change "+string(c.State), "user", c.UserID, "change", c.ID, "attempts", c.Attempts, "next", c.NextAttemptAt, "reason", c.LastError)
		if c.State == VolumePending && !c.NextAttemptAt.After(p.clock.Now()) {
			p.wakeVolumes() // due now (an operator's retry or resend): no waiting for IdleRecheck
		}
		return c, nil
	case VolumeDelivered:
		p.log.Info("volume change delivered", "user", c.UserID, "change", c.ID, "alias", c.Alias, "amount", c.Amount.String(), "order", c.OrderID)
		p.wakeVolumes() // the user's next change is due now
	default:
		p.log.Warn("volume change "+string(c.State), "user", c.UserID, "change", c.ID, "alias", c.Alias, "amount", c.Amount.String(), "order", c.OrderID, "reason", c.LastError)
		p.wakeVolumes()
	}
	if h := p.cfg.Hooks.OnVolume; h != nil {
		p.runHook("OnVolume", func() { h(ctx, VolumeEvent{Kind: c.State, Change: c}) })
	}
	return c, nil
}

// deliver takes a claimed head one step: send it, poll its document, or
// settle an outcome a crash left unknown.
func (p *Plugin) deliver(ctx context.Context, c VolumeChange) error {
	// Outcomes are recorded even when Shutdown cancels the request.
	rec := context.WithoutCancel(ctx)
	now := p.clock.Now()
	u := p.update(c)
	if c.State == VolumeSending {
		_, err := p.storeVolume(rec, p.ambiguous(u, c, "the worker stopped while sending it; outcome unknown"))
		return err
	}
	l, err := p.store.GetLink(ctx, c.UserID)
	switch {
	case errors.Is(err, ErrNotFound):
		u.State, u.LastError = VolumeParked, "the user has no link"
		_, err = p.storeVolume(rec, u)
		return err
	case err != nil:
		return fmt.Errorf("read link: %w", err)
	case l.State == LinkFailed:
		u.State, u.LastError = VolumeParked, "the user's link failed: "+l.LastError
		_, err = p.storeVolume(rec, u)
		return err
	case l.State != LinkLinked:
		u.NextAttemptAt, u.LastError = now.Add(p.cfg.Volumes.LinkRecheck), "waiting for the user's link"
		_, err = p.storeVolume(rec, u)
		return err
	}
	if c.DocumentID != 0 {
		return p.pollVolumeDocument(ctx, c, u)
	}

	done, err := p.brk.Allow()
	if err != nil {
		// Nothing sent; no attempt spent.
		u.NextAttemptAt, u.LastError = now.Add(p.cfg.Breaker.OpenTimeout), fmt.Sprintf("%v: %v", ErrUpstreamUnavailable, err)
		_, err = p.storeVolume(rec, u)
		return err
	}
	sending := u
	sending.State, sending.Attempts, sending.SentAt, sending.AccountID, sending.Release = VolumeSending, c.Attempts+1, now, l.AccountID, false
	if c, err = p.storeVolume(rec, sending); err != nil {
		done(context.Canceled) // nothing sent: neither a success nor a failure
		return err
	}
	var res api2.VolumeResult
	err = p.callOnce(ctx, done, func(ctx context.Context) (err error) {
		res, err = p.client.ChangeVolume(ctx, api2.VolumeChange{AccountID: l.AccountID, Amount: c.Amount.Number(), OrderID: c.OrderID, Alias: c.Alias})
		return err
	})
	u = p.update(c)
	now = p.clock.Now()
	switch kind := api2.KindOf(err); {
	case err == nil && res.Queued && p.cfg.Volumes.WaitForDocuments:
		u.State, u.DocumentID, u.LastError = VolumePending, res.DocumentID, ""
		u.NextAttemptAt = now.Add(p.cfg.Volumes.DocumentPollInitial)
	case err == nil:
		u.State, u.DocumentID, u.DeliveredAt, u.LastError = VolumeDelivered, res.DocumentID, now, ""
	case kind == api2.Business:
		u.State, u.LastError = p.refusedState(), err.Error()
	case kind == api2.Ambiguous:
		u = p.ambiguous(u, c, err.Error())
	default:
		u.State, u.LastError = VolumePending, err.Error()
		u.NextAttemptAt = now.Add(p.retryDelay(c.Attempts, err))
	}
	_, err = p.storeVolume(rec, u)
	return err
}

// callOnce runs fn with an already granted breaker permission.
func (p *Plugin) callOnce(ctx context.Context, done func(error), fn func(context.Context) error) error {
	err := fn(ctx)
	if ctx.Err() != nil && err != nil && api2.KindOf(err) != api2.Business {
		done(errors.Join(err, context.Canceled)) // ours, not MLM Soft's
	} else {
		done(err)
	}
	return err
}

func (p *Plugin) refusedState() VolumeState {
	if p.cfg.Volumes.ParkPolicy == ParkPolicyContinue {
		return VolumeRejected
	}
	return VolumeParked
}

func (p *Plugin) retryDelay(attempts int, err error) time.Duration {
	d := p.volRetry.Delay(attempts)
	var ae *api2.Error
	if errors.As(err, &ae) && ae.RetryAfter > d {
		d = ae.RetryAfter
	}
	return d
}

// ambiguous applies the AmbiguousPolicy to u.
func (p *Plugin) ambiguous(u VolumeUpdate, c VolumeChange, why string) VolumeUpdate {
	if p.cfg.Volumes.AmbiguousPolicy == AmbiguousResend {
		u.State, u.LastError = VolumePending, "resending after an unknown outcome: "+why
		u.NextAttemptAt = p.clock.Now().Add(p.volRetry.Delay(c.Attempts))
		return u
	}
	u.State, u.LastError = VolumeUncertain, why
	return u
}

// pollVolumeDocument checks the document MLM Soft queued for a change.
func (p *Plugin) pollVolumeDocument(ctx context.Context, c VolumeChange, u VolumeUpdate) error {
	rec := context.WithoutCancel(ctx)
	doc, err := p.getDocument(ctx, c.DocumentID)
	now := p.clock.Now()
	switch {
	case errors.Is(err, ErrUpstreamUnavailable):
		u.NextAttemptAt, u.LastError = now.Add(p.cfg.Breaker.OpenTimeout), err.Error()
	case api2.KindOf(err) == api2.Business:
		// MLM Soft will not tell (an unknown document, say): a person must
		// check whether the change was applied.
		u.State, u.LastError = VolumeParked, "cannot read the volume-change document: "+err.Error()
	case err != nil:
		u.NextAttemptAt, u.LastError = now.Add(p.retryDelay(c.Attempts, err)), "document/get: "+err.Error()
	case !doc.Processed:
		u.Attempts = c.Attempts + 1
		u.NextAttemptAt, u.LastError = now.Add(p.volPoll.Delay(u.Attempts)), "waiting for MLM Soft to process the document"
	case doc.Success:
		u.State, u.DeliveredAt, u.LastError = VolumeDelivered, now, ""
	default:
		u.State, u.LastError = p.refusedState(), "the volume-change document failed: "+doc.Message
	}
	_, err = p.storeVolume(rec, u)
	return err
}
