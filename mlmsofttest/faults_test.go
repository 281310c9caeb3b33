package mlmsofttest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFaultsSeenByClient checks each fault kind from a real client that
// sends "Expect: 100-continue": the faults that must leave no trace act
// before the body is read and change nothing; apply-then-drop reads the
// body, applies once and answers nothing.
func TestFaultsSeenByClient(t *testing.T) {
	t.Parallel()
	const ep = "account/volume-change"
	cases := []struct {
		name      string
		faults    Faults
		down      bool
		timeout   time.Duration
		check     func(t *testing.T, a answer)
		wantRead  bool // the body was sent
		wantEntry bool // the ledger holds the change
	}{
		{name: "server error", faults: Faults{ServerErrorRate: 1}, check: func(t *testing.T, a answer) {
			if a.err != nil || (a.status != 500 && a.status != 502 && a.status != 503) {
				t.Errorf("err=%v status=%d", a.err, a.status)
			}
		}},
		{name: "too many", faults: Faults{TooManyRate: 1, RetryAfter: 1500 * time.Millisecond}, check: func(t *testing.T, a answer) {
			if a.err != nil || a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "2" {
				t.Errorf("err=%v status=%d Retry-After=%q", a.err, a.status, a.header.Get("Retry-After"))
			}
		}},
		{name: "too many without Retry-After", faults: Faults{TooManyRate: 1}, check: func(t *testing.T, a answer) {
			if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "" {
				t.Errorf("status=%d Retry-After=%q", a.status, a.header.Get("Retry-After"))
			}
		}},
		{name: "non-JSON", faults: Faults{NonJSONRate: 1}, check: func(t *testing.T, a answer) {
			if a.err != nil || a.status != http.StatusOK || a.jsonErr == nil || !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
				t.Errorf("err=%v status=%d body=%s", a.err, a.status, a.raw)
			}
		}},
		{name: "hang", faults: Faults{HangRate: 1}, timeout: 200 * time.Millisecond, check: func(t *testing.T, a answer) {
			if a.err == nil || a.elapsed < 200*time.Millisecond {
				t.Errorf("err=%v after %v", a.err, a.elapsed)
			}
		}},
		{name: "reset", faults: Faults{ResetRate: 1}, check: func(t *testing.T, a answer) {
			if a.err == nil {
				t.Errorf("status=%d, want a transport error", a.status)
			}
		}},
		{name: "down", down: true, check: func(t *testing.T, a answer) {
			if a.err != nil || a.status != http.StatusServiceUnavailable {
				t.Errorf("err=%v status=%d", a.err, a.status)
			}
		}},
		{name: "latency", faults: Faults{LatencyMin: 150 * time.Millisecond, LatencyMax: 150 * time.Millisecond}, wantRead: true, wantEntry: true,
			check: func(t *testing.T, a answer) {
				mustOK(t, a)
				if a.elapsed < 150*time.Millisecond {
					t.Errorf("answered after %v", a.elapsed)
				}
			}},
		{name: "business error", faults: Faults{BusinessErrorRate: 1}, wantRead: true, check: func(t *testing.T, a answer) {
			if a.err != nil || a.status != http.StatusOK || a.env.ErrorCode != 0 || a.env.Primary == nil || a.env.Primary.Success || len(a.env.Primary.Errors) != 1 {
				t.Errorf("err=%v status=%d body=%s", a.err, a.status, a.raw)
			}
		}},
		{name: "apply then drop", faults: Faults{ApplyThenDropRate: 1}, wantRead: true, wantEntry: true, check: func(t *testing.T, a answer) {
			if a.err == nil {
				t.Errorf("status=%d, want a transport error", a.status)
			}
		}},
		{name: "server error after apply", faults: Faults{ServerErrorAfterApplyRate: 1}, wantRead: true, wantEntry: true, check: func(t *testing.T, a answer) {
			if a.err != nil || (a.status != 500 && a.status != 502 && a.status != 504) || a.jsonErr == nil ||
				!strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
				t.Errorf("err=%v status=%d body=%s", a.err, a.status, a.raw)
			}
		}},
		{name: "server error after read", faults: Faults{ServerErrorAfterReadRate: 1}, wantRead: true, check: func(t *testing.T, a answer) {
			if a.err != nil || (a.status != 502 && a.status != 503 && a.status != 504) || a.jsonErr == nil ||
				!strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
				t.Errorf("err=%v status=%d body=%s", a.err, a.status, a.raw)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, c := newTestServer(t, Options{})
			acc := s.AddAccount("a@example.com", "pw", 0)
			if tc.down {
				s.SetDown(true)
			} else {
				s.SetFaults(ep, tc.faults)
			}
			ctx := t.Context()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			a := c.do(ctx, http.MethodPost, ep, volumeParams(acc.AccountID, "0.1", "ord-1", "PV"))
			tc.check(t, a)
			if a.bodyRead != tc.wantRead {
				t.Errorf("body read = %v, want %v", a.bodyRead, tc.wantRead)
			}
			l := s.Ledger(acc.AccountID)
			if tc.wantEntry && (len(l) != 1 || l[0].Amount != "0.1") || !tc.wantEntry && len(l) != 0 {
				t.Errorf("ledger %+v", l)
			}
			if got := s.Calls(ep); got != 1 {
				t.Errorf("Calls = %d, want 1", got)
			}

			// The fault gone, the same client succeeds.
			s.SetDown(false)
			s.SetFaults(ep, Faults{})
			mustOK(t, c.post(ep, volumeParams(acc.AccountID, "1", "ord-2", "PV")))
			want := 1
			if tc.wantEntry {
				want = 2
			}
			if l := s.Ledger(acc.AccountID); len(l) != want {
				t.Errorf("after recovery ledger %+v", l)
			}
		})
	}
}

