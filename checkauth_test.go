package mlmsoft_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

func TestCheckAuthConfigValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		ca    mlmsoft.CheckAuthConfig
		field string
	}{
		{"zero value", mlmsoft.CheckAuthConfig{}, ""},
		{"enabled without CurrentUser", mlmsoft.CheckAuthConfig{Enabled: true}, "CheckAuth.CurrentUser"},
		{"negative window", mlmsoft.CheckAuthConfig{Enabled: true, CurrentUser: hHeaderUser, Window: -1}, "CheckAuth.Window"},
		{"negative body", mlmsoft.CheckAuthConfig{Enabled: true, CurrentUser: hHeaderUser, MaxBody: -1}, "CheckAuth.MaxBody"},
		{"bad origin", mlmsoft.CheckAuthConfig{Enabled: true, CurrentUser: hHeaderUser, TrustedOrigins: []string{"https://ok.example.com", "not an origin/x"}}, "CheckAuth.TrustedOrigins[1]"},
		{"unlimited", mlmsoft.CheckAuthConfig{Enabled: true, CurrentUser: hHeaderUser, UserLimit: -1, ClientLimit: -1}, ""},
	}
	for _, c := range cases {
		_, err := mlmsoft.New(newMemStore(), mlmsoft.Config{BaseURL: "http://127.0.0.1:1/api2/online-office/", APIToken: "x", CheckAuth: c.ca})
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: New: %v", c.name, err)
		case c.field != "" && (!errors.Is(err, mlmsoft.ErrInvalidConfig) || !strings.Contains(err.Error(), c.field)):
			t.Errorf("%s: New error = %v, want ErrInvalidConfig naming %s", c.name, err, c.field)
		}
	}
}

func TestCheckAuthLinks(t *testing.T) {
	t.Parallel()
	f := newHFix(t, nil)
	acc := f.fake.AddAccount("Ann@Example.com", "ann-password-1", f.root.AccountID)

	// A host user who never went through OnUserRegistered.
	rec := f.serve(checkAuthRequest("u1", " ann@example.com ", "ann-password-1"))
	wantStatus(t, rec, http.StatusOK, "check-auth")
	got := decodeAnswer(t, rec.Body)
	if got["linked"] != true || got["accountId"] != float64(acc.AccountID) || got["userId"] != float64(acc.UserID) {
		t.Errorf("answer %v, want ids of %+v", got, acc)
	}
	l := f.link("u1")
	if l.State != mlmsoft.LinkLinked || l.AccountID != acc.AccountID || l.MLMUserID != acc.UserID ||
		l.LinkedVia != mlmsoft.LinkedViaCheckAuth || l.Email != "ann@example.com" {
		t.Fatalf("link: %+v", l)
	}

	// Again: same answer, nothing changes.
	before := f.links()
	wantStatus(t, f.serve(checkAuthRequest("u1", "ann@example.com", "ann-password-1")), http.StatusOK, "again")
	f.assertUnchanged(before, "check-auth again")
}

