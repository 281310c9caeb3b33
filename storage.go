package mlmsoft

import (
	"context"
	"time"
)

// This file holds everything a host implements to give the plugin its own
// storage. memstore (in memory) and sqlstore (SQLite, PostgreSQL, MySQL)
// implement it; storetest.Run checks any implementation against the contract
// written on each method.
//
// Times passed in (now) come from the plugin's clock: a store compares with
// them and never with its own clock, so tests can move time at will. Stores
// keep times to at least millisecond precision.

// Store is the storage the plugin needs: links between host users and MLM
// Soft accounts, and the outbox of volume changes. Its methods are called
// from many goroutines at once, and from several processes when replicas
// share a database: an implementation must be safe for that.
type Store interface {
	LinkStore
	VolumeStore
}

// LinkState is where a Link stands in the create-and-link flow.
type LinkState string

// The states of a link. A link moves pending → created → linked, or to failed
// from pending or created. A webhook or check-auth may link it from any state.
const (
	// LinkPending: recorded by OnUserRegistered; user/create not yet accepted.
	LinkPending LinkState = "pending"
	// LinkCreated: user/create accepted (queued as DocumentID, when
	// non-zero); waiting for the document, the webhook or check-auth.
	LinkCreated LinkState = "created"
	// LinkLinked: AccountID and MLMUserID are known. Final.
	LinkLinked LinkState = "linked"
	// LinkFailed: the flow gave up; LastError says why. A later webhook or
	// check-auth may still link it.
	LinkFailed LinkState = "failed"
)

// LinkedVia names what completed a link.
type LinkedVia string

// The ways a link completes.
const (
	LinkedViaCreate    LinkedVia = "create"     // user/create answered with the ids at once
	LinkedViaDocument  LinkedVia = "document"   // Type I: document/get
	LinkedViaWebhook   LinkedVia = "webhook"    // Type III
	LinkedViaCheckAuth LinkedVia = "check-auth" // Type II
	LinkedViaExists    LinkedVia = "exists"     // recovery: user/exists after an unacknowledged create
)

// Link ties one host user to one MLM Soft account. The plugin owns every field
// but UserID; a Store persists them all as given and returns them unchanged.
type Link struct {
	UserID string // the host's user id; the key. Never empty.
	Email  string // the MLM Soft login (an email), lower-cased; unique among links.

	// Profile sent with user/create.
	FirstName string
	LastName  string
	Phone     string
	CountryID string

	// Sponsor: the host user id of the sponsor (resolved through the
	// sponsor's own link) or an MLM Soft account id given directly. Both
	// empty: Config.DefaultSponsorAccountID.
	SponsorUserID    string
	SponsorAccountID int64

	State     LinkState
	AccountID int64     // MLM Soft account id (sponsor id and volume target); 0 until linked
	MLMUserID int64     // MLM Soft user id; 0 until known
	LinkedVia LinkedVia // set when linked

	DocumentID int64 // user/create's queued document; 0 if none

	// SealedPassword is the sign-up password encrypted with AES-GCM under
	// Config.PasswordKey; nil once user/create was accepted (or if none).
	SealedPassword []byte

	// CreateSentAt is set just before user/create is sent and cleared when
	// the answer proves it was not processed; when set on a pending link,
	// the create may have reached MLM Soft and user/exists is asked first.
	CreateSentAt time.Time
	// AcceptedAt is when user/create was accepted; deadlines count from it.
	AcceptedAt time.Time

	Attempts      int       // attempts in the current step (create, or polls)
	NextAttemptAt time.Time // the worker takes it up no sooner
	LastError     string    // the most recent failure, for people

	LeaseOwner string    // the worker holding it; "" when free
	LeaseUntil time.Time // the lease expires then

	CreatedAt time.Time
	UpdatedAt time.Time
	LinkedAt  time.Time

	// Version is the optimistic-concurrency counter. CreateLink stores 1;
	// each successful UpdateLink or claim increments it.
	Version int64
}

// LinkClaim asks LinkStore.ClaimLinks for due work.
type LinkClaim struct {
	Owner string        // the claiming worker; never empty
	Now   time.Time     // the plugin's clock
	Lease time.Duration // how long the claim holds
	Limit int           // at most this many links; > 0
}

// LinkFilter selects links for LinkStore.ListLinks.
type LinkFilter struct {
	States  []LinkState // empty: every state
	AfterID string      // keyset pagination: only UserID > AfterID
	Limit   int         // 0: no limit
}

