package api2

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// fakeClient returns a client of srv signed with token.
func fakeClient(t *testing.T, srv *mlmsofttest.Server, token, appID string) *Client {
	t.Helper()
	c, err := New(Config{BaseURL: srv.URL, Token: token, AppID: appID, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFakeRefusesCredentials: a wrong token or App-Id is the integration's
// fault, not the request's, and nothing is applied.
func TestFakeRefusesCredentials(t *testing.T) {
	t.Parallel()
	srv := mlmsofttest.NewServer(mlmsofttest.Options{Token: "other"})
	t.Cleanup(srv.Close)
	root := srv.AddAccount("root@example.com", "pw", 0)
	ctx := context.Background()
	for _, tc := range []struct {
		name, token, appID, want string
	}{
		{"token", token, "", "Security key is invalid"},
		{"App-Id", "other", "2", "App-Id is invalid"},
	} {
		c := fakeClient(t, srv, tc.token, tc.appID)
		_, err := c.ChangeVolume(ctx, VolumeChange{AccountID: root.AccountID, Amount: "1", OrderID: "o", Alias: "PV"})
		var e *Error
		if KindOf(err) != Misconfigured || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: POST: %v", tc.name, err)
		}
		if e = err.(*Error); e.Status != 403 || e.Code != 403 || e.Message != tc.want {
			t.Errorf("%s: %+v", tc.name, e)
		}
		checkErrorText(t, err, EndpointVolumeChange)
		if _, err := c.UserExists(ctx, "root@example.com"); KindOf(err) != Misconfigured || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: GET: %v", tc.name, err)
		}
		if err := c.Probe(ctx); KindOf(err) != Misconfigured || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Probe: %v", tc.name, err)
		}
	}
	if got := srv.AllLedger(); len(got) != 0 {
		t.Fatalf("applied %v", got)
	}
	c := fakeClient(t, srv, "other", "")
	if _, err := c.ChangeVolume(ctx, VolumeChange{AccountID: root.AccountID, Amount: "1", OrderID: "o", Alias: "PV"}); err != nil {
		t.Fatalf("with the right token: %v", err)
	}
	if err := c.Probe(ctx); err != nil {
		t.Fatalf("Probe with the right token: %v", err)
	}
}

// TestFakeAnswers runs the fake's other answers through the rule.
func TestFakeAnswers(t *testing.T) {
	t.Parallel()
	srv := mlmsofttest.NewServer(mlmsofttest.Options{})
	t.Cleanup(srv.Close)
	root := srv.AddAccount("root@example.com", "pw", 0)
	c := fakeClient(t, srv, mlmsofttest.DefaultToken, "")
	ctx := context.Background()
	change := VolumeChange{AccountID: root.AccountID, Amount: "1", OrderID: "o", Alias: "PV"}

	// An unknown endpoint is a wrong base URL.
	if _, err := c.Call(ctx, http.MethodPost, "user/nope", nil); KindOf(err) != Misconfigured || !strings.Contains(err.Error(), "Not found") {
		t.Errorf("unknown endpoint: %v", err)
	}
	// A refusal in a 405 envelope.
	if _, err := c.Call(ctx, http.MethodGet, EndpointVolumeChange, nil); KindOf(err) != Business || !strings.Contains(err.Error(), "Method not allowed") {
		t.Errorf("wrong method: %v", err)
	}
	// Business refusal.
	if _, err := c.ChangeVolume(ctx, VolumeChange{AccountID: 1, Amount: "1", OrderID: "o", Alias: "PV"}); KindOf(err) != Business {
		t.Errorf("unknown account: %v", err)
	}
	// Down: 503 before the body is read.
	srv.SetDown(true)
	if _, err := c.ChangeVolume(ctx, change); KindOf(err) != Retryable {
		t.Errorf("down: %v", err)
	}
	srv.SetDown(false)
	// Server errors and resets before the body is read.
	srv.SetFaults(EndpointVolumeChange, mlmsofttest.Faults{ServerErrorRate: 0.5, ResetRate: 0.5})
	for range 6 {
		if _, err := c.ChangeVolume(ctx, change); KindOf(err) != Retryable {
			t.Errorf("fault before the body: %v", err)
		}
	}
	// Applied, then the connection dropped.
	srv.SetFaults(EndpointVolumeChange, mlmsofttest.Faults{ApplyThenDropRate: 1})
	if _, err := c.ChangeVolume(ctx, change); KindOf(err) != Ambiguous {
		t.Errorf("apply then drop: %v", err)
	}
	srv.SetFaults(EndpointVolumeChange, mlmsofttest.Faults{})
	if got := srv.Ledger(root.AccountID); len(got) != 1 {
		t.Fatalf("ledger %v, want the one change applied before the drop", got)
	}
}

