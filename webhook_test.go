package mlmsoft_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

func TestWebhookConfigValidation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		wh    mlmsoft.WebhookConfig
		field string // "" means valid
	}{
		{"disabled zero value", mlmsoft.WebhookConfig{}, ""},
		{"enabled without secret or token", mlmsoft.WebhookConfig{Enabled: true}, "Webhook.Secrets"},
		{"short secret", mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{"short"}}, "Webhook.Secrets[0]"},
		{"empty second secret", mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{hSecret, ""}}, "Webhook.Secrets[1]"},
		{"token with slash", mlmsoft.WebhookConfig{Enabled: true, PathTokens: []string{"abcdefgh/ijklmnopqrs"}}, "Webhook.PathTokens[0]"},
		{"negative window", mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{hSecret}, ReplayWindow: -time.Second}, "Webhook.ReplayWindow"},
		{"negative body", mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{hSecret}, MaxBody: -1}, "Webhook.MaxBody"},
		{"same headers", mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{hSecret}, TimestampHeader: "X-A", SignatureHeader: "x-a"}, "Webhook.TimestampHeader"},
		{"bad field path", mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{hSecret}, EmailFields: []string{"user..email"}}, "Webhook.EmailFields[0]"},
		{"secret only", mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{hSecret}}, ""},
		{"token only", mlmsoft.WebhookConfig{Enabled: true, PathTokens: []string{hToken}}, ""},
	}
	for _, c := range cases {
		_, err := mlmsoft.New(newMemStore(), mlmsoft.Config{BaseURL: "http://127.0.0.1:1/api2/online-office/", APIToken: "x", Webhook: c.wh})
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s: New: %v", c.name, err)
		case c.field != "" && (!errors.Is(err, mlmsoft.ErrInvalidConfig) || !strings.Contains(err.Error(), c.field)):
			t.Errorf("%s: New error = %v, want ErrInvalidConfig naming %s", c.name, err, c.field)
		case err != nil && (strings.Contains(err.Error(), hSecret) || strings.Contains(err.Error(), "abcdefgh")):
			t.Errorf("%s: error %q reveals a secret", c.name, err)
		}
	}
}

func TestWebhookConfigNotAliased(t *testing.T) {
	t.Parallel()
	secrets := []string{hSecret}
	f := newHFix(t, func(c *mlmsoft.Config) { c.Webhook.Secrets = secrets })
	secrets[0] = "changed-after-New-0123456789"
	f.register("u1", "ann@example.com")
	rec := f.serve(f.webhook(webhookJSON("ann@example.com", 5, 6)))
	wantStatus(t, rec, http.StatusOK, "webhook signed with the secret given to New")
	if l := f.link("u1"); l.State != mlmsoft.LinkLinked {
		t.Fatalf("not linked: %+v", l)
	}
}

func TestWebhookDisabled(t *testing.T) {
	t.Parallel()
	f := newHFix(t, func(c *mlmsoft.Config) { c.Webhook = mlmsoft.WebhookConfig{} })
	f.register("u1", "ann@example.com")
	before := f.links()
	rec := f.serve(f.webhook(webhookJSON("ann@example.com", 5, 6)))
	wantStatus(t, rec, http.StatusNotFound, "disabled webhook")
	f.assertUnchanged(before, "disabled webhook")
}

