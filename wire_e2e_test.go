package mlmsoft_test

// The plugin against servers and proxies we did not write the Go side of:
// PHP's built-in server (which never sends "100 Continue") running an MLM
// Soft emulator written in PHP, a Go server that ignores the expectation,
// and a gateway that answers 5xx, or drops the answer, after MLM Soft
// applied the request. Helper names start with "w".

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/internal/chaosproxy"
	"github.com/mlmsoft-go/mlmsoft/internal/phpfake"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// wBackend is what a wire test needs of an MLM Soft emulator.
type wBackend struct {
	url, token  string
	rootAccount int64
	ledger      func(account int64) []string // "alias amount order", in order applied
	accountOf   func(login string) (int64, bool)
	createsFor  func(login string) int
}

// wRun links users through the plugin against b (real time) and delivers
// two changes per user, then checks every link, the ledger and that each
// user was created once. It returns the plugin's links.
func wRun(t *testing.T, b wBackend, users int, edit func(*mlmsoft.Config)) {
	t.Helper()
	logs := &hLogBuffer{}
	cfg := mlmsoft.Config{
		BaseURL: b.url, APIToken: b.token, DefaultSponsorAccountID: b.rootAccount,
		RequestTimeout: 5 * time.Second, Lease: 30 * time.Second, IdleRecheck: 20 * time.Millisecond,
		Linking: mlmsoft.LinkingConfig{PollInitial: 20 * time.Millisecond, PollMax: 100 * time.Millisecond, Concurrency: users},
		Volumes: mlmsoft.VolumeConfig{Concurrency: users},
		Logger:  hTextLogger(logs),
	}
	if edit != nil {
		edit(&cfg)
	}
	p, err := mlmsoft.New(memstore.New(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var ids []string
	for i := range users {
		id := fmt.Sprintf("w%02d", i)
		ids = append(ids, id)
		if err := p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: id, Email: id + "@example.com", FirstName: "W"}); err != nil {
			t.Fatal(err)
		}
	}
	startPlugin(t, p)
	links := lWaitAll(t, p, ids, 60*time.Second)
	var batches []*mlmsoft.Batch
	for _, id := range ids {
		if links[id].State != mlmsoft.LinkLinked {
			t.Fatalf("%s: %s (%s)\n%s", id, links[id].State, links[id].LastError, logs.String())
		}
		acct, ok := b.accountOf(id + "@example.com")
		if !ok || acct != links[id].AccountID {
			t.Errorf("%s linked to %d; MLM Soft has %d (%v)", id, links[id].AccountID, acct, ok)
		}
		if n := b.createsFor(id + "@example.com"); n != 1 {
			t.Errorf("%s: user/create accepted %d times", id, n)
		}
		bt, err := p.ApplyVolumes(ctx, id, vc("Status", "2", "o-"+id), vc("PV", "0.1", "o-"+id))
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, bt)
	}
	for _, bt := range batches {
		wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		if _, err := bt.Wait(wctx); err != nil {
			t.Fatalf("batch of %s: %v\n%s", bt.Changes[0].UserID, err, logs.String())
		}
		cancel()
	}
	for _, id := range ids {
		got := b.ledger(links[id].AccountID)
		want := []string{"Status 2 o-" + id, "PV 0.1 o-" + id}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: ledger %q, want %q", id, got, want)
		}
	}
}

func TestAgainstPHPBuiltinServer(t *testing.T) {
	t.Parallel()
	php := phpfake.Start(t, phpfake.Options{DocumentDelay: 50 * time.Millisecond, Workers: 4})
	start := time.Now()
	wRun(t, wBackend{
		url: php.URL, token: php.Token, rootAccount: php.Root.AccountID,
		ledger: func(acct int64) []string {
			var out []string
			for _, e := range php.Ledger(t, acct) {
				out = append(out, e.Alias+" "+e.Amount+" "+e.OrderID)
			}
			return out
		},
		accountOf: func(login string) (int64, bool) {
			a, ok := php.Account(t, login)
			return a.AccountID, ok
		},
		createsFor: func(login string) int { return php.CreatesAccepted(t, login) },
	}, 6, nil) // the default Expect: 100-continue wait (1 s) is what gets the bodies through
	t.Logf("6 users linked and 12 changes delivered through php -S in %s", time.Since(start).Round(time.Millisecond))
}

// fakeBackend adapts the Go fake to wRun.
func fakeBackend(fake *mlmsofttest.Server, root mlmsofttest.Account) wBackend {
	return wBackend{
		url: fake.URL, token: mlmsofttest.DefaultToken, rootAccount: root.AccountID,
		ledger: func(acct int64) []string {
			var out []string
			for _, e := range fake.Ledger(acct) {
				out = append(out, e.Alias+" "+e.Amount+" "+e.OrderID)
			}
			return out
		},
		accountOf: func(login string) (int64, bool) {
			a, ok := fake.Account(login)
			return a.AccountID, ok
		},
		createsFor: fake.CreatesAccepted,
	}
}

