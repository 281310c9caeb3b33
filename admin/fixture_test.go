package admin_test

// The console's tests run it against a plugin over the fake MLM Soft
// (mlmsofttest), on a manual clock, with memstore, mounted under /admin/ of
// a real http.ServeMux served over loopback, and drive it like a browser
// (cookies kept, redirects not followed) or a script (JSON).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/admin"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

const (
	volumeEP   = "account/volume-change"
	createEP   = "user/create"
	operatorHd = "X-Test-Operator" // the test's "session": who is signed in
	deadline   = 10 * time.Second  // real-time bound of every wait
)

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// flakyStore is memstore whose Counts fails while fail is set.
type flakyStore struct {
	*memstore.Store
	fail *atomic.Bool
}

func (s flakyStore) Counts(ctx context.Context) (mlmsoft.Counts, error) {
	if s.fail.Load() {
		return mlmsoft.Counts{}, errors.New("the database is down (test)")
	}
	return s.Store.Counts(ctx)
}

// fixture is a plugin over the fake, and its console mounted at /admin/.
type fixture struct {
	t     *testing.T
	p     *mlmsoft.Plugin
	store *memstore.Store
	// failCounts makes the store's Counts (so Plugin.Stats) fail.
	failCounts atomic.Bool
	fake       *mlmsofttest.Server
	clock      *mlmsofttest.Clock
	root       mlmsofttest.Account
	logs       *logBuffer // the console's log
	srv        *httptest.Server
	started    bool
}

// newFixture builds the fixture; the plugin is not started (links stay
// pending, changes stay pending) until start.
func newFixture(t *testing.T, opts admin.Options) *fixture {
	t.Helper()
	f := &fixture{t: t, store: memstore.New(), clock: mlmsofttest.NewClock(time.Time{}), logs: &logBuffer{}}
	f.fake = mlmsofttest.NewServer(mlmsofttest.Options{Clock: f.clock, Synchronous: true})
	t.Cleanup(f.fake.Close)
	f.root = f.fake.AddAccount("root@example.com", "root-password-1", 0)
	p, err := mlmsoft.New(flakyStore{Store: f.store, fail: &f.failCounts}, mlmsoft.Config{
		BaseURL:                 f.fake.URL,
		APIToken:                mlmsofttest.DefaultToken,
		DefaultSponsorAccountID: f.root.AccountID,
		RequestTimeout:          3 * time.Second,
		Lease:                   time.Minute,
		Clock:                   f.clock,
		Logger:                  slog.New(slog.DiscardHandler),
		Linking:                 mlmsoft.LinkingConfig{PollInitial: time.Second, PollMax: 2 * time.Second},
		Volumes:                 mlmsoft.VolumeConfig{RetryInitial: time.Second, RetryMax: 4 * time.Second},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.p = p
	if opts.Operator == nil {
		opts.Operator = func(r *http.Request) string { return r.Header.Get(operatorHd) }
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(f.logs, nil))
	}
	if opts.Clock == nil {
		opts.Clock = f.clock
	}
	if opts.RequestTimeout == 0 {
		opts.RequestTimeout = 3 * time.Second
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/", http.StripPrefix("/admin", admin.Handler(p, opts)))
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) start() {
	f.t.Helper()
	if err := f.p.Start(context.Background()); err != nil {
		f.t.Fatalf("Start: %v", err)
	}
	f.started = true
	f.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := f.p.Shutdown(ctx); err != nil {
			f.t.Errorf("Shutdown: %v", err)
		}
	})
}

// register records a sign-up for id with e-mail email.
func (f *fixture) register(id, email string) {
	f.t.Helper()
	if err := f.p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: id, Email: email}); err != nil {
		f.t.Fatalf("OnUserRegistered(%s): %v", id, err)
	}
}

// link returns id's link.
func (f *fixture) link(id string) mlmsoft.LinkInfo {
	f.t.Helper()
	l, err := f.p.Link(context.Background(), id)
	if err != nil {
		f.t.Fatalf("Link(%s): %v", id, err)
	}
	return l
}

// eventually polls cond in real time until it holds (the plugin's workers
// run on their own goroutines).
func (f *fixture) eventually(what string, cond func() bool) {
	f.t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			f.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// linkedUser registers id and waits for its link (the plugin must be
// started).
func (f *fixture) linkedUser(id string) mlmsoft.LinkInfo {
	f.t.Helper()
	f.register(id, id+"@example.com")
	f.eventually(id+" linked", func() bool { return f.link(id).State == mlmsoft.LinkLinked })
	return f.link(id)
}

// failedUser registers id while MLM Soft refuses its user/create, and waits
// for the link to fail.
func (f *fixture) failedUser(id string) mlmsoft.LinkInfo {
	f.t.Helper()
	f.fake.InjectNext(createEP, mlmsofttest.FaultBusinessError, 1)
	f.register(id, emailOf(id))
	f.eventually(id+" failed", func() bool { return f.link(id).State == mlmsoft.LinkFailed })
	return f.link(id)
}

// emailOf returns an e-mail address for user id: id@example.com, or a hex
// spelling of id when it is not a plain name.
func emailOf(id string) string {
	for _, r := range id {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-') {
			return fmt.Sprintf("%x@example.com", id)
		}
	}
	return id + "@example.com"
}

func vc(alias, amount, order string) mlmsoft.Change {
	return mlmsoft.Change{Alias: alias, Amount: mlmsoft.MustAmount(amount), OrderID: order}
}

// apply enqueues changes for user and returns the batch.
func (f *fixture) apply(user string, changes ...mlmsoft.Change) *mlmsoft.Batch {
	f.t.Helper()
	b, err := f.p.ApplyVolumes(context.Background(), user, changes...)
	if err != nil {
		f.t.Fatalf("ApplyVolumes(%s): %v", user, err)
	}
	return b
}