// TestRedirectsAreNotFollowed: a redirect means the base URL is wrong; a
// POST's body goes out once, to the configured URL only, whatever the code.
func TestRedirectsAreNotFollowed(t *testing.T) {
	t.Parallel()
	for _, code := range []int{301, 302, 303, 307, 308} {
		for _, readFirst := range []bool{false, true} {
			var bodies, moved atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/moved/") {
					moved.Add(1)
				}
				if readFirst || moved.Load() > 0 {
					if b, _ := io.ReadAll(r.Body); len(b) > 0 {
						bodies.Add(1)
					}
				}
				if moved.Load() > 0 {
					io.WriteString(w, okEnv)
					return
				}
				http.Redirect(w, r, "/moved/account/volume-change?x=1#f", code)
			}))
			c, err := New(Config{BaseURL: srv.URL + "/api2/online-office/", Token: token, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.ChangeVolume(context.Background(), VolumeChange{AccountID: 1, Amount: "1", OrderID: "o", Alias: "PV"})
			want := "redirected to " + srv.URL + "/moved/account/volume-change"
			var e *Error
			if KindOf(err) != Misconfigured || !strings.HasSuffix(err.Error(), want) {
				t.Errorf("%d (read first: %v): %v", code, readFirst, err)
			} else if e = err.(*Error); e.Status != code || e.Message != want {
				t.Errorf("%d: %+v", code, e)
			}
			wantBodies := int32(0)
			if readFirst {
				wantBodies = 1
			}
			if bodies.Load() != wantBodies || moved.Load() != 0 {
				t.Errorf("%d (read first: %v): %d bodies received, %d requests followed the redirect", code, readFirst, bodies.Load(), moved.Load())
			}
			srv.Close()
		}
	}
}

// TestNoSecretsInRedirectsOrEchoes: a redirect's Location may repeat a
// GET's query (login and password), and a refusal may quote the key.
func TestNoSecretsInRedirectsOrEchoes(t *testing.T) {
	t.Parallel()
	const password = "Hunter2 PASSWORD&="
	var key string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			http.Redirect(w, r, "https://user:pw@mlm.example/api2/online-office/user/check-auth?"+r.URL.RawQuery, http.StatusMovedPermanently)
			return
		}
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"errorCode":403,"errorMessage":"Security key `+r.Header.Get("Security-Key")+` does not match token `+token+`","primary":null}`)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL + "/api2/online-office/", Token: token, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CheckAuth(context.Background(), "jane@example.com", password)
	if KindOf(err) != Misconfigured || !strings.HasSuffix(err.Error(), "redirected to https://mlm.example/api2/online-office/user/check-auth") {
		t.Fatalf("redirect: %v", err)
	}
	query := phpquery.BuildQuery(phpquery.Map{{Key: "login", Value: "jane@example.com"}, {Key: "type", Value: "member"}, {Key: "password", Value: password}})
	key = phpquery.SecurityKey(phpquery.Map{{Key: "login", Value: "jane@example.com"}, {Key: "type", Value: "member"}, {Key: "password", Value: password}}, token)
	for _, secret := range []string{password, "Hunter2", query, key, token, "password=", "jane", "user:pw"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%q contains %q", err, secret)
		}
	}
	_, err = c.CreateUser(context.Background(), CreateUser{Login: "jane@example.com", Password: password, SponsorID: 1})
	if KindOf(err) != Misconfigured || !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("echo: %v", err)
	}
	for _, secret := range []string{token, "Hunter2"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%q contains %q", err, secret)
		}
	}
	if e := err.(*Error); strings.Contains(e.Message, token) {
		t.Errorf("Message %q contains the token", e.Message)
	}
}

func TestProbe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   Kind
	}{
		{"absent", 200, `{"errorCode":0,"primary":{"success":true,"payload":{"exist":false},"errors":[]}}`, success},
		{"present", 200, `{"errorCode":0,"primary":{"success":true,"payload":{"exist":true},"errors":[]}}`, success},
		{"odd payload", 200, `{"errorCode":0,"primary":{"success":true,"payload":"?","errors":[]}}`, success},
		{"refused", 200, failedEnv, Business},
		{"wrong key", 403, fakeForbidden, Misconfigured},
		{"wrong path", 404, gatewayHTML, Misconfigured},
		{"gateway", 502, gatewayHTML, Retryable},
	} {
		c := server(t, func(w http.ResponseWriter, r *http.Request, params phpquery.Map) {
			login, _ := params.Get("login")
			typ, _ := params.Get("type")
			if r.Method != http.MethodGet || r.URL.Path != "/api2/online-office/user/exists" || login != "mlmsoft-probe@example.invalid" || typ != "member" {
				t.Errorf("probe sent %s %s %v", r.Method, r.URL.Path, params)
			}
			w.WriteHeader(tc.status)
			io.WriteString(w, tc.body)
		})
		if err := c.Probe(context.Background()); KindOf(err) != tc.want {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}
