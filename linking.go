package mlmsoft

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
)

// This file is the create-and-link flow run by the link worker. A claimed
// link is taken one step further and written back (releasing the lease)
// under the claim's owner token:
//
//	pending  → (sponsor linked?) → user/exists first if a create may have
//	           reached MLM Soft → user/create (write-ahead: CreateSentAt)
//	created  → document/get (Type I) or user/exists polls → linked
//	any      → linked by the webhook (Type III) or check-auth (Type II)
//
// A link fails only when MLM Soft refused the only create it may have
// received, when the sponsor failed, or when, long after the create was
// accepted, user/exists says MLM Soft has no such account. A failed link can
// still be completed by the webhook or check-auth, or re-driven by
// Plugin.RetryLink.

// claimLinks leases due links and returns a job per link.
func (p *Plugin) claimLinks(ctx context.Context, n int) ([]func(context.Context), error) {
	owner := p.owner()
	links, err := p.store.ClaimLinks(ctx, LinkClaim{Owner: owner, Now: p.clock.Now(), Lease: p.cfg.Lease, Limit: n})
	if err != nil {
		return nil, fmt.Errorf("claim links: %w", err)
	}
	jobs := make([]func(context.Context), len(links))
	for i, l := range links {
		jobs[i] = func(ctx context.Context) {
			err := p.workLink(ctx, owner, l)
			if err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrLeaseLost) && ctx.Err() == nil {
				p.log.Error("link step failed", "user", l.UserID, "err", err)
			}
		}
	}
	return jobs, nil
}

// workLink takes one claimed link one step further.
func (p *Plugin) workLink(ctx context.Context, owner string, l Link) error {
	switch l.State {
	case LinkPending:
		return p.stepCreate(ctx, owner, l)
	case LinkCreated:
		return p.stepAwait(ctx, owner, l)
	}
	// Claimed in a final state (due time left set by an older release):
	// nothing to do but never claim it again.
	l.NextAttemptAt = time.Time{}
	_, err := p.saveLink(ctx, owner, l, false)
	return err
}

// saveLink writes l under owner's lease: ending it, or keeping it for the
// request about to be sent. Outcomes are written even when ctx was
// cancelled by Shutdown.
func (p *Plugin) saveLink(ctx context.Context, owner string, l Link, keep bool) (Link, error) {
	now := p.clock.Now()
	l.UpdatedAt = now
	u := LinkUpdate{Link: l, Owner: owner}
	if keep {
		u.KeepLease, u.LeaseUntil = true, now.Add(p.cfg.Lease)
	}
	return p.store.UpdateLink(context.WithoutCancel(ctx), u)
}

// rescheduleLink writes l to be taken up again at at, saying why.
func (p *Plugin) rescheduleLink(ctx context.Context, owner string, l Link, at time.Time, why string) error {
	l.NextAttemptAt, l.LastError = at, why
	_, err := p.saveLink(ctx, owner, l, false)
	return err
}

// requestFailed reschedules l after a request failed without an answer
// that decides the step: MLM Soft unavailable (the breaker held it back:
// no attempt spent), the configuration refused (no attempt spent; the
// loops pause until MLM Soft accepts it), or not processed (backoff,
// honouring Retry-After). l.Attempts must already count the request.
func (p *Plugin) requestFailed(ctx context.Context, owner string, l Link, err error) error {
	now := p.clock.Now()
	switch {
	case errors.Is(err, ErrUpstreamUnavailable):
		l.Attempts = max(l.Attempts-1, 0)
		return p.rescheduleLink(ctx, owner, l, now.Add(p.cfg.IdleRecheck), err.Error())
	case api2.KindOf(err) == api2.Misconfigured:
		l.Attempts = max(l.Attempts-1, 0)
		return p.rescheduleLink(ctx, owner, l, now, "paused: "+err.Error())
	}
	delay := p.linkRetry.Delay(l.Attempts)
	var ae *api2.Error
	if errors.As(err, &ae) && ae.RetryAfter > delay {
		delay = ae.RetryAfter
	}
	p.totals.retries.Add(1)
	p.log.Warn("link request failed; will retry", "user", l.UserID, "in", delay, "err", err)
	return p.rescheduleLink(ctx, owner, l, now.Add(delay), err.Error())
}

