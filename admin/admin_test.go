package admin_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/admin"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// scene is a started plugin with one user in each situation an operator
// meets: ann linked with a delivered change, bob's link failed, carl's
// change parked (a second one held behind it), dora's change uncertain.
type scene struct {
	*fixture
	delivered, parked, heldBehind, uncertain mlmsoft.VolumeChange
}

func newScene(t *testing.T) *scene {
	t.Helper()
	s := &scene{fixture: newFixture(t, admin.Options{})}
	s.start()
	s.linkedUser("ann")
	b := s.apply("ann", vc("PV", "10.5", "order-a1"))
	if err := s.wait(b); err != nil {
		t.Fatalf("ann's change: %v", err)
	}
	s.delivered = s.get(b.Changes[0].ID)
	s.failedUser("bob")
	s.linkedUser("carl")
	s.parked = s.held("carl", mlmsofttest.FaultBusinessError, mlmsoft.VolumeParked, vc("PV", "7", "order-c1"), vc("PV", "8", "order-c2"))
	s.heldBehind = s.get(s.parked.ID + 1)
	s.linkedUser("dora")
	s.uncertain = s.held("dora", mlmsofttest.FaultApplyThenDrop, mlmsoft.VolumeUncertain, vc("PV", "20", "order-d1"))
	return s
}

func TestOverview(t *testing.T) {
	t.Parallel()
	s := newScene(t)
	b := s.browser("alice")

	a := b.get("")
	wantCode(t, a, http.StatusOK, "overview")
	if ct := a.hdr.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	wantIn(t, a, "overview",
		`data-page="overview"`, `data-health-state="ok"`, `data-breaker-state="closed"`,
		`<title>Overview · MLM Soft integration</title>`,
		`data-link-state="failed"><th><a href="./links?state=failed">failed</a></th><td class="num" data-count="1">`,
		`data-link-state="linked"><th><a href="./links?state=linked">linked</a></th><td class="num" data-count="3">`,
		`data-volume-state="parked"><th><a href="./volumes?state=parked">parked</a></th><td class="num" data-count="1">`,
		`data-volume-state="uncertain"><th><a href="./volumes?state=uncertain">uncertain</a></th><td class="num" data-count="1">`,
		`data-total="delivered">1<`, `data-total="uncertain">1<`,
		`1 failed link(s)`, `1 parked change(s)`, `1 uncertain change(s)`,
		`href="./static/console.css"`,
	)

	var o admin.Overview
	wantCode(t, b.getJSON("", &o), http.StatusOK, "overview JSON")
	if o.Title != admin.TitleDefault || o.Health.State != mlmsoft.HealthOK || o.Health.Summary == "" || o.Breaker.State != mlmsoft.BreakerClosed {
		t.Errorf("overview JSON: %+v", o)
	}
	if o.Links[mlmsoft.LinkLinked] != 3 || o.Links[mlmsoft.LinkFailed] != 1 || o.Links[mlmsoft.LinkPending] != 0 {
		t.Errorf("links %v", o.Links)
	}
	if _, ok := o.Links[mlmsoft.LinkCreated]; !ok {
		t.Errorf("links %v lack a state with no link", o.Links)
	}
	want := map[mlmsoft.VolumeState]int{mlmsoft.VolumeDelivered: 1, mlmsoft.VolumeParked: 1, mlmsoft.VolumePending: 1, mlmsoft.VolumeUncertain: 1}
	for _, st := range mlmsoft.VolumeStates {
		if o.Volumes[st] != want[st] {
			t.Errorf("volumes[%s] = %d, want %d", st, o.Volumes[st], want[st])
		}
	}
	if o.Totals.Delivered != 1 || o.Totals.Uncertain != 1 || o.Totals.LinkFailures != 1 || o.Totals.Failures[mlmsoft.FailureRefused] < 2 {
		t.Errorf("totals %+v", o.Totals)
	}
	if o.OldestOpenSeconds != 0 { // the manual clock has not moved
		t.Errorf("oldest open %v s", o.OldestOpenSeconds)
	}
	// ?format=json works like the Accept header.
	if a := b.get("?format=json"); !strings.HasPrefix(a.hdr.Get("Content-Type"), "application/json") || !strings.Contains(a.body, `"health"`) {
		t.Errorf("?format=json: %s %s", a.hdr.Get("Content-Type"), a.body)
	}

	// Time passes: the oldest undelivered change ages on the console's clock.
	s.clock.Advance(90 * time.Second)
	wantIn(t, b.get(""), "overview later", `<span id="oldest-open">1m 30s</span>`)
}

