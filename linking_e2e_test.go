package mlmsoft_test

// End-to-end tests of the create-and-link flow (Type I) against the fake MLM
// Soft over real HTTP on loopback. Helper names start with "l".

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

var lPasswordKey = []byte("0123456789abcdef0123456789abcdef")

// lConfig is a config for fast real-time tests against fake.
func lConfig(fake *mlmsofttest.Server, root mlmsofttest.Account, logs *hLogBuffer) mlmsoft.Config {
	return mlmsoft.Config{
		BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, PasswordKey: lPasswordKey,
		DefaultSponsorAccountID: root.AccountID,
		RequestTimeout:          2 * time.Second, Lease: 5 * time.Second, IdleRecheck: 20 * time.Millisecond,
		Linking: mlmsoft.LinkingConfig{
			PollInitial: 10 * time.Millisecond, PollMax: 80 * time.Millisecond,
			RetryInitial: 10 * time.Millisecond, RetryMax: 80 * time.Millisecond,
			SponsorWait: 15 * time.Millisecond, CreateRecovery: 300 * time.Millisecond, Concurrency: 8,
		},
		Breaker: mlmsoft.BreakerConfig{OpenTimeout: 50 * time.Millisecond},
		Logger:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// lWaitAll waits until every user's link is final and returns them.
func lWaitAll(t *testing.T, p *mlmsoft.Plugin, users []string, within time.Duration) map[string]mlmsoft.LinkInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		out := map[string]mlmsoft.LinkInfo{}
		for _, u := range users {
			l, err := p.Link(context.Background(), u)
			if err != nil {
				t.Fatalf("Link(%s): %v", u, err)
			}
			if l.State == mlmsoft.LinkLinked || l.State == mlmsoft.LinkFailed {
				out[u] = l
			}
		}
		if len(out) == len(users) {
			return out
		}
		if time.Now().After(deadline) {
			for _, u := range users {
				if _, ok := out[u]; !ok {
					l, _ := p.Link(context.Background(), u)
					t.Errorf("%s still %s: %s", u, l.State, l.LastError)
				}
			}
			t.Fatalf("%d of %d links unfinished after %s", len(users)-len(out), len(users), within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lChains registers chains×depth users: in each chain every user sponsors
// the next; the first has no sponsor (the default sponsor is used).
func lChains(t *testing.T, p *mlmsoft.Plugin, chains, depth int) (users []string, sponsorOf map[string]string) {
	t.Helper()
	sponsorOf = map[string]string{}
	for d := range depth {
		for c := range chains {
			u := fmt.Sprintf("u%02d-%02d", c, d)
			nu := mlmsoft.NewUser{UserID: u, Email: u + "@Example.com", Password: "pw-" + u, FirstName: "F" + u, LastName: "L"}
			if d > 0 {
				nu.SponsorUserID = fmt.Sprintf("u%02d-%02d", c, d-1)
				sponsorOf[u] = nu.SponsorUserID
			}
			if err := p.OnUserRegistered(context.Background(), nu); err != nil {
				t.Fatalf("register %s: %v", u, err)
			}
			users = append(users, u)
		}
	}
	return users, sponsorOf
}

// lCheckLinks asserts every link holds the ids the fake assigned, every
// sponsor sent was the sponsor's account id, and each user was created once.
func lCheckLinks(t *testing.T, fake *mlmsofttest.Server, root mlmsofttest.Account, links map[string]mlmsoft.LinkInfo, sponsorOf map[string]string) {
	t.Helper()
	for u, l := range links {
		if l.State != mlmsoft.LinkLinked {
			t.Errorf("%s: %s (%s)", u, l.State, l.LastError)
			continue
		}
		acct, ok := fake.Account(l.Email)
		if !ok {
			t.Errorf("%s: no account in MLM Soft for %s", u, l.Email)
			continue
		}
		if l.AccountID != acct.AccountID || l.MLMUserID != acct.UserID {
			t.Errorf("%s: linked to account %d user %d; MLM Soft assigned account %d user %d", u, l.AccountID, l.MLMUserID, acct.AccountID, acct.UserID)
		}
		wantSponsor := root.AccountID
		if s, ok := sponsorOf[u]; ok {
			wantSponsor = links[s].AccountID
		}
		if acct.SponsorAccountID != wantSponsor {
			t.Errorf("%s: created with sponsor %d, want the sponsor's account %d", u, acct.SponsorAccountID, wantSponsor)
		}
		if n := fake.CreatesAccepted(l.Email); n != 1 {
			t.Errorf("%s: user/create accepted %d times", u, n)
		}
	}
}

func TestLinkSponsorChainsWithTransientErrors(t *testing.T) {
	t.Parallel()
	chains, depth := 12, 10 // 120 users
	if testing.Short() {
		chains, depth = 5, 4
	}
	fake := mlmsofttest.NewServer(mlmsofttest.Options{DocumentDelay: 30 * time.Millisecond, Seed: 20261124})
	defer fake.Close()
	root := fake.AddAccount("root@example.com", "root-pw", 0)
	// 20% of every call fails transiently, in every way that is safe to retry.
	transient := mlmsofttest.Faults{ServerErrorRate: 0.08, TooManyRate: 0.04, RetryAfter: 0, ResetRate: 0.03, HangRate: 0.02, NonJSONRate: 0.03}
	for _, ep := range []string{"user/create", "document/get", "user/exists"} {
		fake.SetFaults(ep, transient)
	}
	logs := &hLogBuffer{}
	cfg := lConfig(fake, root, logs)
	cfg.RequestTimeout = 300 * time.Millisecond // hung requests give up quickly
	cfg.Lease = 2 * time.Second
	// OnLinked is owed once per user and delivered at least once: count
	// the users it reported and the calls.
	var hookMu sync.Mutex
	hooked, calls := map[string]string{}, 0
	cfg.Hooks.OnLinked = func(ctx context.Context, e mlmsoft.LinkEvent) error {
		hookMu.Lock()
		defer hookMu.Unlock()
		calls++
		if id, seen := hooked[e.Link.UserID]; seen && id != e.ID {
			t.Errorf("two OnLinked events for %s: %s and %s", e.Link.UserID, id, e.ID)
		}
		hooked[e.Link.UserID] = e.ID
		return nil
	}
	p, err := mlmsoft.New(memstore.New(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	users, sponsorOf := lChains(t, p, chains, depth)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	links := lWaitAll(t, p, users, 90*time.Second)
	lCheckLinks(t, fake, root, links, sponsorOf)
	// The hooks run after the links are stored, on the plugin's own
	// goroutines: wait for them (the flake of old was a count taken
	// before the last hook had run).
	for end := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, err := p.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		hookMu.Lock()
		n := len(hooked)
		hookMu.Unlock()
		if n == len(users) && st.Hooks.Owed == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("OnLinked reported %d of %d users; %d events still owed", n, len(users), st.Hooks.Owed)
		}
	}
	hookMu.Lock()
	if calls != len(users) {
		t.Errorf("OnLinked called %d times for %d users (no hook failed, so once each)", calls, len(users))
	}
	hookMu.Unlock()
	st, err := p.Stats(context.Background())
	if err != nil || st.Links[mlmsoft.LinkLinked] != len(users) {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	t.Logf("%d users linked; calls: user/create %d, document/get %d, user/exists %d; breaker trips %d",
		len(users), fake.Calls("user/create"), fake.Calls("document/get"), fake.Calls("user/exists"), st.BreakerTrips)
	for _, secret := range []string{mlmsofttest.DefaultToken, "pw-u00-00", string(lPasswordKey)} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs contain the secret %q", secret)
		}
	}
}

func TestLinkResumesAfterRestartWithoutDuplicates(t *testing.T) {
	t.Parallel()
	fake := mlmsofttest.NewServer(mlmsofttest.Options{DocumentDelay: 150 * time.Millisecond, Seed: 99})
	defer fake.Close()
	root := fake.AddAccount("root@example.com", "root-pw", 0)
	// A quarter of the creates are applied and their answer lost: the
	// plugin must find them with user/exists, not create them again.
	fake.SetFaults("user/create", mlmsofttest.Faults{ApplyThenDropRate: 0.25, LatencyMin: 5 * time.Millisecond, LatencyMax: 30 * time.Millisecond})
	store := memstore.New()
	logs := &hLogBuffer{}
	cfg := lConfig(fake, root, logs)
	cfg.RequestTimeout, cfg.Lease = 500*time.Millisecond, time.Second
	cfg.Linking.Concurrency = 3
	cfg.WorkerID = "first"
	p1, err := mlmsoft.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	users, sponsorOf := lChains(t, p1, 10, 4)
	if err := p1.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Let it get part of the way, then stop it abruptly: in-flight requests
	// are cancelled.
	deadline := time.Now().Add(20 * time.Second)
	for accepted := 0; accepted < 8; {
		if time.Now().After(deadline) {
			t.Fatal("the first plugin made no progress")
		}
		time.Sleep(5 * time.Millisecond)
		accepted = 0
		for _, u := range users {
			accepted += fake.CreatesAccepted(u + "@example.com")
		}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	_ = p1.Shutdown(cancelled)
	c, _ := store.Counts(context.Background())
	counts := c.Links
	t.Logf("stopped mid-flow: %v", counts)
	if counts[mlmsoft.LinkLinked] == len(users) {
		t.Fatal("everything finished before the stop; the test proves nothing")
	}
	// Nothing goes on after Shutdown returned. (A request cancelled by the
	// abort may still reach the fake's handler a moment later: its bytes
	// were on the wire. So count from a little after.)
	time.Sleep(50 * time.Millisecond)
	before := fake.Calls("user/create") + fake.Calls("document/get") + fake.Calls("user/exists")
	time.Sleep(150 * time.Millisecond)
	if after := fake.Calls("user/create") + fake.Calls("document/get") + fake.Calls("user/exists"); after != before {
		t.Fatalf("the stopped plugin sent %d more requests", after-before)
	}

	fake.SetFaults("user/create", mlmsofttest.Faults{})
	cfg.WorkerID = "second"
	p2, err := mlmsoft.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p2.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p2.Shutdown(context.Background())
	links := lWaitAll(t, p2, users, 60*time.Second)
	lCheckLinks(t, fake, root, links, sponsorOf)
	via := map[mlmsoft.LinkedVia]int{}
	for _, l := range links {
		via[l.LinkedVia]++
	}
	t.Logf("linked via %v", via)
}

func TestLinkBackoffAndDeadlineOnInjectedClock(t *testing.T) {
	t.Parallel()
	clk := mlmsofttest.NewClock(time.Time{})
	fake := mlmsofttest.NewServer(mlmsofttest.Options{Clock: clk, NeverProcess: true})
	defer fake.Close()
	root := fake.AddAccount("root@example.com", "root-pw", 0)
	logs := &hLogBuffer{}
	cfg := lConfig(fake, root, logs)
	cfg.Clock = clk
	cfg.IdleRecheck = time.Millisecond // any step of the clock wakes the loop
	cfg.Lease = time.Hour
	cfg.Linking = mlmsoft.LinkingConfig{PollInitial: time.Second, PollMax: 8 * time.Second, Deadline: time.Minute}
	failed := make(chan mlmsoft.LinkEvent, 1)
	cfg.Hooks.OnLinkFailed = func(ctx context.Context, e mlmsoft.LinkEvent) error { failed <- e; return nil }
	store := memstore.New()
	p, err := mlmsoft.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: "slow", Email: "slow@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())

	// next waits (in real time) until the link's version moves past v.
	next := func(v int64) mlmsoft.Link {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
			l, err := store.GetLink(context.Background(), "slow")
			if err != nil {
				t.Fatal(err)
			}
			if l.Version > v && l.Lease.Owner == "" {
				return l
			}
		}
		t.Fatal("the worker did not take the link up")
		return mlmsoft.Link{}
	}
	l := next(1) // version 1 is the link as registered
	if l.State != mlmsoft.LinkCreated || l.DocumentID == 0 || l.SealedPassword != nil {
		t.Fatalf("after user/create: %+v", l)
	}
	accepted := l.AcceptedAt
	ceiling := func(n int) time.Duration { return min(time.Second<<(n-1), 8*time.Second) }
	polls := 0
	for l.State == mlmsoft.LinkCreated {
		if polls > 0 { // the first wait is PollInitial exactly
			n := l.Attempts
			wait := l.NextAttemptAt.Sub(clk.Now())
			limit := min(ceiling(n), accepted.Add(time.Minute).Sub(clk.Now()))
			if wait > limit || (wait < ceiling(n)/2 && wait != limit) {
				t.Fatalf("poll %d: next in %v, want within [%v, %v]", n, wait, ceiling(n)/2, limit)
			}
		}
		if clk.Now().Sub(accepted) >= time.Minute {
			t.Fatalf("still waiting %v after acceptance: deadline missed", clk.Now().Sub(accepted))
		}
		clk.Set(l.NextAttemptAt)
		l = next(l.Version)
		polls++
	}
	if l.State != mlmsoft.LinkFailed || !strings.Contains(l.LastError, "not linked within 1m0s") || !strings.Contains(l.LastError, "no such account") {
		t.Fatalf("after the deadline: %s %q", l.State, l.LastError)
	}
	if got := clk.Now().Sub(accepted); got != time.Minute {
		t.Errorf("failed %v after acceptance, want exactly the 1m deadline", got)
	}
	if calls := fake.Calls("document/get"); calls != polls-1 {
		t.Errorf("document/get called %d times for %d polls", calls, polls-1)
	}
	// At the deadline the plugin asks whether the account exists before it
	// gives up: it never fails a link whose account MLM Soft has.
	if calls := fake.Calls("user/exists"); calls != 1 {
		t.Errorf("user/exists called %d times, want once, at the deadline", calls)
	}
	// Exponential: 1+2+4+8+8+... within a minute is about 10 polls, not 60.
	if polls < 7 || polls > 16 {
		t.Errorf("%d polls in a minute; backoff is not capped exponential", polls)
	}
	select {
	case fl := <-failed:
		if fl.Link.UserID != "slow" || fl.Link.State != mlmsoft.LinkFailed || fl.ID == "" {
			t.Errorf("OnLinkFailed got %+v", fl)
		}
		if stored, _ := store.GetLink(context.Background(), "slow"); stored.SealedPassword != nil {
			t.Error("the sealed password outlived the failure")
		}
	case <-time.After(5 * time.Second):
		t.Error("OnLinkFailed not called")
	}
	t.Logf("%d polls before the deadline", polls-1)
}

func TestLinkSynchronousTenantAndRefusals(t *testing.T) {
	t.Parallel()
	fake := mlmsofttest.NewServer(mlmsofttest.Options{Synchronous: true})
	defer fake.Close()
	root := fake.AddAccount("root@example.com", "root-pw", 0)
	fake.AddAccount("taken@example.com", "x", root.AccountID)
	cfg := lConfig(fake, root, &hLogBuffer{})
	var mu sync.Mutex
	failures := map[string]string{}
	cfg.Hooks.OnLinkFailed = func(ctx context.Context, e mlmsoft.LinkEvent) error {
		mu.Lock()
		failures[e.Link.UserID] = e.Link.LastError
		mu.Unlock()
		return nil
	}
	p, err := mlmsoft.New(memstore.New(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "ok", Email: "ok@example.com", Password: "pw"}))
	// MLM Soft refuses these: a login that exists, and a sponsor account it
	// does not know. The second one's downline fails with it.
	must(p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "dup", Email: "taken@example.com"}))
	must(p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "orphan", Email: "orphan@example.com", SponsorAccountID: 424242}))
	must(p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "child", Email: "child@example.com", SponsorUserID: "orphan"}))
	must(p.Start(ctx))
	defer p.Shutdown(ctx)
	links := lWaitAll(t, p, []string{"ok", "dup", "orphan", "child"}, 20*time.Second)
	if l := links["ok"]; l.State != mlmsoft.LinkLinked || l.LinkedVia != mlmsoft.LinkedViaCreate {
		t.Errorf("ok: %+v", l)
	}
	// An account this app did not create is not taken over by e-mail.
	if l := links["dup"]; l.State != mlmsoft.LinkFailed || !strings.Contains(l.LastError, "already exists") || !strings.Contains(l.LastError, "check-auth") {
		t.Errorf("dup: %s %q", l.State, l.LastError)
	}
	if l := links["orphan"]; l.State != mlmsoft.LinkFailed {
		t.Errorf("orphan: %s %q", l.State, l.LastError)
	}
	if l := links["child"]; l.State != mlmsoft.LinkFailed || !strings.Contains(l.LastError, `sponsor "orphan" could not be linked`) {
		t.Errorf("child: %s %q", l.State, l.LastError)
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(failures)
		mu.Unlock()
		if n == 3 || time.Now().After(end) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 3 {
		t.Errorf("OnLinkFailed for %v", failures)
	}
}