// stepCreate sends user/create for a pending link, after checking that an
// earlier unacknowledged create did not go through.
func (p *Plugin) stepCreate(ctx context.Context, owner string, l Link) error {
	now := p.clock.Now()
	sponsor, wait, err := p.resolveSponsor(ctx, l)
	if err != nil {
		return p.failLink(ctx, owner, l, err.Error())
	}
	if wait != "" {
		return p.rescheduleLink(ctx, owner, l, now.Add(p.cfg.Linking.SponsorWait), wait)
	}

	if !l.CreateSentAt.IsZero() {
		// A create may have reached MLM Soft: never send another before
		// asking whether the account exists.
		ex, handled, err := p.checkExists(ctx, owner, &l)
		switch {
		case handled:
			return err
		case ex.Exists:
			return p.awaitAccount(ctx, owner, l, ex.UserID, "MLM Soft has the account; waiting for its account id")
		case now.Before(l.CreateSentAt.Add(p.cfg.Linking.CreateRecovery)):
			return p.rescheduleLink(ctx, owner, l, now.Add(p.linkPoll.Delay(l.Attempts)),
				"user/create was sent but not acknowledged; waiting for user/exists to show it")
		}
		// Long after, MLM Soft still has no such account: the create
		// never got there (if it did, a resend is refused as a duplicate
		// login, and that is handled below). Send it again.
		l.Attempts--
	}

	password := randomPassword()
	if l.SealedPassword != nil {
		if password, err = openPassword(p.cfg.PasswordKey, l.UserID, l.SealedPassword); err != nil {
			return p.failLink(ctx, owner, l, "cannot send user/create: "+err.Error())
		}
	}
	permit, err := p.allow()
	if err != nil {
		l.Attempts++ // requestFailed gives it back: nothing was sent
		return p.requestFailed(ctx, owner, l, err)
	}
	prevSentAt, resend := l.CreateSentAt, l.CreateAttempts > 0
	l.CreateSentAt, l.Attempts, l.CreateAttempts = now, l.Attempts+1, l.CreateAttempts+1
	if l, err = p.saveLink(ctx, owner, l, true); err != nil { // write-ahead
		permit(context.Canceled) // nothing sent: neither a success nor a failure
		return err
	}
	res, err := p.client.CreateUser(ctx, api2.CreateUser{
		Login: l.Email, Password: password, SponsorID: sponsor, ConfirmationURL: p.cfg.ConfirmationURL,
		Profile: api2.Profile{FirstName: l.FirstName, LastName: l.LastName, Email: l.Email, Phone: l.Phone, CountryID: l.CountryID},
	})
	p.settle(ctx, permit, err)
	switch kind := api2.KindOf(err); {
	case err == nil && !res.Queued && res.AccountID != 0:
		return p.markLinked(ctx, owner, l, res.AccountID, res.UserID, LinkedViaCreate)
	case err == nil:
		now := p.clock.Now()
		l.State, l.DocumentID, l.AcceptedAt = LinkCreated, res.DocumentID, now
		l.SealedPassword, l.Attempts, l.LastError = nil, 0, ""
		l.NextAttemptAt = now.Add(p.cfg.Linking.PollInitial)
		if p.cfg.Linking.DisablePolling {
			l.NextAttemptAt = now.Add(p.cfg.Linking.Deadline)
		}
		if _, err := p.saveLink(ctx, owner, l, false); err != nil {
			return err
		}
		p.log.Info("user/create accepted", "user", l.UserID, "document", res.DocumentID)
		return nil
	case kind == api2.Business && resend:
		// Most likely an earlier create of ours, refused now as a
		// duplicate login: the account exists or is on its way.
		return p.awaitAccount(ctx, owner, l, 0, "user/create sent again was refused ("+err.Error()+"); asking user/exists")
	case kind == api2.Business:
		return p.createRefused(ctx, owner, l, err.Error())
	case kind == api2.Ambiguous:
		// It may have been applied: user/exists first, next time.
		return p.rescheduleLink(ctx, owner, l, p.clock.Now().Add(p.cfg.Linking.PollInitial), err.Error())
	default:
		// Not processed (or the configuration was refused): this create
		// does not count.
		l.CreateSentAt, l.CreateAttempts = prevSentAt, l.CreateAttempts-1
		return p.requestFailed(ctx, owner, l, err)
	}
}