func TestOverviewHealth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{})
	b := f.browser("alice")
	// MLM Soft refuses the token: the plugin learns it from Check.
	f.fake.SetToken("another-token")
	if err := f.p.Check(context.Background()); err == nil {
		t.Fatal("Check accepted a wrong token")
	}
	a := b.get("")
	wantIn(t, a, "misconfigured overview", `data-health-state="misconfigured"`, "refuses this integration", "What to do:",
		`id="health-reason"`, "Since 2026-01-01 12:00:00 UTC")
	var o admin.Overview
	b.getJSON("", &o)
	if o.Health.State != mlmsoft.HealthMisconfigured || o.Health.Reason == "" || o.Health.Since.IsZero() || o.Health.Advice == "" {
		t.Errorf("health %+v", o.Health)
	}
	if !strings.Contains(a.body, o.Health.Reason[:20]) {
		t.Errorf("the page does not show MLM Soft's message %q", o.Health.Reason)
	}
}

// TestOverviewWithoutStore: when the store cannot be read, the overview
// still says how MLM Soft is, and why the counts are missing.
func TestOverviewWithoutStore(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{})
	f.register("u1", "u1@example.com")
	f.failCounts.Store(true)
	b := f.browser("alice")
	a := b.get("")
	wantCode(t, a, http.StatusOK, "overview")
	wantIn(t, a, "overview", `data-health-state="ok"`, `id="stats-error"`, "the database is down (test)", "Circuit breaker: unknown")
	var o admin.Overview
	b.getJSON("", &o)
	if o.Health.State != mlmsoft.HealthOK || !strings.Contains(o.StatsError, "the database is down") || o.Breaker.State != "" {
		t.Errorf("overview JSON: %+v", o)
	}
	// The lists do not need Stats: only their counts go.
	a = b.get("links")
	wantCode(t, a, http.StatusOK, "links")
	wantIn(t, a, "links", `data-user-id="u1"`, `data-filter-state="pending" title=`)
	wantNotIn(t, a, "links", "pending (")
}

func TestLinksPage(t *testing.T) {
	t.Parallel()
	s := newScene(t)
	b := s.browser("alice")

	a := b.get("links")
	wantCode(t, a, http.StatusOK, "links")
	wantIn(t, a, "links", `data-page="links"`, `data-user-id="ann" data-link-state="linked"`,
		`data-user-id="bob" data-link-state="failed"`, "user/create was refused",
		`form method="post" action="./user/retry-link?id=bob" data-action="retry-link" data-user-id="bob"`,
		`button type="submit" data-action="retry-link" data-user-id="bob"`, `href="./user?id=ann"`)
	if !strings.Contains(a.body, `<input type="hidden" name="csrf_token" value="`+b.token()+`">`) {
		t.Error("the retry form lacks the cookie's token")
	}
	if n := strings.Count(a.body, `data-action="retry-link"`); n != 2 { // bob's form and button only
		t.Errorf("%d retry-link attributes, want 2 (only the failed link offers it)", n)
	}

	a = b.get("links?state=failed")
	wantIn(t, a, "failed links", `data-user-id="bob"`, `data-filter-state="failed" aria-current="page"`)
	wantNotIn(t, a, "failed links", `data-user-id="ann"`)

	var list admin.LinkList
	b.getJSON("links?state=failed", &list)
	if len(list.Links) != 1 || list.Links[0].UserID != "bob" || list.Links[0].State != mlmsoft.LinkFailed ||
		!strings.Contains(list.Links[0].LastError, "refused") || len(list.Links[0].Actions) != 1 || list.Links[0].Actions[0] != admin.ActionRetryLink {
		t.Errorf("failed links JSON: %+v", list)
	}
	b.getJSON("links?state=pending&state=created&state=failed", &list)
	if len(list.Links) != 1 || list.Links[0].UserID != "bob" {
		t.Errorf("not linked: %+v", list)
	}
	if a := b.getJSON("links?state=bogus", nil); a.code != http.StatusBadRequest || !strings.Contains(a.body, `"invalid_input"`) {
		t.Errorf("unknown state: %d %s", a.code, a.body)
	}
	if a := b.get("links?limit=1001"); a.code != http.StatusBadRequest || !strings.Contains(a.body, `data-status="400"`) {
		t.Errorf("limit too large: %d", a.code)
	}
}