func TestOnUserRegisteredValidatesAndNeverWaitsForMLMSoft(t *testing.T) {
	t.Parallel()
	fake := mlmsofttest.NewServer(mlmsofttest.Options{})
	defer fake.Close()
	fake.SetDown(true) // registering must not need MLM Soft
	root := fake.AddAccount("root@example.com", "root-pw", 0)
	cfg := lConfig(fake, root, &hLogBuffer{})
	p, err := mlmsoft.New(memstore.New(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)
	if err := p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "s", Email: "s@example.com"}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		u    mlmsoft.NewUser
		want error
		msg  string
	}{
		{"no user id", mlmsoft.NewUser{Email: "a@example.com"}, mlmsoft.ErrInvalidInput, "user id is empty"},
		{"no email", mlmsoft.NewUser{UserID: "a"}, mlmsoft.ErrInvalidInput, "Email is empty"},
		{"bad email", mlmsoft.NewUser{UserID: "a", Email: "not-an-email"}, mlmsoft.ErrInvalidInput, "not a valid email"},
		{"display name", mlmsoft.NewUser{UserID: "a", Email: "Ann <a@example.com>"}, mlmsoft.ErrInvalidInput, "not a valid email"},
		{"no domain dot", mlmsoft.NewUser{UserID: "a", Email: "a@localhost"}, mlmsoft.ErrInvalidInput, "not a valid email"},
		{"unknown sponsor", mlmsoft.NewUser{UserID: "a", Email: "a@example.com", SponsorUserID: "ghost"}, mlmsoft.ErrInvalidInput, `"ghost" is unknown`},
		{"own sponsor", mlmsoft.NewUser{UserID: "a", Email: "a@example.com", SponsorUserID: "a"}, mlmsoft.ErrInvalidInput, "the user itself"},
		{"two sponsors", mlmsoft.NewUser{UserID: "a", Email: "a@example.com", SponsorUserID: "s", SponsorAccountID: 5}, mlmsoft.ErrInvalidInput, "both set"},
		{"duplicate user", mlmsoft.NewUser{UserID: "s", Email: "other@example.com"}, mlmsoft.ErrDuplicate, ""},
		{"duplicate email", mlmsoft.NewUser{UserID: "t", Email: "S@Example.com"}, mlmsoft.ErrDuplicate, ""},
	}
	for _, c := range cases {
		start := time.Now()
		err := p.OnUserRegistered(ctx, c.u)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v; want %v containing %q", c.name, err, c.want, c.msg)
		}
		if time.Since(start) > time.Second {
			t.Errorf("%s took %v", c.name, time.Since(start))
		}
	}
	// Without a default sponsor, a sponsorless user is refused.
	cfg.DefaultSponsorAccountID = 0
	p2, _ := mlmsoft.New(memstore.New(), cfg)
	if err := p2.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "a", Email: "a@example.com"}); !errors.Is(err, mlmsoft.ErrInvalidInput) || !strings.Contains(err.Error(), "DefaultSponsorAccountID") {
		t.Errorf("no sponsor: %v", err)
	}
	// A password needs a key to be kept sealed.
	cfg.DefaultSponsorAccountID, cfg.PasswordKey = root.AccountID, nil
	p3, _ := mlmsoft.New(memstore.New(), cfg)
	if err := p3.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "a", Email: "a@example.com", Password: "x"}); !errors.Is(err, mlmsoft.ErrInvalidConfig) {
		t.Errorf("password without key: %v", err)
	}
	// The pending link is stored; Link shows the host's view of it.
	l, err := p.Link(ctx, "s")
	if err != nil || l.State != mlmsoft.LinkPending || l.Email != "s@example.com" {
		t.Errorf("Link = %+v, %v", l, err)
	}
	if _, err := p.Link(ctx, "nobody"); !errors.Is(err, mlmsoft.ErrNotFound) {
		t.Errorf("Link(nobody) = %v", err)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	good := mlmsoft.Config{BaseURL: "https://acme.example/api2/online-office/", APIToken: "t"}
	if _, err := mlmsoft.New(memstore.New(), good); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
	cases := map[string]func(*mlmsoft.Config){
		"BaseURL":                 func(c *mlmsoft.Config) { c.BaseURL = "" },
		"absolute http(s)":        func(c *mlmsoft.Config) { c.BaseURL = "acme.example/api2" },
		"APIToken":                func(c *mlmsoft.Config) { c.APIToken = "" },
		"PasswordKey":             func(c *mlmsoft.Config) { c.PasswordKey = []byte("short") },
		"Lease":                   func(c *mlmsoft.Config) { c.Lease = time.Second; c.RequestTimeout = 2 * time.Second },
		"Linking.PollMax":         func(c *mlmsoft.Config) { c.Linking.PollInitial = time.Minute; c.Linking.PollMax = time.Second },
		"Volumes.ParkPolicy":      func(c *mlmsoft.Config) { c.Volumes.ParkPolicy = "ignore" },
		"Volumes.AmbiguousPolicy": func(c *mlmsoft.Config) { c.Volumes.AmbiguousPolicy = "guess" },
		"DefaultSponsorAccountID": func(c *mlmsoft.Config) { c.DefaultSponsorAccountID = -1 },
	}
	for field, edit := range cases {
		c := good
		edit(&c)
		_, err := mlmsoft.New(memstore.New(), c)
		if !errors.Is(err, mlmsoft.ErrInvalidConfig) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
	if _, err := mlmsoft.New(nil, good); !errors.Is(err, mlmsoft.ErrInvalidConfig) {
		t.Errorf("nil store: %v", err)
	}
}
