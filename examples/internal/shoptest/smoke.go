package shoptest

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/examples/internal/shop"
)

// linkTimeout bounds the wait for a link or a delivery: the fake takes
// 500 ms per document, and the race detector slows everything.
const linkTimeout = 30 * time.Second

// Smoke is the smoke test both shops run: start on a fresh data directory,
// sign up two users (the second referred by the first), see both linked
// with the right sponsor in MLM Soft, buy, see the order's Status then PV
// delivered on the account page and in the fake's ledger with their exact
// amounts, link a third user's existing MLM Soft account through
// check-auth, scrape /metrics, be refused the console without its
// password; then stop, start again on the same directory and find the same
// users, links, orders and ledger, with no account created twice.
func Smoke(t *testing.T, run RunFunc) {
	dir := t.TempDir()
	start := time.Now()
	r := Start(t, run, dir)
	fake := r.App.Fake
	if fake == nil {
		t.Fatal("no fake MLM Soft: the shop should use it when MLMSOFT_URL is unset")
	}
	t.Logf("started in %s at %s", time.Since(start).Round(time.Millisecond), r.URL)

	// Two users, the second referred by the first.
	ann := NewClient(t, r.URL)
	annPage := ParseAccount(t, ann.SignUp("ann@example.com", "Ann Able", "ann-password", "", false))
	bob := NewClient(t, r.URL)
	bob.SignUp("bob@example.com", "Bob Baker", "bob-password", annPage.UserID, false)
	annAcc := ann.WaitAccount("Ann's link", linkTimeout, Linked)
	bobAcc := bob.WaitAccount("Bob's link", linkTimeout, Linked)
	t.Logf("both linked %s after start: Ann to %s, Bob to %s", time.Since(start).Round(time.Millisecond), annAcc.AccountID, bobAcc.AccountID)
	annMLM, _ := fake.Account("ann@example.com")
	bobMLM, _ := fake.Account("bob@example.com")
	company, _ := fake.Account(shop.CompanyLogin)
	if strconv.FormatInt(annMLM.AccountID, 10) != annAcc.AccountID || strconv.FormatInt(bobMLM.AccountID, 10) != bobAcc.AccountID {
		t.Errorf("account ids: page %s/%s, MLM Soft %d/%d", annAcc.AccountID, bobAcc.AccountID, annMLM.AccountID, bobMLM.AccountID)
	}
	if annMLM.SponsorAccountID != company.AccountID || bobMLM.SponsorAccountID != annMLM.AccountID {
		t.Errorf("sponsors in MLM Soft: Ann's %d (want the company's %d), Bob's %d (want Ann's %d)",
			annMLM.SponsorAccountID, company.AccountID, bobMLM.SponsorAccountID, annMLM.AccountID)
	}
	if _, page := ann.Get("/account"); !strings.Contains(page, "Bob Baker") {
		t.Error("Ann's account page does not list Bob among her referrals")
	}

	// Bob buys; the order's Status then PV reach MLM Soft.
	order := bob.Buy("wellness-pack")
	bobAcc = bob.WaitAccount("the order's changes delivered", linkTimeout, Delivered(order))
	if got, want := Describe(bobAcc.Orders[order]), "Status 2 delivered, PV 49.9 delivered"; got != want {
		t.Errorf("the account page shows the order as %q, want %q", got, want)
	}
	ledger := fake.Ledger(bobMLM.AccountID)
	var got []string
	for _, e := range ledger {
		got = append(got, e.Alias+" "+e.Amount+" "+e.OrderID)
	}
	if want := []string{"Status 2 " + order, "PV 49.9 " + order}; strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("the fake's ledger for Bob: %q, want %q", got, want)
	}

	// A member of MLM Soft from before the shop links their account.
	cara := NewClient(t, r.URL)
	caraPage := ParseAccount(t, cara.SignUp("cara@example.com", "Cara Cole", "cara-password", "", true))
	if caraPage.LinkState != "none" {
		t.Errorf("Cara, who has an MLM Soft account, is %s right after sign-up, want none", caraPage.LinkState)
	}
	if kind, msg := cara.LinkExisting(shop.MemberLogin, "wrong-password"); kind != "error" || !strings.Contains(msg, "did not accept") {
		t.Errorf("linking with a wrong password: %s %q", kind, msg)
	}
	if kind, msg := cara.LinkExisting(shop.MemberLogin, shop.MemberPassword); kind != "ok" {
		t.Errorf("linking the demo member: %s %q", kind, msg)
	}
	member, _ := fake.Account(shop.MemberLogin)
	if a := cara.Account(); a.LinkState != "linked" || a.AccountID != strconv.FormatInt(member.AccountID, 10) {
		t.Errorf("after check-auth Cara is %s to %s, want linked to %d", a.LinkState, a.AccountID, member.AccountID)
	}

	// Operations: metrics for anyone, the console for the operator only.
	visitor := NewClient(t, r.URL)
	status, metrics := visitor.Get(shop.MetricsPath)
	if status != http.StatusOK || !strings.Contains(metrics, "mlmsoft_") {
		t.Errorf("GET /metrics: HTTP %d, %d bytes without mlmsoft_ metrics", status, len(metrics))
	}
	if status, _ := visitor.Get(shop.AdminPrefix + "/"); status != http.StatusUnauthorized {
		t.Errorf("GET /admin/ without the password: HTTP %d, want 401", status)
	}
	if status, _ := visitor.GetAuth(shop.AdminPrefix+"/", shop.AdminUser, AdminPassword); status != http.StatusOK {
		t.Errorf("GET /admin/ with the password: HTTP %d, want 200", status)
	}

	// A second run on the same directory.
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if out := r.Output(); !strings.Contains(out, "stopped") {
		t.Errorf("the shop did not say it stopped:\n%s", out)
	}
	r2 := Start(t, run, dir)
	fake2 := r2.App.Fake
	ann2 := NewClient(t, r2.URL)
	if a := ParseAccount(t, ann2.SignIn("ann@example.com", "ann-password")); a.UserID != annAcc.UserID || !Linked(a) || a.AccountID != annAcc.AccountID {
		t.Errorf("second run: Ann is %+v, want %s linked to %s", a, annAcc.UserID, annAcc.AccountID)
	}
	bob2 := NewClient(t, r2.URL)
	b := ParseAccount(t, bob2.SignIn("bob@example.com", "bob-password"))
	if !Linked(b) || b.AccountID != bobAcc.AccountID || Describe(b.Orders[order]) != "Status 2 delivered, PV 49.9 delivered" {
		t.Errorf("second run: Bob is %s to %s with order %s: %q", b.LinkState, b.AccountID, order, Describe(b.Orders[order]))
	}
	if n := len(fake2.Ledger(bobMLM.AccountID)); n != 2 {
		t.Errorf("second run: the fake's ledger for Bob has %d entries, want 2", n)
	}
	for _, login := range []string{"ann@example.com", "bob@example.com"} {
		if n := fake2.CreatesAccepted(login); n != 1 {
			t.Errorf("second run: MLM Soft accepted %d user/create for %s, want 1", n, login)
		}
	}
	// New work goes on: a new user gets a fresh account id, and Bob buys again.
	dan := NewClient(t, r2.URL)
	dan.SignUp("dan@example.com", "Dan Dale", "dan-password", "bob@example.com", false)
	danAcc := dan.WaitAccount("Dan's link on the second run", linkTimeout, Linked)
	for _, id := range []string{annAcc.AccountID, bobAcc.AccountID, strconv.FormatInt(member.AccountID, 10)} {
		if danAcc.AccountID == id {
			t.Errorf("second run: Dan got account id %s, which was given before", id)
		}
	}
	order2 := bob2.Buy("starter-kit")
	b = bob2.WaitAccount("the second order delivered", linkTimeout, Delivered(order2))
	if got := Describe(b.Orders[order2]); got != "Status 1 delivered, PV 20 delivered" {
		t.Errorf("second run: the new order is %q", got)
	}
	if n := len(fake2.Ledger(bobMLM.AccountID)); n != 4 {
		t.Errorf("second run: the fake's ledger for Bob has %d entries, want 4", n)
	}
	t.Logf("whole scenario: %s", time.Since(start).Round(time.Millisecond))
}
