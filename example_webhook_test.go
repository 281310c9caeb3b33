package mlmsoft_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
)

// The webhook handler is a plain http.Handler: here it is mounted by hand,
// authenticated by a secret token in its path rather than a signature.
func ExamplePlugin_WebhookHandler() {
	const token = "a-long-random-path-token"
	p, err := mlmsoft.New(memstore.New(), mlmsoft.Config{
		BaseURL:                 "https://acme.mlmsoft.com/api2/online-office/",
		APIToken:                "your-api-token",
		DefaultSponsorAccountID: 700001,
		Logger:                  slog.New(slog.DiscardHandler),
		Webhook:                 mlmsoft.WebhookConfig{Enabled: true, PathTokens: []string{token}},
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/mlmsoft/{"+mlmsoft.WebhookTokenParam+"}", p.WebhookHandler())

	// A user signs up; MLM Soft later posts their ids.
	_ = p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: "42", Email: "ann@example.com"})
	for _, path := range []string{"/hooks/mlmsoft/a-guessed-token-000000", "/hooks/mlmsoft/" + token} {
		req := httptest.NewRequest(http.MethodPost, path,
			strings.NewReader(`{"email":"ann@example.com","userId":100002,"accountId":700002}`))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	l, _ := p.Link(context.Background(), "42")
	fmt.Println(l.State, l.AccountID, l.MLMUserID, l.LinkedVia)
	// Output:
	// 401
	// 200
	// linked 700002 100002 webhook
}
