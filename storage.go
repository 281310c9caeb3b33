package mlmsoft

import (
	"context"
	"database/sql"
	"time"
)

// This file holds everything a store implements to keep the plugin's state.
//
// # Who implements it
//
// memstore (in memory, for tests and demos) and sqlstore (SQLite,
// PostgreSQL, MySQL/MariaDB) implement Store. A host may write its own; it
// must pass the conformance suite, storetest.Run, which checks every promise
// written on the methods below.
//
// # How the contract is versioned
//
// The contract is part of this module's API and follows its version. Within
// a major version:
//   - records (Link, VolumeChange, Event) may gain fields; a store persists
//     every exported field of a record it is given and returns it unchanged
//     (storetest fills every field of every record by reflection, so a store
//     that drops a new field fails the suite as soon as it is upgraded);
//   - a store interprets no field but those named in the method docs below
//     (keys, NextAttemptAt, Version, State only through Final, leases), so a
//     new state or a new field needs no store change beyond persisting it;
//   - new capabilities arrive only as new optional interfaces, found by type
//     assertion (as TxStore and WorkListener are), never as new methods of
//     Store.
//
// # Time
//
// Times passed in (Now, UpdatedAt...) come from the plugin's clock: a store
// compares with them and never with its own clock, so tests can move time at
// will. Stores keep times to at least millisecond precision and may return
// them in any location.
//
// # Leases
//
// Links, users' volume queues and hook events are worked on under leases,
// all alike: a claim (ClaimLinks, ClaimVolumes, ClaimEvents) leases due work
// to an owner token until Now + Lease. An update by that owner (Owner set)
// requires that the owner still holds the lease — it may have expired, as
// long as nobody claimed the work since — and ends it unless it asks to keep
// it. An update without an owner (webhook, check-auth, an operator) neither
// needs nor touches a lease: a compare-and-swap (a link's Version, a
// change's state) keeps it from overwriting a worker's progress. The plugin
// makes every claim's owner token unique, so a worker whose lease lapsed
// never passes for the one that took over.

// Store is the storage the plugin needs: links between host users and MLM
// Soft accounts, the outbox of volume changes, and the hook events owed to
// the host. Its methods are called from many goroutines at once, and from
// several processes when replicas share a database: an implementation must
// be safe for that.
type Store interface {
	LinkStore
	VolumeStore
	EventStore

	// Counts summarises the store for Stats. It should cost little however
	// much the store holds (sqlstore keeps counters).
	Counts(ctx context.Context) (Counts, error)
}

// Lease is a claim on a unit of work, set by a store's Claim methods.
type Lease struct {
	Owner string    // the claim's owner token; "" when free
	Until time.Time // the lease lapses then
}

// Held reports whether the lease is held by someone at t.
func (l Lease) Held(t time.Time) bool { return l.Owner != "" && l.Until.After(t) }

// LinkState is where a Link stands in the create-and-link flow.
type LinkState string

// The states of a link. A link moves pending → created → linked, or to failed
// from pending or created. A webhook or check-auth may link it from any state,
// and Plugin.RetryLink takes a failed link back to pending.
const (
	// LinkPending: recorded by OnUserRegistered; user/create not yet accepted.
	LinkPending LinkState = "pending"
	// LinkCreated: user/create accepted (queued as DocumentID, when
	// non-zero), or MLM Soft is known to have the account; waiting for the
	// document, user/exists, the webhook or check-auth.
	LinkCreated LinkState = "created"
	// LinkLinked: AccountID is known.
	LinkLinked LinkState = "linked"
	// LinkFailed: the flow gave up; LastError says why. A webhook, check-auth
	// or Plugin.RetryLink may still complete it.
	LinkFailed LinkState = "failed"
)

// LinkStates lists every LinkState, in flow order.
var LinkStates = []LinkState{LinkPending, LinkCreated, LinkLinked, LinkFailed}

