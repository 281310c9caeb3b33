package admin_test

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/admin"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// requireOps is the host's authentication: here HTTP basic auth with one
// operator account (serve it over HTTPS only). The console does none of
// its own.
func requireOps(user, password string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, pw, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(pw), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="operations console", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// The console mounted under /admin/ of an http.ServeMux, behind basic auth;
// the operator's name, for the audit of every action, is the basic-auth
// user. People open /admin/ in a browser; scripts ask for JSON.
func Example() {
	fake := mlmsofttest.NewServer(mlmsofttest.Options{}) // stands for MLM Soft
	defer fake.Close()
	sponsor := fake.AddAccount("sponsor@example.com", "sponsor-password", 0)
	cfg := mlmsoft.Config{
		BaseURL:                 fake.URL,
		APIToken:                mlmsofttest.DefaultToken,
		DefaultSponsorAccountID: sponsor.AccountID,
		RequestTimeout:          20 * time.Second,
		Logger:                  slog.New(slog.DiscardHandler),
	}
	p, err := mlmsoft.New(memstore.New(), cfg)
	if err != nil {
		panic(err)
	}
	// A sign-up; the plugin is not started here, so the link stays pending.
	if err := p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: "42", Email: "ann@example.com"}); err != nil {
		panic(err)
	}

	console := admin.Handler(p, admin.Options{
		Operator:       func(r *http.Request) string { user, _, _ := r.BasicAuth(); return user },
		Title:          "Acme shop — MLM Soft",
		RequestTimeout: cfg.RequestTimeout, // to tell when an uncertain change may be checked
	})
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", requireOps("ops", "a-long-random-password", console)))
	// (nethttpadapter.MountAdmin(mux, "/admin", ...) does the same.)
	app := httptest.NewServer(mux)
	defer app.Close()

	// Without credentials: refused by the host's middleware.
	resp, err := http.Get(app.URL + "/admin/")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("anonymous:", resp.StatusCode)

	// A script lists the users who are not linked yet.
	req, _ := http.NewRequest(http.MethodGet, app.URL+"/admin/links?state=pending&state=created&state=failed", nil)
	req.SetBasicAuth("ops", "a-long-random-password")
	req.Header.Set("Accept", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var list admin.LinkList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		panic(err)
	}
	for _, l := range list.Links {
		fmt.Println(resp.StatusCode, l.UserID, l.Email, l.State)
	}
	// Output:
	// anonymous: 401
	// 200 42 ann@example.com pending
}