// TestLinksKeysetAndSearch pages through links with after/next, and finds
// them by the start of their e-mail.
func TestLinksKeysetAndSearch(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{PageSize: 3})
	for i := range 7 {
		name := []string{"ann", "anna", "bert", "berta", "carl", "carla", "dan"}[i]
		f.register(fmt.Sprintf("u%d", i+1), name+"@example.com")
	}
	b := f.browser("alice")
	var got []string
	next := "links?state=pending"
	for pages := 0; next != ""; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		a := b.get(next)
		wantCode(t, a, http.StatusOK, next)
		if first := `<a id="first-page" href="./links?state=pending">`; (pages > 0) != strings.Contains(a.body, first) {
			t.Errorf("%s: first-page link present %v on page %d", next, !(pages > 0), pages)
		}
		var list admin.LinkList
		b.getJSON(next, &list)
		if len(list.Links) > 3 {
			t.Fatalf("%s: %d links on a page of 3", next, len(list.Links))
		}
		for _, l := range list.Links {
			got = append(got, l.UserID)
		}
		if list.Next == "" {
			if strings.Contains(a.body, `id="next-page"`) {
				t.Error("the last page links to a next one")
			}
			break
		}
		want := `<a id="next-page" rel="next" href="./links?after=` + list.Next + `&amp;state=pending">`
		if !strings.Contains(a.body, want) {
			t.Fatalf("%s: no next link %s in\n%s", next, want, a.body)
		}
		next = "links?after=" + list.Next + "&state=pending"
	}
	if strings.Join(got, ",") != "u1,u2,u3,u4,u5,u6,u7" {
		t.Errorf("pages gave %v", got)
	}
	// The limit parameter overrides the page size.
	var list admin.LinkList
	b.getJSON("links?limit=5", &list)
	if len(list.Links) != 5 || list.Next != "u5" {
		t.Errorf("limit=5: %d links, next %q", len(list.Links), list.Next)
	}

	// E-mail prefix search, letter case as the plugin normalises it.
	b.getJSON("links?email=Ann", &list)
	if len(list.Links) != 2 || list.Links[0].Email != "ann@example.com" || list.Links[1].Email != "anna@example.com" || list.Email != "Ann" {
		t.Errorf("email=Ann: %+v", list)
	}
	b.getJSON("links?email=carla@", &list)
	if len(list.Links) != 1 || list.Links[0].UserID != "u6" {
		t.Errorf("email=carla@: %+v", list)
	}
	a := b.get("links?email=bert")
	wantIn(t, a, "search page", `data-user-id="u3"`, `data-user-id="u4"`, `<input name="email" value="bert"`)
	wantNotIn(t, a, "search page", `data-user-id="u1"`)
	// The search pages too.
	list = admin.LinkList{}
	b.getJSON("links?email=&limit=2&after=u5", &list)
	if len(list.Links) != 2 || list.Links[0].UserID != "u6" || list.Next != "" {
		t.Errorf("after=u5: %+v", list)
	}
}

