package mlmsoft_test

// A user/create whose answer was lost is never followed by a second create
// before user/exists was asked, and whatever shape MLM Soft's "already
// exists" takes afterwards, the link ends linked to the one account, never
// failed while that account may exist. An account this app did not create
// is not linked by e-mail alone. Failed links can be re-driven.

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// rLinkOf reads the stored link of id.
func (f *vfix) rLinkOf(id string) mlmsoft.Link {
	f.t.Helper()
	l, err := f.store.GetLink(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return l
}

func (f *vfix) rState(id string, st mlmsoft.LinkState) func() bool {
	return func() bool { return f.rLinkOf(id).State == st }
}

// The first create is applied but its answer lost; MLM Soft refuses the
// resend at once as a duplicate login (its document is still queued), and
// the link completes through user/exists once the first document is
// processed.
func TestCreateResentAndRefusedAtOnceEndsLinked(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{DocumentDelay: 3 * time.Minute}, nil)
	f.fake.InjectNext("user/create", mlmsofttest.FaultApplyThenDrop, 1)
	f.register("ann")
	f.start()
	f.advanceUntil(time.Second, "the account to exist and the link to complete", f.rState("ann", mlmsoft.LinkLinked))
	l := f.rLinkOf("ann")
	acct, _ := f.fake.Account("ann@example.com")
	if l.AccountID != acct.AccountID || l.LinkedVia != mlmsoft.LinkedViaExists {
		t.Errorf("linked to %d via %s; MLM Soft's account is %d", l.AccountID, l.LinkedVia, acct.AccountID)
	}
	if n := f.fake.CreatesAccepted("ann@example.com"); n != 1 {
		t.Errorf("user/create accepted %d times", n)
	}
	if c := f.fake.Calls("user/create"); c != 2 {
		t.Errorf("user/create sent %d times, want 2 (the lost one, then one resend after user/exists found nothing)", c)
	}
	if strings.Contains(f.logs.String(), "link failed") {
		t.Error("the link was marked failed on the way")
	}
}

// The first create is applied but its answer lost; its document is slow, so
// MLM Soft accepts a resend, then processes the first document just before
// the resend's, whose result says "already exists". The link must end
// linked, not failed.
func TestCreateResentWhoseDocumentSaysAlreadyExistsEndsLinked(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{DocumentDelay: 3 * time.Minute, LateDuplicateCheck: true}, nil)
	f.fake.InjectNext("user/create", mlmsofttest.FaultApplyThenDrop, 1)
	f.register("bob")
	f.start()
	f.advanceUntil(time.Second, "the link to complete", f.rState("bob", mlmsoft.LinkLinked))
	l := f.rLinkOf("bob")
	acct, _ := f.fake.Account("bob@example.com")
	if l.AccountID != acct.AccountID || l.LinkedVia != mlmsoft.LinkedViaExists {
		t.Errorf("linked to %d via %s; MLM Soft's account is %d", l.AccountID, l.LinkedVia, acct.AccountID)
	}
	if l.CreateAttempts != 2 {
		t.Errorf("CreateAttempts = %d, want 2", l.CreateAttempts)
	}
	if n := f.fake.CreatesAccepted("bob@example.com"); n != 2 {
		t.Errorf("the fake accepted %d creates; the test needs the resend accepted too", n)
	}
	if strings.Contains(f.logs.String(), "link failed") {
		t.Error("the link was marked failed on the way")
	}
}