// LinkedVia names what completed a link.
type LinkedVia string

// The ways a link completes.
const (
	LinkedViaCreate    LinkedVia = "create"     // user/create answered with the ids at once
	LinkedViaDocument  LinkedVia = "document"   // Type I: document/get
	LinkedViaWebhook   LinkedVia = "webhook"    // Type III
	LinkedViaCheckAuth LinkedVia = "check-auth" // Type II
	LinkedViaExists    LinkedVia = "exists"     // user/exists, after an unacknowledged or refused create
)

// Link is the stored record that ties one host user to one MLM Soft account.
// The plugin owns every field; a store persists them all as given (Version
// and Lease aside) and interprets only UserID, Email, NextAttemptAt, Version
// and Lease (and State as an opaque label, for Counts and ListLinks). Hosts
// read links through Plugin.Link, as a LinkInfo.
type Link struct {
	UserID string // the host's user id; the key. Never empty.
	Email  string // the MLM Soft login (an email); unique among links when not empty.

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
	// CreateAttempts counts the user/create requests that may have reached
	// MLM Soft for this link (one that certainly did not is not counted).
	CreateAttempts int
	// AcceptedAt is when user/create was accepted; deadlines count from it.
	AcceptedAt time.Time

	Attempts int // attempts in the current step (create, or polls)
	// NextAttemptAt is when the link is due for the worker; the zero time
	// means never (linked and failed links).
	NextAttemptAt time.Time
	LastError     string // the most recent failure, for people

	CreatedAt time.Time
	UpdatedAt time.Time
	LinkedAt  time.Time

	// Audit of the last operator action (Plugin.RetryLink).
	ResolvedBy   string
	ResolvedNote string
	ResolvedAt   time.Time

	// Version is the optimistic-concurrency counter: CreateLink stores 1,
	// each successful UpdateLink adds one. Claims do not change it.
	Version int64
	// Lease is the worker lease, set by ClaimLinks and UpdateLink; a store
	// ignores it in the records it is given.
	Lease Lease
}

// LinkClaim asks LinkStore.ClaimLinks for due links.
type LinkClaim struct {
	Owner string        // the claim's owner token; never empty
	Now   time.Time     // the plugin's clock
	Lease time.Duration // how long the claim holds
	Limit int           // at most this many links; > 0
}

// LinkUpdate is one write of a link by LinkStore.UpdateLink.
type LinkUpdate struct {
	// Link is the new record: every field is written as given except
	// UserID (the key), Version and Lease. Link.Version must equal the
	// stored Version (compare-and-swap).
	Link Link
	// Owner, when set, is the worker's claim token: it must hold the
	// link's lease, which the update ends unless KeepLease. Empty: the
	// lease is neither checked nor changed.
	Owner string
	// KeepLease (with Owner) keeps the lease, now ending at LeaseUntil.
	KeepLease  bool
	LeaseUntil time.Time
	// WakeVolumes makes, in the same atomic write, every open volume change
	// of the user whose NextAttemptAt is later than Link.UpdatedAt due at
	// Link.UpdatedAt (the user's changes waited for this link).
	WakeVolumes bool
	// Events are stored in the same atomic write (the hooks this change
	// owes the host).
	Events []Event
}

// LinkFilter selects links for LinkStore.ListLinks.
type LinkFilter struct {
	States      []LinkState // empty: every state
	EmailPrefix string      // only links whose Email starts with it (byte-wise); "": all
	AfterID     string      // keyset pagination: only UserID > AfterID
	Limit       int         // 0: no limit
}