func TestVolumesPages(t *testing.T) {
	t.Parallel()
	s := newScene(t)
	b := s.browser("alice")

	a := b.get("volumes")
	wantCode(t, a, http.StatusOK, "volumes")
	wantIn(t, a, "volumes", `data-page="volumes"`,
		idAttr(s.delivered.ID)+` data-volume-state="delivered" data-user-id="ann"`,
		idAttr(s.parked.ID)+` data-volume-state="parked" data-user-id="carl"`,
		idAttr(s.heldBehind.ID)+` data-volume-state="pending" data-user-id="carl"`,
		idAttr(s.uncertain.ID)+` data-volume-state="uncertain" data-user-id="dora"`,
		"order-c1", "Injected business error", "10.5",
		fmt.Sprintf(`<form method="post" action="./volumes/%d/retry" data-action="retry" %s>`, s.parked.ID, idAttr(s.parked.ID)),
		fmt.Sprintf(`<form method="post" action="./volumes/%d/skip" data-action="skip" %s>`, s.parked.ID, idAttr(s.parked.ID)),
		fmt.Sprintf(`<form method="post" action="./volumes/%d/resolve" data-action="resolve-applied" %s>`, s.uncertain.ID, idAttr(s.uncertain.ID)),
		fmt.Sprintf(`<form method="post" action="./volumes/%d/resolve" data-action="resolve-resend" %s>`, s.uncertain.ID, idAttr(s.uncertain.ID)),
		fmt.Sprintf(`<form method="post" action="./volumes/%d/skip" data-action="skip" %s>`, s.uncertain.ID, idAttr(s.uncertain.ID)),
		fmt.Sprintf(`<button type="submit" data-action="resolve-applied" %s>`, idAttr(s.uncertain.ID)),
		"whether <strong>order order-d1</strong>'s <strong>PV of 20</strong> was applied to <strong>account ",
		"well after the sent time plus the request timeout (3s)",
	)
	if strings.Contains(a.body, `action="./volumes/`+fmt.Sprint(s.delivered.ID)) {
		t.Error("a delivered change offers an action")
	}

	var list admin.ChangeList
	b.getJSON("volumes?state=parked&state=uncertain", &list)
	if len(list.Changes) != 2 || list.Changes[0].ID != s.parked.ID || list.Changes[1].ID != s.uncertain.ID {
		t.Fatalf("needs attention: %+v", list)
	}
	p, u := list.Changes[0], list.Changes[1]
	if p.State != mlmsoft.VolumeParked || p.Alias != "PV" || p.Amount.String() != "7" || p.OrderID != "order-c1" || p.Attempts != 1 ||
		!strings.Contains(p.LastError, "Injected business error") || p.SentAt.IsZero() || p.UserID != "carl" ||
		strings.Join(p.Actions, ",") != "retry,skip" {
		t.Errorf("parked change JSON: %+v", p)
	}
	if u.State != mlmsoft.VolumeUncertain || strings.Join(u.Actions, ",") != "resolve-applied,resolve-resend,skip" ||
		!u.CheckAfter.Equal(u.SentAt.Add(3*time.Second+time.Minute)) {
		t.Errorf("uncertain change JSON: %+v", u)
	}
	// A user's queue through the volumes page.
	b.getJSON("volumes?user=carl", &list)
	if len(list.Changes) != 2 || list.UserID != "carl" || list.Changes[1].ID != s.heldBehind.ID {
		t.Errorf("carl's changes: %+v", list)
	}
	wantIn(t, b.get("volumes?user=carl"), "carl's changes", `<input name="user" value="carl"`, `href="./user?id=carl"`)

	// One change's page.
	a = b.get(fmt.Sprintf("volumes/%d", s.uncertain.ID))
	wantCode(t, a, http.StatusOK, "change page")
	wantIn(t, a, "change page", `data-page="volume"`, `href="../static/console.css"`, `href="../user?id=dora"`,
		fmt.Sprintf(`action="../volumes/%d/resolve" data-action="resolve-applied"`, s.uncertain.ID),
		`data-too-early="true"`, "Too early: wait until", "This is the <strong>head</strong>")
	var c admin.Change
	b.getJSON(fmt.Sprintf("volumes/%d", s.parked.ID), &c)
	if c.ID != s.parked.ID || !c.Head || c.State != mlmsoft.VolumeParked {
		t.Errorf("change JSON: %+v", c)
	}
	// Once the request has surely finished, the warning goes.
	s.clock.Advance(2 * time.Minute)
	wantNotIn(t, b.get(fmt.Sprintf("volumes/%d", s.uncertain.ID)), "change page later", `data-too-early`)

	for _, path := range []string{"volumes/999999", "volumes/0", "volumes/x", "volumes/-3"} {
		a := b.get(path)
		wantCode(t, a, http.StatusNotFound, path)
		wantIn(t, a, path, `data-page="error"`, `data-status="404"`)
		if a := b.getJSON(path, nil); a.code != http.StatusNotFound || !strings.Contains(a.body, `"not_found"`) {
			t.Errorf("%s JSON: %d %s", path, a.code, a.body)
		}
	}
	if a := b.getJSON("volumes?after=x", nil); a.code != http.StatusBadRequest {
		t.Errorf("after=x: %d", a.code)
	}
}