// createRefused handles MLM Soft refusing (at once, or in its document) the
// only user/create of l that may have reached it. If the login exists all
// the same, it is an account this app did not create: linking it by e-mail
// alone would hand the host user someone else's account, so the link fails
// with a hint to use check-auth (which proves the password).
func (p *Plugin) createRefused(ctx context.Context, owner string, l Link, msg string) error {
	reason := "user/create was refused: " + msg
	if ex, err := p.userExists(ctx, l.Email); err == nil && ex.Exists {
		reason = "MLM Soft already has an account with this login that this app did not create; " +
			"the user can link it with check-auth (" + msg + ")"
	}
	return p.failLink(ctx, owner, l, reason)
}

// resolveSponsor returns the sponsor's account id, or a reason to wait
// (the sponsor's link is not finished), or an error that fails the link.
func (p *Plugin) resolveSponsor(ctx context.Context, l Link) (int64, string, error) {
	switch {
	case l.SponsorAccountID != 0:
		return l.SponsorAccountID, "", nil
	case l.SponsorUserID == "":
		if p.cfg.DefaultSponsorAccountID == 0 {
			return 0, "", errors.New("no sponsor and Config.DefaultSponsorAccountID is 0")
		}
		return p.cfg.DefaultSponsorAccountID, "", nil
	}
	s, err := p.store.GetLink(ctx, l.SponsorUserID)
	switch {
	case errors.Is(err, ErrNotFound):
		return 0, "", fmt.Errorf("sponsor %q has no link", l.SponsorUserID)
	case err != nil:
		return 0, fmt.Sprintf("reading sponsor %q: %v", l.SponsorUserID, err), nil
	case s.State == LinkLinked:
		return s.AccountID, "", nil
	case s.State == LinkFailed:
		return 0, "", fmt.Errorf("sponsor %q could not be linked: %s", l.SponsorUserID, s.LastError)
	}
	return 0, fmt.Sprintf("waiting for sponsor %q to be linked", l.SponsorUserID), nil
}

// awaitAccount moves l to created with no document to poll: MLM Soft has
// (or is believed to have) the account, and user/exists, the webhook or
// check-auth will give its account id.
func (p *Plugin) awaitAccount(ctx context.Context, owner string, l Link, mlmUserID int64, why string) error {
	now := p.clock.Now()
	if l.State != LinkCreated {
		l.AcceptedAt = now
	}
	l.State, l.DocumentID, l.SealedPassword, l.Attempts = LinkCreated, 0, nil, 0
	if mlmUserID != 0 {
		l.MLMUserID = mlmUserID
	}
	return p.rescheduleLink(ctx, owner, l, now.Add(p.cfg.Linking.PollInitial), why)
}

// stepAwait polls for the result of an accepted user/create.
func (p *Plugin) stepAwait(ctx context.Context, owner string, l Link) error {
	now := p.clock.Now()
	deadline := l.AcceptedAt.Add(p.cfg.Linking.Deadline)
	if !now.Before(deadline) {
		return p.atDeadline(ctx, owner, l)
	}
	if p.cfg.Linking.DisablePolling {
		return p.rescheduleLink(ctx, owner, l, deadline, "waiting for the webhook or check-auth")
	}
	next := func(why string) error {
		return p.rescheduleLink(ctx, owner, l, minTime(now.Add(p.linkPoll.Delay(l.Attempts)), deadline), why)
	}
	if l.DocumentID == 0 {
		ex, handled, err := p.checkExists(ctx, owner, &l)
		switch {
		case handled:
			return err
		case ex.Exists:
			return next("MLM Soft has the account; waiting for its account id")
		}
		return next("waiting for user/exists to show the account")
	}
	l.Attempts++
	doc, err := p.getDocument(ctx, l.DocumentID)
	switch {
	case api2.KindOf(err) == api2.Business:
		// MLM Soft will not show the document: ask user/exists instead.
		l.DocumentID = 0
		return next("document/get refused (" + err.Error() + "); asking user/exists")
	case err != nil:
		return p.requestFailed(ctx, owner, l, err)
	case !doc.Processed:
		return next("")
	case !doc.Success && l.CreateAttempts > 1:
		// An earlier create of ours may have made the account (the
		// document of a resend says "already exists"): ask user/exists.
		l.DocumentID = 0
		return next("the document of a resent user/create failed (" + doc.Message + "); asking user/exists")
	case !doc.Success:
		return p.createRefused(ctx, owner, l, doc.Message)
	case doc.AccountID == 0:
		// Processed without the ids in it: ask user/exists from now on.
		l.DocumentID = 0
		return next("the document's result has no account id; asking user/exists")
	}
	return p.markLinked(ctx, owner, l, doc.AccountID, doc.UserID, LinkedViaDocument)
}

