package mlmsoft_test

// A wrong token, App-Id or base path is a state of the whole integration:
// sending pauses with no attempt spent, nothing fails or parks, Health and
// Stats say so with MLM Soft's own message, and everything completes by
// itself once MLM Soft accepts the configuration.

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

const mRightToken = "the-right-token"

// mFix is a fixture whose fake expects mRightToken while the plugin signs
// with another one: two pending users, and a linked user with a batch.
type mFix struct {
	*vfix
	pending []string
	acct    int64
	batch   *mlmsoft.Batch
}

func newMFix(t *testing.T, edit func(*mlmsoft.Config)) *mFix {
	t.Helper()
	f := &mFix{vfix: newVFix(t, mlmsofttest.Options{Token: mRightToken, Synchronous: true}, func(c *mlmsoft.Config) {
		c.APIToken = "a-wrong-token"
		c.ProbeMax = 30 * time.Second
		c.IdleRecheck = time.Second
		if edit != nil {
			edit(c)
		}
	})}
	f.acct = f.storeLink("buyer", true).AccountID
	f.pending = []string{"new1", "new2"}
	for _, u := range f.pending {
		f.register(u)
	}
	f.batch = f.apply("buyer", vc("Status", "2", "o-1"), vc("PV", "49.9", "o-1"))
	return f
}

// spentNothing asserts that no link failed or spent an attempt and no
// change was parked or spent an attempt.
func (f *mFix) spentNothing() {
	f.t.Helper()
	for _, u := range f.pending {
		l, err := f.store.GetLink(context.Background(), u)
		if err != nil {
			f.t.Fatal(err)
		}
		if l.State != mlmsoft.LinkPending || l.Attempts != 0 || l.CreateAttempts != 0 || !l.CreateSentAt.IsZero() {
			f.t.Errorf("link %s: state %s attempts %d creates %d sentAt %v; want pending with nothing spent", u, l.State, l.Attempts, l.CreateAttempts, l.CreateSentAt)
		}
		if strings.Contains(l.LastError, "circuit breaker") {
			f.t.Errorf("link %s: LastError hides the cause: %q", u, l.LastError)
		}
	}
	for _, c := range f.list(mlmsoft.VolumeFilter{}) {
		if c.State != mlmsoft.VolumePending || c.Attempts != 0 {
			f.t.Errorf("change %d: %s with %d attempts; want pending with none spent", c.ID, c.State, c.Attempts)
		}
		if strings.Contains(c.LastError, "circuit breaker") {
			f.t.Errorf("change %d: LastError hides the cause: %q", c.ID, c.LastError)
		}
	}
}