// LinkStore persists links.
type LinkStore interface {
	// CreateLink stores a new link with Version 1 and no lease, and the
	// events, atomically, and returns the link as stored. It returns an
	// error wrapping ErrDuplicate, and stores nothing, when a link with the
	// same UserID, or the same non-empty Email, exists.
	CreateLink(ctx context.Context, l Link, events ...Event) (Link, error)

	// GetLink returns the link of a host user, or an error wrapping
	// ErrNotFound.
	GetLink(ctx context.Context, userID string) (Link, error)

	// GetLinkByEmail returns the link whose Email equals email (byte-wise),
	// or an error wrapping ErrNotFound (always so for "").
	GetLinkByEmail(ctx context.Context, email string) (Link, error)

	// UpdateLink applies u atomically and returns the link as stored. Errors
	// wrap ErrNotFound (no such link), ErrLeaseLost (u.Owner is set and does
	// not hold the lease: it lapsed and another worker claimed the link),
	// ErrConflict (the stored Version differs from u.Link.Version) or
	// ErrDuplicate (the new Email belongs to another link), checked in that
	// order; nothing is written on error.
	UpdateLink(ctx context.Context, u LinkUpdate) (Link, error)

	// ClaimLinks leases to c.Owner, until c.Now + c.Lease, up to c.Limit
	// links that are due (NextAttemptAt not zero and not after c.Now) and
	// whose lease is free or lapsed at c.Now, and returns them as stored,
	// earliest NextAttemptAt first, then by UserID. Concurrent claims never
	// lease one link to two owners while a lease holds.
	ClaimLinks(ctx context.Context, c LinkClaim) ([]Link, error)

	// ListLinks returns links matching f ordered by UserID (byte-wise).
	ListLinks(ctx context.Context, f LinkFilter) ([]Link, error)
}

// VolumeState is where a VolumeChange stands in the outbox.
type VolumeState string

// The states of a volume change. A change that is not Final holds its user's
// queue: nothing later of that user is sent while it is the user's oldest
// change not in a final state (the head).
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
	// VolumeParked: MLM Soft refused it for good (LastError has its
	// message); it holds the queue until an operator retries or skips it.
	VolumeParked VolumeState = "parked"
	// VolumeUncertain: sent, but no usable answer came back; it may or may
	// not have been applied. It holds the queue until an operator resolves
	// it as applied or resend (or skips it).
	VolumeUncertain VolumeState = "uncertain"
	// VolumeRejected: refused for good under ParkPolicyContinue, which lets
	// the rest of the queue go on. Final.
	VolumeRejected VolumeState = "rejected"
	// VolumeSkipped: an operator chose not to deliver it. Final.
	VolumeSkipped VolumeState = "skipped"
)

// VolumeStates lists every VolumeState: the open ones, then the final ones.
var VolumeStates = []VolumeState{VolumePending, VolumeSending, VolumeParked, VolumeUncertain, VolumeDelivered, VolumeRejected, VolumeSkipped}

// FinalVolumeStates lists the final states (those for which Final is true).
// A SQL store builds its queries from it.
var FinalVolumeStates = []VolumeState{VolumeDelivered, VolumeRejected, VolumeSkipped}

// Final reports whether s is a final state (delivered, rejected, skipped):
// one that no longer holds its user's queue.
func (s VolumeState) Final() bool {
	return s == VolumeDelivered || s == VolumeRejected || s == VolumeSkipped
}

