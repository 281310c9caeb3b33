// Package admin is the operations console of the MLM Soft integration: a
// plain http.Handler, built with Handler, that shows people (as HTML pages)
// and scripts (as JSON) who is not linked to MLM Soft, which volume changes
// are stuck and why, and lets them settle what only a person can settle.
//
// # The console does no authentication
//
// THE CONSOLE DOES NOT AUTHENTICATE ANYONE. Whoever reaches it can see every
// linked user's e-mail and order ids, re-drive links, and mark volume
// changes — commissions — as delivered or skipped. The host must mount it
// behind its own authentication and authorisation middleware (its admin
// session, basic auth over TLS, an SSO proxy...), and tell the console who
// is acting with Options.Operator, whose answer is stored with every action
// as its audit. Never mount it on a public path without that middleware.
//
// # Mounting
//
// Mount it under a prefix of your choice with the prefix stripped:
// nethttpadapter.MountAdmin and ginadapter.MountAdmin do exactly that, and
// http.StripPrefix does by hand:
//
//	mux.Handle("/admin/", http.StripPrefix("/admin", requireAdmin(admin.Handler(p, opts))))
//
// Every link, form and redirect of the console is relative to the page it
// is on, so the console works under any prefix, behind proxies that rewrite
// paths too. Its two cookies are scoped to the prefix it finds by comparing
// the request's original target with the path it was handed (to "/" when it
// cannot tell).
//
// # What an operator sees and does
//
// The overview (the console's root) says in plain words whether MLM Soft
// answers: ok; unavailable (MLM Soft cannot be reached or keeps failing:
// work waits and resumes by itself); or misconfigured (MLM Soft refuses the
// integration's token, App-Id or URL: sending is paused until that is fixed),
// with MLM Soft's own message, since when, and what to do. It shows the
// circuit breaker, how many links and volume changes are in each state, the
// age of the oldest undelivered change, the hooks owed to the host (and
// failing), and what this process did since it started.
//
// The links page lists links by state (pending, created, linked, failed),
// searchable by the start of the e-mail address. A failed link shows why it
// failed and offers retry, which asks MLM Soft whether the login exists and
// links to it or creates the account again.
//
// The volume changes page lists changes by state or for one user. A parked
// change (MLM Soft refused it; it holds the user's queue) offers retry and
// skip. An uncertain change (sent, but no usable answer came back: it may or
// may not have been applied) offers resolve applied, resolve resend and skip,
// and says what to look for in MLM Soft's back office and from when: only
// once the lost request has surely finished, well after its sent time plus
// the request timeout, since a request that timed out may still be applied.
// Each change's page shows the same with the actions spelled out.
//
// A user's page shows their link and their queue of changes, with the head
// (the oldest change not yet final, which holds the ones after it) marked.
//
// Every action is a POST that asks for a note (required to skip or resolve)
// and is audited: the plugin stores who (Options.Operator), the note and when
// on the record, shown on the pages, and the console logs it. The header of
// every page says whom the console will record as acting.
//
// # Routes
//
// Paths are relative to where the console is mounted. GET pages answer HTML,
// or JSON when the request accepts application/json or carries ?format=json:
//
//	GET  /                        Overview
//	GET  /links                   LinkList; ?state= (repeatable), ?email=, ?after=, ?limit=
//	GET  /volumes                 ChangeList; ?state= (repeatable), ?user=, ?after=, ?limit=
//	GET  /volumes/{id}            Change
//	GET  /user?id=U               UserView; ?after=, ?limit= page through the queue
//	POST /volumes/{id}/retry      a parked change: send it again
//	POST /volumes/{id}/resolve    an uncertain one: resolution=applied or resend
//	POST /volumes/{id}/skip       a parked or uncertain one: never send it
//	POST /user/retry-link?id=U    a failed link: re-drive it
//	GET  /static/console.css      the style sheet
//
// Actions take the form fields note, resolution (resolve only), csrf_token
// and back (the page to return to, relative to the console), or a JSON
// object with note and resolution. A browser's action answers 303 See Other
// back to the page it came from, with the outcome in a flash message; a
// JSON client's answers an ActionResult. Failures answer an ErrorResponse
// (JSON) or an error page (HTML) with the status: 400 for bad input (a
// missing note), 403 for a request refused as forged or from someone
// Options.Operator does not name, 404 for an unknown change or user, 409
// when the record is not in a state the action applies to or changed
// meanwhile, 503 when MLM Soft had to be asked (retrying a link) and could
// not be.
//
// # Cross-site request forgery
//
// Actions are refused (403) unless they pass two checks: net/http's
// CrossOriginProtection (a browser's cross-origin request is refused by its
// Sec-Fetch-Site or Origin header), and a double-submit token: every GET
// sets a random token in an HttpOnly, SameSite=Strict cookie scoped to the
// console's path and sends it in the X-CSRF-Token response header and in
// every form; an action must carry the same token in the csrf_token form
// field or the X-CSRF-Token request header (compared in constant time). A
// script therefore keeps cookies, GETs any page first, and sends the header
// back with its POSTs. The cookies are marked Secure when the request came
// over TLS or says so with X-Forwarded-Proto: https.
//
// Pages are sent with Cache-Control: no-store, X-Frame-Options: DENY and a
// Content-Security-Policy that allows no scripts, no framing and no
// foreign style sheets or form targets. Everything shown is escaped by
// html/template: e-mails, user ids and MLM Soft's messages are untrusted.
//
// # Finding elements
//
// Pages carry stable attributes for tests and scripts that drive a browser:
// body[data-page] names the page (overview, links, volumes, volume, user,
// error); rows carry data-user-id and data-link-state, or data-change-id and
// data-volume-state; each action is a form[data-action] (retry,
// resolve-applied, resolve-resend, skip, retry-link) carrying data-change-id
// or data-user-id, with a textarea[name=note] and a button[data-action]; the
// flash message is #flash with data-flash-kind (ok or error); the next page
// link is a#next-page.
package admin
