// Package mlmsofttest is a fake MLM Soft API2 ("online-office") server for
// tests, examples and benchmarks: the plugin's own, and a host's.
//
// It speaks the protocol described in MLMSOFT-API.md as closely as is known:
// the base path /api2/online-office/, the Security-Key signature (checked the
// PHP way on exactly the parameters received), the App-Id header, the
// response envelope, queued user/create documents polled with document/get,
// user/exists, user/check-auth, account/volume-change, and the Type III
// webhook sent once a user/create document is processed. Everything it
// accepted can be inspected afterwards: accounts, the ordered volume ledger
// with the exact amount literals received, and per-endpoint call counts.
//
// # Endpoints
//
//	POST user/create            login, type="member", password, sponsorId (an account id), profile{...}
//	GET  document/get           id
//	GET  user/exists            login, type="member"
//	GET  user/check-auth        login, type="member", password
//	POST account/volume-change  accountId, pointsAmount (a JSON number), orderId (a string), volumePropertyAlias
//
// Every answer is the API2 envelope
//
//	{"errorCode":0,"errorMessage":"","errorExtended":null,
//	 "primary":{"success":true,"payload":{...},"message":"","errors":[]},
//	 "secondary":[],"locale":"en_US"}
//
// A business refusal (validation failure, unknown sponsor, duplicate login,
// wrong password, unknown document...) is HTTP 200 with primary.success
// false, primary.message set, primary.errors holding {"message": text}
// objects and payload [] (an empty PHP array encodes as a JSON list).
//
// # Assumptions
//
// Where MLM Soft documents nothing, the fake makes a choice, listed here so
// it can be corrected in one place:
//   - A missing or wrong Security-Key answers HTTP 403 with errorCode 403,
//     errorMessage "Security key is invalid" and primary null; a wrong or
//     missing App-Id answers the same way with "App-Id is invalid".
//   - A POST must carry Content-Type application/json (else HTTP 415) and a
//     JSON object body, or an empty body meaning no parameters (else HTTP
//     400). Bodies over 1 MiB answer HTTP 413. Unknown endpoints answer 404
//     and a wrong method 405, all with errorCode equal to the HTTP status.
//   - Logins are compared case-insensitively.
//   - A user is visible to user/exists and user/check-auth only once its
//     user/create document is processed; until then a second user/create for
//     the same login is refused ("User with this login already exists").
//   - user/exists answers auth.user.account.id as well as auth.user.id.
//   - account/volume-change appends a signed delta to the ledger and does
//     not deduplicate orderId.
//   - Documents (user/create and, with Options.QueueVolumeChanges,
//     account/volume-change) are processed in id order once
//     Options.DocumentDelay has passed on Options.Clock; a processed
//     document's result is a whole envelope.
//   - The webhook is a JSON POST signed like internal/whsig (timestamp taken
//     from Options.Clock), retried a few times on failure.
//
// # Faults
//
// Server.SetFaults injects failures per endpoint, drawn from one seeded
// random source so a run is reproducible for a seed and a request order.
// Faults that must leave no trace (down, latency, hang, reset, 5xx, 429,
// non-JSON) act before the request body is read, so a client that sent
// "Expect: 100-continue" never got "100 Continue" and knows the request was
// not processed. Apply-then-drop reads the body (sending 100 Continue),
// applies the request, then closes the connection without an answer: the
// ambiguous outcome a careful client must not blindly resend.
package mlmsofttest
