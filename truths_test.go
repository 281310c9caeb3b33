package mlmsoft_test

// Smaller promises: set-type properties resent after a lost answer,
// check-auth limited per target login with logins normalised as at sign-up,
// e-mails never folded across Unicode, webhook bodies cut when they
// trickle, error texts that say what happened once, a fully repeated batch
// that says so, and exact amount parsing.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/nethttpadapter"
)

func TestSetAliasesResentAfterALostAnswer(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, func(c *mlmsoft.Config) {
		c.Volumes.SetAliases = []string{"Status"}
	})
	f.start()
	u := f.linkedUser("sam")
	// The request is applied, but its answer is lost (a gateway's 502).
	f.fake.InjectNext(vVolumeEP, mlmsofttest.FaultServerErrorAfterApply, 1)
	b1 := f.apply("sam", vc("Status", "3", "o-1"))
	status := b1.Changes[0].ID
	// Status sets a value: sent again by itself once a request timeout
	// has passed, not left for an operator.
	f.advanceUntil(time.Second, "Status to be delivered", f.inState(status, mlmsoft.VolumeDelivered))
	if c := f.get(status); c.Attempts != 2 {
		t.Errorf("Status delivered after %d attempts, want 2", c.Attempts)
	}
	// PV adds: the same lost answer makes it uncertain, never resent.
	f.fake.InjectNext(vVolumeEP, mlmsofttest.FaultServerErrorAfterApply, 1)
	b2 := f.apply("sam", vc("PV", "20", "o-1"))
	pv := b2.Changes[0].ID
	f.advanceUntil(time.Second, "PV to become uncertain", f.inState(pv, mlmsoft.VolumeUncertain))
	for range 10 {
		f.clock.Advance(time.Minute)
	}
	time.Sleep(20 * time.Millisecond)
	// Status twice (harmless: it sets 3), PV once.
	f.wantLedger(u.AccountID, "Status 3 o-1", "Status 3 o-1", "PV 20 o-1")
	if _, err := f.p.ResolveVolume(context.Background(), pv, mlmsoft.ResolveApplied, "ops", "in the ledger"); err != nil {
		t.Fatal(err)
	}
	f.delivered(b2)
	f.wantLedger(u.AccountID, "Status 3 o-1", "Status 3 o-1", "PV 20 o-1")
}

func TestCheckAuthLimitedPerTargetLogin(t *testing.T) {
	t.Parallel()
	f := newHFix(t, func(c *mlmsoft.Config) {
		c.CheckAuth.UserLimit, c.CheckAuth.ClientLimit = -1, -1 // only the per-login limit counts here
	})
	f.fake.AddAccount("victim@example.com", "secret-password", f.root.AccountID)
	codes := map[int]int{}
	for i := range 200 {
		// Many host users, many addresses, letter case varied: one login.
		login := "victim@example.com"
		if i%2 == 1 {
			login = "Victim@Example.COM"
		}
		r := checkAuthRequest(fmt.Sprintf("attacker-%d", i), login, fmt.Sprintf("guess-%d", i))
		r.RemoteAddr = fmt.Sprintf("10.0.%d.%d:1234", i/250, i%250)
		codes[f.serve(r).Code]++
	}
	if n := f.fake.Calls("user/check-auth"); n != mlmsoft.CheckAuthLoginLimitDefault {
		t.Errorf("%d of 200 guesses reached MLM Soft, want %d", n, mlmsoft.CheckAuthLoginLimitDefault)
	}
	if codes[http.StatusTooManyRequests] != 200-mlmsoft.CheckAuthLoginLimitDefault {
		t.Errorf("answers %v", codes)
	}
	// The window ends on the plugin's clock.
	f.clock.Advance(mlmsoft.CheckAuthWindowDefault)
	wantStatus(t, f.serve(checkAuthRequest("owner", "victim@example.com", "secret-password")), http.StatusOK, "after the window")
}

