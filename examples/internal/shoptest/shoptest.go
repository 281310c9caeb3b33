// Package shoptest runs the demo shops in tests: it starts one in-process
// on a free port with a temporary data directory and drives it over HTTP as
// a browser would (cookies, forms with their CSRF tokens), reading the
// stable data-* attributes of its pages. Both shops serve the same routes
// and pages, so one Smoke scenario tests either.
package shoptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/examples/internal/shop"
)

// RunFunc is a shop command's run function.
type RunFunc func(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, started func(*shop.App)) error

// AdminPassword is the console password the tests start shops with.
const AdminPassword = "test-admin-password"

// Running is a shop started by Start.
type Running struct {
	App  *shop.App
	URL  string
	stop context.CancelFunc
	done chan error
	out  *syncBuffer
}

// Start runs a shop in-process on 127.0.0.1:0 with dataDir, and an
// environment in which every variable is unset (the fake MLM Soft, SQLite),
// whatever the test process's own. The shop is stopped at the end of the
// test, if Stop was not called before.
func Start(t testing.TB, run RunFunc, dataDir string, extraArgs ...string) *Running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{stop: cancel, done: make(chan error, 1), out: &syncBuffer{}}
	started := make(chan *shop.App, 1)
	args := append([]string{"-addr", "127.0.0.1:0", "-data", dataDir, "-admin-password", AdminPassword}, extraArgs...)
	noEnv := func(string) string { return "" }
	go func() { r.done <- run(ctx, args, noEnv, r.out, r.out, func(a *shop.App) { started <- a }) }()
	select {
	case r.App = <-started:
	case err := <-r.done:
		cancel()
		t.Fatalf("the shop did not start: %v\n%s", err, r.out.String())
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("the shop did not start within 30s\n%s", r.out.String())
	}
	r.URL = r.App.URL
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("stopping the shop: %v", err)
		}
		if t.Failed() {
			t.Logf("the shop's output:\n%s", r.out.String())
		}
	})
	return r
}

// Stop shuts the shop down as Ctrl-C would and waits until run returned.
// It is safe to call more than once.
func (r *Running) Stop() error {
	r.stop()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
		}
		return err
	case <-time.After(30 * time.Second):
		return errors.New("the shop did not stop within 30s")
	}
}

// Output returns what the shop printed and logged so far.
func (r *Running) Output() string { return r.out.String() }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Client is a visitor of a shop, with its own cookies.
type Client struct {
	t    testing.TB
	base string
	hc   *http.Client
}

