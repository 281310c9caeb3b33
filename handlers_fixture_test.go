package mlmsoft_test

// Shared fixture of the webhook, check-auth and adapter tests. Names start
// with "h" so they do not collide with other test files of the package.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/nethttpadapter"
)

const (
	hSecret    = "webhook-secret-0123456789"
	hOldSecret = "webhook-secret-previous-9876"
	hToken     = "path-token-abcdefghijklmnop"
	hUserHdr   = "X-Test-User" // the test's "session": who is signed in
	hPrefix    = "/mlm"
)

// hLogBuffer collects log output from several goroutines.
type hLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *hLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *hLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *hLogBuffer) Logf(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(strings.TrimRight(fmt.Sprintf(format, args...), "\n") + "\n")
}

// hfix is a plugin wired to a fake MLM Soft, its store, its clock, its logs
// and a mux with the handlers mounted at hPrefix.
type hfix struct {
	t     *testing.T
	p     *mlmsoft.Plugin
	store *memstore.Store
	fake  *mlmsofttest.Server
	clock *mlmsofttest.Clock
	logs  *hLogBuffer
	mux   *http.ServeMux
	root  mlmsofttest.Account // the default sponsor
	cfg   mlmsoft.Config
}

// newHFix builds a fixture: webhook enabled with hSecret, check-auth enabled
// with the signed-in user read from the hUserHdr header, a manual clock.
// edit changes the config before New.
func newHFix(t *testing.T, edit func(*mlmsoft.Config)) *hfix {
	t.Helper()
	f := &hfix{t: t, clock: mlmsofttest.NewClock(time.Time{}), logs: &hLogBuffer{}, store: memstore.New(), mux: http.NewServeMux()}
	f.fake = mlmsofttest.NewServer(mlmsofttest.Options{Clock: f.clock, Logf: f.logs.Logf})
	t.Cleanup(f.fake.Close)
	f.root = f.fake.AddAccount("root@example.com", "root-password-1", 0)
	f.cfg = mlmsoft.Config{
		BaseURL:                 f.fake.URL,
		APIToken:                mlmsofttest.DefaultToken,
		DefaultSponsorAccountID: f.root.AccountID,
		RequestTimeout:          5 * time.Second,
		Clock:                   f.clock,
		Logger:                  slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Webhook:                 mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{hSecret}},
		CheckAuth: mlmsoft.CheckAuthConfig{
			Enabled:     true,
			CurrentUser: hHeaderUser,
		},
	}
	if edit != nil {
		edit(&f.cfg)
	}
	p, err := mlmsoft.New(f.store, f.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.p = p
	nethttpadapter.Mount(f.mux, p, hPrefix)
	return f
}

func hHeaderUser(r *http.Request) (string, bool) {
	u := r.Header.Get(hUserHdr)
	return u, u != ""
}

// register records a pending link (the worker is not started, so it stays
// pending).
func (f *hfix) register(userID, email string) {
	f.t.Helper()
	if err := f.p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: userID, Email: email}); err != nil {
		f.t.Fatalf("OnUserRegistered(%s): %v", userID, err)
	}
}

// links is the whole store's links: the "nothing changed" snapshot.
func (f *hfix) links() []mlmsoft.Link {
	f.t.Helper()
	ls, err := f.store.ListLinks(context.Background(), mlmsoft.LinkFilter{})
	if err != nil {
		f.t.Fatalf("ListLinks: %v", err)
	}
	return ls
}

func (f *hfix) link(userID string) mlmsoft.LinkInfo {
	f.t.Helper()
	l, err := f.p.Link(context.Background(), userID)
	if err != nil {
		f.t.Fatalf("Link(%s): %v", userID, err)
	}
	return l
}

func (f *hfix) assertUnchanged(before []mlmsoft.Link, what string) {
	f.t.Helper()
	if after := f.links(); !reflect.DeepEqual(before, after) {
		f.t.Errorf("%s: the store changed:\nbefore %+v\nafter  %+v", what, before, after)
	}
}

// serve runs r through the mux and returns the recorded answer.
func (f *hfix) serve(r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, r)
	return rec
}

// signedWebhook builds a webhook request signed with secret at ts.
func signedWebhook(path, contentType, body, secret string, ts int64) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if secret != "" {
		r.Header.Set(whsig.TimestampHeader, strconv.FormatInt(ts, 10))
		r.Header.Set(whsig.SignatureHeader, whsig.Sign([]byte(secret), ts, []byte(body)))
	}
	return r
}

// webhook builds a JSON webhook signed with hSecret now.
func (f *hfix) webhook(body string) *http.Request {
	return signedWebhook(hPrefix+"/webhook", "application/json", body, hSecret, f.clock.Now().Unix())
}

func webhookJSON(email string, userID, accountID int64) string {
	b, _ := json.Marshal(map[string]any{"email": email, "userId": userID, "accountId": accountID})
	return string(b)
}

// checkAuth builds a check-auth request for the signed-in user.
func checkAuthRequest(user, login, password string) *http.Request {
	b, _ := json.Marshal(map[string]string{"login": login, "password": password})
	r := httptest.NewRequest(http.MethodPost, hPrefix+"/check-auth", bytes.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	if user != "" {
		r.Header.Set(hUserHdr, user)
	}
	return r
}

// decodeAnswer decodes a JSON answer into a map.
func decodeAnswer(t *testing.T, body io.Reader) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.NewDecoder(body).Decode(&m); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return m
}

func wantStatus(t *testing.T, rec *httptest.ResponseRecorder, want int, what string) {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("%s: status %d, want %d; body %s", what, rec.Code, want, rec.Body.String())
	}
}

func newMemStore() *memstore.Store { return memstore.New() }

// hTextLogger logs everything, debug included, to w.
func hTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mountNetHTTP(mux *http.ServeMux, p *mlmsoft.Plugin) { nethttpadapter.Mount(mux, p, hPrefix) }

// startPlugin starts p's workers and shuts them down at the end of the test.
func startPlugin(t *testing.T, p *mlmsoft.Plugin) {
	t.Helper()
	if err := p.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
}

// waitLinked waits (in real time, up to 10s) for userID's link to be linked.
func waitLinked(t *testing.T, p *mlmsoft.Plugin, userID string) mlmsoft.LinkInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := p.Link(context.Background(), userID)
		if err == nil && l.State == mlmsoft.LinkLinked {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not linked in time: %+v (err %v)", userID, l, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// httpServe runs r through h and returns the recorded answer.
func httpServe(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}