// A login that already has an account this app did not create: the link
// fails with a hint to use check-auth, the user's changes wait (they are
// not parked), and check-auth then links it and lets them go.
func TestCreateRefusedForAForeignAccountFailsThenCheckAuthLinks(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, func(c *mlmsoft.Config) {
		c.CheckAuth = mlmsoft.CheckAuthConfig{Enabled: true, CurrentUser: hHeaderUser}
		c.Volumes.LinkRecheck = time.Second
	})
	member := f.fake.AddAccount("cat@example.com", "her-own-password", f.root.AccountID)
	f.register("cat")
	b := f.apply("cat", vc("PV", "10", "o-1"))
	f.start()
	f.advanceUntil(time.Second, "the link to fail", f.rState("cat", mlmsoft.LinkFailed))
	if l := f.rLinkOf("cat"); !strings.Contains(l.LastError, "did not create") || !strings.Contains(l.LastError, "check-auth") {
		t.Errorf("LastError = %q, want it to say the account is not ours and to use check-auth", l.LastError)
	}
	f.advanceUntil(time.Second, "the change to see the failed link", func() bool {
		return strings.Contains(f.get(b.Changes[0].ID).LastError, "link failed")
	})
	if c := f.get(b.Changes[0].ID); c.State != mlmsoft.VolumePending {
		t.Errorf("change is %s, want pending (waiting for the link)", c.State)
	}

	mux := http.NewServeMux()
	mountNetHTTP(mux, f.p)
	rec := httpServe(mux, checkAuthRequest("cat", "cat@example.com", "her-own-password"))
	wantStatus(t, rec, http.StatusOK, "check-auth")
	f.delivered(b)
	f.wantLedger(member.AccountID, "PV 10 o-1")
}

func TestRetryLink(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, nil)
	// dan: MLM Soft refused his create for a reason of its own, once.
	f.fake.InjectNext("user/create", mlmsofttest.FaultBusinessError, 1)
	f.register("dan")
	f.start()
	f.advanceUntil(time.Second, "dan's link to fail", f.rState("dan", mlmsoft.LinkFailed))
	if l := f.rLinkOf("dan"); !strings.Contains(l.LastError, "Injected business error") {
		t.Errorf("LastError = %q, want MLM Soft's message", l.LastError)
	}

	if _, err := f.p.RetryLink(ctx, "dan", "", "no one"); !errors.Is(err, mlmsoft.ErrInvalidInput) {
		t.Errorf("RetryLink without by = %v, want ErrInvalidInput", err)
	}
	if _, err := f.p.RetryLink(ctx, "nobody", "ops", ""); !errors.Is(err, mlmsoft.ErrNotFound) {
		t.Errorf("RetryLink of an unknown user = %v, want ErrNotFound", err)
	}
	info, err := f.p.RetryLink(ctx, "dan", "ops@shop", "MLM Soft fixed its validation")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != mlmsoft.LinkPending || info.ResolvedBy != "ops@shop" || info.ResolvedNote != "MLM Soft fixed its validation" || info.ResolvedAt.IsZero() {
		t.Errorf("after RetryLink: %+v", info)
	}
	f.advanceUntil(time.Second, "dan's link to complete", f.rState("dan", mlmsoft.LinkLinked))
	if _, err := f.p.RetryLink(ctx, "dan", "ops", ""); !errors.Is(err, mlmsoft.ErrWrongState) || !strings.Contains(err.Error(), "linked") {
		t.Errorf("RetryLink of a linked link = %v, want ErrWrongState naming the state", err)
	}

	// eve: failed, but MLM Soft has her account by now: RetryLink asks
	// user/exists first and links at once, sending no create.
	f.storeFailedLink("eve")
	acct := f.fake.AddAccount("eve@example.com", "pw", f.root.AccountID)
	creates := f.fake.Calls("user/create")
	info, err = f.p.RetryLink(ctx, "eve", "ops", "")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != mlmsoft.LinkLinked || info.AccountID != acct.AccountID || info.LinkedVia != mlmsoft.LinkedViaExists {
		t.Errorf("RetryLink = %+v, want linked via exists to %d", info, acct.AccountID)
	}
	if f.fake.Calls("user/create") != creates {
		t.Error("RetryLink sent user/create for an account that exists")
	}
}

// storeFailedLink puts a failed link straight into the store.
func (f *vfix) storeFailedLink(id string) {
	f.t.Helper()
	now := f.clock.Now()
	_, err := f.store.CreateLink(context.Background(), mlmsoft.Link{
		UserID: id, Email: id + "@example.com", State: mlmsoft.LinkFailed, LastError: "given up", CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		f.t.Fatal(err)
	}
}
