package mlmsoft

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
)

// ErrAlreadyLinked is returned when a user linked to one MLM Soft account is
// asked to link to another and relinking is not allowed.
var ErrAlreadyLinked = errors.New("mlmsoft: user is linked to another MLM Soft account")

// claimLinks leases due links and returns a job per link.
func (p *Plugin) claimLinks(ctx context.Context, n int) ([]func(context.Context), error) {
	links, err := p.store.ClaimLinks(ctx, LinkClaim{Owner: p.cfg.WorkerID, Now: p.clock.Now(), Lease: p.cfg.Lease, Limit: n})
	if err != nil {
		return nil, fmt.Errorf("claim links: %w", err)
	}
	jobs := make([]func(context.Context), len(links))
	for i, l := range links {
		jobs[i] = func(ctx context.Context) {
			if err := p.workLink(ctx, l); err != nil && !errors.Is(err, ErrConflict) && ctx.Err() == nil {
				p.log.Error("link step failed", "user", l.UserID, "err", err)
			}
		}
	}
	return jobs, nil
}

// workLink takes one claimed link one step further.
func (p *Plugin) workLink(ctx context.Context, l Link) error {
	switch l.State {
	case LinkPending:
		return p.stepCreate(ctx, l)
	case LinkCreated:
		return p.stepAwait(ctx, l)
	}
	_, err := p.saveLink(ctx, l, false) // claimed in a final state: just release it
	return err
}

// saveLink stores l (compare-and-swap on its Version). Unless keepLease, it
// also gives up this worker's lease.
func (p *Plugin) saveLink(ctx context.Context, l Link, keepLease bool) (Link, error) {
	l.UpdatedAt = p.clock.Now()
	if !keepLease {
		l.LeaseOwner, l.LeaseUntil = "", time.Time{}
	}
	return p.store.UpdateLink(ctx, l)
}

// rescheduleLink stores l to be taken up again at at.
func (p *Plugin) rescheduleLink(ctx context.Context, l Link, at time.Time, why string) error {
	l.NextAttemptAt, l.LastError = at, why
	_, err := p.saveLink(ctx, l, false)
	return err
}

// retryLinkLater handles a failed request of step: a retryable or ambiguous
// failure, or the breaker being open (which costs no attempt).
func (p *Plugin) retryLinkLater(ctx context.Context, l Link, step string, err error) error {
	now := p.clock.Now()
	if errors.Is(err, ErrUpstreamUnavailable) {
		l.Attempts = max(l.Attempts-1, 0)
		return p.rescheduleLink(ctx, l, now.Add(p.cfg.Breaker.OpenTimeout), step+": "+err.Error())
	}
	var ae *api2.Error
	delay := p.linkRetry.Delay(l.Attempts)
	if errors.As(err, &ae) && ae.RetryAfter > delay {
		delay = ae.RetryAfter
	}
	p.log.Warn("link request failed; will retry", "user", l.UserID, "step", step, "in", delay, "err", err)
	return p.rescheduleLink(ctx, l, now.Add(delay), step+": "+err.Error())
}