// VolumeChange is one property change for one user: one request to MLM Soft's
// account/volume-change. Its JSON form (camelCase names, the amount as an
// exact JSON number) is what hook events and the console show. The plugin owns every field; a store persists them
// as given, except ID and Seq, which EnqueueVolumes assigns, and interprets
// only ID, UserID, Seq, IdempotencyKey, State (through Final, and as a label
// for Counts and ListVolumes), NextAttemptAt, DocumentID (VolumeUpdate.Send)
// and UpdatedAt.
type VolumeChange struct {
	ID     int64  `json:"id"`     // store-assigned, unique, > 0; increasing in enqueue order
	UserID string `json:"userId"` // the host user whose account it targets
	Seq    int64  `json:"seq"`    // store-assigned position in the user's queue: 1, 2, 3...

	BatchID        string `json:"batchId"`        // the ApplyVolumes call it came from
	IdempotencyKey string `json:"idempotencyKey"` // unique across the store while the change is kept; never empty

	Alias   string `json:"alias"`   // the volume property alias, e.g. "PV" or "Status"
	Amount  Amount `json:"amount"`  // exact decimal; negative for corrections
	OrderID string `json:"orderId"` // the host's order id

	State    VolumeState `json:"state"`
	Attempts int         `json:"attempts"` // requests sent for it
	// NextAttemptAt is when the change is due, at the head of its queue;
	// the zero time means it waits for a person (parked, uncertain) or is
	// final.
	NextAttemptAt time.Time `json:"nextAttemptAt,omitzero"`
	LastError     string    `json:"lastError,omitempty"`  // the most recent failure, for people
	DocumentID    int64     `json:"documentId,omitempty"` // set when MLM Soft queued it as a document
	AccountID     int64     `json:"accountId,omitempty"`  // the account it was sent to, once sent

	CreatedAt   time.Time `json:"createdAt"`
	UpdatedAt   time.Time `json:"updatedAt"`
	SentAt      time.Time `json:"sentAt,omitzero"` // the last time it was sent
	DeliveredAt time.Time `json:"deliveredAt,omitzero"`

	// Audit of the last operator action (retry, resolve, skip).
	ResolvedBy   string    `json:"resolvedBy,omitempty"`
	ResolvedNote string    `json:"resolvedNote,omitempty"`
	ResolvedAt   time.Time `json:"resolvedAt,omitzero"`
}

// VolumeClaim asks VolumeStore.ClaimVolumes for due users.
type VolumeClaim struct {
	Owner string        // the claim's owner token; never empty
	Now   time.Time     // the plugin's clock
	Lease time.Duration // how long the claim on each user holds
	Limit int           // at most this many users; > 0
	// Send also marks each claimed head sending, in the same atomic write,
	// when the head is pending, has no DocumentID, and its user's link is
	// LinkLinked with a non-zero AccountID: State VolumeSending, Attempts
	// one more, SentAt and UpdatedAt Now, AccountID the link's; every
	// other field kept. Such heads come back with Sending true: their
	// request may leave at once. (The claim is then the write-ahead, as a
	// job queue's fetch marks jobs running.)
	Send bool
}

// ClaimedVolume is one user's head returned by VolumeStore.ClaimVolumes.
type ClaimedVolume struct {
	Change VolumeChange // the head as stored after the claim
	// Sending reports that this claim marked the head sending
	// (VolumeClaim.Send). A head that was sending already (a worker
	// stopped while sending it) comes back with Sending false.
	Sending bool
}

// VolumeUpdate is one state change of one VolumeChange, applied by
// VolumeStore.UpdateVolume. Every field below From is written to the change
// as given (zero values included).
type VolumeUpdate struct {
	ID int64
	// Owner, when set, is the worker's claim token: it must hold the lease
	// on the change's user, which the update ends unless KeepLease (or
	// Send). Empty (an operator): the lease is neither needed nor changed.
	Owner string
	// KeepLease (with Owner) keeps the lease, now ending at LeaseUntil.
	KeepLease  bool
	LeaseUntil time.Time
	// From lists the states the change must be in (compare-and-swap);
	// never empty.
	From []VolumeState

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

	// Send (with Owner; ignored without) continues the worker's run over
	// the user's queue in the same atomic write: once the change is
	// written, if the user's head is now another change that is pending,
	// has no DocumentID and is due at Send.At, that change is marked
	// sending (see VolumeSend) and the lease is kept until LeaseUntil;
	// otherwise the lease ends, unless KeepLease.
	Send *VolumeSend

	// Events are stored in the same atomic write.
	Events []Event
}

// VolumeSend marks the next change of a user's queue sending: State
// VolumeSending, Attempts one more, SentAt and UpdatedAt At, AccountID as
// given; every other field is kept.
type VolumeSend struct {
	At        time.Time
	AccountID int64
}

