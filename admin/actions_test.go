package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/admin"
)

// TestActionsFromTheBrowser takes every action through HTML forms: each
// answers 303 back to the page it came from, with a flash message shown
// once, and is audited on the record and in the log.
func TestActionsFromTheBrowser(t *testing.T) {
	t.Parallel()
	s := newScene(t)
	b := s.browser("alice@ops")
	back := "volumes?state=parked&state=uncertain"
	b.get(back)

	// Skip needs a note.
	path := fmt.Sprintf("volumes/%d/skip", s.parked.ID)
	a := b.post(path, url.Values{"back": {back}})
	wantCode(t, a, http.StatusBadRequest, "skip without a note")
	wantIn(t, a, "skip without a note", `data-status="400"`, "A note is required", `href="../../volumes?state=parked&amp;state=uncertain"`)
	if c := s.get(s.parked.ID); c.State != mlmsoft.VolumeParked || c.ResolvedBy != "" {
		t.Fatalf("a refused skip changed the change: %+v", c)
	}

	// Retry the parked change: it is sent again and delivered, and the
	// change held behind it follows.
	a = b.post(fmt.Sprintf("volumes/%d/retry", s.parked.ID), url.Values{"back": {back}, "note": {"alias fixed in MLM Soft"}})
	if loc := a.hdr.Get("Location"); loc != "../../"+back {
		t.Errorf("Location %q", loc)
	}
	page := b.follow(fmt.Sprintf("volumes/%d/retry", s.parked.ID), a)
	wantCode(t, page, http.StatusOK, "page after retry")
	wantIn(t, page, "page after retry", `id="flash" class="flash ok" role="status" data-flash-kind="ok">Change `+fmt.Sprint(s.parked.ID)+` will be sent again.`)
	s.eventually("the retried change delivered", func() bool { return s.get(s.heldBehind.ID).State == mlmsoft.VolumeDelivered })
	c := s.get(s.parked.ID)
	if c.State != mlmsoft.VolumeDelivered || c.ResolvedBy != "alice@ops" || c.ResolvedNote != "alias fixed in MLM Soft" || !c.ResolvedAt.Equal(s.clock.Now()) {
		t.Errorf("after retry: %+v", c)
	}
	// The flash is shown once.
	wantNotIn(t, b.get(back), "page reloaded", `id="flash"`)
	// The audit is on the pages.
	wantIn(t, b.get(fmt.Sprintf("volumes/%d", s.parked.ID)), "change page", `data-resolved-by="alice@ops">alice@ops, 2026-01-01 12:00:00 UTC: <q>alias fixed in MLM Soft</q>`)

	// Resolve the uncertain change as applied: the note is required.
	path = fmt.Sprintf("volumes/%d/resolve", s.uncertain.ID)
	wantCode(t, b.post(path, url.Values{"resolution": {"applied"}, "note": {"  "}}), http.StatusBadRequest, "resolve without a note")
	wantCode(t, b.post(path, url.Values{"resolution": {"maybe"}, "note": {"x"}}), http.StatusBadRequest, "unknown resolution")
	s.clock.Advance(2 * time.Minute)
	page = b.follow(path, b.post(path, url.Values{"resolution": {"applied"}, "note": {"PV 20 of order-d1 is in the back office"}}))
	// Without a back field the action returns to the change's page.
	wantIn(t, page, "after resolve", `data-page="volume"`, "marked delivered",
		`data-resolved-by="alice@ops">alice@ops, 2026-01-01 12:02:00 UTC: <q>PV 20 of order-d1 is in the back office</q>`)
	if c := s.get(s.uncertain.ID); c.State != mlmsoft.VolumeDelivered || c.ResolvedBy != "alice@ops" || c.Attempts != 1 {
		t.Errorf("after resolve: %+v", c)
	}

	// Resolving it again: 409, with the state in the message.
	a = b.post(path, url.Values{"resolution": {"applied"}, "note": {"again"}})
	wantCode(t, a, http.StatusConflict, "resolve twice")
	wantIn(t, a, "resolve twice", fmt.Sprintf("Change %d is delivered, not uncertain: nothing was done.", s.uncertain.ID), `data-error="wrong_state"`)

	// Retry the failed link: MLM Soft has no such account, so it is
	// created again and the link completes.
	a = b.post("user/retry-link?id=bob", url.Values{"note": {"sponsor fixed"}})
	if loc := a.hdr.Get("Location"); loc != "../user?id=bob" {
		t.Errorf("Location %q", loc)
	}
	wantIn(t, b.follow("user/retry-link?id=bob", a), "bob after retry", "it will be created again", `data-page="user"`)
	s.eventually("bob linked", func() bool { return s.link("bob").State == mlmsoft.LinkLinked })
	if l := s.link("bob"); l.ResolvedBy != "alice@ops" || l.ResolvedNote != "sponsor fixed" {
		t.Errorf("bob's audit: %+v", l)
	}
	wantIn(t, b.get("user?id=bob"), "bob's page", `data-resolved-by="alice@ops"`, "sponsor fixed")
	// bob is linked now: retrying again is a 409.
	a = b.post("user/retry-link?id=bob", url.Values{"note": {"again"}})
	wantCode(t, a, http.StatusConflict, "retry a linked link")
	wantIn(t, a, "retry a linked link", `The link of user &#34;bob&#34; is linked, not failed`)

	// Every action taken or refused is logged with who did it.
	logs := s.logs.String()
	for _, want := range []string{
		fmt.Sprintf(`msg="console action" component=mlmsoft-admin action=retry change=%d user=carl order=order-c1 state=pending by=alice@ops note="alias fixed in MLM Soft"`, s.parked.ID),
		fmt.Sprintf(`action=resolve-applied change=%d user=dora`, s.uncertain.ID),
		`action=retry-link user=bob state=pending by=alice@ops note="sponsor fixed"`,
		`msg="console action refused" component=mlmsoft-admin action=skip by=alice@ops status=400`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q:\n%s", want, logs)
		}
	}
}

