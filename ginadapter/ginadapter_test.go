package ginadapter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-gonic/gin/binding"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/ginadapter"
	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

const (
	secret = "gin-webhook-secret-0123456789"
	token  = "gin-path-token-0123456789"
)

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode) // no route dump on stdout (Example output)
	os.Exit(m.Run())
}

// fixture is a plugin against a fake MLM Soft, not started: links
// registered stay pending until a handler links them.
type fixture struct {
	p     *mlmsoft.Plugin
	store *memstore.Store
	fake  *mlmsofttest.Server
	root  mlmsofttest.Account
}

func newFixture(t *testing.T, edit func(*mlmsoft.Config)) *fixture {
	t.Helper()
	f := &fixture{store: memstore.New(), fake: mlmsofttest.NewServer(mlmsofttest.Options{})}
	t.Cleanup(f.fake.Close)
	f.root = f.fake.AddAccount("root@example.com", "root-password-1", 0)
	cfg := mlmsoft.Config{
		BaseURL: f.fake.URL, APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: f.root.AccountID,
		Logger:    slog.New(slog.DiscardHandler),
		Webhook:   mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{secret}},
		CheckAuth: mlmsoft.CheckAuthConfig{Enabled: true, CurrentUser: ginadapter.CurrentUser("userID")},
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := mlmsoft.New(f.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	return f
}

func (f *fixture) register(t *testing.T, userID, email string) {
	t.Helper()
	if err := f.p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: userID, Email: email}); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) state(t *testing.T, userID string) mlmsoft.LinkInfo {
	t.Helper()
	l, err := f.p.Link(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func signed(t *testing.T, url, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Now().Unix()
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(whsig.TimestampHeader, strconv.FormatInt(ts, 10))
	r.Header.Set(whsig.SignatureHeader, whsig.Sign([]byte(secret), ts, []byte(body)))
	return r
}

func do(t *testing.T, r *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// A body that any re-encoding would change (spacing, key order, escapes):
// the signature only matches the exact bytes sent.
const rawBody = "{ \"userId\" : 100123,\n  \"email\": \"ann\\u0040example.com\" , \"accountId\":700456 }"

// TestAdapterGinRawBody: the webhook gets the untouched raw body on a real
// gin.Engine served over loopback, whatever the host's middleware does to
// bodies elsewhere or globally.
func TestAdapterGinRawBody(t *testing.T) {
	t.Parallel()
	middlewares := map[string][]gin.HandlerFunc{
		"default engine middleware": {gin.Recovery(), gin.LoggerWithWriter(io.Discard)},
		"global middleware reading and restoring the body": {func(c *gin.Context) {
			b, _ := io.ReadAll(c.Request.Body)
			c.Request.Body = io.NopCloser(bytes.NewReader(b))
			c.Next()
		}},
		"global middleware binding with ShouldBindBodyWith": {func(c *gin.Context) {
			var v map[string]any
			_ = c.ShouldBindBodyWith(&v, binding.JSON) // consumes c.Request.Body, keeps the bytes
			c.Next()
		}},
		"global middleware binding and re-encoding": {func(c *gin.Context) {
			var v map[string]any
			if err := c.ShouldBindBodyWith(&v, binding.JSON); err == nil {
				b, _ := json.Marshal(v) // a different encoding of the same data
				c.Request.Body = io.NopCloser(bytes.NewReader(b))
			}
			c.Next()
		}},
	}
	for name, mw := range middlewares {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil)
			f.register(t, "u1", "ann@example.com")
			engine := gin.New()
			engine.Use(mw...)
			// Host routes whose middleware binds the body.
			api := engine.Group("/api", func(c *gin.Context) {
				var order struct {
					ID string `json:"id" binding:"required"`
				}
				if err := c.ShouldBindBodyWith(&order, binding.JSON); err != nil {
					c.AbortWithStatus(http.StatusBadRequest)
					return
				}
				c.Set("order", order.ID)
				c.Next()
			})
			api.POST("/orders", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"id": c.GetString("order")}) })
			ginadapter.Mount(engine, f.p, "/mlm")
			srv := httptest.NewServer(engine)
			defer srv.Close()

			if code, _ := do(t, mustRequest(t, http.MethodPost, srv.URL+"/api/orders", `{"id":"o-1"}`)); code != http.StatusOK {
				t.Fatalf("host route: %d", code)
			}
			code, body := do(t, signed(t, srv.URL+"/mlm/webhook", rawBody))
			if code != http.StatusOK {
				t.Fatalf("webhook: %d %s", code, body)
			}
			if l := f.state(t, "u1"); l.State != mlmsoft.LinkLinked || l.AccountID != 700456 || l.MLMUserID != 100123 {
				t.Fatalf("link: %+v", l)
			}
		})
	}
}

func mustRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	return r
}

