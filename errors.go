package mlmsoft

import "errors"

// Sentinel errors. Match them with errors.Is: the plugin and the stores wrap
// them with context ("mlmsoft: link of \"42\": mlmsoft: not found").
var (
	// ErrNotFound is returned by a Store, and by the plugin's methods that
	// read one record (Plugin.Link, the operator methods), when the record
	// asked for does not exist.
	ErrNotFound = errors.New("mlmsoft: not found")

	// ErrDuplicate is returned by Store.CreateLink when a link for the same
	// host user or the same MLM Soft login already exists, and by
	// OnUserRegistered when the user was registered before.
	ErrDuplicate = errors.New("mlmsoft: already exists")

	// ErrConflict is returned by a Store when a compare-and-swap update finds
	// the record changed since it was read (Link.Version or a VolumeUpdate's
	// From states no longer match). The caller re-reads and decides again.
	ErrConflict = errors.New("mlmsoft: record changed concurrently")

	// ErrLeaseLost is returned by a Store's updates when the worker making
	// them no longer holds the lease on the work (it lapsed and another
	// worker claimed it). The caller must drop the work: the new owner has
	// it.
	ErrLeaseLost = errors.New("mlmsoft: lease lost")

	// ErrWrongState is returned by the operator methods (RetryVolume,
	// ResolveVolume, SkipVolume, RetryLink) when the record is not in a
	// state the action applies to (resolving a change that is not
	// uncertain, say). The message names the state it is in.
	ErrWrongState = errors.New("mlmsoft: not in a state this action applies to")

	// ErrIdempotencyConflict is returned by VolumeStore.EnqueueVolumes and
	// Plugin.ApplyVolumes when an idempotency key is already stored for a
	// change with different content (user, alias, amount or order id).
	ErrIdempotencyConflict = errors.New("mlmsoft: idempotency key reused with different content")

	// ErrInvalidInput is wrapped by every validation error of the plugin's
	// public methods (OnUserRegistered, ApplyVolumes, ...). The message names
	// the offending field.
	ErrInvalidInput = errors.New("mlmsoft: invalid input")

	// ErrInvalidConfig is wrapped by the errors New returns for a bad Config.
	// The message names the field.
	ErrInvalidConfig = errors.New("mlmsoft: invalid config")

	// ErrUpstreamUnavailable is returned (wrapped, with the cause kept) when
	// MLM Soft cannot be reached or the circuit breaker is open. Work is kept
	// and retried; callers only see it from synchronous calls such as
	// Plugin.Check and the check-auth handler.
	ErrUpstreamUnavailable = errors.New("mlmsoft: MLM Soft unavailable")

	// ErrMisconfigured is returned (wrapped, with MLM Soft's own message)
	// when MLM Soft refuses the integration itself: a wrong API token,
	// App-Id or base URL (HTTP 401, 403 or 404 on the API path, a redirect,
	// or a refusal whose message matches Config.MisconfigMessages). While it
	// lasts the plugin pauses all sending, spends no attempts, and probes
	// MLM Soft until it accepts the configuration again; see Health.
	ErrMisconfigured = errors.New("mlmsoft: MLM Soft refuses the integration's configuration")

	// ErrAlreadyLinked is returned when a user linked to one MLM Soft
	// account is asked to link to another and relinking is not allowed.
	ErrAlreadyLinked = errors.New("mlmsoft: user is linked to another MLM Soft account")

	// ErrNotDelivered is wrapped by the *BatchError that Batch.Wait returns
	// when a change of the batch ended parked, uncertain, rejected or
	// skipped.
	ErrNotDelivered = errors.New("mlmsoft: volume change not delivered")

	// ErrNotRunning is returned by methods that need the background workers
	// (Wait on a batch handle, for instance) when the plugin was shut down.
	ErrNotRunning = errors.New("mlmsoft: plugin not running")
)
