package admin

import (
	"slices"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// The actions a Link or Change offers, as listed in their Actions field
// and named by the data-action attribute of their forms.
const (
	ActionRetry          = "retry"           // a parked change: send it again
	ActionResolveApplied = "resolve-applied" // an uncertain change: MLM Soft applied it
	ActionResolveResend  = "resolve-resend"  // an uncertain change: MLM Soft did not; send it again
	ActionSkip           = "skip"            // a parked or uncertain change: never send it
	ActionRetryLink      = "retry-link"      // a failed link: re-drive it
)

// Overview is the overview page as JSON.
type Overview struct {
	Title   string      `json:"title"`
	Health  HealthView  `json:"health"`
	Breaker BreakerView `json:"breaker"`
	// StatsError says why the store could not be read; the counts below are
	// then empty (Health and Breaker are still current).
	StatsError string `json:"statsError,omitempty"`
	// Links counts links per state, every state present.
	Links map[mlmsoft.LinkState]int `json:"links"`
	// Volumes counts stored volume changes per state, every state present.
	Volumes map[mlmsoft.VolumeState]int `json:"volumes"`
	// OldestOpenSeconds is the age of the oldest change not yet delivered,
	// rejected or skipped; 0 when there is none.
	OldestOpenSeconds float64 `json:"oldestOpenSeconds"`
	// Hooks counts the hook events owed to the host.
	Hooks HooksView `json:"hooks"`
	// Totals counts what this process did since it started.
	Totals TotalsView `json:"totals"`
}

// HealthView says whether the integration can reach MLM Soft, in plain
// words.
type HealthView struct {
	State mlmsoft.HealthState `json:"state"` // ok, unavailable or misconfigured
	// Summary says what the state means; Advice what to do about it.
	Summary string `json:"summary"`
	Advice  string `json:"advice"`
	// Reason is MLM Soft's own message (misconfigured) or the last failure
	// (unavailable).
	Reason string `json:"reason,omitempty"`
	// Since is when the state began; zero for ok.
	Since time.Time `json:"since,omitzero"`
}

// BreakerView is the circuit breaker in front of MLM Soft.
type BreakerView struct {
	State   mlmsoft.BreakerState `json:"state"`   // closed, open or half-open; "" when unknown (the store could not be read)
	Trips   int                  `json:"trips"`   // how often it opened since the process started
	Meaning string               `json:"meaning"` // the state in plain words
}

// HooksView counts the hook events owed to the host application.
type HooksView struct {
	Owed    int `json:"owed"`    // not yet handled by the host's hook
	Failing int `json:"failing"` // of which the hook failed at least once (retried)
}

// TotalsView is mlmsoft.Totals as JSON: what this process did since it
// started.
type TotalsView struct {
	Delivered         int64                       `json:"delivered"`
	Retries           int64                       `json:"retries"`
	Failures          map[string]int64            `json:"failures"` // by class: not-processed, ambiguous, refused, misconfigured
	Uncertain         int64                       `json:"uncertain"`
	Linked            map[mlmsoft.LinkedVia]int64 `json:"linked"` // by the way the link completed
	LinkFailures      int64                       `json:"linkFailures"`
	Misconfigurations int64                       `json:"misconfigurations"`
	HookFailures      int64                       `json:"hookFailures"`
}

// Link is a link as the console shows it: mlmsoft.LinkInfo and the actions
// it offers.
type Link struct {
	mlmsoft.LinkInfo
	Actions []string `json:"actions"` // retry-link for a failed link
}

// LinkList is the links page as JSON.
type LinkList struct {
	Links []Link `json:"links"` // ordered by user id
	// Next is the after parameter of the next page; "" on the last page.
	Next string `json:"next,omitempty"`
	// States and Email echo the filter (none: every state, every e-mail).
	States []mlmsoft.LinkState `json:"states,omitempty"`
	Email  string              `json:"email,omitempty"`
}

// Change is a volume change as the console shows it.
type Change struct {
	ID             int64               `json:"id"`
	UserID         string              `json:"userId"`
	Seq            int64               `json:"seq"` // position in the user's queue
	BatchID        string              `json:"batchId"`
	IdempotencyKey string              `json:"idempotencyKey"`
	Alias          string              `json:"alias"`
	Amount         mlmsoft.Amount      `json:"amount"`
	OrderID        string              `json:"orderId"`
	State          mlmsoft.VolumeState `json:"state"`
	Attempts       int                 `json:"attempts"`
	NextAttemptAt  time.Time           `json:"nextAttemptAt,omitzero"`
	LastError      string              `json:"lastError,omitempty"`
	DocumentID     int64               `json:"documentId,omitempty"`
	AccountID      int64               `json:"accountId,omitempty"`
	CreatedAt      time.Time           `json:"createdAt"`
	UpdatedAt      time.Time           `json:"updatedAt"`
	SentAt         time.Time           `json:"sentAt,omitzero"`
	DeliveredAt    time.Time           `json:"deliveredAt,omitzero"`
	ResolvedBy     string              `json:"resolvedBy,omitempty"`
	ResolvedNote   string              `json:"resolvedNote,omitempty"`
	ResolvedAt     time.Time           `json:"resolvedAt,omitzero"`
	// CheckAfter, for an uncertain change, is when its lost request has
	// surely finished and MLM Soft's back office can be checked: SentAt
	// plus the request timeout plus a margin (the larger of the request
	// timeout and a minute).
	CheckAfter time.Time `json:"checkAfter,omitzero"`
	// Head is true when the change is its user's oldest change not yet
	// final: the one that holds the others.
	Head bool `json:"head,omitempty"`
	// Actions lists what an operator may do: retry and skip (parked);
	// resolve-applied, resolve-resend and skip (uncertain).
	Actions []string `json:"actions"`
}

// ChangeList is the volume changes page as JSON.
type ChangeList struct {
	Changes []Change `json:"changes"` // ordered by id
	// Next is the after parameter of the next page; 0 on the last page.
	Next int64 `json:"next,omitempty"`
	// States and UserID echo the filter (none: every state, every user).
	States []mlmsoft.VolumeState `json:"states,omitempty"`
	UserID string                `json:"userId,omitempty"`
}

// UserView is a user's page as JSON: their link and a page of their queue.
type UserView struct {
	Link  Link     `json:"link"`
	Queue []Change `json:"queue"` // ordered by id, which is queue order
	// Next is the after parameter of the queue's next page; 0 on the last.
	Next int64 `json:"next,omitempty"`
	// HeadID is the change that holds the user's queue (their oldest
	// change not yet final); 0 when none is open.
	HeadID int64 `json:"headId,omitempty"`
}

// ActionResult is a JSON client's answer to an action that was taken.
type ActionResult struct {
	OK      bool    `json:"ok"`
	Message string  `json:"message"`          // what was done, in plain words
	Change  *Change `json:"change,omitempty"` // the change as stored after a volume action
	Link    *Link   `json:"link,omitempty"`   // the link as stored after retry-link
}

// ErrorResponse is a JSON client's answer to a request that failed.
type ErrorResponse struct {
	// Error is a stable code: invalid_input, forbidden, not_found,
	// method_not_allowed, wrong_state, conflict, upstream_unavailable,
	// misconfigured or internal.
	Error   string `json:"error"`
	Message string `json:"message"`          // for people
	Detail  string `json:"detail,omitempty"` // the underlying error
	Status  int    `json:"status"`           // the HTTP status, repeated
}

// healthView describes h in plain words.
func healthView(h mlmsoft.Health) HealthView {
	v := HealthView{State: h.State, Reason: h.Reason, Since: h.Since}
	switch h.State {
	case mlmsoft.HealthOK:
		v.Summary = "MLM Soft answers: new users are linked and volume changes are delivered as they come."
		v.Advice = "Nothing."
	case mlmsoft.HealthUnavailable:
		v.Summary = "MLM Soft cannot be reached or keeps failing. Work waits and nothing is lost: " +
			"links and volume changes resume by themselves, in order, once MLM Soft answers again."
		v.Advice = "Check MLM Soft's status and the network between this application and MLM Soft. " +
			"Nothing needs to be done in this console."
	case mlmsoft.HealthMisconfigured:
		v.Summary = "MLM Soft refuses this integration's configuration (its API token, App-Id or address). " +
			"All sending is paused: nothing fails, parks or is lost, and no attempt is spent. " +
			"It resumes by itself as soon as MLM Soft accepts the configuration."
		v.Advice = "Compare the API token, App-Id and base URL configured for this application with the " +
			"API settings in MLM Soft's back office, or ask MLM Soft's support with the message below. " +
			"A fix made in MLM Soft needs nothing more; a fix of this application's configuration needs a restart."
	default:
		v.Summary = "Unknown state."
		v.Advice = "Look at the application's logs."
	}
	return v
}

// breakerView describes the breaker in plain words.
func breakerView(s mlmsoft.BreakerState, trips int) BreakerView {
	v := BreakerView{State: s, Trips: trips}
	switch s {
	case mlmsoft.BreakerClosed:
		v.Meaning = "Requests to MLM Soft flow normally."
	case mlmsoft.BreakerOpen:
		v.Meaning = "After repeated failures, requests to MLM Soft are held back for a while; nothing is spent meanwhile."
	case mlmsoft.BreakerHalfOpen:
		v.Meaning = "A few trial requests are let through to see whether MLM Soft is back."
	}
	return v
}

// overviewOf builds the overview from Stats.
func overviewOf(title string, st mlmsoft.Stats) Overview {
	o := Overview{
		Title:             title,
		Health:            healthView(st.Health),
		Breaker:           breakerView(st.Breaker, st.BreakerTrips),
		Links:             map[mlmsoft.LinkState]int{},
		Volumes:           map[mlmsoft.VolumeState]int{},
		OldestOpenSeconds: st.OldestOpen.Seconds(),
		Hooks:             HooksView{Owed: st.Hooks.Owed, Failing: st.Hooks.Failing},
		Totals: TotalsView{
			Delivered: st.Totals.Delivered, Retries: st.Totals.Retries, Failures: st.Totals.Failures,
			Uncertain: st.Totals.Uncertain, Linked: st.Totals.Linked, LinkFailures: st.Totals.LinkFailures,
			Misconfigurations: st.Totals.Misconfigurations, HookFailures: st.Totals.HookFailures,
		},
	}
	for _, s := range mlmsoft.LinkStates {
		o.Links[s] = st.Links[s]
	}
	for _, s := range mlmsoft.VolumeStates {
		o.Volumes[s] = st.Volumes[s]
	}
	if o.Totals.Failures == nil {
		o.Totals.Failures = map[string]int64{}
	}
	if o.Totals.Linked == nil {
		o.Totals.Linked = map[mlmsoft.LinkedVia]int64{}
	}
	return o
}

// linkOf returns l with its actions.
func linkOf(l mlmsoft.LinkInfo) Link {
	v := Link{LinkInfo: l, Actions: []string{}}
	if l.State == mlmsoft.LinkFailed {
		v.Actions = append(v.Actions, ActionRetryLink)
	}
	return v
}

// changeOf returns c as the console shows it; timeout is the plugin's
// request timeout.
func changeOf(c mlmsoft.VolumeChange, timeout time.Duration) Change {
	v := Change{
		ID: c.ID, UserID: c.UserID, Seq: c.Seq, BatchID: c.BatchID, IdempotencyKey: c.IdempotencyKey,
		Alias: c.Alias, Amount: c.Amount, OrderID: c.OrderID, State: c.State, Attempts: c.Attempts,
		NextAttemptAt: c.NextAttemptAt, LastError: c.LastError, DocumentID: c.DocumentID, AccountID: c.AccountID,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, SentAt: c.SentAt, DeliveredAt: c.DeliveredAt,
		ResolvedBy: c.ResolvedBy, ResolvedNote: c.ResolvedNote, ResolvedAt: c.ResolvedAt,
		Actions: []string{},
	}
	switch c.State {
	case mlmsoft.VolumeParked:
		v.Actions = append(v.Actions, ActionRetry, ActionSkip)
	case mlmsoft.VolumeUncertain:
		v.Actions = append(v.Actions, ActionResolveApplied, ActionResolveResend, ActionSkip)
		if !c.SentAt.IsZero() {
			v.CheckAfter = c.SentAt.Add(timeout + max(timeout, time.Minute))
		}
	}
	return v
}

// Can reports whether the change offers action (for templates).
func (c Change) Can(action string) bool { return slices.Contains(c.Actions, action) }

// Can reports whether the link offers action (for templates).
func (l Link) Can(action string) bool { return slices.Contains(l.Actions, action) }

// linkMeaning and volumeMeaning explain each state in plain words.
var linkMeaning = map[mlmsoft.LinkState]string{
	mlmsoft.LinkPending: "Recorded at sign-up; MLM Soft has not yet accepted the new account.",
	mlmsoft.LinkCreated: "MLM Soft accepted or has the account; waiting for its account id.",
	mlmsoft.LinkLinked:  "Linked to an MLM Soft account: volume changes are delivered.",
	mlmsoft.LinkFailed:  "The plugin gave up (the reason is shown): the user's volume changes wait. Retry after fixing the cause.",
}

var volumeMeaning = map[mlmsoft.VolumeState]string{
	mlmsoft.VolumePending:   "Waiting to be sent (or for MLM Soft to process it, or for the user's link).",
	mlmsoft.VolumeSending:   "On its way to MLM Soft.",
	mlmsoft.VolumeParked:    "MLM Soft refused it: it holds the user's queue until someone retries or skips it.",
	mlmsoft.VolumeUncertain: "Sent, but no usable answer came back: it may or may not have been applied. It holds the user's queue until someone checks MLM Soft and resolves it.",
	mlmsoft.VolumeDelivered: "MLM Soft has it. Final.",
	mlmsoft.VolumeRejected:  "Refused by MLM Soft and left behind (the queue went on). Final.",
	mlmsoft.VolumeSkipped:   "Someone chose not to deliver it. Final.",
}