func TestFaultsPerEndpoint(t *testing.T) {
	t.Parallel()
	s, c := newTestServer(t, Options{})
	s.SetFaults("*", Faults{ServerErrorRate: 1})
	s.SetFaults("user/exists", Faults{NonJSONRate: 1})
	if a := c.get("document/get", docParams(1)); a.status < 500 {
		t.Errorf(`"*" not applied: status %d`, a.status)
	}
	if a := c.get("user/exists", loginParams("a@example.com")); a.status != http.StatusOK || a.jsonErr == nil {
		t.Errorf("endpoint faults do not replace \"*\": status %d body %s", a.status, a.raw)
	}
	s.SetFaults("*", Faults{})
	mustRefuse(t, c.get("document/get", docParams(1)), msgDocNotFound) // faults removed
}

func TestBusinessErrorShapes(t *testing.T) {
	t.Parallel()
	s, c := newTestServer(t, Options{Seed: 3})
	s.SetFaults("user/exists", Faults{BusinessErrorRate: 1})
	shapes := map[string]int{}
	for range 30 {
		a := c.get("user/exists", loginParams("a@example.com"))
		if a.env.Primary == nil || a.env.Primary.Success || len(a.env.Primary.Errors) != 1 {
			t.Fatalf("not a business error: %s", a.raw)
		}
		switch e := a.env.Primary.Errors[0].(type) {
		case string:
			shapes["string"]++
		case []any:
			if len(e) == 1 {
				shapes["list"]++
			}
		case map[string]any:
			if _, ok := e["message"].(string); ok {
				shapes["object"]++
			}
		}
	}
	if len(shapes) != 3 {
		t.Errorf("shapes seen: %v, want all three", shapes)
	}
}

// outcomes sends n requests one after another and describes what each met.
func outcomes(t *testing.T, seed int64, n int) []string {
	s, c := newTestServer(t, Options{Seed: seed})
	s.SetFaults("*", Faults{BusinessErrorRate: 0.2, ServerErrorRate: 0.2, TooManyRate: 0.1, ResetRate: 0.1, NonJSONRate: 0.1, LatencyMax: 2 * time.Millisecond})
	var out []string
	for range n {
		out = append(out, describe(c.get("user/exists", loginParams("a@example.com"))))
	}
	return out
}