func TestWebhookLinks(t *testing.T) {
	t.Parallel()
	f := newHFix(t, nil)
	f.register("u1", "Ann@Example.com")
	f.register("u2", "bob@example.com")

	rec := f.serve(f.webhook(webhookJSON("ANN@example.com", 100123, 700456)))
	wantStatus(t, rec, http.StatusOK, "webhook")
	if got := decodeAnswer(t, rec.Body); got["ok"] != true {
		t.Errorf("answer %v, want ok", got)
	}
	l := f.link("u1")
	if l.State != mlmsoft.LinkLinked || l.AccountID != 700456 || l.MLMUserID != 100123 || l.LinkedVia != mlmsoft.LinkedViaWebhook {
		t.Fatalf("link after webhook: %+v", l)
	}
	if f.link("u2").State != mlmsoft.LinkPending {
		t.Errorf("u2 changed too")
	}
	if n := f.fake.Calls("user/exists"); n != 0 {
		t.Errorf("Confirm is off and the account id was given: %d user/exists calls, want 0", n)
	}

	// The same webhook again, later (a new signature): 2xx, nothing changes.
	before := f.links()
	f.clock.Advance(time.Minute)
	wantStatus(t, f.serve(f.webhook(webhookJSON("ann@example.com", 100123, 700456))), http.StatusOK, "second webhook")
	f.assertUnchanged(before, "second webhook")

	// A webhook saying the user has another account: 2xx, ignored.
	wantStatus(t, f.serve(f.webhook(webhookJSON("ann@example.com", 100123, 700999))), http.StatusOK, "conflicting webhook")
	wantStatus(t, f.serve(f.webhook(webhookJSON("ann@example.com", 100999, 700456))), http.StatusOK, "conflicting user id")
	f.assertUnchanged(before, "conflicting webhooks")

	// Unknown email: 2xx (never says whether an email exists), logged.
	wantStatus(t, f.serve(f.webhook(webhookJSON("nobody@example.com", 1, 2))), http.StatusOK, "unknown email")
	f.assertUnchanged(before, "unknown email")
	if !strings.Contains(f.logs.String(), "ignored") {
		t.Errorf("the unknown email was not logged")
	}
}

func TestWebhookAfterPollerLinked(t *testing.T) {
	t.Parallel()
	f := newHFix(t, nil)
	now := f.clock.Now()
	if _, err := f.store.CreateLink(context.Background(), mlmsoft.Link{
		UserID: "u1", Email: "ann@example.com", State: mlmsoft.LinkLinked, AccountID: 700456, MLMUserID: 100123,
		LinkedVia: mlmsoft.LinkedViaDocument, LinkedAt: now, CreatedAt: now, UpdatedAt: now,
	}); err != nil {
		t.Fatal(err)
	}
	before := f.links()
	wantStatus(t, f.serve(f.webhook(webhookJSON("ann@example.com", 100123, 700456))), http.StatusOK, "webhook after poller")
	wantStatus(t, f.serve(f.webhook(`{"email":"ann@example.com","userId":100123}`)), http.StatusOK, "webhook without account id")
	f.assertUnchanged(before, "webhook after the poller linked")
}