// TestVolumesKeyset pages through changes with after/next, for all users
// and for one user's queue.
func TestVolumesKeyset(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{PageSize: 2})
	f.register("u1", "u1@example.com") // not started: changes stay pending
	f.register("u2", "u2@example.com")
	var ids []int64
	for i := range 5 {
		user := []string{"u1", "u2"}[i%2]
		ids = append(ids, f.apply(user, vc("PV", fmt.Sprint(i+1), fmt.Sprintf("o%d", i+1))).Changes[0].ID)
	}
	b := f.browser("alice")
	collect := func(first string) []int64 {
		t.Helper()
		var got []int64
		next := first
		for pages := 0; ; pages++ {
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
			var list admin.ChangeList
			b.getJSON(next, &list)
			for _, c := range list.Changes {
				got = append(got, c.ID)
			}
			a := b.get(next)
			if list.Next == 0 {
				if strings.Contains(a.body, `id="next-page"`) {
					t.Errorf("%s: the last page links to a next one", next)
				}
				return got
			}
			if !strings.Contains(a.body, fmt.Sprintf(`after=%d`, list.Next)) {
				t.Errorf("%s: no next link after=%d", next, list.Next)
			}
			sep := "?"
			if strings.Contains(first, "?") {
				sep = "&"
			}
			next = fmt.Sprintf("%s%safter=%d", first, sep, list.Next)
		}
	}
	if got := collect("volumes"); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("all changes: %v, want %v", got, ids)
	}
	if got := collect("volumes?user=u1"); fmt.Sprint(got) != fmt.Sprint([]int64{ids[0], ids[2], ids[4]}) {
		t.Errorf("u1's changes: %v", got)
	}
	// The user page pages its queue the same way.
	var u admin.UserView
	b.getJSON("user?id=u1", &u)
	if len(u.Queue) != 2 || u.Next != ids[2] || u.HeadID != ids[0] || !u.Queue[0].Head || u.Queue[1].Head {
		t.Errorf("u1's page: %+v", u)
	}
	u = admin.UserView{}
	b.getJSON(fmt.Sprintf("user?id=u1&after=%d", ids[2]), &u)
	if len(u.Queue) != 1 || u.Queue[0].ID != ids[4] || u.Next != 0 {
		t.Errorf("u1's second page: %+v", u)
	}
	wantIn(t, b.get("user?id=u1"), "user page", fmt.Sprintf(`<a id="next-page" rel="next" href="./user?after=%d&amp;id=u1">`, ids[2]))
}