// VolumeUpdated is what VolumeStore.UpdateVolume returns.
type VolumeUpdated struct {
	Change VolumeChange // the change as stored
	// Next is the user's next change, marked sending by VolumeUpdate.Send;
	// its ID is 0 when none was.
	Next VolumeChange
}

// VolumeFilter selects changes for VolumeStore.ListVolumes.
type VolumeFilter struct {
	UserID  string        // "": every user
	States  []VolumeState // empty: every state
	AfterID int64         // keyset pagination: only ID > AfterID
	Limit   int           // 0: no limit
}

// VolumeStore is the durable outbox of volume changes. Order is per user: a
// user's changes are delivered in Seq order, one at a time, and a user's queue
// is worked on by at most one worker at a time (the lease on the user).
type VolumeStore interface {
	// EnqueueVolumes stores the changes atomically (all or none) in the given
	// order and returns them as stored, in the same order. For each new change
	// it assigns ID and Seq (the next positions in its user's queue; Seq order
	// equals commit order for concurrent enqueues of one user). A change whose
	// IdempotencyKey is stored already (or appears earlier in the call) is not
	// stored again: the stored change is returned in its place, or, if it
	// differs in UserID, Alias, Amount or OrderID, the call fails with an
	// error wrapping ErrIdempotencyConflict and stores nothing.
	EnqueueVolumes(ctx context.Context, changes []VolumeChange) ([]VolumeChange, error)

	// GetVolumes returns the changes with the given ids, in the order asked.
	// A missing id is an error wrapping ErrNotFound.
	GetVolumes(ctx context.Context, ids []int64) ([]VolumeChange, error)

	// ClaimVolumes finds users whose head (the lowest-Seq change whose State
	// is not Final) is due (NextAttemptAt not zero and not after c.Now) and
	// whose lease is free or lapsed at c.Now; leases up to c.Limit of them
	// to c.Owner until c.Now + c.Lease, marks their heads sending when
	// c.Send says so, and returns the heads, earliest NextAttemptAt first,
	// then by ID. Concurrent calls never lease one user to two owners while
	// a lease holds. Its cost must not grow with the number of changes
	// stored.
	ClaimVolumes(ctx context.Context, c VolumeClaim) ([]ClaimedVolume, error)

	// UpdateVolume applies u atomically. Errors wrap ErrNotFound (no such
	// id), ErrLeaseLost (u.Owner is set and does not hold the lease on the
	// change's user) or ErrConflict (the change's state is not in u.From),
	// checked in that order; nothing is written on error.
	UpdateVolume(ctx context.Context, u VolumeUpdate) (VolumeUpdated, error)

	// ListVolumes returns changes matching f ordered by ID.
	ListVolumes(ctx context.Context, f VolumeFilter) ([]VolumeChange, error)

	// PurgeVolumes deletes up to limit changes that are in a final state
	// and whose UpdatedAt is before before, lowest ID first, and returns how
	// many it deleted (0 when none is left). Their idempotency keys are
	// forgotten with them. limit > 0.
	PurgeVolumes(ctx context.Context, before time.Time, limit int) (int, error)
}

// EventKind names what a hook event reports.
type EventKind string

// The kinds of hook events.
const (
	EventLinked     EventKind = "linked"      // for Hooks.OnLinked
	EventLinkFailed EventKind = "link-failed" // for Hooks.OnLinkFailed
	EventVolume     EventKind = "volume"      // for Hooks.OnVolume
)

