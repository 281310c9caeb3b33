package mlmsoft

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// AmbiguousPolicy says what to do when a change was sent and no usable
// answer came back, so it may or may not have been applied.
type AmbiguousPolicy string

// The ambiguous-outcome policies.
const (
	// AmbiguousHold marks the change uncertain and holds the user's queue
	// until an operator resolves it as applied or resend. The default: a
	// blind resend of an additive volume may pay a commission twice.
	// Changes of VolumeConfig.SetAliases are resent anyway (see there).
	AmbiguousHold AmbiguousPolicy = "hold"
	// AmbiguousResend sends every such change again after the retry
	// backoff. Only for tenants known to deduplicate on orderId.
	AmbiguousResend AmbiguousPolicy = "resend"
)

// Defaults for VolumeConfig.
const (
	DocumentPollInitialDefault = time.Second
	DocumentPollMaxDefault     = time.Minute
)

// chainMax bounds how many consecutive changes of one user a worker sends
// under one lease before it lets the user go back to the claim queue, so
// that one busy user does not keep a slot forever.
const chainMax = 64

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
	// SetAliases lists the properties whose changes set a value rather
	// than add to it (a Status, a rank): sending one twice leaves MLM Soft
	// as sending it once. After an ambiguous outcome such a change is sent
	// again automatically — once a request timeout has passed, so that the
	// lost request has finished — instead of waiting for an operator;
	// nothing later of the user was sent meanwhile, so order holds.
	// Additive properties (PV) must not be listed. Matched exactly.
	SetAliases []string
	// WaitForDocuments makes a change that MLM Soft queues as a document
	// hold its user's queue until the document is processed (strictest
	// ordering). Off by default: the queued answer counts as delivered.
	WaitForDocuments bool
	// DocumentPollInitial and DocumentPollMax bound document polling under
	// WaitForDocuments. Zero: DocumentPollInitialDefault,
	// DocumentPollMaxDefault.
	DocumentPollInitial, DocumentPollMax time.Duration
	// LinkRecheck is how often the changes of a user whose link is not
	// complete look again (a link completing in this process, or in the
	// store's notification, wakes them at once). Zero: LinkRecheckDefault.
	LinkRecheck time.Duration
}