// LinkStore persists links. Emails are compared as given: the plugin stores
// them lower-cased.
type LinkStore interface {
	// CreateLink stores a new link with Version 1 and returns it as stored.
	// It returns an error wrapping ErrDuplicate when a link with the same
	// UserID, or the same non-empty Email, exists.
	CreateLink(ctx context.Context, l Link) (Link, error)

	// GetLink returns the link of a host user, or an error wrapping
	// ErrNotFound.
	GetLink(ctx context.Context, userID string) (Link, error)

	// GetLinkByEmail returns the link whose Email equals email, or an error
	// wrapping ErrNotFound.
	GetLinkByEmail(ctx context.Context, email string) (Link, error)

	// UpdateLink replaces every field of the stored link with l's if the
	// stored Version equals l.Version, stores Version+1 and returns the link
	// as stored. It returns an error wrapping ErrNotFound when there is no
	// such link, ErrConflict when the version differs, and ErrDuplicate when
	// the new Email belongs to another link. UserID cannot change.
	UpdateLink(ctx context.Context, l Link) (Link, error)

	// ClaimLinks leases up to c.Limit links that are pending or created,
	// whose NextAttemptAt is not after c.Now, and whose lease is free or
	// expired (LeaseUntil before or at c.Now). It sets LeaseOwner = c.Owner
	// and LeaseUntil = c.Now + c.Lease, increments Version, and returns them
	// as stored, earliest NextAttemptAt first. Two concurrent calls never
	// return the same link while its lease holds.
	ClaimLinks(ctx context.Context, c LinkClaim) ([]Link, error)

	// ListLinks returns links matching f ordered by UserID.
	ListLinks(ctx context.Context, f LinkFilter) ([]Link, error)

	// CountLinks returns how many links are in each state (states with none
	// may be absent).
	CountLinks(ctx context.Context) (map[LinkState]int, error)
}

// VolumeState is where a VolumeChange stands in the outbox.
type VolumeState string

// The states of a volume change. Pending, sending, parked and uncertain hold
// their user's queue: nothing later of that user is sent while one of them is
// the user's oldest unfinished change. Delivered, rejected and skipped are
// final and let the queue move on.
const (
	// VolumePending waits to be sent (NextAttemptAt), or, with DocumentID
	// set, waits for MLM Soft's document to be processed.
	VolumePending VolumeState = "pending"
	// VolumeSending: the request is (or was, before a crash) on its way.
	// Found at the head of a claim, it means the outcome was never recorded.
	VolumeSending VolumeState = "sending"
	// VolumeDelivered: MLM Soft acknowledged it (or an operator resolved an
	// uncertain change as applied). Final.
	VolumeDelivered VolumeState = "delivered"
	// VolumeParked: MLM Soft refused it for good (LastError has its message)
	// or the user's link failed; it holds the queue until an operator
	// retries or skips it.
	VolumeParked VolumeState = "parked"
	// VolumeUncertain: sent, but no answer came back; it may or may not have
	// been applied. It holds the queue until resolved as applied or resend.
	VolumeUncertain VolumeState = "uncertain"
	// VolumeRejected: refused for good under ParkPolicyContinue, which lets
	// the rest of the queue go on. Final.
	VolumeRejected VolumeState = "rejected"
	// VolumeSkipped: an operator chose not to deliver it. Final.
	VolumeSkipped VolumeState = "skipped"
)

// Final reports whether s is a final state (delivered, rejected, skipped).
func (s VolumeState) Final() bool {
	return s == VolumeDelivered || s == VolumeRejected || s == VolumeSkipped
}

// VolumeChange is one property change for one user: one request to MLM Soft's
// account/volume-change. The plugin owns every field; a Store persists them as
// given, except ID and Seq, which EnqueueVolumes assigns.
type VolumeChange struct {
	ID     int64  // store-assigned, unique, > 0
	UserID string // the host user whose account it targets
	Seq    int64  // store-assigned position in the user's queue: 1, 2, 3...

	BatchID        string // the ApplyVolumes call it came from
	IdempotencyKey string // unique across the store

	Alias   string // the volume property alias, e.g. "PV" or "Status"
	Amount  Amount // exact decimal; negative for corrections
	OrderID string // the host's order id

	State         VolumeState
	Attempts      int       // requests sent (or tried) for it
	NextAttemptAt time.Time // not sent before then
	LastError     string    // the most recent failure, for people
	DocumentID    int64     // set when MLM Soft queued it as a document
	AccountID     int64     // the account it was sent to, once sent

	CreatedAt   time.Time
	UpdatedAt   time.Time
	SentAt      time.Time // the last time it was sent
	DeliveredAt time.Time

	// Audit of the last operator action (retry, resolve, skip).
	ResolvedBy   string
	ResolvedNote string
	ResolvedAt   time.Time
}

