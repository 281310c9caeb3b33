// Package mlmsofttest is a fake MLM Soft API2 ("online-office") server for
// tests, examples and benchmarks: the plugin's own, and a host's.
//
// It speaks MLM Soft's API2 protocol as closely as is known: the base path
// /api2/online-office/, the Security-Key signature (checked the PHP way on
// exactly the parameters received), the App-Id header, the response
// envelope, queued user/create documents polled with document/get,
// user/exists, user/check-auth, account/volume-change, and the Type III
// webhook sent once a user/create document is processed. Everything it
// accepted can be inspected afterwards: accounts, the ordered volume ledger
// with the exact amount literals received, and per-endpoint call counts,
// from Go or, for a developer pointing their own application at it, in a
// browser (see Views). Its state can outlive it in a file (see State file),
// and the command mlmsofttest/cmd/mlmsoft-fake runs it as a standalone
// process.
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
// The token, the App-Id and the webhook's target can change while the
// server runs (SetToken, SetAppID, SetWebhook), to play a token rotation or
// a wrong-token period that ends.
//
// # Faults
//
// Server.SetFaults injects failures per endpoint, drawn from one seeded
// random source so a run is reproducible for a seed and a request order.
// Faults that must leave no trace (down, latency, hang, reset, 5xx, 429,
// non-JSON) act before the request body is read, so a client that sent
// "Expect: 100-continue" never got "100 Continue" and knows the request was
// not processed. The others read the body (sending 100 Continue), which is
// all such a client then knows:
//   - business error: the request is checked, refused with a failed
//     envelope and not applied;
//   - server error after read: nothing is applied, and a gateway's HTML
//     502, 503 or 504 comes back;
//   - server error after apply: the request is applied as usual, then a
//     gateway's HTML 500, 502 or 504 comes back (a gateway that timed out
//     while MLM Soft did the work);
//   - apply then drop: the request is applied, then the connection closes
//     without an answer.
//
// The last two are the ambiguous outcomes a careful client must not
// blindly resend. Each injected fault is logged as "<endpoint>: injecting
// <name>" through Options.Logf.
//
// Server.InjectNext makes the next n requests to an endpoint meet one fault
// kind (a FaultKind), deterministically and without consuming random
// draws, for a test that needs exactly one failure at one point.
//
// Options.IgnoreExpect plays a server that never answers "Expect:
// 100-continue" at all (PHP's built-in server, some proxies): a request
// carrying it is answered only after its whole body arrived, so a Go client
// with Transport.ExpectContinueTimeout gets its answer that much late, and
// one that waits for 100 Continue indefinitely never sends its body and
// times out.
//
// # Views
//
// The handler also serves, outside BasePath, read-only views of what the
// fake received (ViewsPath, "/_fake/"):
//
//	GET /_fake/                    an HTML page (no JavaScript): accounts, documents, ledger, requests per endpoint
//	GET /_fake/accounts            JSON [{"login","userId","accountId","sponsorAccountId"}]
//	GET /_fake/documents           JSON [{"id","entity","action","due","processed","summary","result"}]
//	GET /_fake/ledger[?account=ID] JSON [{"seq","accountId","alias","amount","orderId","at"}]
//
// They take no credentials and show no secret: no password, token, webhook
// secret or signature. With Options.Control, a control endpoint lets
// another process (a script, a browser form) inject faults:
//
//	POST /_fake/inject   form fields endpoint (an endpoint or "*"), kind (a FaultKind name such as
//	                     "server-error-after-apply"), count (default 1; 0 cancels)
//
// It answers 204, or 400 on bad input; without Options.Control it answers
// 404. Views and control requests are not API calls: they are not counted,
// faulted or refused by SetDown.
//
// # State file
//
// With Options.StateFile the server keeps its state in a JSON file: the
// accounts (with their passwords, which check-auth needs), the logins whose
// user/create is pending, the documents with their results (an unprocessed
// one keeps its due time), the ledger, the id counters and the per-login
// create counts. The file is loaded when the server starts (a missing file
// is an empty state; an unreadable or corrupt one makes NewServer panic and
// Start return an error, and the file is left alone) and saved after every
// change, before the request that made it is answered, and on Close. Each
// save writes a temporary file in the same directory, syncs it and renames
// it over the old one, so a crash leaves the old state or the new, never a
// mix. Ids are never handed out twice across restarts: a host application
// restarted on the same database must not be given another user's account
// id by a fake that forgot everything. Call counts, faults and injections
// are not saved.
package mlmsofttest