func TestAgainstServerThatNeverSends100Continue(t *testing.T) {
	t.Parallel()
	fake := mlmsofttest.NewServer(mlmsofttest.Options{IgnoreExpect: true})
	t.Cleanup(fake.Close)
	root := fake.AddAccount("root@example.com", "pw", 0)
	wRun(t, fakeBackend(fake, root), 6, nil)
}

// wSettled waits until no change is pending or sending, resolving each
// uncertain one from MLM Soft's ledger as an operator would (once the lost
// request is surely over), and returns the verdicts given.
func wSettled(t *testing.T, p *mlmsoft.Plugin, fake *mlmsofttest.Server, total int) (applied, notApplied int) {
	t.Helper()
	op := newCOperator(fake)
	deadline := time.Now().Add(60 * time.Second)
	for {
		op.round(t, p)
		st, err := p.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Volumes[mlmsoft.VolumeDelivered] == total {
			return op.applied, op.notApplied
		}
		if time.Now().After(deadline) {
			t.Fatalf("not settled: %+v", st.Volumes)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A gateway in front of MLM Soft answers 502/504 after MLM Soft applied
// the request, or drops the answer: no volume change may reach MLM Soft
// twice, no user may be created twice, and the changes whose answer was
// lost are exactly the uncertain ones.
func TestGatewayFailingAfterMLMSoftApplied(t *testing.T) {
	t.Parallel()
	for _, mode := range []chaosproxy.Mode{chaosproxy.ForwardThen5xx, chaosproxy.ForwardThenDrop} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			fake := mlmsofttest.NewServer(mlmsofttest.Options{Synchronous: true})
			t.Cleanup(fake.Close)
			root := fake.AddAccount("root@example.com", "pw", 0)
			proxy := chaosproxy.New(fake.URL, chaosproxy.Options{Seed: 7, Rates: map[chaosproxy.Mode]float64{mode: 0.15}})
			t.Cleanup(proxy.Close)
			p, err := mlmsoft.New(memstore.New(), mlmsoft.Config{
				BaseURL: proxy.URL, APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: root.AccountID,
				RequestTimeout: time.Second, Lease: 10 * time.Second, IdleRecheck: 10 * time.Millisecond,
				Linking: mlmsoft.LinkingConfig{PollInitial: 10 * time.Millisecond, PollMax: 50 * time.Millisecond,
					RetryInitial: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, CreateRecovery: 100 * time.Millisecond},
				Volumes: mlmsoft.VolumeConfig{RetryInitial: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond},
				Breaker: mlmsoft.BreakerConfig{ConsecutiveFailures: 1000},
				Logger:  hTextLogger(&hLogBuffer{}),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			users, perUser := 20, 10
			var ids []string
			for i := range users {
				id := fmt.Sprintf("g%02d", i)
				ids = append(ids, id)
				if err := p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: id, Email: id + "@example.com"}); err != nil {
					t.Fatal(err)
				}
			}
			startPlugin(t, p)
			links := lWaitAll(t, p, ids, 30*time.Second)
			want := map[string][]string{}
			var wg sync.WaitGroup
			for _, id := range ids {
				if links[id].State != mlmsoft.LinkLinked {
					t.Fatalf("%s: %s (%s)", id, links[id].State, links[id].LastError)
				}
				if n := fake.CreatesAccepted(id + "@example.com"); n != 1 {
					t.Errorf("%s created %d times", id, n)
				}
				for k := range perUser {
					c := vc("PV", fmt.Sprintf("%d.5", k), fmt.Sprintf("o-%s-%d", id, k))
					want[id] = append(want[id], vLine(c))
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := p.ApplyVolumes(ctx, id, c); err != nil {
							t.Error(err)
						}
					}()
					wg.Wait() // one after the other: the order is the enqueue order
				}
			}
			applied, notApplied := wSettled(t, p, fake, users*perUser)
			total := 0
			for _, id := range ids {
				var got []string
				for _, e := range fake.Ledger(links[id].AccountID) {
					got = append(got, e.Alias+" "+e.Amount+" "+e.OrderID)
				}
				total += len(got)
				if fmt.Sprint(got) != fmt.Sprint(want[id]) {
					t.Errorf("%s: ledger %q\nwant %q", id, got, want[id])
				}
			}
			failedAfter := proxy.Counts("account/volume-change").Modes[mode]
			t.Logf("%s: %d changes, %d in the ledger; the gateway failed %d volume answers after forwarding; %d uncertain resolved applied, %d not applied",
				mode, users*perUser, total, failedAfter, applied, notApplied)
			if total != users*perUser {
				t.Errorf("ledger holds %d changes for %d enqueued", total, users*perUser)
			}
			if applied != failedAfter || notApplied != 0 {
				t.Errorf("uncertain: %d applied, %d not; the gateway failed %d answers after MLM Soft applied them", applied, notApplied, failedAfter)
			}
			if failedAfter == 0 {
				t.Error("the gateway never failed a volume answer: the test proves nothing")
			}
		})
	}
}
