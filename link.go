package mlmsoft

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// LinkInfo is what a host sees of a user's link: a read-only copy, with none
// of the worker's bookkeeping.
type LinkInfo struct {
	UserID    string    `json:"userId"`    // the host's user id
	Email     string    `json:"email"`     // the MLM Soft login
	State     LinkState `json:"state"`     // pending, created, linked or failed
	AccountID int64     `json:"accountId"` // MLM Soft account id (sponsor id, volume target); 0 until linked
	MLMUserID int64     `json:"mlmUserId"` // MLM Soft user id; 0 until known
	LinkedVia LinkedVia `json:"linkedVia,omitempty"`
	LinkedAt  time.Time `json:"linkedAt,omitzero"`
	// LastError says why a link failed, or what a pending one waits for.
	LastError string    `json:"lastError,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	// The last operator action on the link, if any.
	ResolvedBy   string    `json:"resolvedBy,omitempty"`
	ResolvedNote string    `json:"resolvedNote,omitempty"`
	ResolvedAt   time.Time `json:"resolvedAt,omitzero"`
}

// Info returns the host's view of l.
func (l Link) Info() LinkInfo {
	return LinkInfo{
		UserID: l.UserID, Email: l.Email, State: l.State, AccountID: l.AccountID, MLMUserID: l.MLMUserID,
		LinkedVia: l.LinkedVia, LinkedAt: l.LinkedAt, LastError: l.LastError, CreatedAt: l.CreatedAt, UpdatedAt: l.UpdatedAt,
		ResolvedBy: l.ResolvedBy, ResolvedNote: l.ResolvedNote, ResolvedAt: l.ResolvedAt,
	}
}

// Link returns the host user's link, or an error wrapping ErrNotFound.
func (p *Plugin) Link(ctx context.Context, userID string) (LinkInfo, error) {
	l, err := p.store.GetLink(ctx, userID)
	if err != nil {
		return LinkInfo{}, fmt.Errorf("mlmsoft: link of %q: %w", userID, err)
	}
	return l.Info(), nil
}

// Defaults and bounds of LinkQuery.Limit.
const (
	ListLimitDefault = 50
	ListLimitMax     = 1000
)

// LinkQuery selects links for Plugin.ListLinks.
type LinkQuery struct {
	// States keeps links in one of these states; empty: every state.
	States []LinkState
	// EmailPrefix keeps links whose MLM Soft login starts with it (letter
	// case as normalised by the plugin: ASCII letters lower-cased).
	EmailPrefix string
	// After continues a listing: pass the Next of the previous page.
	After string
	// Limit is the page size. Zero: ListLimitDefault; at most
	// ListLimitMax.
	Limit int
}

// LinkPage is one page of Plugin.ListLinks.
type LinkPage struct {
	Links []LinkInfo `json:"links"` // ordered by user id (byte-wise)
	// Next is the After of the following page; "" on the last page.
	Next string `json:"next,omitempty"`
}

// ListLinks returns a page of links, ordered by user id: for operators
// looking for users who are not linked (States: pending, created, failed) or
// for one user by e-mail. Errors wrap ErrInvalidInput (an unknown state, a
// negative or too large Limit) or the store's error.
func (p *Plugin) ListLinks(ctx context.Context, q LinkQuery) (LinkPage, error) {
	for _, s := range q.States {
		if !validLinkState(s) {
			return LinkPage{}, fmt.Errorf("%w: LinkQuery.States: unknown state %q", ErrInvalidInput, s)
		}
	}
	limit, err := listLimit(q.Limit, "LinkQuery.Limit")
	if err != nil {
		return LinkPage{}, err
	}
	ls, err := p.store.ListLinks(ctx, LinkFilter{
		States: q.States, EmailPrefix: lowerASCII(strings.TrimSpace(q.EmailPrefix)), AfterID: q.After, Limit: limit + 1,
	})
	if err != nil {
		return LinkPage{}, fmt.Errorf("mlmsoft: list links: %w", err)
	}
	page := LinkPage{Links: make([]LinkInfo, 0, min(len(ls), limit))}
	for i, l := range ls {
		if i == limit {
			page.Next = ls[i-1].UserID
			break
		}
		page.Links = append(page.Links, l.Info())
	}
	return page, nil
}

func listLimit(n int, field string) (int, error) {
	switch {
	case n == 0:
		return ListLimitDefault, nil
	case n < 0 || n > ListLimitMax:
		return 0, fmt.Errorf("%w: %s must be between 0 and %d", ErrInvalidInput, field, ListLimitMax)
	}
	return n, nil
}

func validLinkState(s LinkState) bool {
	for _, v := range LinkStates {
		if s == v {
			return true
		}
	}
	return false
}

// RetryLink re-drives a failed link, for operators. It first asks MLM Soft
// whether the user's login exists: if it does with an account id, the link
// is completed with it (LinkedViaExists); if it does without one, the link
// waits for the id (user/exists polls, the webhook or check-auth); if it does
// not, user/create is sent again. by and note are stored as the audit of the
// action; by is required, note at most 1000 bytes. Errors wrap
// ErrInvalidInput, ErrNotFound, ErrWrongState (the link is not failed), ErrUpstreamUnavailable or
// ErrMisconfigured (MLM Soft could not be asked: nothing changed), or
// ErrConflict (the link changed meanwhile: look again).
func (p *Plugin) RetryLink(ctx context.Context, userID, by, note string) (LinkInfo, error) {
	fail := func(err error) (LinkInfo, error) {
		return LinkInfo{}, fmt.Errorf("mlmsoft: retry link of %q: %w", userID, err)
	}
	if strings.TrimSpace(by) == "" {
		return fail(fmt.Errorf("%w: who acts (by) is required for the audit", ErrInvalidInput))
	}
	if len(note) > maxNoteLen {
		return fail(fmt.Errorf("%w: the note is longer than %d bytes", ErrInvalidInput, maxNoteLen))
	}
	l, err := p.store.GetLink(ctx, userID)
	if err != nil {
		return fail(err)
	}
	if l.State != LinkFailed {
		return fail(fmt.Errorf("%w: the link is %s, not failed", ErrWrongState, l.State))
	}
	ex, err := p.userExists(ctx, l.Email)
	if err != nil {
		return fail(upstreamError(err))
	}
	now := p.clock.Now()
	l.ResolvedBy, l.ResolvedNote, l.ResolvedAt = by, note, now
	l.Attempts, l.UpdatedAt = 0, now
	var events []Event
	switch {
	case ex.Exists && ex.AccountID != 0:
		l = linked(l, ex.AccountID, ex.UserID, LinkedViaExists, now)
		events = p.linkEvents(EventLinked, l, now)
	case ex.Exists:
		l.State, l.DocumentID, l.AcceptedAt, l.NextAttemptAt = LinkCreated, 0, now, now
		l.MLMUserID = max(l.MLMUserID, ex.UserID)
		l.LastError = "retried: MLM Soft has the account; waiting for its account id"
	default:
		l.State, l.CreateSentAt, l.CreateAttempts, l.DocumentID, l.NextAttemptAt = LinkPending, time.Time{}, 0, 0, now
		l.LastError = "retried: MLM Soft has no such account; sending user/create again"
	}
	stored, err := p.store.UpdateLink(ctx, LinkUpdate{Link: l, WakeVolumes: l.State == LinkLinked, Events: events})
	if err != nil {
		return fail(err)
	}
	p.log.Info("operator retried a failed link", "user", userID, "by", by, "state", string(stored.State))
	p.afterLinkWrite(stored, events)
	return stored.Info(), nil
}