// misconfiguredFor advances the clock through d while MLM Soft refuses the
// token and checks the state every step.
func (f *mFix) misconfiguredFor(d time.Duration) {
	f.t.Helper()
	f.advanceUntil(time.Second, "MLM Soft refusing the token to show in Health", func() bool {
		return f.p.Health().State == mlmsoft.HealthMisconfigured
	})
	start := f.clock.Now()
	for f.clock.Now().Sub(start) < d {
		f.clock.Advance(time.Second)
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let a step in flight finish
	h := f.p.Health()
	if h.State != mlmsoft.HealthMisconfigured || !strings.Contains(h.Reason, "Security key is invalid") {
		f.t.Errorf("Health = %+v, want misconfigured with MLM Soft's message", h)
	}
	st, err := f.p.Stats(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	if st.Health.State != mlmsoft.HealthMisconfigured || st.BreakerTrips != 0 {
		f.t.Errorf("Stats: health %+v, breaker trips %d; want misconfigured and no trip", st.Health, st.BreakerTrips)
	}
	if st.Links[mlmsoft.LinkFailed] != 0 || st.Volumes[mlmsoft.VolumeParked] != 0 || st.Volumes[mlmsoft.VolumeUncertain] != 0 {
		f.t.Errorf("Stats: %v %v; want nothing failed, parked or uncertain", st.Links, st.Volumes)
	}
	f.spentNothing()
	if n := strings.Count(f.logs.String(), "level=ERROR msg=\"MLM Soft refuses the integration's configuration"); n < 1 || n > int(d/time.Minute)+2 {
		f.t.Errorf("the refusal was logged at ERROR %d times in %s; want it logged, at most once a minute", n, d)
	}
	if f.fake.Calls("account/volume-change") > 2 || f.fake.Calls("user/create") > 2 {
		f.t.Errorf("requests kept going while misconfigured: %d volume changes, %d creates",
			f.fake.Calls("account/volume-change"), f.fake.Calls("user/create"))
	}
}

// completes checks that every link and change completes with no operator
// action once MLM Soft accepts the token.
func (f *mFix) completes(p *mlmsoft.Plugin) {
	f.t.Helper()
	f.advanceUntil(time.Second, "every link and change to complete", func() bool {
		for _, u := range f.pending {
			if l, _ := p.Link(context.Background(), u); l.State != mlmsoft.LinkLinked {
				return false
			}
		}
		for _, c := range f.list(mlmsoft.VolumeFilter{}) {
			if c.State != mlmsoft.VolumeDelivered {
				return false
			}
		}
		return true
	})
	f.wantLedger(f.acct, "Status 2 o-1", "PV 49.9 o-1")
	if h := p.Health(); h.State != mlmsoft.HealthOK {
		f.t.Errorf("Health = %+v after recovery", h)
	}
	for _, c := range f.list(mlmsoft.VolumeFilter{}) {
		if c.Attempts != 1 {
			f.t.Errorf("change %d delivered after %d attempts; want 1 (the refused ones are not attempts)", c.ID, c.Attempts)
		}
	}
}

func TestMisconfiguredTokenPausesAndResumesWhenFixedAtMLMSoft(t *testing.T) {
	t.Parallel()
	f := newMFix(t, nil)
	f.start()
	f.misconfiguredFor(2 * time.Minute)
	// MLM Soft's side is fixed: the token the plugin uses becomes valid.
	f.fake.SetToken("a-wrong-token")
	f.completes(f.p)
}

func TestMisconfiguredTokenResumesWithANewPluginOnTheSameStore(t *testing.T) {
	t.Parallel()
	f := newMFix(t, nil)
	f.start()
	f.misconfiguredFor(2 * time.Minute)
	ctx := context.Background()
	if err := f.p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// The host fixes its configuration and restarts on the same store.
	cfg := mlmsoft.Config{
		BaseURL: f.fake.URL, APIToken: mRightToken, DefaultSponsorAccountID: f.root.AccountID,
		RequestTimeout: 3 * time.Second, Lease: time.Minute, Clock: f.clock, Logger: hTextLogger(f.logs),
	}
	p2, err := mlmsoft.New(f.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Check(ctx); err != nil {
		t.Fatalf("Check with the right token: %v", err)
	}
	startPlugin(t, p2)
	f.completes(p2)
}

func TestCheckReportsMisconfiguration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newVFix(t, mlmsofttest.Options{Token: mRightToken}, func(c *mlmsoft.Config) { c.APIToken = "wrong-token-xyz" })
	err := f.p.Check(ctx)
	if !errors.Is(err, mlmsoft.ErrMisconfigured) || !strings.Contains(err.Error(), "Security key is invalid") {
		t.Fatalf("Check = %v, want ErrMisconfigured with MLM Soft's message", err)
	}
	if strings.Contains(err.Error(), "wrong-token-xyz") {
		t.Errorf("Check's error holds the token: %v", err)
	}
	if h := f.p.Health(); h.State != mlmsoft.HealthMisconfigured {
		t.Errorf("Health = %+v after a refused Check", h)
	}

	// A wrong base path: 404 from the server, also a configuration error.
	g := newVFix(t, mlmsofttest.Options{}, func(c *mlmsoft.Config) { c.BaseURL = strings.Replace(c.BaseURL, "online-office", "offline-office", 1) })
	if err := g.p.Check(ctx); !errors.Is(err, mlmsoft.ErrMisconfigured) || !strings.Contains(err.Error(), "404") {
		t.Errorf("Check with a wrong path = %v, want ErrMisconfigured naming the 404", err)
	}

	// MLM Soft down: unavailable, not misconfigured.
	h := newVFix(t, mlmsofttest.Options{}, nil)
	h.fake.SetDown(true)
	if err := h.p.Check(ctx); !errors.Is(err, mlmsoft.ErrUpstreamUnavailable) || errors.Is(err, mlmsoft.ErrMisconfigured) {
		t.Errorf("Check with MLM Soft down = %v, want ErrUpstreamUnavailable", err)
	}
	h.fake.SetDown(false)
	if err := h.p.Check(ctx); err != nil {
		t.Errorf("Check = %v, want nil", err)
	}
}

func TestCheckAuthSaysIntegrationDownWhenMisconfigured(t *testing.T) {
	t.Parallel()
	f := newHFix(t, func(c *mlmsoft.Config) { c.APIToken = "wrong-token-xyz" })
	f.fake.AddAccount("member@example.com", "right-password", f.root.AccountID)
	rec := f.serve(checkAuthRequest("u1", "member@example.com", "right-password"))
	wantStatus(t, rec, http.StatusServiceUnavailable, "check-auth while the token is refused")
	if got := decodeAnswer(t, rec.Body)["code"]; got != "integration_down" {
		t.Errorf("code = %v, want integration_down (not bad_credentials, not unreachable)", got)
	}
	if rec.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	// Later attempts do not even reach MLM Soft while it refuses the token.
	before := f.fake.Calls("user/check-auth")
	rec = f.serve(checkAuthRequest("u2", "member@example.com", "right-password"))
	wantStatus(t, rec, http.StatusServiceUnavailable, "second check-auth")
	if n := f.fake.Calls("user/check-auth") - before; n != 0 {
		t.Errorf("%d check-auth requests sent while misconfigured", n)
	}
}
