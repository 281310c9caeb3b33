package main

// The shop and its operations console in a real browser: headless Chromium
// driven by chromedp (github.com/chromedp/chromedp) clicks through what a
// customer and an operator do, and saves a full-page screenshot of each
// step.

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/mlmsoft-go/mlmsoft/examples/internal/shop"
	"github.com/mlmsoft-go/mlmsoft/examples/internal/shoptest"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// findChromium returns the path of a Chromium or Chrome to drive, or "".
func findChromium() string {
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// screenshotDir is where the screenshots go: $MLMSOFT_TEST_OUTPUT/browser,
// or test-output/browser in this package's directory.
func screenshotDir(t *testing.T) string {
	dir := filepath.Join("test-output", "browser")
	if base := os.Getenv("MLMSOFT_TEST_OUTPUT"); base != "" {
		dir = filepath.Join(base, "browser")
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(dir)
	return abs
}

// TestBrowser signs two customers up in the browser (the second through the
// first's referral link), buys, and checks in the console that both are
// linked and the changes delivered. Then the fake MLM Soft refuses a change:
// the console shows it parked and an operator retries it, with a note, until
// it is delivered; and the fake applies a change but loses its answer: the
// console shows it uncertain and the operator resolves it as applied, with
// the audit shown. Every step is saved as a screenshot.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test is skipped under -short")
	}
	chromium := findChromium()
	if chromium == "" {
		t.Skip("no Chromium or Chrome found (looked for /usr/bin/chromium, and chromium, chromium-browser, google-chrome on PATH): install Debian's chromium to run the browser test")
	}
	start := time.Now()
	out := screenshotDir(t)
	r := shoptest.Start(t, run, t.TempDir())
	fake := r.App.Fake

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// This machine's network is closed: without these, Chromium's own
		// background connections are refused and slow everything down.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	defer cancelAlloc()
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	defer cancelCtx()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	b := &browser{t: t, ctx: ctx, base: r.URL, out: out}
	t.Logf("shop at %s, Chromium %s, screenshots in %s", r.URL, chromium, out)

	// Ann signs up on her own.
	b.open("/signup")
	b.typeIn(`#signup-form input[name=email]`, "ann@example.com")
	b.typeIn(`#signup-form input[name=name]`, "Ann Able")
	b.typeIn(`#signup-form input[name=password]`, "ann-password")
	b.shot("ann-signs-up")
	b.submit(`#signup-submit`)
	b.expectPage("account")
	b.shot("ann-account-pending")
	referral := b.text(`#referral-url`)
	b.submit(`#signout`)

	// Bob signs up through Ann's referral link.
	b.openURL(referral)
	if got := b.text(`#referred-by`); !strings.Contains(got, "Ann Able") {
		t.Errorf("the referral page says %q, want Ann's name", got)
	}
	b.typeIn(`#signup-form input[name=email]`, "bob@example.com")
	b.typeIn(`#signup-form input[name=name]`, "Bob Baker")
	b.typeIn(`#signup-form input[name=password]`, "bob-password")
	b.shot("bob-signs-up-referred-by-ann")
	b.submit(`#signup-submit`)
	b.expectPage("account")
	b.waitAttr("/account", `#link`, "data-link-state", "linked")
	b.shot("bob-linked")

	// Bob buys; Status and PV reach MLM Soft.
	b.open("/")
	b.shot("products")
	order1 := b.buy("wellness-pack")
	b.waitOrder(order1, "Status", "delivered")
	b.waitOrder(order1, "PV", "delivered")
	b.shot("order-delivered")

	// The operator opens the console (basic auth) and sees both linked and
	// the changes delivered.
	b.signInConsole()
	b.open("/admin/")
	b.shot("console-overview")
	b.open("/admin/links")
	for _, state := range b.attrs(`tr[data-user-id]`, "data-link-state") {
		if state != "linked" {
			t.Errorf("the console lists a link %s, want every link linked", state)
		}
	}
	if n := len(b.attrs(`tr[data-user-id][data-link-state="linked"]`, "data-user-id")); n != 2 {
		t.Errorf("the console lists %d linked users, want Ann and Bob", n)
	}
	b.shot("console-links-linked")
	b.open("/admin/volumes?state=delivered")
	if n := len(b.attrs(`tr[data-change-id][data-volume-state="delivered"]`, "data-change-id")); n != 2 {
		t.Errorf("the console lists %d delivered changes, want 2", n)
	}
	b.shot("console-changes-delivered")

	// MLM Soft refuses the next change: it is parked, and holds Bob's queue.
	fake.InjectNext("account/volume-change", mlmsofttest.FaultBusinessError, 1)
	b.open("/")
	order2 := b.buy("starter-kit")
	b.waitOrder(order2, "Status", "parked")
	if got := b.orderState(order2, "PV"); got != "pending" {
		t.Errorf("the PV after a parked Status is %s, want pending (held)", got)
	}
	b.shot("account-change-parked")
	parked := b.attr(b.orderRow(order2, "Status"), "data-change-id")
	b.open("/admin/volumes?state=parked")
	b.shot("console-parked")
	b.open("/admin/volumes/" + parked)
	b.typeIn(`form[data-action="retry"] textarea[name=note]`, "Checked the Status alias in MLM Soft; retrying.")
	b.shot("console-retry-with-note")
	b.submit(`button[data-action="retry"]`)
	if kind := b.attr(`#flash`, "data-flash-kind"); kind != "ok" {
		t.Errorf("retrying in the console: %s %q", kind, b.flash())
	}
	b.shot("console-retried")
	b.waitAttr("/admin/volumes/"+parked, `#change`, "data-volume-state", "delivered")
	if got := b.text(`#audit`); !strings.Contains(got, "admin") || !strings.Contains(got, "retrying") {
		t.Errorf("the audit of the retried change says %q", got)
	}
	b.shot("console-retried-change-delivered")
	b.waitOrder(order2, "PV", "delivered")
	b.shot("account-after-retry")

	// MLM Soft applies the next change but its answer is lost: uncertain.
	fake.InjectNext("account/volume-change", mlmsofttest.FaultServerErrorAfterApply, 1)
	b.open("/")
	order3 := b.buy("pro-bundle")
	b.waitOrder(order3, "Status", "uncertain")
	b.shot("account-change-uncertain")
	uncertain := b.attr(b.orderRow(order3, "Status"), "data-change-id")
	b.open("/admin/volumes?state=uncertain")
	b.shot("console-uncertain")
	b.open("/admin/volumes/" + uncertain)
	b.typeIn(`form[data-action="resolve-applied"] textarea[name=note]`, "Seen in MLM Soft's back office: Status 3 of the order is there.")
	b.shot("console-resolve-with-note")
	b.submit(`button[data-action="resolve-applied"]`)
	if kind := b.attr(`#flash`, "data-flash-kind"); kind != "ok" {
		t.Errorf("resolving in the console: %s %q", kind, b.flash())
	}
	b.shot("console-resolved")
	b.waitAttr("/admin/volumes/"+uncertain, `#change`, "data-volume-state", "delivered")
	if got := b.attr(`#audit .audit`, "data-resolved-by"); got != shop.AdminUser {
		t.Errorf("the resolved change's audit names %q, want %q", got, shop.AdminUser)
	}
	if got := b.text(`#audit`); !strings.Contains(got, "back office") {
		t.Errorf("the audit of the resolved change says %q, want the note", got)
	}
	b.shot("console-resolved-audit")
	b.waitOrder(order3, "PV", "delivered")
	b.shot("account-all-delivered")

	// What MLM Soft received: every change once, in order.
	bob, _ := fake.Account("bob@example.com")
	var got []string
	for _, e := range fake.Ledger(bob.AccountID) {
		got = append(got, e.Alias+" "+e.Amount+" "+e.OrderID)
	}
	want := []string{
		"Status 2 " + order1, "PV 49.9 " + order1,
		"Status 1 " + order2, "PV 20 " + order2,
		"Status 3 " + order3, "PV 120.5 " + order3,
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("the fake's ledger for Bob:\n got %q\nwant %q", got, want)
	}
	b.openURL(r.App.FakeViewsURL)
	b.shot("fake-mlmsoft-received")
	t.Logf("%d screenshots in %s; the test took %s", b.n, out, time.Since(start).Round(time.Millisecond))
}