// VolumeClaim asks VolumeStore.ClaimVolumes for due work.
type VolumeClaim struct {
	Owner string        // the claiming worker; never empty
	Now   time.Time     // the plugin's clock
	Lease time.Duration // how long the claim on each user holds
	Limit int           // at most this many users; > 0
	// Exclude lists users the caller is working on already; never claimed.
	Exclude []string
}

// VolumeUpdate is one state change of one VolumeChange, applied by
// VolumeStore.UpdateVolume. Every field of the change listed here is written
// as given (zero values included).
type VolumeUpdate struct {
	ID int64

	// Owner is the worker holding the lease on the change's user. Empty means
	// an operator action: the user must then not be leased by anyone (or the
	// lease must have expired).
	Owner string
	// From, when non-empty, lists the states the change must be in;
	// otherwise ErrConflict.
	From []VolumeState
	// Release ends the Owner's lease on the user after the update.
	Release bool

	State         VolumeState
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	DocumentID    int64
	AccountID     int64
	SentAt        time.Time
	DeliveredAt   time.Time
	ResolvedBy    string
	ResolvedNote  string
	ResolvedAt    time.Time
	UpdatedAt     time.Time
}

// VolumeFilter selects changes for VolumeStore.ListVolumes.
type VolumeFilter struct {
	UserID  string        // "": every user
	States  []VolumeState // empty: every state
	AfterID int64         // keyset pagination: only ID > AfterID
	Limit   int           // 0: no limit
}

// VolumeCounts summarises the outbox for Stats.
type VolumeCounts struct {
	ByState map[VolumeState]int
	// OldestPending is the CreatedAt of the oldest change that is pending or
	// sending; zero when there is none.
	OldestPending time.Time
}

// VolumeStore is the durable outbox of volume changes. Order is per user: a
// user's changes are delivered in Seq order, one at a time, and a user's queue
// is worked on by at most one worker at a time (the lease).
type VolumeStore interface {
	// EnqueueVolumes stores the changes atomically (all or none) in the given
	// order and returns them as stored, in the same order. For each new change
	// it assigns ID and Seq (the next positions in its user's queue; Seq order
	// equals commit order for concurrent enqueues of one user). A change whose
	// IdempotencyKey is stored already is not stored again: the stored change
	// is returned in its place, or, if it differs in UserID, Alias, Amount or
	// OrderID, the call fails with an error wrapping ErrIdempotencyConflict
	// and stores nothing.
	EnqueueVolumes(ctx context.Context, changes []VolumeChange) ([]VolumeChange, error)

	// GetVolumes returns the changes with the given ids, in the order asked.
	// A missing id is an error wrapping ErrNotFound.
	GetVolumes(ctx context.Context, ids []int64) ([]VolumeChange, error)

	// ClaimVolumes finds users whose oldest change not in a final state (the
	// head) is pending or sending with NextAttemptAt not after c.Now, whose
	// lease is free or expired, and who are not in c.Exclude; leases up to
	// c.Limit of them to c.Owner until c.Now + c.Lease and returns their
	// heads, earliest NextAttemptAt first. A user whose head is parked or
	// uncertain is not claimed. Concurrent calls never lease one user to two
	// owners while the lease holds.
	ClaimVolumes(ctx context.Context, c VolumeClaim) ([]VolumeChange, error)

	// UpdateVolume applies u and returns the change as stored. Errors wrap
	// ErrNotFound (no such id), ErrLeaseLost (u.Owner is not the owner of the
	// user's lease, because it expired and another worker claimed the user;
	// or, for an operator update with Owner "", someone holds a lease still
	// live at u.UpdatedAt) or ErrConflict (the state is not in u.From).
	// Nothing is written on error.
	UpdateVolume(ctx context.Context, u VolumeUpdate) (VolumeChange, error)

	// ReleaseVolumeUser ends owner's lease on userID. Releasing a lease one
	// does not hold is not an error and changes nothing.
	ReleaseVolumeUser(ctx context.Context, owner, userID string) error

	// WakeVolumes sets NextAttemptAt to at for the user's pending changes
	// whose NextAttemptAt is later, so they are claimed at once (used when a
	// user's link completes).
	WakeVolumes(ctx context.Context, userID string, at time.Time) error

	// ListVolumes returns changes matching f ordered by ID.
	ListVolumes(ctx context.Context, f VolumeFilter) ([]VolumeChange, error)

	// CountVolumes summarises the outbox.
	CountVolumes(ctx context.Context) (VolumeCounts, error)
}
