package mlmsoft_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// TestWebhookAndCheckAuthEndToEnd runs both linking paths over real HTTP on loopback:
// the fake MLM Soft posts its signed webhook to the host app's route, and a
// host user links by check-auth. Polling is off, so the webhook alone links
// the first user. Every log line written meanwhile (the plugin's, the fake
// server's, the app server's) is captured and searched for secrets.
func TestWebhookAndCheckAuthEndToEnd(t *testing.T) {
	t.Parallel()
	const (
		apiToken       = "e2e-api-token-5f2c9a1b7d"
		signupPassword = "signup-password-Zq81"
		oldPassword    = "old-member-password-Kx42"
		wrongPassword  = "wrong-password-Pm77"
	)
	logs := &hLogBuffer{}

	mux := http.NewServeMux()
	app := httptest.NewUnstartedServer(mux)
	app.Config.ErrorLog = log.New(logs, "app: ", 0)
	app.Start()
	defer app.Close()

	fake := mlmsofttest.NewServer(mlmsofttest.Options{
		Token:         apiToken,
		WebhookURL:    app.URL + hPrefix + "/webhook/" + hToken,
		WebhookSecret: []byte(hSecret),
		Logf:          logs.Logf,
	})
	defer fake.Close()
	root := fake.AddAccount("root@example.com", "root-password-1", 0)
	old := fake.AddAccount("old.member@example.com", oldPassword, root.AccountID)

	store := newMemStore()
	p, err := mlmsoft.New(store, mlmsoft.Config{
		BaseURL: fake.URL, APIToken: apiToken, DefaultSponsorAccountID: root.AccountID,
		PasswordKey: bytes.Repeat([]byte{7}, 32),
		Linking:     mlmsoft.LinkingConfig{DisablePolling: true},
		Webhook:     mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{hSecret}, PathTokens: []string{hToken}, Confirm: true},
		CheckAuth:   mlmsoft.CheckAuthConfig{Enabled: true, CurrentUser: hHeaderUser},
		Logger:      hTextLogger(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	mountNetHTTP(mux, p)
	startPlugin(t, p)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.Transport.(*http.Transport).CloseIdleConnections()

	// 1. Type III: registered through OnUserRegistered, linked by the
	// fake's webhook alone.
	if err := p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: "u1", Email: "new.member@example.com", Password: signupPassword}); err != nil {
		t.Fatal(err)
	}
	l1 := waitLinked(t, p, "u1")
	acc1, ok := fake.Account("new.member@example.com")
	if !ok || l1.LinkedVia != mlmsoft.LinkedViaWebhook || l1.AccountID != acc1.AccountID || l1.MLMUserID != acc1.UserID {
		t.Fatalf("u1: %+v, want linked via webhook to %+v", l1, acc1)
	}
	if n := fake.Calls("document/get"); n != 0 {
		t.Errorf("document/get called %d times with polling disabled", n)
	}
	if n := fake.CreatesAccepted("new.member@example.com"); n != 1 {
		t.Errorf("user/create accepted %d times", n)
	}

	// A forged webhook over the wire is refused and changes nothing.
	before, _ := store.ListLinks(context.Background(), mlmsoft.LinkFilter{})
	body := webhookJSON("new.member@example.com", 1, 2)
	req, _ := http.NewRequest(http.MethodPost, app.URL+hPrefix+"/webhook/"+hToken, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(whsig.TimestampHeader, "1800000000")
	req.Header.Set(whsig.SignatureHeader, whsig.Sign([]byte("forged-secret-0123456789"), 1800000000, []byte(body)))
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged webhook: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// 2. Type II: a member who was in MLM Soft before the host app links by
	// check-auth alone.
	post := func(user, password string) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(map[string]string{"login": "old.member@example.com", "password": password})
		req, _ := http.NewRequest(http.MethodPost, app.URL+hPrefix+"/check-auth", bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(hUserHdr, user)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("check-auth: %v", err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, decodeAnswer(t, resp.Body)
	}
	if code, ans := post("u2", wrongPassword); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d %v", code, ans)
	}
	after, _ := store.ListLinks(context.Background(), mlmsoft.LinkFilter{})
	if len(after) != len(before) {
		t.Fatalf("a refused request changed the store: %+v", after)
	}
	code, ans := post("u2", oldPassword)
	if code != http.StatusOK || ans["accountId"] != float64(old.AccountID) || ans["userId"] != float64(old.UserID) {
		t.Fatalf("check-auth: %d %v, want ids of %+v", code, ans, old)
	}
	l2 := waitLinked(t, p, "u2")
	if l2.LinkedVia != mlmsoft.LinkedViaCheckAuth || l2.AccountID != old.AccountID || l2.Email != "old.member@example.com" {
		t.Fatalf("u2: %+v", l2)
	}

	// 3. Nothing secret was logged.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	fake.Close()
	out := logs.String()
	for _, word := range []string{"linked by webhook", "linked by check-auth", "check-auth refused"} {
		if !strings.Contains(out, word) {
			t.Errorf("the logs lack %q: the capture is not working", word)
		}
	}
	for name, secret := range map[string]string{
		"API token": apiToken, "sign-up password": signupPassword, "check-auth password": oldPassword,
		"wrong password": wrongPassword, "webhook secret": hSecret, "path token": hToken, "Security-Key": "Security-Key",
	} {
		if strings.Contains(out, secret) {
			t.Errorf("the logs contain the %s", name)
		}
	}
}