// atDeadline decides a link not completed within Linking.Deadline of its
// create being accepted. It never fails a link whose account MLM Soft has.
func (p *Plugin) atDeadline(ctx context.Context, owner string, l Link) error {
	ex, handled, err := p.checkExists(ctx, owner, &l)
	switch {
	case handled:
		return err
	case ex.Exists:
		return p.rescheduleLink(ctx, owner, l, p.clock.Now().Add(p.cfg.Linking.PollMax),
			fmt.Sprintf("MLM Soft has the account but gave no account id within %s; waiting for the webhook or check-auth", p.cfg.Linking.Deadline))
	}
	return p.failLink(ctx, owner, l, fmt.Sprintf("not linked within %s of user/create being accepted, and MLM Soft has no such account", p.cfg.Linking.Deadline))
}

// checkExists asks user/exists for l's login, counting an attempt, and
// takes the step itself when the answer decides it: the request failed (l
// is rescheduled) or MLM Soft gave the account id (l is linked); handled
// then reports true and err is the write's. Otherwise it returns the answer
// (l.MLMUserID updated when MLM Soft has the account without its id) for
// the caller to decide.
func (p *Plugin) checkExists(ctx context.Context, owner string, l *Link) (ex api2.Exists, handled bool, err error) {
	l.Attempts++
	ex, err = p.userExists(ctx, l.Email)
	switch {
	case err != nil:
		return ex, true, p.requestFailed(ctx, owner, *l, err)
	case ex.Exists && ex.AccountID != 0:
		return ex, true, p.markLinked(ctx, owner, *l, ex.AccountID, ex.UserID, LinkedViaExists)
	case ex.Exists:
		l.MLMUserID = max(l.MLMUserID, ex.UserID)
	}
	return ex, false, nil
}

// userExists asks user/exists through the circuit breaker.
func (p *Plugin) userExists(ctx context.Context, login string) (ex api2.Exists, err error) {
	err = p.call(ctx, func(ctx context.Context) (err error) {
		ex, err = p.client.UserExists(ctx, login)
		return err
	})
	return ex, err
}

// getDocument asks document/get through the circuit breaker.
func (p *Plugin) getDocument(ctx context.Context, id int64) (doc api2.Document, err error) {
	err = p.call(ctx, func(ctx context.Context) (err error) {
		doc, err = p.client.GetDocument(ctx, id)
		return err
	})
	return doc, err
}