func (v *VolumeConfig) setDefaults() error {
	if v.Concurrency < 0 {
		return fmt.Errorf("%w: Volumes.Concurrency must not be negative", ErrInvalidConfig)
	}
	if v.RetryInitial < 0 || v.RetryMax < 0 || v.DocumentPollInitial < 0 || v.DocumentPollMax < 0 || v.LinkRecheck < 0 {
		return fmt.Errorf("%w: Volumes durations must not be negative", ErrInvalidConfig)
	}
	v.Concurrency = cmp.Or(v.Concurrency, VolumeConcurrencyDefault)
	v.RetryInitial = cmp.Or(v.RetryInitial, RetryInitialDefault)
	v.RetryMax = cmp.Or(v.RetryMax, RetryMaxDefault)
	v.ParkPolicy = cmp.Or(v.ParkPolicy, ParkPolicyHalt)
	v.AmbiguousPolicy = cmp.Or(v.AmbiguousPolicy, AmbiguousHold)
	v.DocumentPollInitial = cmp.Or(v.DocumentPollInitial, DocumentPollInitialDefault)
	v.DocumentPollMax = cmp.Or(v.DocumentPollMax, DocumentPollMaxDefault)
	v.LinkRecheck = cmp.Or(v.LinkRecheck, LinkRecheckDefault)
	v.SetAliases = slices.Clone(v.SetAliases)
	for i, a := range v.SetAliases {
		if strings.TrimSpace(a) == "" || strings.TrimSpace(a) != a {
			return fmt.Errorf("%w: Volumes.SetAliases[%d] %q is empty or has surrounding spaces", ErrInvalidConfig, i, a)
		}
	}
	switch {
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
	// is stored already is not stored again (for at least
	// Config.Retention after it was delivered). Zero: a new UUID.
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
	return p.apply(ctx, userID, changes, p.knownUser, p.store.EnqueueVolumes, func([]VolumeChange) { p.wakeVolumes() })
}

// knownUsersMax bounds the set of users ApplyVolumes has seen a link of.
const knownUsersMax = 100_000

// knownUser is GetLink for ApplyVolumes's check that the user is known,
// remembering users seen: links are never removed, so a user found once
// needs no read again (a read per batch was a tenth of a delivery's CPU).
func (p *Plugin) knownUser(ctx context.Context, userID string) (Link, error) {
	if _, ok := p.known.Load(userID); ok {
		return Link{UserID: userID}, nil
	}
	l, err := p.store.GetLink(ctx, userID)
	if err == nil {
		if p.knownCount.Add(1) > knownUsersMax {
			p.known.Clear()
			p.knownCount.Store(1)
		}
		p.known.Store(userID, struct{}{})
	}
	return l, err
}

// ApplyVolumesTx is ApplyVolumes inside the host's own database transaction,
// which must be on the store's database: the changes are written in tx, so
// that they commit or roll back with the host's order. Nothing is sent
// before tx commits; after a rollback nothing is left. The dispatcher takes
// them up as soon as the commit is seen (at once with a store that
// notifies, such as sqlstore on PostgreSQL; otherwise within milliseconds
// in this process, or within Config.IdleRecheck in others). Wait on the
// returned batch only after committing. The store must implement TxStore
// (sqlstore does), else the error wraps ErrInvalidConfig. On error tx stays
// usable.
func (p *Plugin) ApplyVolumesTx(ctx context.Context, tx *sql.Tx, userID string, changes ...Change) (*Batch, error) {
	if p.txs == nil {
		return nil, fmt.Errorf("%w: the store (%T) cannot write in a host transaction (it does not implement mlmsoft.TxStore)", ErrInvalidConfig, p.store)
	}
	if tx == nil {
		return nil, fmt.Errorf("%w: tx is nil", ErrInvalidInput)
	}
	get := func(ctx context.Context, id string) (Link, error) { return p.txs.GetLinkTx(ctx, tx, id) }
	enqueue := func(ctx context.Context, cs []VolumeChange) ([]VolumeChange, error) {
		return p.txs.EnqueueVolumesTx(ctx, tx, cs)
	}
	return p.apply(ctx, userID, changes, get, enqueue, func(added []VolumeChange) {
		id := added[0].ID
		p.afterCommit(func(ctx context.Context) bool {
			_, err := p.store.GetVolumes(ctx, []int64{id})
			return err == nil
		})
	})
}

func (p *Plugin) apply(ctx context.Context, userID string, changes []Change,
	getLink func(context.Context, string) (Link, error),
	enqueue func(context.Context, []VolumeChange) ([]VolumeChange, error),
	wake func(added []VolumeChange)) (*Batch, error) {
	if err := checkUserID(userID); err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		return nil, fmt.Errorf("%w: no changes", ErrInvalidInput)
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
	if _, err := getLink(ctx, userID); errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: user %q is unknown (register or link it first)", ErrInvalidInput, userID)
	} else if err != nil {
		return nil, fmt.Errorf("mlmsoft: apply volumes for %q: %w", userID, err)
	}
	stored, err := enqueue(ctx, records)
	if err != nil {
		return nil, fmt.Errorf("mlmsoft: apply volumes for %q: %w", userID, err)
	}
	var added []VolumeChange
	for _, c := range stored {
		if c.BatchID == batchID {
			added = append(added, c)
		}
	}
	if len(added) == 0 {
		p.log.Info("volume changes enqueued before (idempotency keys seen); nothing added", "user", userID, "count", len(stored))
	} else {
		p.log.Info("volume changes enqueued", "user", userID, "batch", batchID, "count", len(added), "repeated", len(stored)-len(added))
		wake(added)
	}
	return &Batch{p: p, Changes: stored}, nil
}

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

