package mlmsoft

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
)

// FuzzWebhook drives the webhook's verifier and parser with arbitrary
// headers and bodies. `go test` runs it over the seed corpus below (and any
// files under testdata/fuzz/FuzzWebhook); `go test -fuzz FuzzWebhook -run
// '^$'` explores further. Properties:
//   - nothing panics;
//   - a path token passes only when it is the configured one;
//   - a signature passes only when it is the HMAC of this body and
//     timestamp under the secret, with the timestamp inside the window;
//   - the genuine signature of any body at now always passes;
//   - a parsed webhook has a normalised valid email and a positive id, and
//     parsing is deterministic (map order never changes the outcome).
func FuzzWebhook(f *testing.F) {
	const secret = "fuzz-secret-0123456789"
	const token = "fuzz-token-0123456789"
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	sign := func(body string) string { return whsig.Sign([]byte(secret), now.Unix(), []byte(body)) }
	seeds := []struct{ ct, body, ts, sig, token string }{
		{"application/json", `{"email":"ann@example.com","userId":100001,"accountId":700001}`, ts, "", token},
		{"application/json", `{"email":"ann@example.com","userId":"100001"}`, ts, "sha256=00", token},
		{"application/json; charset=utf-8", `{"user":{"email":"A@B.co","id":1,"account":{"id":2}}}`, ts, "", ""},
		{"", `{"login":"a@b.co","id":3}`, strconv.FormatInt(now.Unix()-600, 10), "", "x"},
		{"application/x-www-form-urlencoded", "email=a%40b.co&user_id=1&account_id=2", ts, "", token},
		{"application/x-www-form-urlencoded", "user%5Bemail%5D=a%40b.co&user%5Bid%5D=1", ts, "", token},
		{"application/json", `{"email":"a@b.co","userId":1,"userId":2}`, ts, "", token},
		{"application/json", `{"email":"a@b.co","userId":1,"user_id":2}`, ts, "", token},
		{"application/json", `{"email":"a@b.co","userId":1.5e3}`, ts, "", token},
		{"application/json", `{"email":null,"userId":-1}`, ts, "", token},
		{"application/json", `[[[[[[[[[[[[[[[[[[[[{}]]]]]]]]]]]]]]]]]]]]`, ts, "", token},
		{"application/json", `{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":{}}}}}}}}}}}}}}}}}}`, ts, "", token},
		{"application/json", `{"email":"a@b.co","userId":1} trailing`, ts, "", token},
		{"text/plain", `email=a@b.co`, ts, "", token},
		{"application/json", "{\"email\":\"\xff@b.co\",\"userId\":1}", "", "", ""},
		{"application/x-www-form-urlencoded", "email=%zz", "abc", "sha256=zz", token},
	}
	for _, s := range seeds {
		sig := s.sig
		if sig == "" {
			sig = sign(s.body)
		}
		f.Add(s.ct, []byte(s.body), s.ts, sig, s.token)
	}
	cfg := WebhookConfig{Enabled: true, Secrets: []string{secret}, PathTokens: []string{token}}
	if err := cfg.setDefaults(); err != nil {
		f.Fatal(err)
	}
	auth := newWebhookAuth(cfg)

	f.Fuzz(func(t *testing.T, contentType string, body []byte, tsHeader, sigHeader, pathToken string) {
		if err := auth.checkToken(pathToken); (err == nil) != (pathToken == token) {
			t.Fatalf("checkToken(%q) = %v", pathToken, err)
		}

		h := http.Header{}
		h.Set(cfg.TimestampHeader, tsHeader)
		h.Set(cfg.SignatureHeader, sigHeader)
		if err := auth.checkSignature(h, body, now); err == nil {
			tsv, perr := strconv.ParseInt(strings.TrimSpace(h.Get(cfg.TimestampHeader)), 10, 64)
			if perr != nil {
				t.Fatalf("accepted an unparsable timestamp %q", tsHeader)
			}
			if d := now.Sub(time.Unix(tsv, 0)); d > cfg.ReplayWindow || d < -cfg.ReplayWindow {
				t.Fatalf("accepted a timestamp %s from now", d)
			}
			want := whsig.Sign([]byte(secret), tsv, body)
			found := false
			for _, part := range strings.Split(h.Get(cfg.SignatureHeader), ",") {
				if strings.EqualFold(strings.TrimSpace(part), want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("accepted signature %q that is not the body's HMAC", sigHeader)
			}
		}
		good := http.Header{}
		good.Set(cfg.TimestampHeader, strconv.FormatInt(now.Unix(), 10))
		good.Set(cfg.SignatureHeader, whsig.Sign([]byte(secret), now.Unix(), body))
		if err := auth.checkSignature(good, body, now); err != nil {
			t.Fatalf("the genuine signature was refused: %v", err)
		}

		ev, err := parseWebhook(contentType, body, cfg)
		ev2, err2 := parseWebhook(contentType, body, cfg)
		if (err == nil) != (err2 == nil) || ev != ev2 {
			t.Fatalf("parse is not deterministic: %+v/%v then %+v/%v", ev, err, ev2, err2)
		}
		if err != nil {
			if ev != (webhookEvent{}) {
				t.Fatalf("error %v with a non-zero event %+v", err, ev)
			}
			return
		}
		if norm, nerr := NormalizeEmail(ev.Email); nerr != nil || norm != ev.Email {
			t.Fatalf("parsed email %q is not normalised and valid (%v)", ev.Email, nerr)
		}
		if ev.UserID < 0 || ev.AccountID < 0 || (ev.UserID == 0 && ev.AccountID == 0) {
			t.Fatalf("parsed ids %+v", ev)
		}
	})
}

func TestParseWebhookDepthLimit(t *testing.T) {
	t.Parallel()
	cfg := WebhookConfig{Enabled: true, Secrets: []string{"0123456789abcdef"}}
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	deep := strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1)
	if _, err := parseWebhook("application/json", []byte(deep), cfg); err == nil || !strings.Contains(err.Error(), "deeply") {
		t.Errorf("deep JSON: err = %v", err)
	}
	arr := `{"email":"a@b.co","userId":1,"x":` + strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1) + `}`
	if _, err := parseWebhook("application/json", []byte(arr), cfg); err == nil {
		t.Errorf("deep array accepted")
	}
}