// browser drives one tab and fails the test on any error.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	out  string
	n    int
}

func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// open navigates to a path of the shop and expects 200.
func (b *browser) open(path string) { b.t.Helper(); b.openURL(b.base + path) }

func (b *browser) openURL(url string) {
	b.t.Helper()
	resp, err := chromedp.RunResponse(b.ctx, chromedp.Navigate(url))
	if err != nil {
		b.t.Fatalf("open %s: %v", url, err)
	}
	if resp.Status != http.StatusOK {
		b.t.Fatalf("open %s: HTTP %d", url, resp.Status)
	}
}

// submit clicks a button that submits a form, and waits for the page it
// leads to.
func (b *browser) submit(sel string) {
	b.t.Helper()
	resp, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("click %s: %v", sel, err)
	}
	if resp.Status != http.StatusOK {
		b.t.Fatalf("click %s: HTTP %d", sel, resp.Status)
	}
}

func (b *browser) typeIn(sel, text string) {
	b.t.Helper()
	b.do("type into "+sel, chromedp.SendKeys(chromedp.CSS(sel), text))
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	a, err := chromedp.Run(b.ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if err != nil {
		b.t.Fatalf("attribute %s of %s: %v", name, sel, err)
	}
	return a.Value
}

// attrs returns the attribute of every element sel matches (none: nil).
func (b *browser) attrs(sel, name string) []string {
	b.t.Helper()
	vs, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](fmt.Sprintf(
		`Array.from(document.querySelectorAll(%q), e => e.getAttribute(%q))`, sel, name)))
	if err != nil {
		b.t.Fatalf("attributes %s of %s: %v", name, sel, err)
	}
	return vs
}