// wait waits for the batch's outcome.
func (f *fixture) wait(b *mlmsoft.Batch) error {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	_, err := b.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		f.t.Fatalf("Batch.Wait: %v", err)
	}
	return err
}

// held applies changes for user with the next volume-change request meeting
// fault, and returns the first change once it holds the queue in want.
func (f *fixture) held(user string, fault mlmsofttest.FaultKind, want mlmsoft.VolumeState, changes ...mlmsoft.Change) mlmsoft.VolumeChange {
	f.t.Helper()
	f.fake.InjectNext(volumeEP, fault, 1)
	b := f.apply(user, changes...)
	if err := f.wait(b); !errors.Is(err, mlmsoft.ErrNotDelivered) {
		f.t.Fatalf("Wait = %v, want ErrNotDelivered", err)
	}
	c := f.get(b.Changes[0].ID)
	if c.State != want {
		f.t.Fatalf("change %d is %s, want %s", c.ID, c.State, want)
	}
	return c
}

// get returns change id as stored.
func (f *fixture) get(id int64) mlmsoft.VolumeChange {
	f.t.Helper()
	cs, err := f.store.GetVolumes(context.Background(), []int64{id})
	if err != nil {
		f.t.Fatalf("GetVolumes(%d): %v", id, err)
	}
	return cs[0]
}

// browser drives the console as a browser or a script would: it keeps
// cookies and does not follow redirects.
type browser struct {
	t        *testing.T
	f        *fixture
	c        *http.Client
	operator string
}

func (f *fixture) browser(operator string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: f.t, f: f, operator: operator, c: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       deadline,
	}}
}

// answer is a recorded response.
type answer struct {
	code int
	hdr  http.Header
	body string
}

func (a answer) json(t *testing.T, v any) {
	t.Helper()
	if ct := a.hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want JSON; body %s", ct, a.body)
	}
	if err := json.Unmarshal([]byte(a.body), v); err != nil {
		t.Fatalf("decoding %s: %v", a.body, err)
	}
}

func (b *browser) url(path string) string { return b.f.srv.URL + "/admin/" + path }

func (b *browser) do(r *http.Request) answer {
	b.t.Helper()
	if b.operator != "" {
		r.Header.Set(operatorHd, b.operator)
	}
	resp, err := b.c.Do(r)
	if err != nil {
		b.t.Fatalf("%s %s: %v", r.Method, r.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, hdr: resp.Header, body: string(body)}
}

// get asks for a page, relative to the console's root, as HTML.
func (b *browser) get(path string) answer {
	b.t.Helper()
	r, _ := http.NewRequest(http.MethodGet, b.url(path), nil)
	r.Header.Set("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	return b.do(r)
}

// getJSON asks for a page as JSON and decodes it into v.
func (b *browser) getJSON(path string, v any) answer {
	b.t.Helper()
	r, _ := http.NewRequest(http.MethodGet, b.url(path), nil)
	r.Header.Set("Accept", "application/json")
	a := b.do(r)
	if a.code == http.StatusOK && v != nil {
		a.json(b.t, v)
	}
	return a
}

// token returns the CSRF token of the browser's cookie (after a GET).
func (b *browser) token() string {
	u, _ := url.Parse(b.url(""))
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "mlmsoft_console_csrf" {
			return c.Value
		}
	}
	return ""
}

// post submits a form as a browser does: same-origin headers and the
// page's token (unless form sets csrf_token itself).
func (b *browser) post(path string, form url.Values) answer {
	b.t.Helper()
	if b.token() == "" {
		b.get("")
	}
	if _, ok := form["csrf_token"]; !ok {
		form.Set("csrf_token", b.token())
	}
	r, _ := http.NewRequest(http.MethodPost, b.url(path), strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.Header.Set("Origin", b.f.srv.URL)
	return b.do(r)
}

// postJSON submits an action as a script does: JSON body, X-CSRF-Token.
func (b *browser) postJSON(path string, body any) answer {
	b.t.Helper()
	if b.token() == "" {
		b.getJSON("", nil)
	}
	data, _ := json.Marshal(body)
	r, _ := http.NewRequest(http.MethodPost, b.url(path), bytes.NewReader(data))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("X-CSRF-Token", b.token())
	return b.do(r)
}

// follow GETs the target of a redirect answer, resolved as a browser does.
func (b *browser) follow(from string, a answer) answer {
	b.t.Helper()
	if a.code != http.StatusSeeOther {
		b.t.Fatalf("POST %s: status %d, want 303; body %s", from, a.code, a.body)
	}
	base, _ := url.Parse(b.url(from))
	loc, err := base.Parse(a.hdr.Get("Location"))
	if err != nil {
		b.t.Fatalf("Location %q: %v", a.hdr.Get("Location"), err)
	}
	r, _ := http.NewRequest(http.MethodGet, loc.String(), nil)
	return b.do(r)
}

func wantCode(t *testing.T, a answer, want int, what string) {
	t.Helper()
	if a.code != want {
		t.Fatalf("%s: status %d, want %d; body:\n%s", what, a.code, want, a.body)
	}
}

func wantIn(t *testing.T, a answer, what string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(a.body, p) {
			t.Errorf("%s: the page lacks %q", what, p)
		}
	}
}

func wantNotIn(t *testing.T, a answer, what string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if strings.Contains(a.body, p) {
			t.Errorf("%s: the page contains %q", what, p)
		}
	}
}

// idAttr is how a change's row is found.
func idAttr(id int64) string { return fmt.Sprintf(`data-change-id="%d"`, id) }
