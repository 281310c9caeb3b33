package nethttpadapter_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/nethttpadapter"
)

const (
	secret = "nethttp-webhook-secret-0123"
	token  = "nethttp-path-token-0123456"
)

func newPlugin(t *testing.T, edit func(*mlmsoft.Config)) (*mlmsoft.Plugin, *mlmsofttest.Server) {
	t.Helper()
	fake := mlmsofttest.NewServer(mlmsofttest.Options{})
	t.Cleanup(fake.Close)
	root := fake.AddAccount("root@example.com", "root-password-1", 0)
	cfg := mlmsoft.Config{
		BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: root.AccountID,
		Logger:  slog.New(slog.DiscardHandler),
		Webhook: mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{secret}},
		CheckAuth: mlmsoft.CheckAuthConfig{Enabled: true, CurrentUser: func(r *http.Request) (string, bool) {
			c, err := r.Cookie("session")
			if err != nil {
				return "", false
			}
			return c.Value, true
		}},
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := mlmsoft.New(memstore.New(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, fake
}

func post(t *testing.T, url, body string, edit func(*http.Request)) (int, string) {
	t.Helper()
	r, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	if edit != nil {
		edit(r)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func sign(body string) func(*http.Request) {
	return func(r *http.Request) {
		ts := time.Now().Unix()
		r.Header.Set(whsig.TimestampHeader, strconv.FormatInt(ts, 10))
		r.Header.Set(whsig.SignatureHeader, whsig.Sign([]byte(secret), ts, []byte(body)))
	}
}

// TestAdapterNetHTTP: both routes on a real ServeMux served over loopback,
// under several spellings of the prefix.
func TestAdapterNetHTTP(t *testing.T) {
	t.Parallel()
	for _, prefix := range []string{"/mlm", "mlm/", ""} {
		t.Run("prefix "+strconv.Quote(prefix), func(t *testing.T) {
			t.Parallel()
			p, fake := newPlugin(t, nil)
			acc := fake.AddAccount("bob@example.com", "bob-password-1", 0)
			if err := p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: "u1", Email: "ann@example.com"}); err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			nethttpadapter.Mount(mux, p, prefix)
			srv := httptest.NewServer(mux)
			defer srv.Close()
			base := srv.URL
			if prefix != "" {
				base += "/mlm"
			}

			body := `{"email":"ann@example.com","userId":5,"accountId":6}`
			if code, b := post(t, base+"/webhook", body, sign(body)); code != http.StatusOK {
				t.Fatalf("webhook: %d %s", code, b)
			}
			if l, _ := p.Link(context.Background(), "u1"); l.State != mlmsoft.LinkLinked || l.AccountID != 6 {
				t.Fatalf("u1: %+v", l)
			}
			cookie := func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "session", Value: "u2"}) }
			if code, b := post(t, base+"/check-auth", `{"login":"bob@example.com","password":"bob-password-1"}`, cookie); code != http.StatusOK {
				t.Fatalf("check-auth: %d %s", code, b)
			}
			if l, _ := p.Link(context.Background(), "u2"); l.State != mlmsoft.LinkLinked || l.AccountID != acc.AccountID {
				t.Fatalf("u2: %+v", l)
			}
			// Method patterns: the mux answers 405 to other methods.
			for _, path := range []string{"/webhook", "/check-auth"} {
				resp, err := http.Get(base + path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
					t.Errorf("GET %s: %d (Allow %q), want 405", path, resp.StatusCode, resp.Header.Get("Allow"))
				}
			}
		})
	}
}

func TestAdapterNetHTTPPathToken(t *testing.T) {
	t.Parallel()
	p, _ := newPlugin(t, func(c *mlmsoft.Config) { c.Webhook.PathTokens = []string{token} })
	if err := p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: "u1", Email: "ann@example.com"}); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	nethttpadapter.Mount(mux, p, "/hooks")
	srv := httptest.NewServer(mux)
	defer srv.Close()
	body := `{"email":"ann@example.com","userId":5,"accountId":6}`
	if code, _ := post(t, srv.URL+"/hooks/webhook/not-the-token-0123456789", body, sign(body)); code != http.StatusUnauthorized {
		t.Fatalf("wrong token: %d", code)
	}
	if code, _ := post(t, srv.URL+"/hooks/webhook", body, sign(body)); code != http.StatusNotFound {
		t.Fatalf("no token: %d, want 404 (no such route)", code)
	}
	if l, _ := p.Link(context.Background(), "u1"); l.State != mlmsoft.LinkPending {
		t.Fatalf("changed by a refused webhook: %+v", l)
	}
	if code, b := post(t, srv.URL+"/hooks/webhook/"+token, body, sign(body)); code != http.StatusOK {
		t.Fatalf("right token: %d %s", code, b)
	}
	if l, _ := p.Link(context.Background(), "u1"); l.State != mlmsoft.LinkLinked {
		t.Fatalf("u1: %+v", l)
	}
}