func (b *browser) expectPage(name string) {
	b.t.Helper()
	if got := b.attr(`body`, "data-page"); got != name {
		b.t.Fatalf("on page %q, want %q (flash: %q)", got, name, b.flash())
	}
}

func (b *browser) flash() string {
	if n := b.attrs(`#flash`, "id"); len(n) == 0 {
		return ""
	}
	return b.text(`#flash`)
}

// waitAttr reloads path until the attribute of sel is want.
func (b *browser) waitAttr(path, sel, name, want string) {
	b.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b.open(path)
		if got := b.attrs(sel, name); len(got) > 0 && got[0] == want {
			return
		}
		if time.Now().After(deadline) {
			b.shot("timeout")
			b.t.Fatalf("waiting for %s %s=%q on %s; it is %q", sel, name, want, path, b.attrs(sel, name))
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// buy buys a product on the products page (open) and returns the order's
// id, from the account page it leads to.
func (b *browser) buy(product string) string {
	b.t.Helper()
	b.submit(`#buy-` + product)
	b.expectPage("account")
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	_, order, ok := strings.Cut(loc, "#")
	if !ok || !strings.HasPrefix(order, "o-") {
		b.t.Fatalf("after buying %s the page is %s (flash %q)", product, loc, b.flash())
	}
	return order
}

func (b *browser) orderRow(order, alias string) string {
	return fmt.Sprintf(`article[data-order-id=%q] tr[data-alias=%q]`, order, alias)
}

func (b *browser) orderState(order, alias string) string {
	b.t.Helper()
	return b.attr(b.orderRow(order, alias), "data-state")
}

// waitOrder reloads the account page until the order's change of alias is
// in state.
func (b *browser) waitOrder(order, alias, state string) {
	b.t.Helper()
	b.waitAttr("/account", b.orderRow(order, alias), "data-state", state)
}

// signInConsole makes the browser send the console's basic auth
// credentials, as it does once a person typed them in its dialog (which a
// headless browser cannot show).
func (b *browser) signInConsole() {
	b.t.Helper()
	cred := base64.StdEncoding.EncodeToString([]byte(shop.AdminUser + ":" + shoptest.AdminPassword))
	_, err := chromedp.Call(b.ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{
		Headers: network.Headers{"Authorization": "Basic " + cred},
	})
	if err != nil {
		b.t.Fatalf("set the console's credentials: %v", err)
	}
}

// shot saves a full-page screenshot, numbered in order.
func (b *browser) shot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	b.n++
	path := filepath.Join(b.out, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}