// claimVolumes leases due users and returns a job delivering each one's
// queue.
func (p *Plugin) claimVolumes(ctx context.Context, n int) ([]func(context.Context), error) {
	owner := p.owner()
	// While MLM Soft answers, the claim is the write-ahead too: it marks
	// the heads it can send sending (the user linked, no document to
	// poll). Probing a half-open breaker, heads are marked one by one
	// after a permit.
	send := BreakerState(p.brk.State()) == BreakerClosed && !p.health.isMisconfigured()
	heads, err := p.store.ClaimVolumes(ctx, VolumeClaim{Owner: owner, Now: p.clock.Now(), Lease: p.cfg.Lease, Limit: n, Send: send})
	if err != nil {
		return nil, fmt.Errorf("claim volume changes: %w", err)
	}
	jobs := make([]func(context.Context), len(heads))
	for i, h := range heads {
		jobs[i] = func(ctx context.Context) { p.deliverRun(ctx, owner, h) }
	}
	return jobs, nil
}

// update returns a VolumeUpdate that rewrites c as it is, by owner, from
// its current state, at now; callers change what moves.
func (p *Plugin) update(owner string, c VolumeChange) VolumeUpdate {
	return VolumeUpdate{
		ID: c.ID, Owner: owner, From: []VolumeState{c.State},
		State: c.State, Attempts: c.Attempts, NextAttemptAt: c.NextAttemptAt, LastError: c.LastError,
		DocumentID: c.DocumentID, AccountID: c.AccountID, SentAt: c.SentAt, DeliveredAt: c.DeliveredAt,
		ResolvedBy: c.ResolvedBy, ResolvedNote: c.ResolvedNote, ResolvedAt: c.ResolvedAt,
		UpdatedAt: p.clock.Now(),
	}
}

// applied returns c as u makes it.
func applied(c VolumeChange, u VolumeUpdate) VolumeChange {
	c.State, c.Attempts, c.NextAttemptAt, c.LastError = u.State, u.Attempts, u.NextAttemptAt, u.LastError
	c.DocumentID, c.AccountID, c.SentAt, c.DeliveredAt = u.DocumentID, u.AccountID, u.SentAt, u.DeliveredAt
	c.ResolvedBy, c.ResolvedNote, c.ResolvedAt, c.UpdatedAt = u.ResolvedBy, u.ResolvedNote, u.ResolvedAt, u.UpdatedAt
	return c
}

// withEvents adds the OnVolume event owed for c moving by u.
func (p *Plugin) withEvents(c VolumeChange, u VolumeUpdate) VolumeUpdate {
	u.Events = p.volumeEvents(applied(c, u), u.UpdatedAt)
	return u
}

// storeRetries bounds how often a worker writes an outcome again after the
// store failed: the outcome is known only in memory until written.
var storeRetries = []time.Duration{10 * time.Millisecond, 100 * time.Millisecond, time.Second}

// writeVolume stores u (retrying a failing store a few times: a lost
// outcome write costs an operator's decision later), logs the move, and
// wakes waiters, the dispatcher and the hook runner as the new state needs.
func (p *Plugin) writeVolume(ctx context.Context, u VolumeUpdate) (VolumeUpdated, error) {
	r, err := p.store.UpdateVolume(ctx, u)
	for _, pause := range storeRetries {
		if err == nil || errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) || ctx.Err() != nil {
			break
		}
		p.log.Warn("storing a volume change failed; trying again", "change", u.ID, "err", err)
		time.Sleep(pause)
		r, err = p.store.UpdateVolume(ctx, u)
	}
	if err != nil {
		return r, err
	}
	p.notifyChanged()
	c := r.Change
	switch c.State {
	case VolumePending, VolumeSending:
		p.log.Debug("volume change "+string(c.State), "user", c.UserID, "change", c.ID, "attempts", c.Attempts, "next", c.NextAttemptAt, "reason", c.LastError)
		if c.State == VolumePending && !c.NextAttemptAt.IsZero() && !c.NextAttemptAt.After(p.clock.Now()) {
			p.wakeVolumes() // due now (an operator's retry or resend): no waiting for IdleRecheck
		}
	case VolumeDelivered:
		p.totals.delivered.Add(1)
		p.log.Info("volume change delivered", "user", c.UserID, "change", c.ID, "alias", c.Alias, "amount", c.Amount.String(), "order", c.OrderID)
		p.wakeVolumes() // the user's next change is due now
	default:
		if c.State == VolumeUncertain {
			p.totals.uncertain.Add(1)
		}
		p.log.Warn("volume change "+string(c.State), "user", c.UserID, "change", c.ID, "alias", c.Alias, "amount", c.Amount.String(), "order", c.OrderID, "reason", c.LastError)
		p.wakeVolumes()
	}
	if len(u.Events) > 0 {
		p.wakeHooks()
	}
	return r, nil
}

