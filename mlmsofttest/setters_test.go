package mlmsofttest

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
)

// TestSetToken plays a wrong-token period that ends: the token is rotated
// on the server, the client's requests are refused with 403 and change
// nothing, then the client follows and is served again.
func TestSetToken(t *testing.T) {
	t.Parallel()
	logs := newLogRecorder(t)
	s, c := newTestServer(t, Options{Logf: logs.Logf})
	root := s.AddAccount("root@example.com", "pw", 0)
	mustOK(t, c.post("account/volume-change", volumeParams(root.AccountID, "1", "o-1", "PV")))

	s.SetToken("rotated-token")
	for _, a := range []answer{
		c.post("account/volume-change", volumeParams(root.AccountID, "2", "o-2", "PV")),
		c.get("user/exists", loginParams("root@example.com")),
	} {
		if a.status != http.StatusForbidden || a.env.ErrorMessage != msgBadKey {
			t.Errorf("old token after SetToken: status %d body %s", a.status, a.raw)
		}
	}
	c.token = "rotated-token"
	mustOK(t, c.post("account/volume-change", volumeParams(root.AccountID, "3", "o-3", "PV")))

	s.SetToken("") // back to DefaultToken
	c.token = DefaultToken
	mustOK(t, c.get("user/exists", loginParams("root@example.com")))
	if l := s.Ledger(root.AccountID); len(l) != 2 || l[1].Amount != "3" {
		t.Errorf("ledger %+v", l)
	}

	s.SetAppID("42")
	if a := c.get("user/exists", loginParams("root@example.com")); a.status != http.StatusForbidden || a.env.ErrorMessage != msgBadAppID {
		t.Errorf("old App-Id after SetAppID: status %d body %s", a.status, a.raw)
	}
	c.appID = "42"
	mustOK(t, c.get("user/exists", loginParams("root@example.com")))
	s.SetAppID("")
	c.appID = DefaultAppID
	mustOK(t, c.get("user/exists", loginParams("root@example.com")))
	for _, secret := range []string{"rotated-token", DefaultToken} {
		if strings.Contains(logs.all(), secret) {
			t.Errorf("a log line holds the token %q", secret)
		}
	}
}

// TestSettersConcurrent runs the setters against requests in flight (for
// the race detector): every answer is either served or refused, never
// anything else.
func TestSettersConcurrent(t *testing.T) {
	t.Parallel()
	s, c := newTestServer(t, Options{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 20 {
			if i%2 == 0 {
				s.SetToken("other")
				s.SetAppID("9")
			} else {
				s.SetToken(DefaultToken)
				s.SetAppID(DefaultAppID)
			}
			s.SetWebhook("http://127.0.0.1:1/hook", []byte("k"))
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 10 {
				a := c.get("user/exists", loginParams("a@example.com"))
				if a.status != http.StatusOK && a.status != http.StatusForbidden {
					t.Errorf("status %d", a.status)
				}
			}
		})
	}
	wg.Wait()
}

// TestSetWebhook points the webhook at a receiver after the start, changes
// its secret, then turns it off.
func TestSetWebhook(t *testing.T) {
	t.Parallel()
	hs, calls := hookReceiver(t, 0)
	clock := NewClock(time.Time{})
	s, c := newTestServer(t, Options{Clock: clock, Synchronous: true})
	root := s.AddAccount("root@example.com", "pw", 0)

	mustOK(t, c.post("user/create", createParams("before@example.com", "pw", root.AccountID)))
	s.SetWebhook(hs.URL, []byte("first"))
	mustOK(t, c.post("user/create", createParams("first@example.com", "pw", root.AccountID)))
	call := nextCall(t, calls)
	if err := whsig.Verify([][]byte{[]byte("first")}, call.header.Get(whsig.TimestampHeader), call.header.Get(whsig.SignatureHeader), call.body, clock.Now(), time.Minute); err != nil {
		t.Errorf("first secret: %v (body %s)", err, call.body)
	}
	if !strings.Contains(string(call.body), "first@example.com") {
		t.Errorf("body %s", call.body)
	}

	s.SetWebhook(hs.URL, nil)
	mustOK(t, c.post("user/create", createParams("unsigned@example.com", "pw", root.AccountID)))
	call = nextCall(t, calls)
	if call.header.Get(whsig.SignatureHeader) != "" || !strings.Contains(string(call.body), "unsigned@example.com") {
		t.Errorf("unsigned webhook: %v %s", call.header, call.body)
	}

	s.SetWebhook("", nil)
	mustOK(t, c.post("user/create", createParams("after@example.com", "pw", root.AccountID)))
	select {
	case call := <-calls:
		t.Errorf("webhook sent after SetWebhook(\"\"): %s", call.body)
	case <-time.After(100 * time.Millisecond):
	}
}
