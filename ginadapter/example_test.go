package ginadapter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/admin"
	"github.com/mlmsoft-go/mlmsoft/ginadapter"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// A Gin host mounts the plugin under /mlmsoft and lets a signed-in user
// link the MLM Soft account they had before the host app existed, with
// their MLM Soft email and password (Type II, check-auth).
func ExampleMount() {
	// A fake MLM Soft that knows one member (use your tenant's URL and
	// token in production).
	fake := mlmsofttest.NewServer(mlmsofttest.Options{})
	defer fake.Close()
	member := fake.AddAccount("ann@example.com", "ann's MLM Soft password", 0)

	p, err := mlmsoft.New(memstore.New(), mlmsoft.Config{
		BaseURL:  fake.URL,
		APIToken: mlmsofttest.DefaultToken,
		Logger:   slog.New(slog.DiscardHandler),
		CheckAuth: mlmsoft.CheckAuthConfig{
			Enabled: true,
			// The host's auth middleware below stores the user id with
			// c.Set("userID", ...).
			CurrentUser: ginadapter.CurrentUser("userID"),
		},
		Webhook: mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{"a-long-random-webhook-secret"}},
	})
	if err != nil {
		panic(err)
	}
	if err := p.Start(context.Background()); err != nil {
		panic(err)
	}
	defer p.Shutdown(context.Background())

	r := gin.New()
	r.Use(func(c *gin.Context) { // stands for the host's session middleware
		c.Set("userID", "host-user-42")
		c.Next()
	})
	ginadapter.Mount(r, p, "/mlmsoft")

	// The signed-in user posts their MLM Soft credentials.
	req := httptest.NewRequest(http.MethodPost, "/mlmsoft/check-auth",
		strings.NewReader(`{"login":"ann@example.com","password":"ann's MLM Soft password"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)

	var answer struct {
		Linked    bool  `json:"linked"`
		AccountID int64 `json:"accountId"`
	}
	_ = json.NewDecoder(rec.Body).Decode(&answer)
	fmt.Println(rec.Code, answer.Linked, answer.AccountID == member.AccountID)

	l, _ := p.Link(context.Background(), "host-user-42")
	fmt.Println(l.State, l.LinkedVia)
	// Output:
	// 200 true true
	// linked check-auth
}

// The operations console of package admin mounted at /ops/console/ of a Gin
// app, in a group behind the host's admin middleware, which tells the
// console who acts (for the audit) through c.Set.
func ExampleMountAdmin() {
	fake := mlmsofttest.NewServer(mlmsofttest.Options{})
	defer fake.Close()
	p, err := mlmsoft.New(memstore.New(), mlmsoft.Config{
		BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	operator := ginadapter.CurrentUser("admin") // reads what the middleware set
	console := admin.Handler(p, admin.Options{
		Operator: func(r *http.Request) string { name, _ := operator(r); return name },
		Logger:   slog.New(slog.DiscardHandler),
	})

	r := gin.New()
	ops := r.Group("/ops", func(c *gin.Context) { // stands for the host's admin auth
		name := c.GetHeader("X-Admin")
		if name == "" {
			c.AbortWithStatus(http.StatusForbidden)
			return
		}
		c.Set("admin", name)
		c.Next()
	})
	ginadapter.MountAdmin(ops, "/console", console) // /ops/console/, /ops/console/links, ...

	for _, path := range []string{"/ops/console/links", "/ops/console/volumes?format=json"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("X-Admin", "alice")
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	}
	// Output:
	// 200 text/html; charset=utf-8
	// 200 application/json; charset=utf-8
}