func TestWebhookBodyShapes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, contentType, body string
	}{
		{"form snake_case", "application/x-www-form-urlencoded", "email=ann%40example.com&user_id=100123&account_id=700456"},
		{"form php nesting", "application/x-www-form-urlencoded; charset=utf-8", "user%5Bemail%5D=ann%40example.com&user%5Bid%5D=100123&user%5Baccount%5D%5Bid%5D=700456"},
		{"nested JSON", "application/json", `{"event":"user.created","user":{"email":"ann@example.com","id":"100123","account":{"id":700456}}}`},
		{"ids as strings", "application/json; charset=utf-8", `{"login":"ann@example.com","userId":"100123","accountId":"700456"}`},
		{"no content type, JSON sniffed", "", `{"Email":"ann@example.com","USERID":100123,"accountId":700456}`},
		{"agreeing duplicates", "application/json", `{"email":"ann@example.com","login":"ANN@example.com","userId":100123,"user_id":"100123","accountId":700456}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newHFix(t, nil)
			f.register("u1", "ann@example.com")
			rec := f.serve(signedWebhook(hPrefix+"/webhook", c.contentType, c.body, hSecret, f.clock.Now().Unix()))
			wantStatus(t, rec, http.StatusOK, c.name)
			if l := f.link("u1"); l.State != mlmsoft.LinkLinked || l.AccountID != 700456 || l.MLMUserID != 100123 {
				t.Fatalf("link: %+v", l)
			}
		})
	}
}

func TestWebhookCustomFields(t *testing.T) {
	t.Parallel()
	f := newHFix(t, func(c *mlmsoft.Config) {
		c.Webhook.EmailFields = []string{"data.mail"}
		c.Webhook.UserIDFields = []string{"data.uid"}
		c.Webhook.AccountIDFields = []string{"data.acc"}
		c.Webhook.TimestampHeader = "X-Ts"
		c.Webhook.SignatureHeader = "X-Sig"
	})
	f.register("u1", "ann@example.com")
	body := `{"data":{"mail":"ann@example.com","uid":7,"acc":8},"email":"other@example.com"}`
	ts := f.clock.Now().Unix()
	r := httptest.NewRequest(http.MethodPost, hPrefix+"/webhook", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-Ts", strconv.FormatInt(ts, 10))
	r.Header.Set("X-Sig", whsig.Sign([]byte(hSecret), ts, []byte(body)))
	wantStatus(t, f.serve(r), http.StatusOK, "custom fields and headers")
	if l := f.link("u1"); l.State != mlmsoft.LinkLinked || l.AccountID != 8 || l.MLMUserID != 7 {
		t.Fatalf("link: %+v", l)
	}
	// The default headers are not read any more.
	f.register("u2", "bob@example.com")
	before := f.links()
	wantStatus(t, f.serve(f.webhook(`{"data":{"mail":"bob@example.com","uid":9,"acc":10}}`)), http.StatusUnauthorized, "default headers")
	f.assertUnchanged(before, "default headers")
}

// TestWebhookRejections: every way a webhook is refused, each leaving the
// store as it was.
func TestWebhookRejections(t *testing.T) {
	t.Parallel()
	f := newHFix(t, nil)
	f.register("u1", "ann@example.com")
	good := webhookJSON("ann@example.com", 100123, 700456)
	now := f.clock.Now().Unix()
	window := int64(mlmsoft.WebhookReplayWindowDefault / time.Second)
	path := hPrefix + "/webhook"
	noHeader := func(h string) *http.Request {
		r := signedWebhook(path, "application/json", good, hSecret, now)
		r.Header.Del(h)
		return r
	}
	big := `{"email":"ann@example.com","userId":1,"accountId":2,"pad":"` + strings.Repeat("x", int(mlmsoft.WebhookMaxBodyDefault)) + `"}`
	cases := []struct {
		name string
		req  *http.Request
		want int
	}{
		{"forged signature", signedWebhook(path, "application/json", good, "not-the-secret-0123456789", now), 401},
		{"signature over another body", func() *http.Request {
			r := signedWebhook(path, "application/json", good, hSecret, now)
			r.Body = httptestBody(webhookJSON("ann@example.com", 100123, 700457))
			return r
		}(), 401},
		{"missing signature", noHeader(whsig.SignatureHeader), 401},
		{"missing timestamp", noHeader(whsig.TimestampHeader), 401},
		{"unsigned", signedWebhook(path, "application/json", good, "", now), 401},
		{"malformed signature", func() *http.Request {
			r := signedWebhook(path, "application/json", good, hSecret, now)
			r.Header.Set(whsig.SignatureHeader, "md5=abc")
			return r
		}(), 401},
		{"stale timestamp", signedWebhook(path, "application/json", good, hSecret, now-window-1), 401},
		{"future timestamp", signedWebhook(path, "application/json", good, hSecret, now+window+1), 401},
		{"oversized body", signedWebhook(path, "application/json", big, hSecret, now), 413},
		{"oversized body, no length", func() *http.Request {
			r := signedWebhook(path, "application/json", big, hSecret, now)
			r.ContentLength = -1
			return r
		}(), 413},
		{"malformed JSON", signedWebhook(path, "application/json", `{"email":"ann@example.com",`, hSecret, now), 400},
		{"JSON list", signedWebhook(path, "application/json", `[{"email":"ann@example.com","userId":1}]`, hSecret, now), 400},
		{"trailing data", signedWebhook(path, "application/json", good+`{}`, hSecret, now), 400},
		{"duplicate key", signedWebhook(path, "application/json", `{"email":"ann@example.com","userId":1,"userId":2}`, hSecret, now), 400},
		{"no email", signedWebhook(path, "application/json", `{"userId":100123,"accountId":700456}`, hSecret, now), 400},
		{"bad email", signedWebhook(path, "application/json", `{"email":"Ann <ann@example.com>","userId":100123}`, hSecret, now), 400},
		{"email not a string", signedWebhook(path, "application/json", `{"email":["ann@example.com"],"userId":100123}`, hSecret, now), 400},
		{"no id", signedWebhook(path, "application/json", `{"email":"ann@example.com"}`, hSecret, now), 400},
		{"negative id", signedWebhook(path, "application/json", `{"email":"ann@example.com","userId":-5}`, hSecret, now), 400},
		{"fractional id", signedWebhook(path, "application/json", `{"email":"ann@example.com","userId":5.5}`, hSecret, now), 400},
		{"zero id", signedWebhook(path, "application/json", `{"email":"ann@example.com","accountId":0}`, hSecret, now), 400},
		{"id too big", signedWebhook(path, "application/json", `{"email":"ann@example.com","userId":99999999999999999999}`, hSecret, now), 400},
		{"disagreeing ids", signedWebhook(path, "application/json", `{"email":"ann@example.com","userId":1,"user_id":2}`, hSecret, now), 400},
		{"disagreeing emails", signedWebhook(path, "application/json", `{"email":"ann@example.com","login":"bob@example.com","userId":1}`, hSecret, now), 400},
		{"malformed form", signedWebhook(path, "application/x-www-form-urlencoded", "email=%zz&userId=1", hSecret, now), 400},
		{"unsupported content type", signedWebhook(path, "text/xml", `<x/>`, hSecret, now), 415},
		{"wrong method (mux)", func() *http.Request {
			r := signedWebhook(path, "application/json", good, hSecret, now)
			r.Method = http.MethodGet
			return r
		}(), 405},
	}
	before := f.links()
	for _, c := range cases {
		rec := f.serve(c.req)
		if rec.Code != c.want {
			t.Errorf("%s: status %d, want %d (%s)", c.name, rec.Code, c.want, rec.Body.String())
		}
		if c.want != 405 && !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Errorf("%s: Content-Type %q, want JSON", c.name, rec.Header().Get("Content-Type"))
		}
		f.assertUnchanged(before, c.name)
	}

	// Wrong method straight to the handler (not through a method pattern).
	rec := httptest.NewRecorder()
	f.p.WebhookHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPut, path, strings.NewReader(good)))
	wantStatus(t, rec, http.StatusMethodNotAllowed, "PUT to the handler")
	if rec.Header().Get("Allow") != http.MethodPost {
		t.Errorf("Allow = %q", rec.Header().Get("Allow"))
	}
	f.assertUnchanged(before, "PUT")
}

func httptestBody(s string) *readCloser { return &readCloser{strings.NewReader(s)} }

type readCloser struct{ *strings.Reader }

func (readCloser) Close() error { return nil }

// TestWebhookReplay: the same request within the window is answered 2xx and
// changes nothing; outside the window it is refused.
func TestWebhookReplay(t *testing.T) {
	t.Parallel()
	f := newHFix(t, nil)
	f.register("u1", "ann@example.com")
	body := webhookJSON("ann@example.com", 100123, 700456)
	ts := f.clock.Now().Unix()
	wantStatus(t, f.serve(signedWebhook(hPrefix+"/webhook", "application/json", body, hSecret, ts)), http.StatusOK, "first")
	linked := f.links()
	if linked[0].State != mlmsoft.LinkLinked {
		t.Fatalf("not linked: %+v", linked[0])
	}

	f.clock.Advance(mlmsoft.WebhookReplayWindowDefault - time.Second)
	wantStatus(t, f.serve(signedWebhook(hPrefix+"/webhook", "application/json", body, hSecret, ts)), http.StatusOK, "replay within the window")
	f.assertUnchanged(linked, "replay within the window")

	f.clock.Advance(2 * time.Second)
	wantStatus(t, f.serve(signedWebhook(hPrefix+"/webhook", "application/json", body, hSecret, ts)), http.StatusUnauthorized, "replay outside the window")
	f.assertUnchanged(linked, "replay outside the window")
}

func TestWebhookSecretRotation(t *testing.T) {
	t.Parallel()
	f := newHFix(t, func(c *mlmsoft.Config) { c.Webhook.Secrets = []string{hOldSecret, hSecret} })
	f.register("u1", "ann@example.com")
	f.register("u2", "bob@example.com")
	now := f.clock.Now().Unix()
	wantStatus(t, f.serve(signedWebhook(hPrefix+"/webhook", "application/json", webhookJSON("ann@example.com", 1, 2), hOldSecret, now)), 200, "old secret")
	wantStatus(t, f.serve(signedWebhook(hPrefix+"/webhook", "application/json", webhookJSON("bob@example.com", 3, 4), hSecret, now)), 200, "new secret")
	for _, u := range []string{"u1", "u2"} {
		if l := f.link(u); l.State != mlmsoft.LinkLinked {
			t.Errorf("%s not linked: %+v", u, l)
		}
	}
}

func TestWebhookPathToken(t *testing.T) {
	t.Parallel()
	t.Run("token only", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, func(c *mlmsoft.Config) {
			c.Webhook = mlmsoft.WebhookConfig{Enabled: true, PathTokens: []string{"another-token-0123456789", hToken}}
		})
		if !f.p.WebhookUsesPathToken() {
			t.Fatal("WebhookUsesPathToken = false")
		}
		f.register("u1", "ann@example.com")
		before := f.links()
		body := webhookJSON("ann@example.com", 1, 2)
		for _, c := range []struct {
			path string
			want int
		}{
			{hPrefix + "/webhook/wrong-token-0123456789xx", 401},
			{hPrefix + "/webhook/" + hToken[:len(hToken)-1], 401},
			{hPrefix + "/webhook", 404}, // the route needs a token
		} {
			wantStatus(t, f.serve(signedWebhook(c.path, "application/json", body, "", 0)), c.want, c.path)
			f.assertUnchanged(before, c.path)
		}
		// Straight to the handler without a token in the path.
		rec := httptest.NewRecorder()
		f.p.WebhookHandler().ServeHTTP(rec, signedWebhook("/webhook", "application/json", body, "", 0))
		wantStatus(t, rec, http.StatusUnauthorized, "no token")
		f.assertUnchanged(before, "no token")

		wantStatus(t, f.serve(signedWebhook(hPrefix+"/webhook/"+hToken, "application/json", body, "", 0)), 200, "right token")
		if l := f.link("u1"); l.State != mlmsoft.LinkLinked {
			t.Fatalf("not linked: %+v", l)
		}
	})
	t.Run("token and signature", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, func(c *mlmsoft.Config) { c.Webhook.PathTokens = []string{hToken} })
		f.register("u1", "ann@example.com")
		before := f.links()
		body := webhookJSON("ann@example.com", 1, 2)
		now := f.clock.Now().Unix()
		wantStatus(t, f.serve(signedWebhook(hPrefix+"/webhook/"+hToken, "application/json", body, "", 0)), 401, "token without signature")
		wantStatus(t, f.serve(signedWebhook(hPrefix+"/webhook/bad-token-0123456789abcd", "application/json", body, hSecret, now)), 401, "signature with a wrong token")
		f.assertUnchanged(before, "half-authenticated")
		wantStatus(t, f.serve(signedWebhook(hPrefix+"/webhook/"+hToken, "application/json", body, hSecret, now)), 200, "both")
		if l := f.link("u1"); l.State != mlmsoft.LinkLinked {
			t.Fatalf("not linked: %+v", l)
		}
	})
}

func TestWebhookConfirm(t *testing.T) {
	t.Parallel()
	confirm := func(c *mlmsoft.Config) { c.Webhook.Confirm = true }

	t.Run("confirmed", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, confirm)
		acc := f.fake.AddAccount("ann@example.com", "pw-ann-123", f.root.AccountID)
		f.register("u1", "ann@example.com")
		wantStatus(t, f.serve(f.webhook(webhookJSON("ann@example.com", acc.UserID, acc.AccountID))), 200, "confirmed")
		if l := f.link("u1"); l.State != mlmsoft.LinkLinked || l.AccountID != acc.AccountID || l.MLMUserID != acc.UserID {
			t.Fatalf("link: %+v, want %+v", l, acc)
		}
		if f.fake.Calls("user/exists") != 1 {
			t.Errorf("user/exists calls = %d, want 1", f.fake.Calls("user/exists"))
		}
	})
	t.Run("user id only: account from user/exists", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, confirm)
		acc := f.fake.AddAccount("ann@example.com", "pw-ann-123", f.root.AccountID)
		f.register("u1", "ann@example.com")
		wantStatus(t, f.serve(f.webhook(`{"email":"ann@example.com","userId":`+strconv.FormatInt(acc.UserID, 10)+`}`)), 200, "user id only")
		if l := f.link("u1"); l.State != mlmsoft.LinkLinked || l.AccountID != acc.AccountID {
			t.Fatalf("link: %+v, want %+v", l, acc)
		}
	})
	t.Run("refuted", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, confirm)
		acc := f.fake.AddAccount("ann@example.com", "pw-ann-123", f.root.AccountID)
		f.register("u1", "ann@example.com")
		f.register("u2", "bob@example.com") // unknown to MLM Soft
		before := f.links()
		wantStatus(t, f.serve(f.webhook(webhookJSON("ann@example.com", acc.UserID+1, acc.AccountID))), 200, "wrong user id")
		wantStatus(t, f.serve(f.webhook(webhookJSON("ann@example.com", acc.UserID, acc.AccountID+1))), 200, "wrong account id")
		wantStatus(t, f.serve(f.webhook(webhookJSON("bob@example.com", 100999, 700999))), 200, "login MLM Soft does not know")
		f.assertUnchanged(before, "unconfirmed webhooks")
	})
	t.Run("MLM Soft down", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, confirm)
		acc := f.fake.AddAccount("ann@example.com", "pw-ann-123", f.root.AccountID)
		f.register("u1", "ann@example.com")
		before := f.links()
		f.fake.SetDown(true)
		rec := f.serve(f.webhook(webhookJSON("ann@example.com", acc.UserID, acc.AccountID)))
		wantStatus(t, rec, http.StatusServiceUnavailable, "MLM Soft down")
		if rec.Header().Get("Retry-After") == "" {
			t.Error("no Retry-After")
		}
		f.assertUnchanged(before, "MLM Soft down")
		// The sender retries once MLM Soft is back (a new timestamp).
		f.fake.SetDown(false)
		f.clock.Advance(time.Second)
		wantStatus(t, f.serve(f.webhook(webhookJSON("ann@example.com", acc.UserID, acc.AccountID))), 200, "retried")
		if l := f.link("u1"); l.State != mlmsoft.LinkLinked {
			t.Fatalf("not linked after the retry: %+v", l)
		}
	})
}

// TestWebhookNoAccountID: without Confirm, a webhook with only the user id
// still needs the account id: it comes from user/exists, else from the
// link's user/create document.
func TestWebhookNoAccountID(t *testing.T) {
	t.Parallel()
	t.Run("from user/exists", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, nil)
		acc := f.fake.AddAccount("ann@example.com", "pw-ann-123", f.root.AccountID)
		f.register("u1", "ann@example.com")
		wantStatus(t, f.serve(f.webhook(`{"email":"ann@example.com","id":`+strconv.FormatInt(acc.UserID, 10)+`}`)), 200, "no account id")
		if l := f.link("u1"); l.State != mlmsoft.LinkLinked || l.AccountID != acc.AccountID || l.MLMUserID != acc.UserID {
			t.Fatalf("link: %+v, want %+v", l, acc)
		}
	})
	t.Run("nowhere yet", func(t *testing.T) {
		t.Parallel()
		f := newHFix(t, nil)
		f.register("u1", "ann@example.com")
		before := f.links()
		wantStatus(t, f.serve(f.webhook(`{"email":"ann@example.com","userId":100555}`)), 200, "no account anywhere")
		f.assertUnchanged(before, "no account anywhere")
	})
}

// TestWebhookFromFake: the fake MLM Soft's own webhook (signed by it) links
// a pending user, through the handler on a real loopback server.
func TestWebhookFromFake(t *testing.T) {
	t.Parallel()
	logs := &hLogBuffer{}
	mux := http.NewServeMux()
	app := httptest.NewServer(mux)
	defer app.Close()
	fake := mlmsofttest.NewServer(mlmsofttest.Options{
		WebhookURL: app.URL + hPrefix + "/webhook", WebhookSecret: []byte(hSecret), Logf: logs.Logf,
		WebhookBody: func(email string, userID, accountID int64) any {
			return map[string]any{"event": "user.created", "user": map[string]any{"email": email, "id": userID}}
		},
	})
	defer fake.Close()
	root := fake.AddAccount("root@example.com", "root-password-1", 0)
	store := newMemStore()
	p, err := mlmsoft.New(store, mlmsoft.Config{
		BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: root.AccountID,
		Linking: mlmsoft.LinkingConfig{DisablePolling: true},
		Webhook: mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{hSecret}, Confirm: true},
		Logger:  hTextLogger(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	mountNetHTTP(mux, p)
	startPlugin(t, p)
	if err := p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: "u1", Email: "ann@example.com"}); err != nil {
		t.Fatal(err)
	}
	l := waitLinked(t, p, "u1")
	acc, _ := fake.Account("ann@example.com")
	if l.LinkedVia != mlmsoft.LinkedViaWebhook || l.AccountID != acc.AccountID || l.MLMUserID != acc.UserID {
		t.Fatalf("link %+v, want linked via webhook to %+v", l, acc)
	}
}