// deliverRun delivers a claimed user's queue from its head: it sends the
// head, records the outcome and, when that lets the queue move on, marks
// the user's next change sending in the same write and sends it, and so
// on, under one lease, until the queue is empty or blocked, or chainMax
// changes were sent. Per-user order and write-ahead hold at every step: a
// change is marked sending (by the claim, or by a write of its own) before
// its request leaves, and the next is marked only in the write that records
// the previous one's outcome.
func (p *Plugin) deliverRun(ctx context.Context, owner string, h ClaimedVolume) {
	// Outcomes are recorded even when Shutdown cancels the request.
	rec := context.WithoutCancel(ctx)
	c := h.Change
	if err := p.deliverRunErr(ctx, rec, owner, h); err != nil && !errors.Is(err, ErrLeaseLost) && rec.Err() == nil {
		p.log.Error("volume delivery step failed; the user's queue is taken up again when its lease lapses", "user", c.UserID, "change", c.ID, "err", err)
	}
}

func (p *Plugin) deliverRunErr(ctx, rec context.Context, owner string, h ClaimedVolume) error {
	c, now := h.Change, p.clock.Now()
	if h.Sending {
		permit, err := p.allow()
		if err != nil {
			// The breaker opened since the claim: give the head back
			// unsent, its attempt not spent.
			u := p.update(owner, c)
			u.State, u.Attempts, u.NextAttemptAt = VolumePending, c.Attempts-1, now.Add(p.cfg.IdleRecheck)
			if u.Attempts == 0 {
				u.SentAt, u.AccountID = time.Time{}, 0
			}
			_, err := p.writeVolume(rec, u)
			return err
		}
		return p.sendRun(ctx, rec, owner, c, permit)
	}
	if c.State == VolumeSending {
		// Claimed while sending: a worker stopped between sending it and
		// recording the outcome.
		u := p.ambiguous(p.update(owner, c), c, "the worker stopped while sending it; outcome unknown")
		_, err := p.writeVolume(rec, p.withEvents(c, u))
		return err
	}
	l, err := p.store.GetLink(ctx, c.UserID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		u := p.update(owner, c)
		u.NextAttemptAt, u.LastError = now.Add(p.cfg.IdleRecheck), "reading the user's link: "+err.Error()
		_, werr := p.writeVolume(rec, u)
		return errors.Join(fmt.Errorf("read link: %w", err), werr)
	}
	if l.State != LinkLinked {
		u := p.update(owner, c)
		u.NextAttemptAt, u.LastError = now.Add(p.cfg.Volumes.LinkRecheck), waitingForLink(l, err)
		r, err := p.writeVolume(rec, u)
		if err != nil {
			return err
		}
		return p.recheckLink(rec, r.Change)
	}
	if c.DocumentID != 0 {
		return p.pollVolumeDocument(ctx, owner, c)
	}
	if p.health.isMisconfigured() {
		_, err := p.writeVolume(rec, p.update(owner, c)) // just let go: taken up once MLM Soft accepts the configuration
		return err
	}
	permit, err := p.allow()
	if err != nil {
		// Nothing sent, no attempt spent.
		u := p.update(owner, c)
		u.NextAttemptAt = now.Add(p.cfg.IdleRecheck)
		_, err := p.writeVolume(rec, u)
		return err
	}
	sending := p.update(owner, c)
	sending.State, sending.Attempts, sending.SentAt, sending.AccountID = VolumeSending, c.Attempts+1, now, l.AccountID
	sending.KeepLease, sending.LeaseUntil = true, now.Add(p.cfg.Lease)
	r, err := p.writeVolume(rec, sending) // write-ahead
	if err != nil {
		permit(context.Canceled) // nothing sent: neither a success nor a failure
		return err
	}
	return p.sendRun(ctx, rec, owner, r.Change, permit)
}