// Event is a host hook the plugin owes: stored in the same atomic write as
// the state change it reports, and deleted once the hook returned without
// error. The plugin owns every field; a store persists them as given (Lease
// aside) and interprets only ID, NextAttemptAt, CreatedAt and Lease.
type Event struct {
	ID            string // unique; made by the plugin; stable across retries
	Kind          EventKind
	UserID        string
	Payload       []byte    // the plugin's encoding of what happened
	Attempts      int       // hook calls that failed so far
	NextAttemptAt time.Time // due then (always set by the plugin)
	LastError     string    // the last failure, for people
	CreatedAt     time.Time
	// Lease is set by ClaimEvents; a store ignores it in the events it is
	// given.
	Lease Lease
}

// EventClaim asks EventStore.ClaimEvents for due events.
type EventClaim struct {
	Owner string        // the claim's owner token; never empty
	Now   time.Time     // the plugin's clock
	Lease time.Duration // how long the claim holds
	Limit int           // at most this many events; > 0
}

// EventUpdate settles one claimed event.
type EventUpdate struct {
	ID    string
	Owner string // the claim's owner token; must hold the event's lease
	// Done deletes the event (the hook ran). Otherwise Attempts,
	// NextAttemptAt and LastError are written and the lease ends.
	Done          bool
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
}

// EventStore keeps the hook events owed to the host.
type EventStore interface {
	// ClaimEvents leases to c.Owner, until c.Now + c.Lease, up to c.Limit
	// events due at c.Now whose lease is free or lapsed, and returns them,
	// earliest NextAttemptAt first, then by CreatedAt, then by ID.
	ClaimEvents(ctx context.Context, c EventClaim) ([]Event, error)

	// UpdateEvent applies u. Errors wrap ErrNotFound (no such event) or
	// ErrLeaseLost (u.Owner does not hold its lease); nothing is written on
	// error.
	UpdateEvent(ctx context.Context, u EventUpdate) error
}

// Counts summarises a store for Stats.
type Counts struct {
	Links   map[LinkState]int   // links per state (states with none may be absent)
	Volumes map[VolumeState]int // stored volume changes per state (likewise)
	// OldestOpen is the CreatedAt of the oldest volume change not in a
	// final state; zero when there is none.
	OldestOpen time.Time
	Events     int // hook events owed
	// FailingEvents counts owed events whose hook failed at least once
	// (Attempts > 0).
	FailingEvents int
}

// TxStore is implemented by stores that can write in the host's own
// database transaction (sqlstore does, on every dialect), so that a host's
// order and its volume changes, or its new user and the pending link, commit
// or roll back together. Plugin.ApplyVolumesTx and
// Plugin.OnUserRegisteredTx find it by type assertion. Each method does only
// what its Store counterpart does, using tx for every statement; it never
// commits or rolls tx back, and on error it leaves tx usable (its own
// statements undone to a savepoint, the host's kept).
type TxStore interface {
	Store
	// GetLinkTx is GetLink inside tx (it sees links created in tx).
	GetLinkTx(ctx context.Context, tx *sql.Tx, userID string) (Link, error)
	// CreateLinkTx is CreateLink inside tx.
	CreateLinkTx(ctx context.Context, tx *sql.Tx, l Link, events ...Event) (Link, error)
	// EnqueueVolumesTx is EnqueueVolumes inside tx, with the same
	// idempotency (a key committed meanwhile by another transaction is
	// found, not stored twice).
	EnqueueVolumesTx(ctx context.Context, tx *sql.Tx, changes []VolumeChange) ([]VolumeChange, error)
}

// WorkListener is implemented by stores that can tell the plugin when work
// became due elsewhere — a change or link written by another replica, or by
// a host transaction once it commits — so that it is taken up at once rather
// than at the next idle poll (sqlstore does on PostgreSQL, with
// LISTEN/NOTIFY). The plugin finds it by type assertion.
type WorkListener interface {
	// ListenForWork calls wake, from any goroutine, whenever work may have
	// become due, until ctx ends; then it returns ctx's error. It returns
	// another error when it cannot listen (the plugin then tries again
	// later, relying on Config.IdleRecheck meanwhile).
	ListenForWork(ctx context.Context, wake func()) error
}