// upstreamError maps a failed request to the sentinel a synchronous caller
// matches: ErrMisconfigured, ErrUpstreamUnavailable, or the error itself
// (MLM Soft's refusal).
func upstreamError(err error) error {
	switch api2.KindOf(err) {
	case api2.Misconfigured:
		return fmt.Errorf("%w: %w", ErrMisconfigured, err)
	case api2.Retryable, api2.Ambiguous:
		return fmt.Errorf("%w: %w", ErrUpstreamUnavailable, err)
	}
	return err
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// linked returns l completed with MLM Soft's ids at now.
func linked(l Link, accountID, mlmUserID int64, via LinkedVia, now time.Time) Link {
	l.State, l.AccountID, l.LinkedVia, l.LinkedAt = LinkLinked, accountID, via, now
	if mlmUserID != 0 {
		l.MLMUserID = mlmUserID
	}
	l.SealedPassword, l.LastError, l.NextAttemptAt, l.Attempts = nil, "", time.Time{}, 0
	l.UpdatedAt = now
	return l
}

// markLinked completes l with MLM Soft's ids, releases the user's waiting
// volume changes and owes the OnLinked hook, in one write.
func (p *Plugin) markLinked(ctx context.Context, owner string, l Link, accountID, mlmUserID int64, via LinkedVia) error {
	now := p.clock.Now()
	l = linked(l, accountID, mlmUserID, via, now)
	events := p.linkEvents(EventLinked, l, now)
	stored, err := p.store.UpdateLink(context.WithoutCancel(ctx), LinkUpdate{Link: l, Owner: owner, WakeVolumes: true, Events: events})
	if err != nil {
		return err
	}
	p.afterLinkWrite(stored, events)
	return nil
}

// failLink gives up on l, owing the OnLinkFailed hook. The user's volume
// changes keep waiting: the link may still complete (webhook, check-auth,
// RetryLink).
func (p *Plugin) failLink(ctx context.Context, owner string, l Link, reason string) error {
	now := p.clock.Now()
	l.State, l.LastError, l.SealedPassword, l.NextAttemptAt, l.UpdatedAt = LinkFailed, reason, nil, time.Time{}, now
	events := p.linkEvents(EventLinkFailed, l, now)
	stored, err := p.store.UpdateLink(context.WithoutCancel(ctx), LinkUpdate{Link: l, Owner: owner, Events: events})
	if err != nil {
		return err
	}
	p.afterLinkWrite(stored, events)
	return nil
}

// afterLinkWrite logs a link's new state, counts it, and wakes whatever may
// now proceed: users sponsored by it, its volume changes, owed hooks.
func (p *Plugin) afterLinkWrite(l Link, events []Event) {
	switch l.State {
	case LinkLinked:
		p.totals.linked(l.LinkedVia)
		p.log.Info("user linked", "user", l.UserID, "account", l.AccountID, "via", string(l.LinkedVia))
		p.wakeLinks()   // sponsored users may be waiting for this one
		p.wakeVolumes() // its changes are due now
	case LinkFailed:
		p.totals.linkFailures.Add(1)
		p.log.Warn("link failed", "user", l.UserID, "reason", l.LastError)
	default:
		p.wakeLinks()
	}
	if len(events) > 0 {
		p.wakeHooks()
	}
}

// linkRequest asks linkTo to complete a user's link from outside the
// worker (webhook, check-auth).
type linkRequest struct {
	UserID          string
	Email           string // the MLM Soft login; stored when the link is created here
	AccountID       int64
	MLMUserID       int64
	Via             LinkedVia
	CreateIfMissing bool // no link yet: create one, already linked (check-auth)
	AllowRelink     bool // linked to another account: switch to this one
}

// linkTo completes a link with MLM Soft's ids, whatever state it is in. It
// is idempotent: a link already linked to the same account is returned with
// changed false. It never waits for the link worker: a worker holding the
// link finds it changed when it writes (ErrConflict) and stops. Errors wrap
// ErrNotFound (no link and not CreateIfMissing), ErrAlreadyLinked,
// ErrDuplicate (the email belongs to another user's link) or the store's
// error.
func (p *Plugin) linkTo(ctx context.Context, r linkRequest) (Link, bool, error) {
	for range 8 { // re-read and retry when the worker changed it meanwhile
		now := p.clock.Now()
		l, err := p.store.GetLink(ctx, r.UserID)
		if errors.Is(err, ErrNotFound) && r.CreateIfMissing {
			l = linked(Link{UserID: r.UserID, Email: r.Email, CreatedAt: now}, r.AccountID, r.MLMUserID, r.Via, now)
			events := p.linkEvents(EventLinked, l, now)
			l, err = p.store.CreateLink(ctx, l, events...)
			if errors.Is(err, ErrDuplicate) {
				if _, again := p.store.GetLink(ctx, r.UserID); again == nil {
					continue // created concurrently: take the update path
				}
			}
			if err != nil {
				return Link{}, false, err
			}
			p.afterLinkWrite(l, events)
			return l, true, nil
		}
		if err != nil {
			return Link{}, false, err
		}
		if l.State == LinkLinked {
			if l.AccountID == r.AccountID {
				return l, false, nil
			}
			if !r.AllowRelink {
				return l, false, ErrAlreadyLinked
			}
		}
		l = linked(l, r.AccountID, r.MLMUserID, r.Via, now)
		if r.Email != "" {
			l.Email = r.Email
		}
		events := p.linkEvents(EventLinked, l, now)
		stored, err := p.store.UpdateLink(ctx, LinkUpdate{Link: l, WakeVolumes: true, Events: events})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Link{}, false, err
		}
		p.afterLinkWrite(stored, events)
		return stored, true, nil
	}
	return Link{}, false, fmt.Errorf("mlmsoft: link %q: %w (gave up after retries)", r.UserID, ErrConflict)
}