// NewClient returns a visitor of the shop at base.
func NewClient(t testing.TB, base string) *Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Client{t: t, base: base, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// Get fetches path and returns the status and body.
func (c *Client) Get(path string) (int, string) {
	c.t.Helper()
	resp, err := c.hc.Get(c.base + path)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// GetAuth fetches path with HTTP basic auth and returns the status and
// body.
func (c *Client) GetAuth(path, user, password string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	req.SetBasicAuth(user, password)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// Post posts form to path (after the redirect, if any) and returns the
// final status and body.
func (c *Client) Post(path string, form url.Values) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// What a browser sends with a same-origin form.
	req.Header.Set("Origin", c.base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("POST %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

var (
	csrfRE  = regexp.MustCompile(`name="csrf" value="([^"]*)"`)
	flashRE = regexp.MustCompile(`id="flash" class="[^"]*" data-flash-kind="([^"]*)">([^<]*)<`)
	errorRE = regexp.MustCompile(`id="form-error">([^<]*)<`)
)

// CSRF returns the CSRF token of a page.
func CSRF(t testing.TB, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return m[1]
}

// Flash returns the kind and text of a page's flash message ("" for none).
func Flash(page string) (kind, msg string) {
	if m := flashRE.FindStringSubmatch(page); m != nil {
		return m[1], unescape(m[2])
	}
	return "", ""
}

func unescape(s string) string {
	return strings.NewReplacer("&#39;", "'", "&#34;", `"`, "&amp;", "&", "&lt;", "<", "&gt;", ">").Replace(s)
}

// SignUp signs a new user up and returns the account page shown after it.
// It fails the test unless the shop accepted the sign-up.
func (c *Client) SignUp(email, name, password, ref string, haveAccount bool) string {
	c.t.Helper()
	_, form := c.Get("/signup")
	v := url.Values{"csrf": {CSRF(c.t, form)}, "email": {email}, "name": {name}, "password": {password}, "ref": {ref}}
	if haveAccount {
		v.Set("have_account", "1")
	}
	status, page := c.Post("/signup", v)
	if status != http.StatusOK || !strings.Contains(page, `data-page="account"`) {
		m := errorRE.FindStringSubmatch(page)
		c.t.Fatalf("sign-up of %s: HTTP %d, error %q", email, status, m)
	}
	return page
}

// SignIn signs in and returns the account page.
func (c *Client) SignIn(email, password string) string {
	c.t.Helper()
	_, form := c.Get("/signin")
	status, page := c.Post("/signin", url.Values{"csrf": {CSRF(c.t, form)}, "email": {email}, "password": {password}})
	if status != http.StatusOK || !strings.Contains(page, `data-page="account"`) {
		c.t.Fatalf("sign-in of %s: HTTP %d", email, status)
	}
	return page
}

var offerRE = regexp.MustCompile(`(?s)<form method="post" action="/buy" data-product-id="([^"]*)">.*?name="order" value="([^"]*)"`)

// Buy buys a product from the products page and returns the order's id.
func (c *Client) Buy(productID string) string {
	c.t.Helper()
	_, page := c.Get("/")
	csrf := CSRF(c.t, page)
	for _, m := range offerRE.FindAllStringSubmatch(page, -1) {
		if m[1] != productID {
			continue
		}
		status, after := c.Post("/buy", url.Values{"csrf": {csrf}, "product": {productID}, "order": {m[2]}})
		if kind, msg := Flash(after); status != http.StatusOK || kind != "ok" {
			c.t.Fatalf("buy %s: HTTP %d, %s %q", productID, status, kind, msg)
		}
		return m[2]
	}
	c.t.Fatalf("no buy form for %s on the products page", productID)
	return ""
}

// LinkExisting posts the "link my MLM Soft account" form and returns the
// flash message's kind and text.
func (c *Client) LinkExisting(login, password string) (kind, msg string) {
	c.t.Helper()
	_, page := c.Get("/account")
	_, after := c.Post("/account/link", url.Values{"csrf": {CSRF(c.t, page)}, "login": {login}, "password": {password}})
	return Flash(after)
}

// Account is what the account page says.
type Account struct {
	UserID      string
	LinkState   string
	AccountID   string
	ReferralURL string
	Orders      map[string][]Change // by order id
}

// Change is one volume change row of an order.
type Change struct {
	ID, Alias, Amount, State string
}

var (
	userRE     = regexp.MustCompile(`shop user (u-[a-z2-7]{16})`)
	linkRE     = regexp.MustCompile(`id="link" data-link-state="([^"]*)" data-account-id="([^"]*)"`)
	referralRE = regexp.MustCompile(`id="referral-url" href="([^"]*)"`)
	changeRE   = regexp.MustCompile(`data-change-id="([^"]*)" data-alias="([^"]*)" data-amount="([^"]*)" data-state="([^"]*)"`)
)

// ParseAccount reads an account page.
func ParseAccount(t testing.TB, page string) Account {
	t.Helper()
	a := Account{Orders: map[string][]Change{}}
	m := linkRE.FindStringSubmatch(page)
	u := userRE.FindStringSubmatch(page)
	r := referralRE.FindStringSubmatch(page)
	if m == nil || u == nil || r == nil {
		t.Fatalf("not an account page:\n%s", page)
	}
	a.LinkState, a.AccountID, a.UserID, a.ReferralURL = m[1], m[2], u[1], unescape(r[1])
	parts := strings.Split(page, `data-order-id="`)
	for _, p := range parts[1:] {
		id := p[:strings.IndexByte(p, '"')]
		a.Orders[id] = []Change{}
		for _, c := range changeRE.FindAllStringSubmatch(p, -1) {
			a.Orders[id] = append(a.Orders[id], Change{ID: c[1], Alias: c[2], Amount: c[3], State: c[4]})
		}
	}
	return a
}

// Account fetches and reads the account page.
func (c *Client) Account() Account {
	c.t.Helper()
	status, page := c.Get("/account")
	if status != http.StatusOK {
		c.t.Fatalf("account page: HTTP %d", status)
	}
	return ParseAccount(c.t, page)
}

// WaitAccount reads the account page until ok says it is what the test
// waits for, and returns it; it fails the test after timeout.
func (c *Client) WaitAccount(what string, timeout time.Duration, ok func(Account) bool) Account {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		a := c.Account()
		if ok(a) {
			return a
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting %s for %s; the account page says %+v", timeout, what, a)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Linked reports whether the account is linked.
func Linked(a Account) bool { return a.LinkState == "linked" && a.AccountID != "0" }

// Delivered reports whether every change of the order is delivered.
func Delivered(order string) func(Account) bool {
	return func(a Account) bool {
		cs := a.Orders[order]
		if len(cs) == 0 {
			return false
		}
		for _, c := range cs {
			if c.State != "delivered" {
				return false
			}
		}
		return true
	}
}

// Describe returns a short text of an order's changes, such as
// "Status 2 delivered, PV 49.9 delivered".
func Describe(cs []Change) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s %s %s", c.Alias, c.Amount, c.State))
	}
	return strings.Join(parts, ", ")
}