// TestAdapterGinCheckAuth: the check-auth handler finds the user the host's
// auth middleware stored with c.Set.
func TestAdapterGinCheckAuth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	acc := f.fake.AddAccount("ann@example.com", "ann-password-1", f.root.AccountID)
	engine := gin.New()
	// The host's "session" middleware: a header stands for the cookie.
	engine.Use(func(c *gin.Context) {
		switch v := c.GetHeader("X-Session"); {
		case v == "":
		case strings.HasPrefix(v, "n:"):
			n, _ := strconv.Atoi(v[2:])
			c.Set("userID", n)
		default:
			c.Set("userID", v)
		}
		c.Next()
	})
	api := engine.Group("/api")
	ginadapter.Mount(api, f.p, "mlm/")
	srv := httptest.NewServer(engine)
	defer srv.Close()

	post := func(session string) (int, string) {
		r := mustRequest(t, http.MethodPost, srv.URL+"/api/mlm/check-auth", `{"login":"ann@example.com","password":"ann-password-1"}`)
		if session != "" {
			r.Header.Set("X-Session", session)
		}
		return do(t, r)
	}
	if code, body := post(""); code != http.StatusUnauthorized || !strings.Contains(body, "not_signed_in") {
		t.Fatalf("no session: %d %s", code, body)
	}
	code, body := post("n:42")
	if code != http.StatusOK {
		t.Fatalf("check-auth: %d %s", code, body)
	}
	if l := f.state(t, "42"); l.State != mlmsoft.LinkLinked || l.AccountID != acc.AccountID {
		t.Fatalf("link: %+v", l)
	}
	// Wrong methods get the handlers' own 405, not Gin's 404.
	for _, path := range []string{"/api/mlm/check-auth", "/api/mlm/webhook"} {
		if code, _ := do(t, mustRequest(t, http.MethodGet, srv.URL+path, "")); code != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: %d, want 405", path, code)
		}
	}
}

// TestAdapterGinPathToken: with path tokens the webhook is mounted at
// /webhook/:token and the token reaches the handler.
func TestAdapterGinPathToken(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *mlmsoft.Config) { c.Webhook = mlmsoft.WebhookConfig{Enabled: true, PathTokens: []string{token}} })
	f.register(t, "u1", "ann@example.com")
	engine := gin.New()
	ginadapter.Mount(engine, f.p, "")
	srv := httptest.NewServer(engine)
	defer srv.Close()
	body := `{"email":"ann@example.com","userId":5,"accountId":6}`
	if code, _ := do(t, mustRequest(t, http.MethodPost, srv.URL+"/webhook/wrong-token-0123456789", body)); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if l := f.state(t, "u1"); l.State != mlmsoft.LinkPending {
		t.Fatalf("a wrong token changed the link: %+v", l)
	}
	if code, b := do(t, mustRequest(t, http.MethodPost, srv.URL+"/webhook/"+token, body)); code != http.StatusOK {
		t.Fatalf("right token: %d %s", code, b)
	}
	if l := f.state(t, "u1"); l.State != mlmsoft.LinkLinked {
		t.Fatalf("link: %+v", l)
	}
}

// TestAdapterGinBridgeByHand: a host mounting the handler itself with
// gin.WrapH needs Bridge for CurrentUser to see c.Set values.
func TestAdapterGinBridgeByHand(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	f.fake.AddAccount("ann@example.com", "ann-password-1", f.root.AccountID)
	engine := gin.New()
	engine.Use(func(c *gin.Context) { c.Set("userID", "u7"); c.Next() })
	engine.POST("/without", gin.WrapH(f.p.CheckAuthHandler()))
	engine.POST("/with", ginadapter.Bridge(), gin.WrapH(f.p.CheckAuthHandler()))
	body := `{"login":"ann@example.com","password":"ann-password-1"}`

	rec := httptest.NewRecorder()
	engine.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/without", strings.NewReader(body)))
	if rec.Code != http.StatusUnauthorized {
		t.Fatalf("without Bridge: %d %s", rec.Code, rec.Body)
	}
	rec = httptest.NewRecorder()
	engine.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/with", strings.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("with Bridge: %d %s", rec.Code, rec.Body)
	}
	if l := f.state(t, "u7"); l.State != mlmsoft.LinkLinked {
		t.Fatalf("link: %+v", l)
	}
}

type stringer struct{ id string }

func (s stringer) String() string { return s.id }

func TestAdapterGinCurrentUserValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		value  any
		set    bool
		want   string
		wantOK bool
	}{
		{"u1", true, "u1", true},
		{"", true, "", false},
		{42, true, "42", true},
		{int64(-7), true, "-7", true},
		{uint64(9), true, "9", true},
		{stringer{"s-1"}, true, "s-1", true},
		{3.5, true, "", false},
		{nil, false, "", false},
	}
	current := ginadapter.CurrentUser("uid")
	for _, c := range cases {
		engine := gin.New()
		var gotID string
		var gotOK bool
		engine.GET("/", func(ctx *gin.Context) {
			if c.set {
				ctx.Set("uid", c.value)
			}
			ctx.Next()
		}, ginadapter.Bridge(), func(ctx *gin.Context) { gotID, gotOK = current(ctx.Request) })
		engine.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
		if gotID != c.want || gotOK != c.wantOK {
			t.Errorf("value %#v: got (%q, %v), want (%q, %v)", c.value, gotID, gotOK, c.want, c.wantOK)
		}
	}
	if _, ok := ginadapter.Context(httptest.NewRequest(http.MethodGet, "/", nil)); ok {
		t.Error("Context found a gin.Context in a plain request")
	}
}
