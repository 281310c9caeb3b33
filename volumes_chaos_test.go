package mlmsoft_test

// The chaos test of volume delivery and the breaker / outage tests. Helper
// names start with "c".

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// cExpected is one change as the host enqueued it.
type cExpected struct {
	alias, amount, order string
}

// TestVolumeChaos: hundreds of users, thousands of ordered changes, a fake
// that fails half of the requests in every way, users linked mid-run. At the
// end MLM Soft's ledger must hold every change exactly once, in enqueue order
// per account; the only uncertain changes are those whose answer was lost
// after MLM Soft applied them.
func TestVolumeChaos(t *testing.T) {
	t.Parallel()
	users, batches := 200, 10 // 10 Status-then-PV batches: 20 changes per user
	if testing.Short() {
		users, batches = 40, 5
	}
	late := users / 5 // linked only after their changes are enqueued

	// The fake tells what happened to each request MLM Soft got: answers it
	// lost after applying (dropped, or a gateway's 5xx), requests it read
	// and answered 5xx without applying, requests it held without reading
	// (the client sends the body after its Expect wait, then gives up: an
	// unknown outcome from its side), and bodies that never arrived whole.
	var countMu sync.Mutex
	dropped, afterApply, afterRead, hung, cutShort := 0, 0, 0, 0, 0
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		countMu.Lock()
		defer countMu.Unlock()
		switch line {
		case "mlmsofttest: account/volume-change: injecting apply then drop":
			dropped++
		case "mlmsofttest: account/volume-change: injecting server error after apply":
			afterApply++
		case "mlmsofttest: account/volume-change: injecting server error after read":
			afterRead++
		case "mlmsofttest: account/volume-change: injecting hang":
			hung++
		case "mlmsofttest: account/volume-change: refused: Cannot read request body":
			cutShort++
		}
	}
	fake := mlmsofttest.NewServer(mlmsofttest.Options{Seed: 424242, Aliases: []string{"Status", "PV"}, Logf: logf})
	defer fake.Close()
	root := fake.AddAccount("root@example.com", "root-pw", 0)
	logs := &hLogBuffer{}
	cfg := mlmsoft.Config{
		BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: root.AccountID,
		RequestTimeout: time.Second, Lease: 3 * time.Second, IdleRecheck: 20 * time.Millisecond,
		// The body goes after 800 ms without "100 Continue": a fault the
		// fake answers before reading the body is known as not processed
		// unless the fake took that long to answer it. (On a machine so
		// loaded that it does, the outcome is rightly ambiguous, and the
		// accounting below counts it against the fake's unknowns.)
		ExpectContinueTimeout: 800 * time.Millisecond,
		Linking:               mlmsoft.LinkingConfig{PollInitial: 20 * time.Millisecond, PollMax: 50 * time.Millisecond, RetryInitial: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, Concurrency: 8},
		Volumes:               mlmsoft.VolumeConfig{Concurrency: 32, RetryInitial: 2 * time.Millisecond, RetryMax: 40 * time.Millisecond, LinkRecheck: 50 * time.Millisecond},
		Breaker:               mlmsoft.BreakerConfig{ConsecutiveFailures: 8, OpenTimeout: 40 * time.Millisecond, HalfOpenRequests: 2},
		Logger:                slog.New(slog.NewTextHandler(logs, nil)),
	}
	store := memstore.New()
	p, err := mlmsoft.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(ctx)

	userID := func(i int) string { return fmt.Sprintf("c%03d", i) }
	for i := range users - late {
		if err := p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: userID(i), Email: userID(i) + "@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	var early []string
	for i := range users - late {
		early = append(early, userID(i))
	}
	lWaitAll(t, p, early, 60*time.Second)
	// From here on the late users' documents are slow, so they link while
	// volumes flow.
	fake.SetFaults("document/get", mlmsofttest.Faults{LatencyMin: 50 * time.Millisecond, LatencyMax: 100 * time.Millisecond})
	for i := users - late; i < users; i++ {
		if err := p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: userID(i), Email: userID(i) + "@example.com"}); err != nil {
			t.Fatal(err)
		}
	}

	// MLM Soft at its worst.
	fake.SetFaults("account/volume-change", mlmsofttest.Faults{
		ServerErrorRate: 0.30, HangRate: 0.03, ResetRate: 0.03, TooManyRate: 0.03, RetryAfter: time.Second,
		ApplyThenDropRate: 0.02, ServerErrorAfterApplyRate: 0.03, ServerErrorAfterReadRate: 0.03,
	})

	// Enqueue from 8 goroutines; each user's batches in order.
	expected := make([][]cExpected, users)
	var wg sync.WaitGroup
	var enqueueErr error
	var errMu sync.Mutex
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < users; i += 8 {
				for b := range batches {
					status := fmt.Sprint(1 + (i+b)%4)
					pv := fmt.Sprintf("%d.%d", (i*7+b*13)%500-100, b%10) // negatives included
					order := fmt.Sprintf("o-%s-%d", userID(i), b)
					_, err := p.ApplyVolumes(ctx, userID(i),
						mlmsoft.Change{Alias: "Status", Amount: mlmsoft.MustAmount(status), OrderID: order},
						mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount(pv), OrderID: order})
					if err != nil {
						errMu.Lock()
						enqueueErr = err
						errMu.Unlock()
						return
					}
					expected[i] = append(expected[i],
						cExpected{"Status", mlmsoft.MustAmount(status).String(), order},
						cExpected{"PV", mlmsoft.MustAmount(pv).String(), order})
				}
			}
		}()
	}
	wg.Wait()
	if enqueueErr != nil {
		t.Fatal(enqueueErr)
	}
	total := users * batches * 2

	// The operator settles uncertain changes from MLM Soft's ledger.
	op := newCOperator(fake)
	deadline := time.Now().Add(4 * time.Minute)
	for {
		op.round(t, p)
		st, err := p.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Volumes[mlmsoft.VolumeDelivered] == total {
			break
		}
		if st.Volumes[mlmsoft.VolumeParked] > 0 || st.Volumes[mlmsoft.VolumeRejected] > 0 || st.Volumes[mlmsoft.VolumeSkipped] > 0 {
			t.Fatalf("changes refused: %v", st.Volumes)
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered in time: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Every change exactly once, in enqueue order, per account.
	ledgerTotal, misplaced := 0, 0
	for i := range users {
		l, err := p.Link(ctx, userID(i))
		if err != nil || l.State != mlmsoft.LinkLinked {
			t.Fatalf("%s: %+v %v", userID(i), l, err)
		}
		got := fake.Ledger(l.AccountID)
		ledgerTotal += len(got)
		if len(got) != len(expected[i]) {
			t.Errorf("%s: ledger has %d changes, enqueued %d", userID(i), len(got), len(expected[i]))
			continue
		}
		for k, e := range got {
			if w := expected[i][k]; e.Alias != w.alias || e.Amount != w.amount || e.OrderID != w.order {
				misplaced++
				t.Errorf("%s: ledger[%d] = %s %s %s, want %s %s %s", userID(i), k, e.Alias, e.Amount, e.OrderID, w.alias, w.amount, w.order)
				break
			}
		}
	}
	st, _ := p.Stats(ctx)
	t.Logf("users %d (%d linked mid-run), changes enqueued %d, delivered %d, in ledger %d, misplaced %d",
		users, late, total, st.Volumes[mlmsoft.VolumeDelivered], ledgerTotal, misplaced)
	countMu.Lock()
	defer countMu.Unlock()
	t.Logf("uncertain: %d applied (MLM Soft applied then lost %d answers: %d dropped, %d gateway 5xx), %d not applied (%d gateway 5xx after reading without applying, %d hung, %d bodies cut short); volume-change requests %d; breaker trips %d",
		op.applied, dropped+afterApply, dropped, afterApply, op.notApplied, afterRead, hung, cutShort, fake.Calls("account/volume-change"), st.BreakerTrips)
	if ledgerTotal != total {
		t.Errorf("ledger holds %d changes, want %d", ledgerTotal, total)
	}
	// Every answer lost after MLM Soft applied the change is reported
	// uncertain, never resent (a client timeout after MLM Soft had the
	// body may add more)...
	if op.applied < dropped+afterApply {
		t.Errorf("%d answers were lost after applying but only %d changes were reported uncertain and applied", dropped+afterApply, op.applied)
	}
	// ...and a change reported uncertain that MLM Soft never applied is one
	// whose outcome was unknown from the client's side: MLM Soft read it and
	// failed, held it unanswered, or the client gave up while sending.
	// Anything else would be a safe retry misclassified.
	if op.notApplied > afterRead+hung+cutShort {
		t.Errorf("%d uncertain changes were never applied, but only %d requests had an unknown outcome", op.notApplied, afterRead+hung+cutShort)
	}
	if (dropped == 0 || afterApply == 0 || afterRead == 0) && !testing.Short() {
		t.Errorf("faults %d dropped, %d 5xx after apply, %d 5xx after read: the test proves nothing about uncertain changes", dropped, afterApply, afterRead)
	}
	if st.BreakerTrips == 0 && !testing.Short() {
		t.Error("the breaker never tripped")
	}
	if st.OldestOpen != 0 {
		t.Errorf("OldestOpen = %v with nothing pending", st.OldestOpen)
	}
}

// cOperator plays the person who settles uncertain changes: it looks each
// one up in MLM Soft's back office (the fake's ledger). Like a careful
// person it judges a change only once the request that lost its answer has
// finished, for that request may still be being applied: it waits until
// every request the fake had received when it first saw the change
// uncertain is done (the lost one is among them: its body was sent, so its
// handler had started).
type cOperator struct {
	fake                *mlmsofttest.Server
	marks               map[int64]uint64
	applied, notApplied int // verdicts given
}

func newCOperator(fake *mlmsofttest.Server) *cOperator {
	return &cOperator{fake: fake, marks: map[int64]uint64{}}
}

// round resolves every uncertain change that can be judged now.
func (o *cOperator) round(t *testing.T, p *mlmsoft.Plugin) {
	t.Helper()
	ctx := context.Background()
	unc, err := p.ListVolumes(ctx, mlmsoft.VolumeFilter{States: []mlmsoft.VolumeState{mlmsoft.VolumeUncertain}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range unc {
		mark, seen := o.marks[c.ID]
		if !seen {
			mark = o.fake.RequestMark()
			o.marks[c.ID] = mark
		}
		if !o.fake.RequestsDone(mark) {
			continue
		}
		applied := false
		for _, e := range o.fake.Ledger(c.AccountID) {
			if e.OrderID == c.OrderID && e.Alias == c.Alias && e.Amount == c.Amount.String() {
				applied = true
			}
		}
		verdict := mlmsoft.ResolveResend
		if applied {
			verdict = mlmsoft.ResolveApplied
		}
		if _, err := p.ResolveVolume(ctx, c.ID, verdict, "test-operator", "checked the ledger"); errors.Is(err, mlmsoft.ErrLeaseLost) {
			continue // a worker holds the user a moment longer: next round
		} else if err != nil {
			t.Fatal(err)
		}
		if applied {
			o.applied++
		} else {
			o.notApplied++
		}
	}
}

// cRig is a plugin on an injected clock with one linked user.
type cRig struct {
	p     *mlmsoft.Plugin
	store *memstore.Store
	fake  *mlmsofttest.Server
	clk   *mlmsofttest.Clock
	acct  int64
}

func newCRig(t *testing.T, edit func(*mlmsoft.Config)) *cRig {
	t.Helper()
	clk := mlmsofttest.NewClock(time.Time{})
	fake := mlmsofttest.NewServer(mlmsofttest.Options{Clock: clk, Synchronous: true})
	t.Cleanup(fake.Close)
	root := fake.AddAccount("root@example.com", "root-pw", 0)
	cfg := mlmsoft.Config{
		BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: root.AccountID,
		Clock: clk, IdleRecheck: time.Millisecond, Lease: time.Hour,
		Volumes: mlmsoft.VolumeConfig{RetryInitial: time.Second, RetryMax: time.Second},
		Breaker: mlmsoft.BreakerConfig{ConsecutiveFailures: 3, OpenTimeout: 30 * time.Second, HalfOpenRequests: 1},
		Logger:  slog.New(slog.NewTextHandler(&hLogBuffer{}, nil)),
	}
	if edit != nil {
		edit(&cfg)
	}
	r := &cRig{store: memstore.New(), fake: fake, clk: clk}
	var err error
	if r.p, err = mlmsoft.New(r.store, cfg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := r.p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "u", Email: "u@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := r.p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.p.Shutdown(context.Background()) })
	r.acct = lWaitAll(t, r.p, []string{"u"}, 10*time.Second)["u"].AccountID
	return r
}

// settle waits (in real time) until the dispatcher has nothing due at the
// clock's current time: every change is final or scheduled later.
func (r *cRig) settle(t *testing.T) []mlmsoft.VolumeChange {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		cs, err := r.store.ListVolumes(context.Background(), mlmsoft.VolumeFilter{})
		if err != nil {
			t.Fatal(err)
		}
		// While the breaker is open the dispatcher claims nothing: a due
		// head then waits, and that is idle too.
		open := r.p.Health().State == mlmsoft.HealthUnavailable && func() bool {
			st, _ := r.p.Stats(context.Background())
			return st.Breaker == mlmsoft.BreakerOpen
		}()
		idle := true
		for _, c := range cs { // ordered by ID: the first unfinished one is the head
			if c.State.Final() {
				continue
			}
			if c.State == mlmsoft.VolumeSending || (c.State == mlmsoft.VolumePending && !open && !c.NextAttemptAt.After(r.clk.Now())) {
				idle = false
			}
			break
		}
		if idle {
			time.Sleep(5 * time.Millisecond) // let a claim in progress show itself
			if again, _ := r.store.ListVolumes(context.Background(), mlmsoft.VolumeFilter{}); fmt.Sprint(again) == fmt.Sprint(cs) {
				return cs
			}
		}
	}
	cs, _ := r.store.ListVolumes(context.Background(), mlmsoft.VolumeFilter{})
	t.Fatalf("the dispatcher did not settle at %v: %+v", r.clk.Now(), cs)
	return nil
}

// TestVolumeBreakerAndOutageOnInjectedClock: MLM Soft is down when a batch is
// enqueued. The breaker opens after the configured failures and stops all
// traffic; it half-opens only when the clock passes the open timeout,
// recovers once MLM Soft is back, and the batch is delivered in order.
func TestVolumeBreakerAndOutageOnInjectedClock(t *testing.T) {
	t.Parallel()
	r := newCRig(t, nil)
	ctx := context.Background()
	const endpoint = "account/volume-change"
	r.fake.SetDown(true)
	var changes []mlmsoft.Change
	for i := range 5 {
		changes = append(changes, mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount(fmt.Sprintf("%d.5", i)), OrderID: fmt.Sprint("o", i)})
	}
	batch, err := r.p.ApplyVolumes(ctx, "u", changes...)
	if err != nil {
		t.Fatal(err)
	}
	// Three failures, one backoff apart, trip the breaker.
	for i := 1; i <= 3; i++ {
		cs := r.settle(t)
		if got := r.fake.Calls(endpoint); got != i {
			t.Fatalf("after failure %d: %d requests", i, got)
		}
		if cs[0].Attempts != i || cs[1].Attempts != 0 {
			t.Fatalf("attempts %d/%d after failure %d: only the head is ever sent", cs[0].Attempts, cs[1].Attempts, i)
		}
		if i < 3 {
			st, _ := r.p.Stats(ctx)
			if st.Breaker != "closed" {
				t.Fatalf("breaker %s after %d failures", st.Breaker, i)
			}
			r.clk.Set(cs[0].NextAttemptAt)
		}
	}
	st, _ := r.p.Stats(ctx)
	if st.Breaker != "open" || st.BreakerTrips != 1 {
		t.Fatalf("after 3 failures: breaker %s, trips %d", st.Breaker, st.BreakerTrips)
	}
	opened := r.clk.Now()

	// Open: no traffic, no attempts burnt, however often the clock ticks
	// short of the timeout; MLM Soft is back meanwhile, but the breaker does
	// not know yet.
	r.fake.SetDown(false)
	for step := 0; step < 29; step++ {
		r.clk.Advance(time.Second)
		cs := r.settle(t)
		if got := r.fake.Calls(endpoint); got != 3 {
			t.Fatalf("%v after opening: %d requests, want none past the 3 failures", r.clk.Now().Sub(opened), got)
		}
		if cs[0].Attempts != 3 {
			t.Fatalf("attempts %d while open", cs[0].Attempts)
		}
	}
	if st, _ := r.p.Stats(ctx); st.Breaker != "open" {
		t.Fatalf("breaker %s 29s after opening", st.Breaker)
	}

	// Past the timeout: one probe, it succeeds, the breaker closes, and the
	// rest follows in order without any more clock.
	r.clk.Set(opened.Add(31 * time.Second))
	waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := batch.Wait(waitCtx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	st, _ = r.p.Stats(ctx)
	if st.Breaker != "closed" || st.BreakerTrips != 1 {
		t.Fatalf("after recovery: breaker %s trips %d", st.Breaker, st.BreakerTrips)
	}
	ledger := r.fake.Ledger(r.acct)
	if len(ledger) != 5 {
		t.Fatalf("ledger has %d changes", len(ledger))
	}
	for i, e := range ledger {
		if e.OrderID != fmt.Sprint("o", i) || e.Amount != fmt.Sprintf("%d.5", i) {
			t.Fatalf("ledger[%d] = %+v: out of order", i, e)
		}
	}
	if got := r.fake.Calls(endpoint); got != 3+5 {
		t.Errorf("%d requests in all, want 3 failures + 5 deliveries", got)
	}
	cs, _ := r.store.ListVolumes(ctx, mlmsoft.VolumeFilter{})
	if cs[0].Attempts != 4 {
		t.Errorf("head attempts %d, want 4 (3 failed + 1): deferrals must not count", cs[0].Attempts)
	}
}

// TestVolumeBreakerIgnoresRefusals: business refusals prove MLM Soft is up;
// they never trip the breaker.
func TestVolumeBreakerIgnoresRefusals(t *testing.T) {
	t.Parallel()
	r := newCRig(t, func(c *mlmsoft.Config) { c.Volumes.ParkPolicy = mlmsoft.ParkPolicyContinue })
	r.fake.SetFaults("account/volume-change", mlmsofttest.Faults{BusinessErrorRate: 1})
	ctx := context.Background()
	for i := range 6 {
		if _, err := r.p.ApplyVolumes(ctx, "u", mlmsoft.Change{Alias: "PV", Amount: mlmsoft.AmountFromInt(1), OrderID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		st, _ := r.p.Stats(ctx)
		if st.Volumes[mlmsoft.VolumeRejected] == 6 {
			if st.Breaker != "closed" || st.BreakerTrips != 0 {
				t.Fatalf("refusals tripped the breaker: %+v", st)
			}
			return
		}
		if time.Now().After(end) {
			t.Fatalf("not all rejected: %+v", st)
		}
	}
}

// TestVolumeWorkSurvivesRestart: changes stored by a process that stops
// before delivering them are delivered, in order, by the next one.
func TestVolumeWorkSurvivesRestart(t *testing.T) {
	t.Parallel()
	fake := mlmsofttest.NewServer(mlmsofttest.Options{Synchronous: true})
	defer fake.Close()
	root := fake.AddAccount("root@example.com", "root-pw", 0)
	cfg := lConfig(fake, root, &hLogBuffer{})
	store := memstore.New()
	ctx := context.Background()
	first, err := mlmsoft.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "u", Email: "u@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := first.Start(ctx); err != nil {
		t.Fatal(err)
	}
	acct := lWaitAll(t, first, []string{"u"}, 10*time.Second)["u"].AccountID
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	batch, err := first.ApplyVolumes(ctx, "u",
		mlmsoft.Change{Alias: "Status", Amount: mlmsoft.MustAmount("3"), OrderID: "o1"},
		mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount("0.1"), OrderID: "o1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := batch.Wait(ctx); !errors.Is(err, mlmsoft.ErrNotRunning) {
		t.Fatalf("Wait on a stopped plugin: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(fake.Ledger(acct)); n != 0 {
		t.Fatalf("a stopped plugin delivered %d changes", n)
	}

	cfg.WorkerID = "second"
	second, err := mlmsoft.New(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer second.Shutdown(ctx)
	for end := time.Now().Add(10 * time.Second); len(fake.Ledger(acct)) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("not delivered after the restart: %+v", fake.Ledger(acct))
		}
	}
	got := fake.Ledger(acct)
	if got[0].Alias != "Status" || got[1].Alias != "PV" || got[1].Amount != "0.1" {
		t.Fatalf("ledger %+v", got)
	}
}
