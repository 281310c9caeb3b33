package mlmsoft

import "errors"

// Sentinel errors. Match them with errors.Is: the plugin and the stores wrap
// them with context ("mlmsoft: get link: %w").
var (
	// ErrNotFound is returned by a Store, and by Plugin.Link, when the record
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

	// ErrLeaseLost is returned by VolumeStore.UpdateVolume when the caller no
	// longer holds the lease on the change's user (it expired and another
	// worker claimed it). The caller must drop the work: the new owner has it.
	ErrLeaseLost = errors.New("mlmsoft: lease lost")

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
	// and retried; callers only see it from synchronous calls such as the
	// check-auth handler.
	ErrUpstreamUnavailable = errors.New("mlmsoft: MLM Soft unavailable")

	// ErrNotRunning is returned by methods that need the background workers
	// (Wait on a batch handle, for instance) when the plugin was shut down.
	ErrNotRunning = errors.New("mlmsoft: plugin not running")
)