func TestUserPage(t *testing.T) {
	t.Parallel()
	s := newScene(t)
	b := s.browser("alice")

	a := b.get("user?id=carl")
	wantCode(t, a, http.StatusOK, "carl")
	wantIn(t, a, "carl", `data-page="user"`, `<section class="card state-linked" id="user-link" data-user-id="carl" data-link-state="linked">`,
		"carl@example.com", idAttr(s.parked.ID), idAttr(s.heldBehind.ID), "is the head")
	wantNotIn(t, a, "carl", `data-action="retry-link"`)

	a = b.get("user?id=bob")
	wantIn(t, a, "bob", `data-link-state="failed"`, "Why it failed", "user/create was refused",
		`action="./user/retry-link?id=bob" data-action="retry-link" data-user-id="bob"`, "volume changes wait")

	var u admin.UserView
	b.getJSON("user?id=carl", &u)
	if u.Link.UserID != "carl" || u.Link.State != mlmsoft.LinkLinked || u.Link.AccountID == 0 || len(u.Queue) != 2 || u.HeadID != s.parked.ID {
		t.Errorf("carl JSON: %+v", u)
	}
	if len(u.Link.Actions) != 0 || u.Link.Actions == nil {
		t.Errorf("a linked link's actions: %#v (want an empty list)", u.Link.Actions)
	}

	for _, path := range []string{"user?id=nobody", "user?id=" + url.QueryEscape("../x")} {
		wantCode(t, b.get(path), http.StatusNotFound, path)
		if a := b.getJSON(path, nil); a.code != http.StatusNotFound {
			t.Errorf("%s JSON: %d", path, a.code)
		}
	}
	wantCode(t, b.get("user"), http.StatusBadRequest, "user without id")
	wantCode(t, b.get("nowhere"), http.StatusNotFound, "unknown page")
	if a := b.get("links"); a.code != http.StatusOK {
		t.Fatal(a.code)
	}
	// Pages are GET only; actions POST only.
	r, _ := http.NewRequest(http.MethodPost, b.url("links"), nil)
	if a := b.do(r); a.code != http.StatusMethodNotAllowed || a.hdr.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST links: %d, Allow %q", a.code, a.hdr.Get("Allow"))
	}
	r, _ = http.NewRequest(http.MethodGet, b.url(fmt.Sprintf("volumes/%d/skip", s.parked.ID)), nil)
	r.Header.Set("Accept", "application/json")
	if a := b.do(r); a.code != http.StatusMethodNotAllowed || a.hdr.Get("Allow") != "POST" || !strings.Contains(a.body, `"method_not_allowed"`) {
		t.Errorf("GET skip: %d, Allow %q: %s", a.code, a.hdr.Get("Allow"), a.body)
	}
	r, _ = http.NewRequest(http.MethodDelete, b.url("volumes"), nil)
	if a := b.do(r); a.code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE volumes: %d", a.code)
	}
}

// A user id with slashes, dots and query characters still has a page and
// a working retry.
func TestUserIDsThatLookLikePaths(t *testing.T) {
	t.Parallel()
	f := newFixture(t, admin.Options{})
	f.start()
	for _, id := range []string{"a/b", "..", "x?y=1&z", "#frag"} {
		l := f.failedUser(id)
		b := f.browser("alice")
		q := url.QueryEscape(id)
		// html/template escapes query values itself, in lower case.
		wantIn(t, b.get("links?state=failed"), id, `href="./user?id=`+strings.ToLower(q)+`"`)
		a := b.get("user?id=" + q)
		wantCode(t, a, http.StatusOK, id)
		a = b.follow("user/retry-link?id="+q, b.post("user/retry-link?id="+q, url.Values{"back": {"user?id=" + q}}))
		wantCode(t, a, http.StatusOK, id+" after retry")
		wantIn(t, a, id+" after retry", `data-page="user"`, `id="flash"`)
		f.eventually(id+" linked", func() bool { return f.link(id).State == mlmsoft.LinkLinked })
		if got := f.link(id); got.ResolvedBy != "alice" || l.UserID != id {
			t.Errorf("%s: %+v", id, got)
		}
	}
}