func TestCheckAuthLinksPendingUser(t *testing.T) {
	t.Parallel()
	f := newHFix(t, nil)
	acc := f.fake.AddAccount("bob@example.com", "bob-password-1", f.root.AccountID)
	f.register("u2", "bob@example.com")
	// A form body this time, with "email" for the login.
	r := httptest.NewRequest(http.MethodPost, hPrefix+"/check-auth", strings.NewReader("email=bob%40example.com&password=bob-password-1"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set(hUserHdr, "u2")
	wantStatus(t, f.serve(r), http.StatusOK, "form check-auth")
	if l := f.link("u2"); l.State != mlmsoft.LinkLinked || l.AccountID != acc.AccountID || l.LinkedVia != mlmsoft.LinkedViaCheckAuth {
		t.Fatalf("link: %+v", l)
	}
}

// TestCheckAuthRejections: every refusal, each leaving the store as it was.
func TestCheckAuthRejections(t *testing.T) {
	t.Parallel()
	f := newHFix(t, nil)
	f.fake.AddAccount("ann@example.com", "ann-password-1", f.root.AccountID)
	other := f.fake.AddAccount("carol@example.com", "carol-password-1", f.root.AccountID)
	f.register("u3", "dave@example.com")
	// u4 is linked to carol's account already.
	wantStatus(t, f.serve(checkAuthRequest("u4", "carol@example.com", "carol-password-1")), 200, "setup")
	if l := f.link("u4"); l.AccountID != other.AccountID {
		t.Fatalf("setup link: %+v", l)
	}

	withBody := func(ct, body string) *http.Request {
		r := httptest.NewRequest(http.MethodPost, hPrefix+"/check-auth", strings.NewReader(body))
		if ct != "" {
			r.Header.Set("Content-Type", ct)
		}
		r.Header.Set(hUserHdr, "u3")
		return r
	}
	cases := []struct {
		name string
		req  *http.Request
		want int
		code string
	}{
		{"not signed in", checkAuthRequest("", "ann@example.com", "ann-password-1"), 401, "not_signed_in"},
		{"wrong password", checkAuthRequest("u3", "ann@example.com", "wrong-password"), 401, "bad_credentials"},
		{"unknown login", checkAuthRequest("u3", "zed@example.com", "whatever-1"), 401, "bad_credentials"},
		{"linked to another account", checkAuthRequest("u4", "ann@example.com", "ann-password-1"), 409, "already_linked"},
		{"login is another user's link", checkAuthRequest("u3", "carol@example.com", "carol-password-1"), 409, "login_taken"},
		{"malformed JSON", withBody("application/json", `{"login":"ann@example.com","password":`), 400, "malformed"},
		{"no password", withBody("application/json", `{"login":"ann@example.com"}`), 400, "malformed"},
		{"empty password", withBody("application/json", `{"login":"ann@example.com","password":""}`), 400, "malformed"},
		{"password not a string", withBody("application/json", `{"login":"ann@example.com","password":12345}`), 400, "malformed"},
		{"two passwords", withBody("application/x-www-form-urlencoded", `login=ann%40example.com&password=a&password=b`), 400, "malformed"},
		{"login not an email", withBody("application/json", `{"login":"ann","password":"ann-password-1"}`), 400, "malformed"},
		{"login and email disagree", withBody("application/json", `{"login":"ann@example.com","email":"bob@example.com","password":"x"}`), 400, "malformed"},
		{"too large", withBody("application/json", `{"login":"ann@example.com","password":"`+strings.Repeat("p", int(mlmsoft.CheckAuthMaxBodyDefault))+`"}`), 413, "too_large"},
		{"unsupported content type", withBody("multipart/form-data; boundary=x", "--x--"), 415, "unsupported_media_type"},
		{"cross-origin browser request", func() *http.Request {
			r := checkAuthRequest("u3", "ann@example.com", "ann-password-1")
			r.Header.Set("Sec-Fetch-Site", "cross-site")
			return r
		}(), 403, "cross_origin"},
		{"wrong method", func() *http.Request {
			r := checkAuthRequest("u3", "ann@example.com", "ann-password-1")
			r.Method = http.MethodGet
			return r
		}(), 405, ""},
	}
	before := f.links()
	for _, c := range cases {
		rec := f.serve(c.req)
		if rec.Code != c.want {
			t.Errorf("%s: status %d, want %d (%s)", c.name, rec.Code, c.want, rec.Body.String())
			continue
		}
		if c.code != "" {
			if got := decodeAnswer(t, rec.Body); got["code"] != c.code || got["error"] == "" {
				t.Errorf("%s: answer %v, want code %q and an error message", c.name, got, c.code)
			}
		}
		f.assertUnchanged(before, c.name)
	}
	rec := httptest.NewRecorder()
	f.p.CheckAuthHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/check-auth", nil))
	wantStatus(t, rec, http.StatusMethodNotAllowed, "PUT to the handler")
	f.assertUnchanged(before, "PUT")
	if strings.Contains(f.logs.String(), "ann-password-1") || strings.Contains(f.logs.String(), "wrong-password") {
		t.Errorf("a password was logged")
	}
}

func TestCheckAuthDisabled(t *testing.T) {
	t.Parallel()
	f := newHFix(t, func(c *mlmsoft.Config) { c.CheckAuth = mlmsoft.CheckAuthConfig{} })
	f.fake.AddAccount("ann@example.com", "ann-password-1", f.root.AccountID)
	before := f.links()
	wantStatus(t, f.serve(checkAuthRequest("u1", "ann@example.com", "ann-password-1")), http.StatusNotFound, "disabled")
	f.assertUnchanged(before, "disabled")
}

func TestCheckAuthRelink(t *testing.T) {
	t.Parallel()
	f := newHFix(t, func(c *mlmsoft.Config) { c.CheckAuth.AllowRelink = true })
	f.fake.AddAccount("ann@example.com", "ann-password-1", f.root.AccountID)
	second := f.fake.AddAccount("ann2@example.com", "ann-password-2", f.root.AccountID)
	wantStatus(t, f.serve(checkAuthRequest("u1", "ann@example.com", "ann-password-1")), 200, "first account")
	wantStatus(t, f.serve(checkAuthRequest("u1", "ann2@example.com", "ann-password-2")), 200, "relink")
	if l := f.link("u1"); l.AccountID != second.AccountID || l.Email != "ann2@example.com" {
		t.Fatalf("relinked link: %+v, want %+v", l, second)
	}
}

func TestCheckAuthTrustedOrigin(t *testing.T) {
	t.Parallel()
	f := newHFix(t, func(c *mlmsoft.Config) { c.CheckAuth.TrustedOrigins = []string{"https://shop.example.com"} })
	f.fake.AddAccount("ann@example.com", "ann-password-1", f.root.AccountID)
	r := checkAuthRequest("u1", "ann@example.com", "ann-password-1")
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	r.Header.Set("Origin", "https://shop.example.com")
	wantStatus(t, f.serve(r), http.StatusOK, "trusted origin")
}

func TestCheckAuthUpstreamFailures(t *testing.T) {
	t.Parallel()
	f := newHFix(t, func(c *mlmsoft.Config) { c.Breaker.ConsecutiveFailures = 2 })
	f.fake.AddAccount("ann@example.com", "ann-password-1", f.root.AccountID)
	before := f.links()
	f.fake.SetDown(true)
	for i := range 2 {
		rec := f.serve(checkAuthRequest("u1", "ann@example.com", "ann-password-1"))
		wantStatus(t, rec, http.StatusBadGateway, "MLM Soft down, attempt "+strconv.Itoa(i+1))
		if got := decodeAnswer(t, rec.Body); got["code"] != "upstream_error" {
			t.Errorf("answer %v", got)
		}
	}
	calls := f.fake.Calls("user/check-auth")
	rec := f.serve(checkAuthRequest("u1", "ann@example.com", "ann-password-1"))
	wantStatus(t, rec, http.StatusServiceUnavailable, "breaker open")
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After = %q", rec.Header().Get("Retry-After"))
	}
	if f.fake.Calls("user/check-auth") != calls {
		t.Errorf("a request reached MLM Soft while the breaker was open")
	}
	f.assertUnchanged(before, "upstream failures")
}

// TestCheckAuthThrottlesOneClient: 20 wrong passwords in a row from one
// client, for one user and then for many users.
func TestCheckAuthThrottlesOneClient(t *testing.T) {
	t.Parallel()
	t.Run("one user, default limits", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, nil)
		f.fake.AddAccount("ann@example.com", "ann-password-1", f.root.AccountID)
		before := f.links()
		statuses := map[int]int{}
		for i := range 20 {
			rec := f.serve(checkAuthRequest("u1", "ann@example.com", "wrong-"+strconv.Itoa(i)))
			statuses[rec.Code]++
			if rec.Code == http.StatusTooManyRequests {
				ra, err := strconv.Atoi(rec.Header().Get("Retry-After"))
				if err != nil || ra < 1 || ra > int(mlmsoft.CheckAuthWindowDefault/time.Second) {
					t.Fatalf("attempt %d: Retry-After = %q", i+1, rec.Header().Get("Retry-After"))
				}
			}
		}
		limit := mlmsoft.CheckAuthUserLimitDefault
		if statuses[401] != limit || statuses[429] != 20-limit {
			t.Errorf("statuses %v, want %d×401 then %d×429", statuses, limit, 20-limit)
		}
		if n := f.fake.Calls("user/check-auth"); n != limit {
			t.Errorf("%d requests reached MLM Soft, want %d", n, limit)
		}
		// The right password does not get through while throttled.
		wantStatus(t, f.serve(checkAuthRequest("u1", "ann@example.com", "ann-password-1")), 429, "right password while throttled")
		f.assertUnchanged(before, "throttled")
	})
	t.Run("many users, client limit", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, func(c *mlmsoft.Config) { c.CheckAuth.ClientLimit, c.CheckAuth.LoginLimit = 8, -1 })
		f.fake.AddAccount("ann@example.com", "ann-password-1", f.root.AccountID)
		statuses := map[int]int{}
		for i := range 20 {
			statuses[f.serve(checkAuthRequest("user-"+strconv.Itoa(i), "ann@example.com", "wrong")).Code]++
		}
		if statuses[401] != 8 || statuses[429] != 12 {
			t.Errorf("statuses %v, want 8×401 then 12×429", statuses)
		}
		if n := f.fake.Calls("user/check-auth"); n != 8 {
			t.Errorf("%d requests reached MLM Soft, want 8", n)
		}
	})
	t.Run("one user, many clients", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, func(c *mlmsoft.Config) {
			c.CheckAuth.UserLimit = 3
			c.CheckAuth.ClientIP = func(r *http.Request) string { return r.Header.Get("X-Test-Client") }
		})
		statuses := map[int]int{}
		for i := range 6 {
			r := checkAuthRequest("u1", "ann@example.com", "wrong")
			r.Header.Set("X-Test-Client", "10.0.0."+strconv.Itoa(i))
			statuses[f.serve(r).Code]++
		}
		if statuses[401] != 3 || statuses[429] != 3 {
			t.Errorf("statuses %v, want 3×401 then 3×429", statuses)
		}
	})
	t.Run("unlimited", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, func(c *mlmsoft.Config) {
			c.CheckAuth.UserLimit, c.CheckAuth.ClientLimit, c.CheckAuth.LoginLimit = -1, -1, -1
		})
		for i := range 20 {
			wantStatus(t, f.serve(checkAuthRequest("u1", "ann@example.com", "wrong")), 401, "attempt "+strconv.Itoa(i+1))
		}
	})
	t.Run("window ends", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, func(c *mlmsoft.Config) { c.CheckAuth.UserLimit, c.CheckAuth.Window = 1, 5*time.Minute })
		acc := f.fake.AddAccount("ann@example.com", "ann-password-1", f.root.AccountID)
		wantStatus(t, f.serve(checkAuthRequest("u1", "ann@example.com", "wrong")), 401, "first")
		f.clock.Advance(5*time.Minute - time.Millisecond)
		wantStatus(t, f.serve(checkAuthRequest("u1", "ann@example.com", "ann-password-1")), 429, "second, just before the window ends")
		f.clock.Advance(time.Millisecond) // the limits count on the plugin's clock: no sleeping
		wantStatus(t, f.serve(checkAuthRequest("u1", "ann@example.com", "ann-password-1")), 200, "after the window")
		if l := f.link("u1"); l.AccountID != acc.AccountID {
			t.Fatalf("link: %+v", l)
		}
	})
}

// TestCheckAuthConcurrent: many requests for one user at once all succeed
// with one link.
func TestCheckAuthConcurrent(t *testing.T) {
	t.Parallel()
	f := newHFix(t, func(c *mlmsoft.Config) { c.CheckAuth.UserLimit, c.CheckAuth.LoginLimit = -1, -1 })
	acc := f.fake.AddAccount("ann@example.com", "ann-password-1", f.root.AccountID)
	done := make(chan int)
	for range 8 {
		go func() { done <- f.serve(checkAuthRequest("u1", "ann@example.com", "ann-password-1")).Code }()
	}
	for range 8 {
		if code := <-done; code != http.StatusOK {
			t.Errorf("status %d", code)
		}
	}
	ls, _ := f.store.ListLinks(context.Background(), mlmsoft.LinkFilter{})
	if len(ls) != 1 || ls[0].AccountID != acc.AccountID {
		t.Fatalf("links: %+v", ls)
	}
}
