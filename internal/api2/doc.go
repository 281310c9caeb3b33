// Package api2 is the client of MLM Soft's API2 "online-office" gateway:
// request signing, the answer envelope, and the classification of every
// outcome into a success or a Kind of failure. Every assumption about how
// MLM Soft behaves on the wire lives in this package; the list is at the
// end.
//
// # Requests
//
// Every request carries the App-Id header and the Security-Key header (the
// md5 of the ksorted parameters as PHP's http_build_query prints them,
// followed by the token; see internal/phpquery). A GET puts its parameters
// in the query, a POST sends them as a JSON object body with "Expect:
// 100-continue": the body leaves when the server asks for it ("100
// Continue") or after Config.ExpectContinueTimeout (one second by default,
// as curl does). Redirects are never followed.
//
// # Classification
//
// One function, classify, decides what every outcome means; Call gathers
// the outcome: the method, whether the server may have read the body, the
// transport error, the status and the envelope. The body of every answer
// is parsed as an envelope, whatever the status. A well-formed envelope is
// a JSON object with a numeric errorCode; primary may be null when
// errorCode is not 0 (request-level errors), and must be an object when it
// is. A success envelope has errorCode 0 and primary.success true; any
// other well-formed envelope is a failed one.
//
// A POST's body is "unread" when the transport had not started sending it
// when the answer began or the failure happened: then it never left, and
// MLM Soft cannot have applied the request. With "Expect: 100-continue"
// that is the case until the server asks for the body or the Expect
// timeout passes. Every other POST's body "may be read". (A body the
// transport sends after an answer, to keep the connection, does not count:
// the server had answered without it.)
//
// The first row that matches decides:
//
//	answer                                        GET            POST, unread   POST, may be read
//	--------------------------------------------  -------------  -------------  -----------------
//	3xx (a redirect: the base URL is wrong)       Misconfigured  Misconfigured  Misconfigured
//	401 or 403, with or without an envelope       Misconfigured  Misconfigured  Misconfigured
//	404, with or without an envelope              Misconfigured  Misconfigured  Misconfigured
//	failed envelope, not 429, whose reason        Misconfigured  Misconfigured  Misconfigured
//	  contains one of Config.MisconfigMessages
//	2xx + success envelope                        success        success        success
//	2xx + failed envelope                         Business       Business       Business
//	429 + failed envelope                         Retryable      Retryable      Retryable
//	other 4xx + failed envelope                   Business       Retryable      Business
//	anything else: no answer (refused, reset,     Retryable      Retryable      Ambiguous
//	  timeout), a cut answer, a 2xx without an
//	  envelope (HTML, garbage), any non-2xx
//	  without an envelope (a gateway's 429, 500,
//	  502, 503 or 504 page), any 5xx even with an
//	  envelope (a server error may follow a
//	  partial apply)
//
// What the kinds tell the caller:
//   - Retryable: MLM Soft did not apply the request; send it again later,
//     not before Error.RetryAfter.
//   - Ambiguous: the request may have been applied. Never resend it
//     blindly: find out first (user/exists after a user/create; a person,
//     or the document, for a volume change).
//   - Business: MLM Soft refused this request; sending it again gets the
//     same refusal. Error.Message is MLM Soft's reason.
//   - Misconfigured: the token, the App-Id or the base URL is wrong, so
//     every request will fail until a person fixes the configuration.
//     Nothing was applied. Error.Message is MLM Soft's reason or a short
//     description of the answer ("HTTP 404 Not Found", "redirected to
//     https://host/path").
//
// Without "Expect: 100-continue" (Config.ExpectContinueTimeout < 0) the
// body follows the head at once, so nearly every POST failure is
// Ambiguous; a custom RoundTripper gets no Expect header either. Probe
// proves the configuration with a harmless signed GET.
//
// A success envelope whose payload is not what the endpoint documents is
// judged by the typed method: an unreadable user/create answer, or one
// with neither documentId nor auth.user.account.id, is Ambiguous (the user
// may exist); an odd answer to a GET is Retryable; an odd
// account/volume-change payload counts as applied without a document.
//
// Errors never include the token, the Security-Key, a password or a
// request URL's query (a GET's query holds check-auth's login and
// password), even when an answer echoes them.
//
// # Assumptions about MLM Soft
//
// MLM Soft documents neither its statuses nor its refusal texts. Each
// assumption lives in one place:
//   - The envelope's shape and its success condition: Envelope, its OK
//     method and parseEnvelope. The three shapes of primary.errors:
//     Messages. Ids sent as numbers or numeric strings: ID.
//   - What statuses mean (refusals come as 2xx or 4xx with a failed
//     envelope; a 429 envelope means "not taken"; a 5xx may follow a
//     partial apply; a GET changes nothing): classify.
//   - Which refusal texts blame the credentials: MisconfigMessagesDefault,
//     overridable with Config.MisconfigMessages.
//   - That the server asks for a POST's body with "100 Continue" when it
//     starts reading it (Go's server and nginx in front of PHP-FPM do; PHP's
//     built-in server does not, hence the bounded wait): httpClient and
//     ExpectContinueTimeoutDefault.
//   - How requests are signed: internal/phpquery's SecurityKey, and Call
//     (a GET is signed on its query parsed back the way PHP fills $_GET).
//   - The answers of each endpoint (user/create queued with a documentId
//     or done at once with auth.user.account.id; a document's result being
//     a whole envelope, and the shapes of "not processed yet"; check-auth's
//     failure being "not success, or an empty auth.login"; user/exists
//     possibly carrying the account id; volume-change possibly queued):
//     the typed methods CreateUser, GetDocument, CheckAuth, UserExists and
//     ChangeVolume.
package api2