func TestDeterminism(t *testing.T) {
	t.Parallel()
	a, b, other := outcomes(t, 42, 40), outcomes(t, 42, 40), outcomes(t, 43, 40)
	if strings.Join(a, ",") != strings.Join(b, ",") {
		t.Errorf("same seed, different outcomes:\n%v\n%v", a, b)
	}
	if strings.Join(a, ",") == strings.Join(other, ",") {
		t.Errorf("seeds 42 and 43 gave the same 40 outcomes: %v", a)
	}
	kinds := map[string]bool{}
	for _, o := range a {
		kinds[o] = true
	}
	if len(kinds) < 5 {
		t.Errorf("only %d kinds of outcome in %v", len(kinds), a)
	}
}

func TestConcurrentHammer(t *testing.T) {
	t.Parallel()
	n := 200
	if testing.Short() {
		n = 50
	}
	s, c := newTestServer(t, Options{Seed: 7, DocumentDelay: time.Millisecond})
	root := s.AddAccount("root@example.com", "pw", 0)
	s.SetFaults("*", Faults{BusinessErrorRate: 0.1, ServerErrorRate: 0.1, TooManyRate: 0.05, ApplyThenDropRate: 0.1})

	var (
		mu            sync.Mutex
		applied       int
		createdLogins []string
		wg            sync.WaitGroup
	)
	for i := range n {
		wg.Go(func() {
			login := fmt.Sprintf("user%d@example.com", i)
			a := c.post("user/create", createParams(login, "pw", root.AccountID))
			createOK := a.err != nil || (a.status == http.StatusOK && a.jsonErr == nil && a.env.Primary.Success)
			a = c.post("account/volume-change", volumeParams(root.AccountID, fmt.Sprintf("%d.5", i), fmt.Sprint("ord-", i), "PV"))
			volOK := a.err != nil || (a.status == http.StatusOK && a.jsonErr == nil && a.env.Primary.Success)
			_ = s.AllLedger()
			_ = s.Calls("user/create")
			mu.Lock()
			defer mu.Unlock()
			if createOK {
				createdLogins = append(createdLogins, login)
			}
			if volOK {
				applied++
			}
		})
	}
	wg.Wait()
	l := s.AllLedger()
	if len(l) != applied {
		t.Errorf("ledger has %d entries, clients saw %d applied (success or dropped)", len(l), applied)
	}
	seen := map[string]bool{}
	for i, e := range l {
		if i > 0 && e.Seq <= l[i-1].Seq {
			t.Errorf("ledger out of order at %d: %d after %d", i, e.Seq, l[i-1].Seq)
		}
		if seen[e.OrderID] {
			t.Errorf("order %s applied twice", e.OrderID)
		}
		seen[e.OrderID] = true
	}
	time.Sleep(5 * time.Millisecond)
	s.ProcessDue()
	for _, login := range createdLogins {
		if _, ok := s.Account(login); !ok || s.CreatesAccepted(login) != 1 {
			t.Errorf("%s: account %v, creates %d", login, ok, s.CreatesAccepted(login))
		}
	}
	if got := s.Calls("user/create") + s.Calls("account/volume-change"); got != 2*n {
		t.Errorf("Calls = %d, want %d", got, 2*n)
	}
}

// TestCloseEndsEverything is not parallel: it counts goroutines.
func TestCloseEndsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError) // keeps the server retrying
	}))

	s := NewServer(Options{WebhookURL: hook.URL, WebhookSecret: []byte("k"), Logf: t.Logf})
	c := newClient(t, s)
	root := s.AddAccount("root@example.com", "pw", 0)
	mustOK(t, c.post("user/create", createParams("a@example.com", "pw", root.AccountID))) // starts a webhook delivery
	s.SetFaults("*", Faults{HangRate: 1})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Go(func() {
			var a answer
			if i%2 == 0 {
				a = c.post("account/volume-change", volumeParams(root.AccountID, "1", "o", "PV"))
			} else {
				a = c.get("user/exists", loginParams("a@example.com"))
			}
			errs <- a.err
		})
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Calls("account/volume-change")+s.Calls("user/exists") < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() { s.Close(); s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close hangs")
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err == nil {
			t.Error("a hung request got an answer")
		}
	}
	if len(s.AllLedger()) != 0 {
		t.Error("a hung request was applied")
	}
	// After Close, a mounted Handler answers 503.
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api2/online-office/user/exists", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("Handler after Close: %d", rec.Code)
	}
	hook.Close()

	deadline = time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after Close:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}
