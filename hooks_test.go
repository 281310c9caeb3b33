package mlmsoft_test

// Hooks run on the plugin's own goroutines with a context of its own, never
// hold up a webhook answer, are retried when they fail or panic, and are
// delivered at least once across a kill of the process (a real SIGKILL of a
// child process on a SQLite file).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/sqlstore"
)

// goroutineID returns the current goroutine's number (for tests only).
func goroutineID() int {
	var buf [64]byte
	s := bytes.TrimPrefix(buf[:runtime.Stack(buf[:], false)], []byte("goroutine "))
	n, _ := strconv.Atoi(string(s[:bytes.IndexByte(s, ' ')]))
	return n
}

func TestHooksNeverRunOnTheRequest(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	type call struct {
		goroutine int
		ctxErr    error
		ev        mlmsoft.LinkEvent
	}
	calls := make(chan call, 4)
	f := newHFix(t, func(c *mlmsoft.Config) {
		c.Hooks.OnLinked = func(ctx context.Context, e mlmsoft.LinkEvent) error {
			g := goroutineID()
			<-release // a slow hook: the webhook must not wait for it
			calls <- call{g, ctx.Err(), e}
			return nil
		}
	})
	startPlugin(t, f.p)
	f.register("u1", "ann@example.com")
	acct := f.fake.AddAccount("ann@example.com", "pw", f.root.AccountID)

	var reqGoroutine int
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqGoroutine = goroutineID()
		f.mux.ServeHTTP(w, r)
	})
	rec := httptest.NewRecorder()
	answered := make(chan struct{})
	go func() {
		handler.ServeHTTP(rec, f.webhook(webhookJSON("ann@example.com", acct.UserID, acct.AccountID)))
		close(answered)
	}()
	select {
	case <-answered:
	case <-time.After(5 * time.Second):
		t.Fatal("the webhook answer waited for the OnLinked hook")
	}
	wantStatus(t, rec, http.StatusOK, "webhook")
	close(release)
	select {
	case c := <-calls:
		if c.goroutine == reqGoroutine {
			t.Error("OnLinked ran on the webhook request's goroutine")
		}
		if c.ctxErr != nil {
			t.Errorf("OnLinked's context ended with the request: %v", c.ctxErr)
		}
		if c.ev.ID == "" || c.ev.Link.UserID != "u1" || c.ev.Link.AccountID != acct.AccountID || c.ev.Link.LinkedVia != mlmsoft.LinkedViaWebhook {
			t.Errorf("OnLinked got %+v", c.ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnLinked never ran")
	}
}

func TestHooksRetriedWhenTheyFailOrPanic(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var ids []string
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, func(c *mlmsoft.Config) {
		c.Hooks.RetryInitial, c.Hooks.RetryMax = time.Second, time.Second
		c.Hooks.OnLinked = func(ctx context.Context, e mlmsoft.LinkEvent) error {
			mu.Lock()
			defer mu.Unlock()
			ids = append(ids, e.ID)
			switch len(ids) {
			case 1:
				return errors.New("the host's database is down")
			case 2:
				panic("a bug in the host's hook")
			}
			return nil
		}
	})
	f.start()
	f.register("u")
	calls := func() int { mu.Lock(); defer mu.Unlock(); return len(ids) }
	f.eventually("the first call", func() bool { return calls() >= 1 })
	f.eventually("Stats to show a failing hook", func() bool {
		st, _ := f.p.Stats(context.Background())
		return st.Hooks.Owed == 1 && st.Hooks.Failing == 1
	})
	f.advanceUntil(time.Second, "the hook to succeed", func() bool {
		st, _ := f.p.Stats(context.Background())
		return calls() >= 3 && st.Hooks.Owed == 0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 3 || ids[0] != ids[1] || ids[1] != ids[2] {
		t.Errorf("hook calls with event ids %q, want the same id three times", ids)
	}
	st, _ := f.p.Stats(context.Background())
	if st.Totals.HookFailures != 2 {
		t.Errorf("Totals.HookFailures = %d, want 2", st.Totals.HookFailures)
	}
}

// The helper process of TestHooksAtLeastOnceAcrossKill: it links a user on a
// SQLite file and is killed while its OnLinked hook runs.
func TestHookHelperProcess(t *testing.T) {
	dir := os.Getenv("MLMSOFT_HOOK_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process of TestHooksAtLeastOnceAcrossKill")
	}
	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "plugin.db"))
	if err != nil {
		t.Fatal(err)
	}
	root, _ := strconv.ParseInt(os.Getenv("MLMSOFT_HOOK_HELPER_ROOT"), 10, 64)
	p, err := mlmsoft.New(store, mlmsoft.Config{
		BaseURL: os.Getenv("MLMSOFT_HOOK_HELPER_URL"), APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: root,
		Lease: 2 * time.Second, RequestTimeout: time.Second, IdleRecheck: 20 * time.Millisecond,
		Hooks: mlmsoft.Hooks{OnLinked: func(ctx context.Context, e mlmsoft.LinkEvent) error {
			// The link and its owed hook are stored: say so, then hang
			// until killed.
			_ = os.WriteFile(filepath.Join(dir, "hook-running"), []byte(e.ID), 0o600)
			select {}
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "kim", Email: "kim@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {}
}

func TestHooksAtLeastOnceAcrossKill(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	fake := mlmsofttest.NewServer(mlmsofttest.Options{Synchronous: true})
	t.Cleanup(fake.Close)
	root := fake.AddAccount("root@example.com", "pw", 0)

	child := exec.Command(os.Args[0], "-test.run=^TestHookHelperProcess$", "-test.count=1")
	child.Env = append(os.Environ(), "MLMSOFT_HOOK_HELPER_DIR="+dir, "MLMSOFT_HOOK_HELPER_URL="+fake.URL,
		fmt.Sprintf("MLMSOFT_HOOK_HELPER_ROOT=%d", root.AccountID))
	var out bytes.Buffer
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "hook-running")
	deadline := time.Now().Add(20 * time.Second)
	var firstID []byte
	for {
		if b, err := os.ReadFile(marker); err == nil && len(b) > 0 {
			firstID = b
			break
		}
		if time.Now().After(deadline) {
			_ = child.Process.Kill()
			t.Fatalf("the child never ran its hook:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	// A new process (here, this one) on the same file owes the hook still.
	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "plugin.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	got := make(chan mlmsoft.LinkEvent, 4)
	p, err := mlmsoft.New(store, mlmsoft.Config{
		BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: root.AccountID,
		Lease: 2 * time.Second, RequestTimeout: time.Second, IdleRecheck: 20 * time.Millisecond,
		Logger: hTextLogger(&hLogBuffer{}),
		Hooks: mlmsoft.Hooks{OnLinked: func(ctx context.Context, e mlmsoft.LinkEvent) error {
			got <- e
			return nil
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	startPlugin(t, p)
	select {
	case e := <-got:
		if e.ID != string(firstID) || e.Link.UserID != "kim" || e.Link.State != mlmsoft.LinkLinked {
			t.Errorf("after the restart OnLinked got %+v (id %q before the kill)", e, firstID)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the owed OnLinked hook was lost with the killed process")
	}
	if n := fake.CreatesAccepted("kim@example.com"); n != 1 {
		t.Errorf("user/create accepted %d times", n)
	}
}
