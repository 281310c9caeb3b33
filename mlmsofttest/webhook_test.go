package mlmsofttest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
)

type hookCall struct {
	header http.Header
	body   []byte
}

// hookReceiver records webhook calls and fails the first failFirst of them.
func hookReceiver(t *testing.T, failFirst int32) (*httptest.Server, <-chan hookCall) {
	calls := make(chan hookCall, 16)
	var n atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		calls <- hookCall{r.Header.Clone(), b}
		if n.Add(1) <= failFirst {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hs.Close)
	return hs, calls
}

func nextCall(t *testing.T, calls <-chan hookCall) hookCall {
	t.Helper()
	select {
	case c := <-calls:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no webhook call")
		return hookCall{}
	}
}

func TestWebhookSignedAndRetried(t *testing.T) {
	t.Parallel()
	hs, calls := hookReceiver(t, 1)
	secret := []byte("hook-secret")
	clock := NewClock(time.Time{})
	s, c := newTestServer(t, Options{Clock: clock, DocumentDelay: time.Minute, WebhookURL: hs.URL, WebhookSecret: secret})
	root := s.AddAccount("root@example.com", "pw", 0)
	mustOK(t, c.post("user/create", createParams("jane@example.com", "pw", root.AccountID)))

	select {
	case <-calls:
		t.Fatal("webhook before the document was processed")
	case <-time.After(50 * time.Millisecond):
	}
	clock.Advance(time.Minute)
	s.ProcessDue()
	first, second := nextCall(t, calls), nextCall(t, calls) // the first got a 502
	if string(first.body) != string(second.body) {
		t.Errorf("retry sent another body: %s vs %s", first.body, second.body)
	}
	for _, call := range []hookCall{first, second} {
		err := whsig.Verify([][]byte{secret}, call.header.Get(whsig.TimestampHeader), call.header.Get(whsig.SignatureHeader), call.body, clock.Now(), time.Minute)
		if err != nil {
			t.Errorf("signature: %v", err)
		}
		if err := whsig.Verify([][]byte{[]byte("other")}, call.header.Get(whsig.TimestampHeader), call.header.Get(whsig.SignatureHeader), call.body, clock.Now(), time.Minute); err == nil {
			t.Error("signature verified with the wrong secret")
		}
		if ct := call.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
	}
	var got struct {
		Email     string `json:"email"`
		UserID    int64  `json:"userId"`
		AccountID int64  `json:"accountId"`
	}
	if err := json.Unmarshal(second.body, &got); err != nil {
		t.Fatal(err)
	}
	acc, _ := s.Account("jane@example.com")
	if got.Email != "jane@example.com" || got.UserID != acc.UserID || got.AccountID != acc.AccountID {
		t.Errorf("webhook body %s, account %+v", second.body, acc)
	}
	select {
	case call := <-calls:
		t.Errorf("extra webhook call after success: %s", call.body)
	case <-time.After(150 * time.Millisecond):
	}
}

func TestWebhookCustomBodyUnsigned(t *testing.T) {
	t.Parallel()
	hs, calls := hookReceiver(t, 0)
	s, c := newTestServer(t, Options{Synchronous: true, WebhookURL: hs.URL,
		WebhookBody: func(email string, userID, accountID int64) any {
			return map[string]any{"user_email": email, "id": userID}
		}})
	root := s.AddAccount("root@example.com", "pw", 0)
	mustOK(t, c.post("user/create", createParams("sync@example.com", "pw", root.AccountID)))
	call := nextCall(t, calls)
	acc, _ := s.Account("sync@example.com")
	var got map[string]any
	if err := json.Unmarshal(call.body, &got); err != nil {
		t.Fatal(err)
	}
	if got["user_email"] != "sync@example.com" || got["id"] != float64(acc.UserID) || len(got) != 2 {
		t.Errorf("body %s", call.body)
	}
	if call.header.Get(whsig.SignatureHeader) != "" || call.header.Get(whsig.TimestampHeader) != "" {
		t.Error("signed without a secret")
	}
}

func TestWebhookGivesUp(t *testing.T) {
	t.Parallel()
	hs, calls := hookReceiver(t, 100)
	s, c := newTestServer(t, Options{WebhookURL: hs.URL, WebhookSecret: []byte("k")})
	root := s.AddAccount("root@example.com", "pw", 0)
	mustOK(t, c.post("user/create", createParams("a@example.com", "pw", root.AccountID)))
	for range webhookAttempts {
		nextCall(t, calls)
	}
	select {
	case <-calls:
		t.Errorf("more than %d attempts", webhookAttempts)
	case <-time.After(20 * webhookBackoff): // a sixth attempt would come 16 backoffs after the fifth
	}
}