// TestActionsFromScripts takes the actions with JSON: X-CSRF-Token header,
// JSON body, JSON answers with the statuses of the plugin's errors.
func TestActionsFromScripts(t *testing.T) {
	t.Parallel()
	s := newScene(t)
	b := s.browser("script@ops")

	// The token comes with any GET, in the header and the cookie.
	r, _ := http.NewRequest(http.MethodGet, b.url("?format=json"), nil)
	a := b.do(r)
	if tok := a.hdr.Get("X-CSRF-Token"); tok == "" || tok != b.token() {
		t.Fatalf("X-CSRF-Token %q, cookie %q", tok, b.token())
	}

	var res admin.ActionResult
	a = b.postJSON(fmt.Sprintf("volumes/%d/resolve", s.uncertain.ID), map[string]string{"resolution": "resend", "note": "not in the back office"})
	wantCode(t, a, http.StatusOK, "resolve resend")
	a.json(t, &res)
	if !res.OK || res.Change == nil || res.Change.ID != s.uncertain.ID || res.Change.State != mlmsoft.VolumePending ||
		res.Change.ResolvedBy != "script@ops" || res.Change.ResolvedNote != "not in the back office" || res.Message == "" {
		t.Errorf("resolve resend: %+v", res)
	}
	s.eventually("the resent change delivered", func() bool { return s.get(s.uncertain.ID).State == mlmsoft.VolumeDelivered })
	if c := s.get(s.uncertain.ID); c.Attempts != 2 || c.ResolvedBy != "script@ops" {
		t.Errorf("after resend: %+v", c)
	}

	a = b.postJSON(fmt.Sprintf("volumes/%d/skip", s.parked.ID), map[string]string{"note": "duplicate order"})
	wantCode(t, a, http.StatusOK, "skip")
	a.json(t, &res)
	if res.Change == nil || res.Change.State != mlmsoft.VolumeSkipped || res.Change.ResolvedNote != "duplicate order" || !res.Change.ResolvedAt.Equal(s.clock.Now()) {
		t.Errorf("skip: %+v", res)
	}
	s.eventually("the change behind the skipped one delivered", func() bool { return s.get(s.heldBehind.ID).State == mlmsoft.VolumeDelivered })

	var link admin.ActionResult
	a = b.postJSON("user/retry-link?id=bob", map[string]string{})
	wantCode(t, a, http.StatusOK, "retry link without a note")
	a.json(t, &link)
	if link.Link == nil || link.Link.UserID != "bob" || link.Link.ResolvedBy != "script@ops" {
		t.Errorf("retry link: %+v", link)
	}

	cases := []struct {
		path   string
		body   map[string]string
		status int
		code   string
		msg    string
	}{
		{fmt.Sprintf("volumes/%d/resolve", s.heldBehind.ID), map[string]string{"resolution": "applied", "note": "x"}, 409, "wrong_state", "is delivered, not uncertain"},
		{fmt.Sprintf("volumes/%d/retry", s.delivered.ID), map[string]string{}, 409, "wrong_state", "is delivered, not parked"},
		{fmt.Sprintf("volumes/%d/skip", s.delivered.ID), map[string]string{"note": "x"}, 409, "wrong_state", "not parked or uncertain"},
		{"volumes/424242/retry", map[string]string{}, 404, "not_found", "There is no volume change 424242"},
		{"volumes/abc/skip", map[string]string{"note": "x"}, 404, "not_found", `There is no volume change \"abc\"`},
		{"user/retry-link?id=ghost", map[string]string{}, 404, "not_found", `There is no user \"ghost\"`},
		{"user/retry-link", map[string]string{}, 400, "invalid_input", "Give the host user id"},
		{"user/retry-link?id=ann", map[string]string{}, 409, "wrong_state", `is linked, not failed`},
		{fmt.Sprintf("volumes/%d/skip", s.delivered.ID), map[string]string{}, 400, "invalid_input", "A note is required"},
		{fmt.Sprintf("volumes/%d/resolve", s.delivered.ID), map[string]string{"note": "x"}, 400, "invalid_input", "resolution must be"},
		{fmt.Sprintf("volumes/%d/retry", s.delivered.ID), map[string]string{"note": strings.Repeat("n", 1001)}, 400, "invalid_input", "at most 1000 bytes"},
	}
	for _, tc := range cases {
		a := b.postJSON(tc.path, tc.body)
		var e admin.ErrorResponse
		if a.code != tc.status {
			t.Errorf("%s: %d, want %d: %s", tc.path, a.code, tc.status, a.body)
			continue
		}
		a.json(t, &e)
		if e.Error != tc.code || e.Status != tc.status || !strings.Contains(a.body, tc.msg) {
			t.Errorf("%s: %s, want %s with %q", tc.path, a.body, tc.code, tc.msg)
		}
	}
	// A body that is not JSON.
	r, _ = http.NewRequest(http.MethodPost, b.url(fmt.Sprintf("volumes/%d/retry", s.delivered.ID)), strings.NewReader("{"))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("X-CSRF-Token", b.token())
	if a := b.do(r); a.code != http.StatusBadRequest {
		t.Errorf("broken JSON: %d %s", a.code, a.body)
	}
}

