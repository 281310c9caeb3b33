package shoptest

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/mlmsoft-go/mlmsoft/examples/internal/shop"
)

// Security checks what a shop refuses: its forms without the session's
// CSRF token or from another site, pages for members to visitors, the
// console without its password; and how it sets its session cookie.
func Security(t *testing.T, run RunFunc) {
	r := Start(t, run, t.TempDir())

	// The session cookie: HttpOnly, SameSite=Lax, a random id.
	resp, err := http.Get(r.URL + "/signup")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == shop.SessionCookie {
			cookie = c
		}
	}
	switch {
	case cookie == nil:
		t.Fatal("the sign-up form set no session cookie")
	case !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || len(cookie.Value) < 40:
		t.Errorf("session cookie %+v: want HttpOnly, SameSite=Lax, Path=/ and a long random value", cookie)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("pages are sent with Content-Security-Policy %q", csp)
	}

	c := NewClient(t, r.URL)
	_, form := c.Get("/signup")
	token := CSRF(t, form)
	signUp := url.Values{"email": {"eve@example.com"}, "name": {"Eve"}, "password": {"eve-password"}}

	// Without the token, or with another one: refused, nobody signed up.
	if status, _ := c.Post("/signup", signUp); status != http.StatusForbidden {
		t.Errorf("sign-up without a CSRF token: HTTP %d, want 403", status)
	}
	signUp.Set("csrf", "not-"+token)
	if status, _ := c.Post("/signup", signUp); status != http.StatusForbidden {
		t.Errorf("sign-up with a wrong CSRF token: HTTP %d, want 403", status)
	}
	// From another site, even with the token: refused.
	signUp.Set("csrf", token)
	req, _ := http.NewRequest(http.MethodPost, r.URL+"/signup", strings.NewReader(signUp.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "https://evil.example")
	resp, err = c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site sign-up: HTTP %d, want 403", resp.StatusCode)
	}
	if _, err := r.App.DB.UserByEmail(t.Context(), "eve@example.com"); err == nil {
		t.Error("a refused sign-up made a user")
	}

	// Members' pages send visitors to sign in.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noRedirect.Get(r.URL + "/account")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin" {
		t.Errorf("the account page for a visitor: HTTP %d to %q, want 303 to /signin", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Mistakes in a form are shown on the form.
	status, page := c.Post("/signup", url.Values{"csrf": {token}, "email": {"not-an-email"}, "name": {"Eve"}, "password": {"eve-password"}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(page, "valid e-mail") {
		t.Errorf("sign-up with a bad e-mail: HTTP %d", status)
	}
	status, page = c.Post("/signup", url.Values{"csrf": {token}, "email": {"eve@example.com"}, "name": {"Eve"}, "password": {"eve-password"}, "ref": {"nobody@example.com"}})
	if status != http.StatusUnprocessableEntity || !strings.Contains(page, "referrer") {
		t.Errorf("sign-up with an unknown referrer: HTTP %d", status)
	}
	// Signed in, then out: the old session is gone.
	c.SignUp("eve@example.com", "Eve", "eve-password", "", false)
	_, page = c.Get("/account")
	if status, _ := c.Post("/signout", url.Values{"csrf": {CSRF(t, page)}}); status != http.StatusOK {
		t.Errorf("sign-out: HTTP %d", status)
	}
	if _, page := c.Get("/"); strings.Contains(page, "Sign out") {
		t.Error("still signed in after signing out")
	}
	if status, _ := c.Post("/signin", url.Values{"csrf": {token}, "email": {"eve@example.com"}, "password": {"wrong"}}); status != http.StatusForbidden {
		// The session that token belonged to ended at sign-up.
		t.Errorf("sign-in with the token of an ended session: HTTP %d, want 403", status)
	}

	// The console: the password, and only that, opens it.
	for _, tc := range []struct {
		user, password string
		want           int
	}{{"", "", http.StatusUnauthorized}, {shop.AdminUser, "wrong", http.StatusUnauthorized}, {"root", AdminPassword, http.StatusUnauthorized}, {shop.AdminUser, AdminPassword, http.StatusOK}} {
		var status int
		if tc.user == "" {
			status, _ = c.Get(shop.AdminPrefix + "/")
		} else {
			status, _ = c.GetAuth(shop.AdminPrefix+"/links", tc.user, tc.password)
		}
		if status != tc.want {
			t.Errorf("console as %q/%q: HTTP %d, want %d", tc.user, tc.password, status, tc.want)
		}
	}
	// The plugin's own check-auth route answers JSON, and refuses
	// visitors.
	status, body := c.Post(shop.PluginPrefix+"/check-auth", url.Values{"login": {shop.MemberLogin}, "password": {shop.MemberPassword}})
	if status != http.StatusUnauthorized || !strings.Contains(body, "not_signed_in") {
		t.Errorf("check-auth for a visitor: HTTP %d %s", status, body)
	}
}
