package mlmsoft_test

// The plugin's lifecycle is honest: New starts nothing, Shutdown stops
// everything Start started. Links are listed by state and e-mail in pages.
// Old final changes are purged after the retention period.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// goroutinesSettle waits (up to 2 s) for the goroutine count to drop to at
// most n and returns the last count.
func goroutinesSettle(n int) int {
	got := runtime.NumGoroutine()
	for end := time.Now().Add(2 * time.Second); got > n && time.Now().Before(end); got = runtime.NumGoroutine() {
		time.Sleep(5 * time.Millisecond)
	}
	return got
}

// Not parallel: it counts the process's goroutines.
func TestLifecycleStartsNothingBeforeStartAndStopsEverything(t *testing.T) {
	base := goroutinesSettle(runtime.NumGoroutine())
	p, err := mlmsoft.New(memstore.New(), mlmsoft.Config{
		BaseURL: "http://127.0.0.1:1/api2/online-office/", APIToken: "t", DefaultSponsorAccountID: 1,
		Webhook:   mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{"a-webhook-secret-0123"}},
		CheckAuth: mlmsoft.CheckAuthConfig{Enabled: true, CurrentUser: func(*http.Request) (string, bool) { return "", false }},
		Hooks:     mlmsoft.Hooks{OnLinked: func(context.Context, mlmsoft.LinkEvent) error { return nil }},
		Logger:    hTextLogger(&hLogBuffer{}),
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if n := runtime.NumGoroutine(); n > base {
		t.Errorf("New started %d goroutines (go-cache janitors, workers?)", n-base)
	}
	ctx := context.Background()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if runtime.NumGoroutine() <= base {
		t.Error("Start started no goroutine")
	}
	if err := p.Start(ctx); err == nil {
		t.Error("a second Start succeeded")
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := goroutinesSettle(base); n > base {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines left after Shutdown:\n%s", n-base, buf[:runtime.Stack(buf, true)])
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Errorf("a second Shutdown: %v", err)
	}
}

func TestListLinksPagesByStateAndEmail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newVFix(t, mlmsofttest.Options{}, nil)
	for i := range 7 {
		f.register(fmt.Sprintf("ann%d", i)) // ann0@example.com ... pending
	}
	f.storeLink("bob", true)
	f.storeFailedLink("cy")

	var all []string
	q := mlmsoft.LinkQuery{Limit: 3}
	for {
		page, err := f.p.ListLinks(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range page.Links {
			all = append(all, l.UserID)
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if fmt.Sprint(all) != "[ann0 ann1 ann2 ann3 ann4 ann5 ann6 bob cy]" {
		t.Errorf("pages gave %v", all)
	}

	page, err := f.p.ListLinks(ctx, mlmsoft.LinkQuery{States: []mlmsoft.LinkState{mlmsoft.LinkFailed, mlmsoft.LinkLinked}})
	if err != nil || len(page.Links) != 2 || page.Links[0].UserID != "bob" || page.Links[1].UserID != "cy" || page.Next != "" {
		t.Errorf("by state: %+v, %v", page, err)
	}
	page, err = f.p.ListLinks(ctx, mlmsoft.LinkQuery{EmailPrefix: "ANN3"}) // letter case as normalised
	if err != nil || len(page.Links) != 1 || page.Links[0].UserID != "ann3" {
		t.Errorf("by e-mail: %+v, %v", page, err)
	}
	for _, q := range []mlmsoft.LinkQuery{{States: []mlmsoft.LinkState{"gone"}}, {Limit: -1}, {Limit: mlmsoft.ListLimitMax + 1}} {
		if _, err := f.p.ListLinks(ctx, q); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Errorf("ListLinks(%+v) = %v, want ErrInvalidInput", q, err)
		}
	}
}

func TestRetentionPurgesOldFinalChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, func(c *mlmsoft.Config) { c.Retention = 24 * time.Hour })
	f.start()
	u := f.linkedUser("old")
	key := vck("PV", "1", "o-1", "o-1/pv")
	f.delivered(f.apply("old", key))
	f.fake.InjectNext(vVolumeEP, mlmsofttest.FaultBusinessError, 1)
	parked := f.apply("old", vc("PV", "2", "o-2")).Changes[0]
	f.eventually("the second change parked", f.inState(parked.ID, mlmsoft.VolumeParked))

	// Within the retention period the key is honoured: nothing is added.
	for range 20 {
		f.clock.Advance(time.Hour)
		time.Sleep(2 * time.Millisecond)
	}
	if again := f.apply("old", key); again.Changes[0].State != mlmsoft.VolumeDelivered {
		t.Errorf("the key was not honoured 20 hours later: %+v", again.Changes[0])
	}
	// A day and more after it was delivered the change is gone; the parked
	// one, not final, stays.
	f.advanceUntil(time.Hour, "the delivered change to be purged", func() bool {
		return len(f.list(mlmsoft.VolumeFilter{States: []mlmsoft.VolumeState{mlmsoft.VolumeDelivered}})) == 0
	})
	if got := f.list(mlmsoft.VolumeFilter{}); len(got) != 1 || got[0].ID != parked.ID {
		t.Errorf("after the purge: %+v", got)
	}
	// Forgotten with its change, the key enqueues anew.
	if _, err := f.p.SkipVolume(ctx, parked.ID, "ops", "test"); err != nil {
		t.Fatal(err)
	}
	b := f.apply("old", key)
	if b.Changes[0].State != mlmsoft.VolumePending {
		t.Errorf("the purged key enqueued %+v", b.Changes[0])
	}
	f.delivered(b)
	f.wantLedger(u.AccountID, "PV 1 o-1", "PV 1 o-1")
}
