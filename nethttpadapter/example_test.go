package nethttpadapter_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/admin"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/nethttpadapter"
)

// A net/http host mounts the plugin under /mlmsoft. MLM Soft (here the fake
// server) posts the signed Type III webhook once it has created a user, and
// that alone links the user: document polling is turned off to show it.
func ExampleMount() {
	mux := http.NewServeMux()
	app := httptest.NewServer(mux) // the host app
	defer app.Close()

	// Configure the same secret in MLM Soft and in the plugin.
	const secret = "a-long-random-webhook-secret"
	fake := mlmsofttest.NewServer(mlmsofttest.Options{
		WebhookURL:    app.URL + "/mlmsoft/webhook",
		WebhookSecret: []byte(secret),
	})
	defer fake.Close()
	sponsor := fake.AddAccount("sponsor@example.com", "sponsor-password", 0)

	p, err := mlmsoft.New(memstore.New(), mlmsoft.Config{
		BaseURL:                 fake.URL,
		APIToken:                mlmsofttest.DefaultToken,
		DefaultSponsorAccountID: sponsor.AccountID,
		Logger:                  slog.New(slog.DiscardHandler),
		Linking:                 mlmsoft.LinkingConfig{DisablePolling: true},
		Webhook:                 mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{secret}},
	})
	if err != nil {
		panic(err)
	}
	nethttpadapter.Mount(mux, p, "/mlmsoft") // POST /mlmsoft/webhook, POST /mlmsoft/check-auth
	if err := p.Start(context.Background()); err != nil {
		panic(err)
	}
	defer p.Shutdown(context.Background())

	// The host's sign-up path.
	if err := p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: "42", Email: "ann@example.com"}); err != nil {
		panic(err)
	}

	// The link completes in the background when the webhook arrives.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if l, _ := p.Link(context.Background(), "42"); l.State == mlmsoft.LinkLinked {
			break
		}
	}
	l, _ := p.Link(context.Background(), "42")
	created, _ := fake.Account("ann@example.com")
	fmt.Println(l.State, l.LinkedVia, l.AccountID == created.AccountID)
	// Output: linked webhook true
}

// The operations console of package admin mounted under /ops/ behind the
// host's own authentication (here a header standing for the host's admin
// session); its pages link relative to wherever it is mounted.
func ExampleMountAdmin() {
	fake := mlmsofttest.NewServer(mlmsofttest.Options{})
	defer fake.Close()
	p, err := mlmsoft.New(memstore.New(), mlmsoft.Config{
		BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	onlyAdmins := func(h http.Handler) http.Handler { // stands for the host's auth middleware
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Admin") == "" {
				http.Error(w, "forbidden", http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	console := admin.Handler(p, admin.Options{
		Operator: func(r *http.Request) string { return r.Header.Get("X-Admin") },
		Logger:   slog.New(slog.DiscardHandler),
	})

	mux := http.NewServeMux()
	nethttpadapter.Mount(mux, p, "/mlmsoft")                    // the webhook and check-auth
	nethttpadapter.MountAdmin(mux, "/ops", onlyAdmins(console)) // the console: /ops/, /ops/links, ...

	for _, who := range []string{"", "alice"} {
		r := httptest.NewRequest(http.MethodGet, "/ops/links", nil)
		if who != "" {
			r.Header.Set("X-Admin", who)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, r)
		fmt.Println(rec.Code, rec.Header().Get("Content-Type"))
	}
	// Output:
	// 403 text/plain; charset=utf-8
	// 200 text/html; charset=utf-8
}