// stepCreate sends user/create for a pending link, after checking that an
// earlier unacknowledged create did not go through.
func (p *Plugin) stepCreate(ctx context.Context, l Link) error {
	now := p.clock.Now()
	sponsor, wait, err := p.resolveSponsor(ctx, l)
	if err != nil {
		return p.failLink(ctx, l, err.Error())
	}
	if wait != "" {
		return p.rescheduleLink(ctx, l, now.Add(p.cfg.Linking.SponsorWait), wait)
	}

	resend := !l.CreateSentAt.IsZero()
	if resend {
		ex, err := p.userExists(ctx, l.Email)
		switch {
		case err != nil:
			return p.retryLinkLater(ctx, l, "user/exists", err)
		case ex.Exists && ex.AccountID != 0:
			return p.markLinked(ctx, l, ex.AccountID, ex.UserID, LinkedViaExists)
		case ex.Exists:
			return p.awaitWithoutDocument(ctx, l, ex.UserID, l.CreateSentAt, "")
		case now.Before(l.CreateSentAt.Add(p.cfg.Linking.CreateRecovery)):
			l.Attempts++
			return p.rescheduleLink(ctx, l, now.Add(p.linkPoll.Delay(l.Attempts)),
				"user/create was sent but not acknowledged; waiting for user/exists to show it")
		}
		// Long enough: MLM Soft never got it (and refuses a duplicate
		// login if it did). Send again.
	}

	password := randomPassword()
	if l.SealedPassword != nil {
		if password, err = openPassword(p.cfg.PasswordKey, l.UserID, l.SealedPassword); err != nil {
			return p.failLink(ctx, l, "cannot send user/create: "+err.Error())
		}
	}
	l.CreateSentAt, l.Attempts = now, l.Attempts+1
	if l, err = p.saveLink(ctx, l, true); err != nil {
		return err
	}
	var res api2.Created
	err = p.call(ctx, func(ctx context.Context) (err error) {
		res, err = p.client.CreateUser(ctx, api2.CreateUser{
			Login: l.Email, Password: password, SponsorID: sponsor, ConfirmationURL: p.cfg.ConfirmationURL,
			Profile: api2.Profile{FirstName: l.FirstName, LastName: l.LastName, Email: l.Email, Phone: l.Phone, CountryID: l.CountryID},
		})
		return err
	})
	switch kind := api2.KindOf(err); {
	case err == nil && !res.Queued && res.AccountID != 0:
		return p.markLinked(ctx, l, res.AccountID, res.UserID, LinkedViaCreate)
	case err == nil:
		l.State, l.DocumentID, l.AcceptedAt = LinkCreated, res.DocumentID, now
		l.SealedPassword, l.Attempts, l.LastError = nil, 0, ""
		l.NextAttemptAt = now.Add(p.cfg.Linking.PollInitial)
		if p.cfg.Linking.DisablePolling {
			l.NextAttemptAt = now.Add(p.cfg.Linking.Deadline)
		}
		if _, err := p.saveLink(ctx, l, false); err != nil {
			return err
		}
		p.log.Info("user/create accepted", "user", l.UserID, "document", res.DocumentID)
		return nil
	case kind == api2.Business && resend:
		// Probably our first create, refused now as a duplicate login.
		return p.awaitWithoutDocument(ctx, l, 0, l.CreateSentAt, "user/create sent again and refused: "+err.Error())
	case kind == api2.Business:
		return p.failLink(ctx, l, err.Error())
	case kind == api2.Ambiguous:
		return p.rescheduleLink(ctx, l, now.Add(p.cfg.Linking.PollInitial), "user/create: "+err.Error())
	default: // not processed: no need to ask user/exists next time
		if !resend {
			l.CreateSentAt = time.Time{}
		}
		return p.retryLinkLater(ctx, l, "user/create", err)
	}
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

// awaitWithoutDocument moves l to created with no document to poll: it is
// known (or believed) to exist in MLM Soft, and user/exists, the webhook or
// check-auth will give its account id.
func (p *Plugin) awaitWithoutDocument(ctx context.Context, l Link, mlmUserID int64, acceptedAt time.Time, why string) error {
	now := p.clock.Now()
	l.State, l.DocumentID, l.MLMUserID, l.AcceptedAt = LinkCreated, 0, mlmUserID, acceptedAt
	l.SealedPassword, l.Attempts, l.LastError = nil, 0, why
	l.NextAttemptAt = now.Add(p.cfg.Linking.PollInitial)
	_, err := p.saveLink(ctx, l, false)
	return err
}

// stepAwait polls for the result of an accepted user/create.
func (p *Plugin) stepAwait(ctx context.Context, l Link) error {
	now := p.clock.Now()
	deadline := l.AcceptedAt.Add(p.cfg.Linking.Deadline)
	if !now.Before(deadline) {
		return p.failLink(ctx, l, fmt.Sprintf("not linked within %s of user/create being accepted", p.cfg.Linking.Deadline))
	}
	if p.cfg.Linking.DisablePolling {
		return p.rescheduleLink(ctx, l, deadline, "waiting for the webhook or check-auth")
	}
	l.Attempts++
	next := func(why string) error {
		return p.rescheduleLink(ctx, l, minTime(now.Add(p.linkPoll.Delay(l.Attempts)), deadline), why)
	}
	if l.DocumentID == 0 {
		ex, err := p.userExists(ctx, l.Email)
		switch {
		case err != nil:
			return p.retryLinkLater(ctx, l, "user/exists", err)
		case ex.Exists && ex.AccountID != 0:
			return p.markLinked(ctx, l, ex.AccountID, ex.UserID, LinkedViaExists)
		}
		return next("waiting for user/exists to show the account")
	}
	doc, err := p.getDocument(ctx, l.DocumentID)
	switch {
	case err != nil:
		return p.retryLinkLater(ctx, l, "document/get", err)
	case !doc.Processed:
		return next("")
	case !doc.Success:
		return p.failLink(ctx, l, "user/create was refused: "+doc.Message)
	case doc.AccountID == 0:
		// Processed without the ids in it: ask user/exists from now on.
		l.DocumentID = 0
		return next("the document's result has no account id; asking user/exists")
	}
	return p.markLinked(ctx, l, doc.AccountID, doc.UserID, LinkedViaDocument)
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

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// markLinked completes l with MLM Soft's ids.
func (p *Plugin) markLinked(ctx context.Context, l Link, accountID, mlmUserID int64, via LinkedVia) error {
	now := p.clock.Now()
	l.State, l.AccountID, l.LinkedVia, l.LinkedAt = LinkLinked, accountID, via, now
	if mlmUserID != 0 {
		l.MLMUserID = mlmUserID
	}
	l.SealedPassword, l.LastError, l.NextAttemptAt, l.Attempts = nil, "", time.Time{}, 0
	stored, err := p.saveLink(ctx, l, false)
	if err != nil {
		return err
	}
	p.afterLinked(ctx, stored)
	return nil
}

// afterLinked tells the host and lets the user's held volume changes go.
func (p *Plugin) afterLinked(ctx context.Context, l Link) {
	p.log.Info("user linked", "user", l.UserID, "account", l.AccountID, "via", string(l.LinkedVia))
	if err := p.store.WakeVolumes(ctx, l.UserID, p.clock.Now()); err != nil {
		p.log.Error("wake volume changes", "user", l.UserID, "err", err)
	}
	p.wakeAll() // sponsored users may be waiting for this one
	if h := p.cfg.Hooks.OnLinked; h != nil {
		l.SealedPassword = nil
		p.runHook("OnLinked", func() { h(ctx, l) })
	}
}

// failLink gives up on l.
func (p *Plugin) failLink(ctx context.Context, l Link, reason string) error {
	l.State, l.LastError, l.SealedPassword, l.NextAttemptAt = LinkFailed, reason, nil, time.Time{}
	stored, err := p.saveLink(ctx, l, false)
	if err != nil {
		return err
	}
	p.log.Warn("link failed", "user", l.UserID, "reason", reason)
	if err := p.store.WakeVolumes(ctx, l.UserID, p.clock.Now()); err != nil {
		p.log.Error("wake volume changes", "user", l.UserID, "err", err)
	}
	p.wakeVolumes() // their changes are parked now
	if h := p.cfg.Hooks.OnLinkFailed; h != nil {
		stored.SealedPassword = nil
		p.runHook("OnLinkFailed", func() { h(ctx, stored) })
	}
	return nil
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
// changed false. Errors wrap ErrNotFound (no link and not CreateIfMissing),
// ErrAlreadyLinked, ErrDuplicate (the email belongs to another user's link)
// or the store's error.
func (p *Plugin) linkTo(ctx context.Context, r linkRequest) (Link, bool, error) {
	for range 8 { // re-read and retry when the worker changed it meanwhile
		now := p.clock.Now()
		l, err := p.store.GetLink(ctx, r.UserID)
		if errors.Is(err, ErrNotFound) && r.CreateIfMissing {
			l, err = p.store.CreateLink(ctx, Link{
				UserID: r.UserID, Email: r.Email, State: LinkLinked, AccountID: r.AccountID, MLMUserID: r.MLMUserID,
				LinkedVia: r.Via, LinkedAt: now, CreatedAt: now, UpdatedAt: now,
			})
			if errors.Is(err, ErrDuplicate) {
				if _, again := p.store.GetLink(ctx, r.UserID); again == nil {
					continue // created concurrently: take the update path
				}
			}
			if err != nil {
				return Link{}, false, err
			}
			p.afterLinked(ctx, l)
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
		l.State, l.AccountID, l.LinkedVia, l.LinkedAt = LinkLinked, r.AccountID, r.Via, now
		if r.MLMUserID != 0 {
			l.MLMUserID = r.MLMUserID
		}
		if r.Email != "" {
			l.Email = r.Email
		}
		l.SealedPassword, l.LastError, l.NextAttemptAt, l.Attempts = nil, "", time.Time{}, 0
		l.UpdatedAt = now
		// The lease is left as it is: a worker holding it finds the link
		// changed when it saves (ErrConflict) and stops.
		stored, err := p.store.UpdateLink(ctx, l)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return Link{}, false, err
		}
		p.afterLinked(ctx, stored)
		return stored, true, nil
	}
	return Link{}, false, fmt.Errorf("mlmsoft: link %q: %w (gave up after retries)", r.UserID, ErrConflict)
}