func TestEmailsAreNotFoldedAcrossUnicode(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"Karl@Example.com", "karl@example.com", true},
		{"  karl@example.com ", "karl@example.com", true},
		{"\u212Aarl@example.com", "\u212Aarl@example.com", true}, // KELVIN SIGN stays itself
		{"ÅSA@example.com", "Åsa@example.com", true},             // only ASCII letters are lowered
		{"karl", "", false},
		{"Karl <karl@example.com>", "", false},
	} {
		got, err := mlmsoft.NormalizeEmail(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("NormalizeEmail(%q) = %q, %v", c.in, got, err)
		}
		if err != nil && !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Errorf("NormalizeEmail(%q) error %v does not wrap ErrInvalidInput", c.in, err)
		}
	}
	// Two host users whose addresses differ only by the Kelvin sign are
	// two logins; check-auth for one never links the other's login.
	f := newHFix(t, nil)
	f.register("karl", "karl@example.com")
	f.register("kelvin", "\u212Aarl@example.com")
	f.fake.AddAccount("\u212Aarl@example.com", "pw-kelvin", f.root.AccountID)
	wantStatus(t, f.serve(checkAuthRequest("karl", "\u212Aarl@example.com", "pw-kelvin")), http.StatusConflict,
		"karl linking kelvin's login")
	if l := f.link("karl"); l.State == mlmsoft.LinkLinked {
		t.Errorf("karl was linked to kelvin's account: %+v", l)
	}
}

func TestWebhookCutsATricklingBody(t *testing.T) {
	t.Parallel()
	f := newHFix(t, func(c *mlmsoft.Config) { c.Webhook.ReadTimeout = 300 * time.Millisecond })
	mux := http.NewServeMux()
	nethttpadapter.Mount(mux, f.p, hPrefix)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := webhookJSON("x@example.com", 1, 2)
	fmt.Fprintf(conn, "POST %s/webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", hPrefix, len(body))
	start := time.Now()
	done := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(conn)
		done <- string(b)
	}()
	for i := 0; i < len(body); i++ { // one byte every 100 ms: 8 s for the body
		if _, err := conn.Write([]byte{body[i]}); err != nil {
			break
		}
		select {
		case ans := <-done:
			if held := time.Since(start); held > 3*time.Second {
				t.Errorf("the handler was held %s", held)
			}
			if !strings.Contains(ans, "408") && ans != "" {
				t.Errorf("answer %q, want 408 or a closed connection", ans)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Errorf("the trickling body was read to the end (%s)", time.Since(start))
}

func TestErrorTextsSayWhatHappenedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, nil)
	f.start()
	f.linkedUser("zed")
	// A link step's LastError names the endpoint once.
	f.fake.InjectNext("user/create", mlmsofttest.FaultServerError, 1)
	f.register("yan")
	f.eventually("the failure to be recorded", func() bool { return f.rLinkOf("yan").LastError != "" || f.rLinkOf("yan").State == mlmsoft.LinkLinked })
	if e := f.rLinkOf("yan").LastError; strings.Count(e, "user/create") > 1 {
		t.Errorf("LastError repeats the step: %q", e)
	}

	// Resolving a change that is not uncertain says what it is.
	f.fake.SetDown(true)
	b := f.apply("zed", vc("PV", "1", "o-1"))
	_, err := f.p.ResolveVolume(ctx, b.Changes[0].ID, mlmsoft.ResolveApplied, "ops", "")
	if !errors.Is(err, mlmsoft.ErrWrongState) || !strings.Contains(err.Error(), "not uncertain") || errors.Is(err, mlmsoft.ErrConflict) {
		t.Errorf("ResolveVolume on a pending change = %v, want ErrWrongState saying it is not uncertain", err)
	}
	f.fake.SetDown(false)

	// A batch whose every key was enqueued before says nothing was added.
	k := vck("PV", "5", "o-2", "o-2/pv")
	f.apply("zed", k)
	f.apply("zed", k)
	if !strings.Contains(f.logs.String(), "nothing added") {
		t.Error("a fully repeated batch was not logged as adding nothing")
	}
}