// TestRetryLinkWhileMLMSoftIsDown: retrying a link asks MLM Soft first; when
// it cannot be reached, nothing changes and the answer is 503.
func TestRetryLinkWhileMLMSoftIsDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{})
	f.start()
	f.failedUser("bob")
	b := f.browser("alice")
	f.fake.SetDown(true)
	a := b.postJSON("user/retry-link?id=bob", map[string]string{"note": "try"})
	wantCode(t, a, http.StatusServiceUnavailable, "retry while down")
	wantIn(t, a, "retry while down", `"upstream_unavailable"`, "could not be reached")
	if l := f.link("bob"); l.State != mlmsoft.LinkFailed || l.ResolvedBy != "" {
		t.Errorf("bob changed: %+v", l)
	}
	a = b.post("user/retry-link?id=bob", url.Values{"note": {"try"}})
	wantCode(t, a, http.StatusServiceUnavailable, "retry while down, HTML")
	wantIn(t, a, "retry while down, HTML", `data-page="error"`, `data-status="503"`)
}

// TestCSRF: an action needs the cookie's token (form field or header) and
// must not come from another site; refusals are 403 and change nothing.
func TestCSRF(t *testing.T) {
	t.Parallel()
	s := newScene(t)
	b := s.browser("alice")
	b.get("")
	good := b.token()
	if len(good) != 43 {
		t.Fatalf("token %q", good)
	}
	path := fmt.Sprintf("volumes/%d/skip", s.parked.ID)
	post := func(form url.Values, edit func(*http.Request)) answer {
		r, _ := http.NewRequest(http.MethodPost, b.url(path), strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if edit != nil {
			edit(r)
		}
		return b.do(r)
	}
	form := func(token string) url.Values { return url.Values{"note": {"x"}, "csrf_token": {token}} }
	cases := []struct {
		name string
		form url.Values
		edit func(*http.Request)
		want string
	}{
		{"no token", url.Values{"note": {"x"}}, nil, "does not match"},
		{"empty token", form(""), nil, "does not match"},
		{"wrong token", form(strings.Repeat("A", 43)), nil, "does not match"},
		{"token one character off", form(good[:42] + string(good[42]^1)), nil, "does not match"},
		{"wrong header", url.Values{"note": {"x"}}, func(r *http.Request) { r.Header.Set("X-CSRF-Token", "nope") }, "does not match"},
		{"cross-site", form(good), func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") }, "another site"},
		{"same-site, other origin", form(good), func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "same-site") }, "another site"},
		{"foreign Origin", form(good), func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, "another site"},
	}
	for _, tc := range cases {
		a := post(tc.form, tc.edit)
		if a.code != http.StatusForbidden || !strings.Contains(a.body, tc.want) || !strings.Contains(a.body, `data-status="403"`) {
			t.Errorf("%s: %d, want 403 with %q:\n%s", tc.name, a.code, tc.want, a.body)
		}
	}
	// Without the cookie, even a token that was once good is refused.
	other := s.browser("alice")
	r, _ := http.NewRequest(http.MethodPost, other.url(path), strings.NewReader(form(good).Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if a := other.do(r); a.code != http.StatusForbidden || !strings.Contains(a.body, "cookie is missing") {
		t.Errorf("no cookie: %d %s", a.code, a.body)
	}
	// JSON clients get a JSON 403.
	r, _ = http.NewRequest(http.MethodPost, b.url(path), strings.NewReader(`{"note":"x"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	if a := b.do(r); a.code != http.StatusForbidden || !strings.Contains(a.body, `"forbidden"`) {
		t.Errorf("JSON without header: %d %s", a.code, a.body)
	}
	if c := s.get(s.parked.ID); c.State != mlmsoft.VolumeParked || c.ResolvedBy != "" {
		t.Fatalf("a refused request changed the change: %+v", c)
	}
	if n := strings.Count(s.logs.String(), `msg="console action refused" component=mlmsoft-admin action=skip`); n != len(cases)+2 {
		t.Errorf("%d refusals logged, want %d", n, len(cases)+2)
	}
	// The right token, same origin: accepted.
	a := post(form(good), func(r *http.Request) {
		r.Header.Set("Sec-Fetch-Site", "same-origin")
		r.Header.Set("Origin", s.srv.URL)
	})
	wantCode(t, a, http.StatusSeeOther, "the right token")
	if c := s.get(s.parked.ID); c.State != mlmsoft.VolumeSkipped {
		t.Errorf("after a good request: %+v", c)
	}
}

// TestCookies: the CSRF cookie is HttpOnly, SameSite=Strict and scoped to
// the console's mount path; it is kept across pages.
func TestCookies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{})
	b := f.browser("alice")
	a := b.get("links")
	var ck *http.Cookie
	for _, c := range (&http.Response{Header: a.hdr}).Cookies() {
		if c.Name == "mlmsoft_console_csrf" {
			ck = c
		}
	}
	if ck == nil {
		t.Fatalf("no CSRF cookie in %v", a.hdr["Set-Cookie"])
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/admin" || ck.Secure {
		t.Errorf("cookie %+v", ck)
	}
	if a.hdr.Get("X-CSRF-Token") != ck.Value {
		t.Errorf("token not sent in the header")
	}
	// The next page reuses it.
	if a := b.get(""); len((&http.Response{Header: a.hdr}).Cookies()) != 0 || a.hdr.Get("X-CSRF-Token") != ck.Value {
		t.Errorf("a second page set cookies %v", a.hdr["Set-Cookie"])
	}
	// Behind a TLS proxy it is Secure.
	r, _ := http.NewRequest(http.MethodGet, f.srv.URL+"/admin/", nil)
	r.Header.Set("X-Forwarded-Proto", "https")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Errorf("cookies behind TLS: %+v", cs)
	}
}

// TestOperator: Handler refuses a nil Operator at once; a request the
// Operator cannot name may read but not act.
func TestOperator(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{})
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Operator") {
				t.Errorf("Handler with a nil Operator: recovered %v", r)
			}
		}()
		admin.Handler(f.p, admin.Options{})
	}()
	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Error("Handler with a nil plugin did not panic")
			}
		}()
		admin.Handler(nil, admin.Options{Operator: func(*http.Request) string { return "x" }})
	}()

	f.start()
	f.failedUser("bob")
	anon := f.browser("")
	a := anon.get("links")
	wantCode(t, a, http.StatusOK, "anonymous read")
	wantIn(t, a, "anonymous read", `data-operator="">The console cannot tell who you are`)
	wantIn(t, f.browser("carol").get("links"), "carol's read", `data-operator="carol">Acting as carol</span>`)
	a = anon.post("user/retry-link?id=bob", url.Values{"note": {"x"}})
	wantCode(t, a, http.StatusForbidden, "anonymous action")
	wantIn(t, a, "anonymous action", "cannot tell who you are")
	if l := f.link("bob"); l.State != mlmsoft.LinkFailed {
		t.Errorf("bob: %+v", l)
	}
}

// TestEscaping: e-mails, user ids, MLM Soft's messages and notes are shown
// escaped on every page.
func TestEscaping(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{})
	ctx := context.Background()
	now := f.clock.Now()
	const evil = `<script>alert(1)</script>`
	if _, err := f.store.CreateLink(ctx, mlmsoft.Link{
		UserID: "x" + evil, Email: evil + "@example.com", State: mlmsoft.LinkFailed,
		LastError: "MLM Soft said: " + evil, ResolvedBy: `"><img src=x onerror=alert(2)>`, ResolvedNote: evil,
		ResolvedAt: now, CreatedAt: now, UpdatedAt: now, Version: 1,
	}); err != nil {
		t.Fatal(err)
	}
	cs, err := f.store.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{{
		UserID: "x" + evil, BatchID: "b", IdempotencyKey: "k" + evil, Alias: "PV" + evil, Amount: mlmsoft.MustAmount("1"),
		OrderID: "o" + evil, State: mlmsoft.VolumeParked, LastError: evil, CreatedAt: now, UpdatedAt: now,
		ResolvedBy: evil, ResolvedNote: evil, ResolvedAt: now,
	}})
	if err != nil {
		t.Fatal(err)
	}
	b := f.browser("alice")
	for _, path := range []string{
		"", "links", "links?state=failed&email=" + url.QueryEscape(evil), "volumes", "volumes?user=" + url.QueryEscape("x"+evil),
		fmt.Sprintf("volumes/%d", cs[0].ID), "user?id=" + url.QueryEscape("x"+evil), "user?id=" + url.QueryEscape(evil),
	} {
		a := b.get(path)
		if strings.Contains(a.body, "<script") || strings.Contains(a.body, "<img") {
			t.Errorf("%s: unescaped markup in\n%s", path, a.body)
		}
		if path != "" && !strings.Contains(a.body, "&lt;script&gt;") {
			t.Errorf("%s: the escaped text is missing", path)
		}
	}
	// A flash message carrying the user id is escaped too.
	a := b.follow("user/retry-link", b.post("user/retry-link?id="+url.QueryEscape("x"+evil), url.Values{"note": {evil}}))
	if !strings.Contains(a.body, `id="flash"`) || strings.Contains(a.body, "<script") {
		t.Errorf("flash: %s", a.body)
	}
	// A forged back field cannot send the browser elsewhere.
	for _, back := range []string{"https://evil.example/", "//evil.example/", "/elsewhere", `\\evil.example`, "../../x", "javascript:alert(1)", "a/../../x"} {
		a := b.post("user/retry-link?id=nobody", url.Values{"back": {back}})
		if a.code != http.StatusNotFound || strings.Contains(a.body, "evil") || strings.Contains(a.body, "javascript") {
			t.Errorf("back %q: %d\n%s", back, a.code, a.body)
		}
	}
}

// TestSecurityHeaders: every answer forbids framing, caching and foreign
// content.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{})
	b := f.browser("alice")
	for _, path := range []string{"", "links", "volumes?format=json", "nowhere", "static/console.css", "user?id=none"} {
		a := b.get(path)
		h := a.hdr
		if h.Get("X-Frame-Options") != "DENY" || h.Get("Cache-Control") != "no-store" || h.Get("X-Content-Type-Options") != "nosniff" ||
			!strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("%s: headers %v", path, h)
		}
	}
	a := b.get("static/console.css")
	if a.code != http.StatusOK || a.hdr.Get("Content-Type") != "text/css; charset=utf-8" || !strings.Contains(a.body, "body") {
		t.Errorf("style sheet: %d %s", a.code, a.hdr.Get("Content-Type"))
	}
	for _, path := range []string{"", "links", "volumes", "user?id=none"} {
		if a := b.get(path); strings.Contains(a.body, "<script") || strings.Contains(a.body, " style=") {
			t.Errorf("%s has scripts or inline styles, which the policy forbids", path)
		}
	}
}