// recheckLink looks at c's link again after c was set to wait for it: a
// link completed between the read that found it not linked and that write
// made c due (LinkUpdate.WakeVolumes), and the write pushed c back by
// LinkRecheck. If the link is linked now, c is made due again.
func (p *Plugin) recheckLink(ctx context.Context, c VolumeChange) error {
	l, err := p.store.GetLink(ctx, c.UserID)
	if err != nil || l.State != LinkLinked {
		return nil // c waits for the link, as written
	}
	u := p.update("", c) // the lease ended with the write; a CAS on the state
	u.NextAttemptAt, u.LastError = u.UpdatedAt, ""
	if _, err := p.writeVolume(ctx, u); err != nil && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("wake a change whose link completed: %w", err)
	}
	return nil // ErrConflict: a worker took it up meanwhile
}

// sendRun sends c, already marked sending under owner's lease, with the
// breaker's permit, and goes on with the user's next changes as long as
// each outcome lets the queue move on.
func (p *Plugin) sendRun(ctx, rec context.Context, owner string, c VolumeChange, permit func(error)) error {
	for sent := 1; ; sent++ {
		res, err := p.client.ChangeVolume(ctx, api2.VolumeChange{AccountID: c.AccountID, Amount: c.Amount.Number(), OrderID: c.OrderID, Alias: c.Alias})
		p.settle(ctx, permit, err)
		permit = nil
		u := p.outcome(owner, c, res, err)
		if u.State.Final() && sent < chainMax && ctx.Err() == nil && !p.stopping() && !p.health.isMisconfigured() {
			if next, err := p.allow(); err == nil {
				permit = next
				u.Send = &VolumeSend{At: u.UpdatedAt, AccountID: c.AccountID}
				u.LeaseUntil = u.UpdatedAt.Add(p.cfg.Lease)
			}
		}
		r, err := p.writeVolume(rec, u)
		if err != nil || r.Next.ID == 0 {
			if permit != nil {
				permit(context.Canceled) // not used
			}
			return err
		}
		c = r.Next
	}
}

// waitingForLink says why a change waits for its user's link.
func waitingForLink(l Link, err error) string {
	switch {
	case err != nil:
		return "waiting: the user has no link (register or link it)"
	case l.State == LinkFailed:
		return "waiting: the user's link failed (" + l.LastError + "); it goes once the link is retried or completed"
	}
	return "waiting for the user's link"
}

// outcome turns the answer to the request sending c into c's next state.
func (p *Plugin) outcome(owner string, c VolumeChange, res api2.VolumeResult, err error) VolumeUpdate {
	u := p.update(owner, c)
	now := u.UpdatedAt
	switch kind := api2.KindOf(err); {
	case err == nil && res.Queued && p.cfg.Volumes.WaitForDocuments:
		u.State, u.DocumentID, u.LastError = VolumePending, res.DocumentID, ""
		u.NextAttemptAt = now.Add(p.cfg.Volumes.DocumentPollInitial)
	case err == nil:
		u.State, u.DocumentID, u.DeliveredAt, u.LastError, u.NextAttemptAt = VolumeDelivered, res.DocumentID, now, "", time.Time{}
	case kind == api2.Business:
		u = p.refused(u, err.Error())
	case kind == api2.Ambiguous:
		u = p.ambiguous(u, c, err.Error())
	case kind == api2.Misconfigured:
		// Refused before it was looked at: not an attempt. Sent again
		// once MLM Soft accepts the configuration.
		u.State, u.Attempts, u.LastError, u.NextAttemptAt = VolumePending, c.Attempts-1, "paused: "+err.Error(), now
	default:
		p.totals.retries.Add(1)
		u.State, u.LastError = VolumePending, err.Error()
		u.NextAttemptAt = now.Add(p.retryDelay(c.Attempts, err))
	}
	return p.withEvents(c, u)
}

