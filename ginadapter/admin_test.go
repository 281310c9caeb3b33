package ginadapter_test

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

	"github.com/gin-gonic/gin"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/admin"
	"github.com/mlmsoft-go/mlmsoft/ginadapter"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

func noRedirects() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestMountAdminStripsThePrefix: the mounted handler sees the path under
// the full mount path (group and prefix), escaped slashes kept, for every
// spelling of the prefix, with the *gin.Context reachable.
func TestMountAdminStripsThePrefix(t *testing.T) {
	t.Parallel()
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := "-"
		if c, ok := ginadapter.Context(r); ok {
			who = c.GetString("who")
		}
		_, _ = io.WriteString(w, r.Method+" "+r.URL.EscapedPath()+" "+r.URL.RawQuery+" "+who)
	})
	for _, tc := range []struct{ group, prefix, base string }{
		{"", "/admin", "/admin"}, {"", "admin/", "/admin"}, {"/ops", "admin", "/ops/admin"}, {"/ops/admin", "", "/ops/admin"}, {"", "", ""},
	} {
		engine := gin.New()
		var r gin.IRouter = engine
		if tc.group != "" {
			r = engine.Group(tc.group)
		}
		r.Use(func(c *gin.Context) { c.Set("who", "alice"); c.Next() })
		ginadapter.MountAdmin(r, tc.prefix, echo)
		srv := httptest.NewServer(engine)
		c := noRedirects()
		for path, want := range map[string]string{
			"/":             "GET /  alice",
			"/links?a=1":    "GET /links a=1 alice",
			"/user%2Fx/y":   "GET /user%2Fx/y  alice",
			"/volumes/5/go": "GET /volumes/5/go  alice",
		} {
			resp, err := c.Get(srv.URL + tc.base + path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(b) != want {
				t.Errorf("group %q prefix %q: %s: %d %q, want %q", tc.group, tc.prefix, path, resp.StatusCode, b, want)
			}
		}
		// POSTs reach it too.
		resp, err := c.Post(srv.URL+tc.base+"/volumes/5/skip", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "POST /volumes/5/skip  alice" {
			t.Errorf("group %q prefix %q: POST: %q", tc.group, tc.prefix, b)
		}
		if tc.base != "" {
			resp, err := c.Get(srv.URL + tc.base + "?x=1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// MountAdmin's redirect, or Gin's own for a group's root.
			from, _ := url.Parse(srv.URL + tc.base)
			to, _ := from.Parse(resp.Header.Get("Location"))
			if resp.StatusCode != http.StatusMovedPermanently || to.RequestURI() != tc.base+"/?x=1" {
				t.Errorf("group %q prefix %q: GET %s: %d to %q", tc.group, tc.prefix, tc.base, resp.StatusCode, resp.Header.Get("Location"))
			}
		}
		srv.Close()
	}
}

var urlAttr = regexp.MustCompile(`(?:href|action)="([^"]*)"`)

// TestMountAdminConsole: the real console under /ops/admin/ of a Gin engine,
// next to the plugin's own routes, behind the host's Gin auth middleware
// whose user the Operator reads: every link and form of its pages resolves
// under the prefix, its cookie is scoped to it, and an action is audited
// and redirects back under it.
func TestMountAdminConsole(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := context.Background()
	if err := f.p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer f.p.Shutdown(ctx)
	f.fake.InjectNext("user/create", mlmsofttest.FaultBusinessError, 1)
	f.register(t, "u/2", "bob@example.com")
	for end := time.Now().Add(10 * time.Second); f.state(t, "u/2").State != mlmsoft.LinkFailed; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("u/2's link did not fail")
		}
	}
	f.register(t, "u/1", "ann@example.com")
	if _, err := f.p.ApplyVolumes(ctx, "u/1", mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount("5"), OrderID: "o1"}); err != nil {
		t.Fatal(err)
	}

	console := admin.Handler(f.p, admin.Options{
		Operator: func(r *http.Request) string {
			if c, ok := ginadapter.Context(r); ok {
				return c.GetString("admin")
			}
			return ""
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	engine := gin.New()
	ginadapter.Mount(engine, f.p, "/mlm")
	ops := engine.Group("/ops", func(c *gin.Context) { // the host's admin auth
		if u, pw, ok := c.Request.BasicAuth(); !ok || u != "ops" || pw != "secret" {
			c.Header("WWW-Authenticate", `Basic realm="console"`)
			c.AbortWithStatus(http.StatusUnauthorized)
			return
		}
		c.Set("admin", "ops-person")
		c.Next()
	})
	ginadapter.MountAdmin(ops, "/admin", console)
	srv := httptest.NewServer(engine)
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

	if resp, err := http.Get(srv.URL + "/ops/admin/"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials: %v %v", resp.StatusCode, err)
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

	resp := do(http.MethodGet, srv.URL+"/ops/admin", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "admin/" {
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
	if l := f.state(t, "u/2"); l.ResolvedBy != "ops-person" || l.ResolvedNote != "fixed" {
		t.Errorf("u/2 after the retry: %+v", l)
	}
	resp = do(http.MethodGet, loc.String(), nil)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `id="flash"`) {
		t.Errorf("no flash message after the redirect")
	}
	// The plugin's own routes still work beside it.
	resp = do(http.MethodGet, srv.URL+"/mlm/check-auth", nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /mlm/check-auth: %d", resp.StatusCode)
	}
}
