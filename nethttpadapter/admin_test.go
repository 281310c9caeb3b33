package nethttpadapter_test

import (
	"context"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/admin"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/nethttpadapter"
)

// TestMountAdminStripsThePrefix: the mounted handler sees the path under
// the prefix, escaped slashes kept, for every spelling of the prefix.
func TestMountAdminStripsThePrefix(t *testing.T) {
	t.Parallel()
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Method+" "+r.URL.EscapedPath()+" "+r.URL.RawQuery)
	})
	for _, tc := range []struct{ prefix, base string }{{"/admin", "/admin"}, {"admin/", "/admin"}, {"/ops/admin/", "/ops/admin"}, {"", ""}, {"/", ""}} {
		mux := http.NewServeMux()
		nethttpadapter.MountAdmin(mux, tc.prefix, echo)
		srv := httptest.NewServer(mux)
		for path, want := range map[string]string{
			"/":             "GET / ",
			"/links?a=1":    "GET /links a=1",
			"/user%2Fx/y":   "GET /user%2Fx/y ",
			"/volumes/5/go": "GET /volumes/5/go ",
		} {
			code, body := get(t, srv.URL+tc.base+path)
			if code != http.StatusOK || body != want {
				t.Errorf("prefix %q: %s: %d %q, want %q", tc.prefix, path, code, body, want)
			}
		}
		if tc.base != "" {
			// The mux sends the prefix itself to the prefix with a slash.
			resp, err := noRedirects().Get(srv.URL + tc.base)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if !redirect(resp.StatusCode) || resp.Header.Get("Location") != tc.base+"/" {
				t.Errorf("prefix %q: GET %s: %d to %q", tc.prefix, tc.base, resp.StatusCode, resp.Header.Get("Location"))
			}
			if code, _ := get(t, srv.URL+"/elsewhere"); code != http.StatusNotFound {
				t.Errorf("prefix %q: a path outside it reached the handler", tc.prefix)
			}
		}
		srv.Close()
	}
}

// redirect reports whether code is a permanent or temporary redirect that
// keeps the method (the mux's choice has changed across Go versions).
func redirect(code int) bool {
	return code == http.StatusMovedPermanently || code == http.StatusTemporaryRedirect || code == http.StatusPermanentRedirect
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func noRedirects() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var urlAttr = regexp.MustCompile(`(?:href|action)="([^"]*)"`)

// TestMountAdminConsole: the real console under /ops/admin/ of a ServeMux,
// next to the plugin's own handlers, behind the host's auth: every link and
// form of its pages resolves under the prefix, its cookie is scoped to it,
// and an action redirects back under it.
func TestMountAdminConsole(t *testing.T) {
	t.Parallel()
	p, fake := newPlugin(t, nil)
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	// MLM Soft refuses u/2's account: a failed link to retry.
	fake.InjectNext("user/create", mlmsofttest.FaultBusinessError, 1)
	if err := p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "u/2", Email: "bob@example.com"}); err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		if l, _ := p.Link(ctx, "u/2"); l.State == mlmsoft.LinkFailed {
			break
		}
		if time.Now().After(end) {
			t.Fatal("u/2's link did not fail")
		}
	}
	if err := p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: "u/1", Email: "ann@example.com"}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ApplyVolumes(context.Background(), "u/1", mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount("5"), OrderID: "o1"}); err != nil {
		t.Fatal(err)
	}
	auth := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, pw, ok := r.BasicAuth(); !ok || u != "ops" || pw != "secret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="console"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	console := admin.Handler(p, admin.Options{
		Operator: func(r *http.Request) string { u, _, _ := r.BasicAuth(); return u },
		Logger:   slog.New(slog.DiscardHandler),
	})
	mux := http.NewServeMux()
	nethttpadapter.Mount(mux, p, "/mlm")
	nethttpadapter.MountAdmin(mux, "/ops/admin", auth(console))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := noRedirects()
	do := func(method, u string, body url.Values) *http.Response {
		t.Helper()
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(body.Encode())
		}
		r, _ := http.NewRequest(method, u, rd)
		r.SetBasicAuth("ops", "secret")
		if body != nil {
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}

	if code, _ := get(t, srv.URL+"/ops/admin/"); code != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d", code)
	}
	seen := map[string]bool{}
	pages := []string{srv.URL + "/ops/admin/", srv.URL + "/ops/admin/links?state=failed", srv.URL + "/ops/admin/volumes/1", srv.URL + "/ops/admin/user?id=u%2F2"}
	for _, page := range pages {
		resp := do(http.MethodGet, page, nil)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d", page, resp.StatusCode)
		}
		for _, ck := range resp.Cookies() {
			if ck.Path != "/ops/admin" {
				t.Errorf("%s: cookie %s has path %q", page, ck.Name, ck.Path)
			}
		}
		base, _ := url.Parse(page)
		for _, m := range urlAttr.FindAllStringSubmatch(string(b), -1) {
			ref, err := base.Parse(html.UnescapeString(m[1]))
			if err != nil {
				t.Errorf("%s: %q: %v", page, m[1], err)
				continue
			}
			if !strings.HasPrefix(ref.Path, "/ops/admin/") {
				t.Errorf("%s: %q resolves to %s, outside the console", page, m[1], ref)
				continue
			}
			if strings.HasPrefix(m[0], "href") && !seen[ref.String()] {
				seen[ref.String()] = true
				resp := do(http.MethodGet, ref.String(), nil)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("%s: link %q (%s): %d", page, m[1], ref, resp.StatusCode)
				}
			}
		}
	}
	if len(seen) < 10 {
		t.Errorf("only %d links followed", len(seen))
	}

	// An action redirects back under the prefix; a missing trailing slash
	// is added first.
	resp := do(http.MethodGet, srv.URL+"/ops/admin", nil)
	resp.Body.Close()
	if !redirect(resp.StatusCode) || resp.Header.Get("Location") != "/ops/admin/" {
		t.Errorf("GET /ops/admin: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	u, _ := url.Parse(srv.URL + "/ops/admin/")
	var token string
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "mlmsoft_console_csrf" {
			token = ck.Value
		}
	}
	resp = do(http.MethodPost, srv.URL+"/ops/admin/user/retry-link?id=u%2F2", url.Values{"csrf_token": {token}, "note": {"fixed"}, "back": {"links?state=failed"}})
	resp.Body.Close()
	loc, _ := u.Parse("user/retry-link")
	loc, _ = loc.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Path != "/ops/admin/links" || loc.RawQuery != "state=failed" {
		t.Errorf("retry: %d to %q (%s)", resp.StatusCode, resp.Header.Get("Location"), loc)
	}
	if l, _ := p.Link(ctx, "u/2"); l.ResolvedBy != "ops" || l.ResolvedNote != "fixed" {
		t.Errorf("u/2 after the retry: %+v", l)
	}
	resp = do(http.MethodGet, loc.String(), nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `id="flash"`) {
		t.Errorf("no flash message after the redirect")
	}
}