// refused applies the ParkPolicy to u.
func (p *Plugin) refused(u VolumeUpdate, why string) VolumeUpdate {
	u.LastError, u.NextAttemptAt = why, time.Time{}
	u.State = VolumeParked
	if p.cfg.Volumes.ParkPolicy == ParkPolicyContinue {
		u.State = VolumeRejected
	}
	return u
}

func (p *Plugin) retryDelay(attempts int, err error) time.Duration {
	d := p.volRetry.Delay(attempts)
	var ae *api2.Error
	if errors.As(err, &ae) && ae.RetryAfter > d {
		d = ae.RetryAfter
	}
	return d
}

// ambiguous decides u for a change whose outcome is unknown: resent
// automatically when it sets a value (SetAliases) or under
// AmbiguousResend, uncertain otherwise.
func (p *Plugin) ambiguous(u VolumeUpdate, c VolumeChange, why string) VolumeUpdate {
	now := u.UpdatedAt
	switch {
	case slices.Contains(p.cfg.Volumes.SetAliases, c.Alias):
		// A set-type property: sending it twice is harmless, but only
		// once the lost request has surely finished.
		u.State, u.LastError = VolumePending, "resending (it sets a value) after an unknown outcome: "+why
		u.NextAttemptAt = now.Add(max(p.cfg.RequestTimeout, p.volRetry.Delay(c.Attempts)))
	case p.cfg.Volumes.AmbiguousPolicy == AmbiguousResend:
		u.State, u.LastError = VolumePending, "resending after an unknown outcome: "+why
		u.NextAttemptAt = now.Add(p.volRetry.Delay(c.Attempts))
	default:
		u.State, u.LastError, u.NextAttemptAt = VolumeUncertain, why, time.Time{}
	}
	return u
}

// pollVolumeDocument checks the document MLM Soft queued for a change.
func (p *Plugin) pollVolumeDocument(ctx context.Context, owner string, c VolumeChange) error {
	rec := context.WithoutCancel(ctx)
	doc, err := p.getDocument(ctx, c.DocumentID)
	u := p.update(owner, c)
	now := u.UpdatedAt
	switch kind := api2.KindOf(err); {
	case errors.Is(err, ErrUpstreamUnavailable):
		u.NextAttemptAt = now.Add(p.cfg.IdleRecheck)
	case kind == api2.Misconfigured:
		u.LastError = "paused: " + err.Error()
	case kind == api2.Business:
		// MLM Soft will not tell (an unknown document, say): a person must
		// check whether the change was applied.
		u.State, u.LastError, u.NextAttemptAt = VolumeParked, "cannot read the volume-change document: "+err.Error(), time.Time{}
	case err != nil:
		u.NextAttemptAt, u.LastError = now.Add(p.retryDelay(c.Attempts, err)), err.Error()
	case !doc.Processed:
		u.Attempts = c.Attempts + 1
		u.NextAttemptAt, u.LastError = now.Add(p.volPoll.Delay(u.Attempts)), "waiting for MLM Soft to process the document"
	case doc.Success:
		u.State, u.DeliveredAt, u.LastError, u.NextAttemptAt = VolumeDelivered, now, "", time.Time{}
	default:
		u = p.refused(u, "the volume-change document failed: "+doc.Message)
	}
	_, err = p.writeVolume(rec, p.withEvents(c, u))
	return err
}
