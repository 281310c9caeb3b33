// Package mlmsoft keeps a Go web app (plain net/http or Gin) in step with an
// MLM Soft back office: every new user of the app gets an MLM Soft account
// linked to the app's own user record, and every purchase or status change
// reaches MLM Soft as volume/property changes, in order, durably, never lost
// and never doubled.
//
// # The API at a glance
//
// Set up, once per process:
//   - New(store, Config) validates the configuration (errors name the field)
//     and returns a *Plugin; Plugin.Start starts its workers and
//     Plugin.Shutdown stops them. Plugin.Check verifies BaseURL and APIToken
//     with one harmless signed call.
//   - The Store keeps the plugin's state: sqlstore (SQLite, PostgreSQL,
//     MySQL/MariaDB) in production, memstore in tests. storage.go is the
//     contract a store implements; storetest.Run checks one.
//
// In the host's request handlers:
//   - Plugin.OnUserRegistered (or OnUserRegisteredTx, inside the host's own
//     database transaction) after sign-up: returns at once; the link is made
//     in the background (user/create, then document polling, the webhook or
//     check-auth).
//   - Plugin.ApplyVolumes (or ApplyVolumesTx) after a purchase: stores an
//     ordered batch of Change values and returns a *Batch, whose Wait blocks
//     until MLM Soft has them.
//   - Plugin.WebhookHandler and Plugin.CheckAuthHandler are http.Handlers,
//     mounted by ginadapter.Mount or nethttpadapter.Mount at WebhookPath and
//     CheckAuthPath. The webhook's signature headers are
//     WebhookTimestampHeaderDefault and WebhookSignatureHeaderDefault
//     (see WebhookSignature).
//
// Reading state:
//   - Plugin.Link returns a user's LinkInfo; Plugin.ListLinks pages through
//     links by state or e-mail.
//   - Plugin.Stats returns counts per state, the age of the oldest
//     undelivered change, hook backlog, breaker state, Health and this
//     process's Totals; Plugin.Health says whether MLM Soft is reachable and
//     accepts the configuration.
//   - Hooks (OnLinked, OnLinkFailed, OnVolume) are called at least once, on
//     the plugin's goroutines, with a LinkEvent or VolumeEvent.
//
// Operators (also through the console of the admin sub-package):
//   - Plugin.ListVolumes finds parked and uncertain changes (Plugin.Volume
//     reads one);
//     Plugin.RetryVolume, Plugin.ResolveVolume (ResolveApplied or
//     ResolveResend) and Plugin.SkipVolume settle them; Plugin.RetryLink
//     re-drives a failed link. Every action records who did it and why.
//
// Errors are matched with errors.Is against the sentinels in errors.go:
// ErrInvalidInput and ErrInvalidConfig name the bad field; ErrNotFound,
// ErrDuplicate, ErrWrongState, ErrConflict, ErrUpstreamUnavailable and
// ErrMisconfigured say what happened.
//
// # Guarantees
//
// Volume changes are stored before ApplyVolumes returns and delivered one
// property per request, strictly in order per user: change N+1 is sent only
// after MLM Soft acknowledged change N. A request is sent again only when
// MLM Soft certainly did not process it; when it may have (the answer was
// lost after MLM Soft read the request, a gateway answered 5xx), the change
// becomes uncertain and holds its user's queue until an operator resolves it
// (changes of VolumeConfig.SetAliases, which set a value, are resent by
// themselves). A wrong token or URL pauses all sending, spending no
// attempts, until MLM Soft accepts the configuration again. The docs folder
// of the repository explains the flows, the failure rules and the
// assumptions about MLM Soft in full.
package mlmsoft