// TestOptions: Title and PageSize take effect; zero values take the
// defaults.
func TestOptions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{Title: `Shop <ops>`, PageSize: 100000})
	for i := range 3 {
		f.register(fmt.Sprintf("u%d", i), fmt.Sprintf("u%d@example.com", i))
	}
	b := f.browser("alice")
	wantIn(t, b.get(""), "title", `<title>Overview · Shop &lt;ops&gt;</title>`, `id="nav-overview" href="./">Shop &lt;ops&gt;</a>`)
	var list admin.LinkList
	b.getJSON("links", &list)
	if len(list.Links) != 3 {
		t.Errorf("%d links", len(list.Links))
	}
}

// TestMountPointWithoutSlash: mounted with the prefix stripped and asked
// for the prefix itself, the console adds the slash its relative links
// need, keeping the method of an action.
func TestMountPointWithoutSlash(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{})
	h := http.StripPrefix("/ops/admin", admin.Handler(f.p, admin.Options{Operator: func(*http.Request) string { return "x" }}))
	for _, tc := range []struct {
		method, target string
		code           int
		loc            string
	}{
		{http.MethodGet, "/ops/admin", http.StatusMovedPermanently, "admin/"},
		{http.MethodGet, "/ops/admin?format=json", http.StatusMovedPermanently, "admin/?format=json"},
		{http.MethodPost, "/ops/admin", http.StatusPermanentRedirect, "admin/"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.target, nil))
		if rec.Code != tc.code || rec.Header().Get("Location") != tc.loc {
			t.Errorf("%s %s: %d to %q, want %d to %q", tc.method, tc.target, rec.Code, rec.Header().Get("Location"), tc.code, tc.loc)
		}
	}
}
