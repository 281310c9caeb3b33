package api2

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
)

const token = "tok-SECRET-123"

// server runs handler behind the API2 base path and checks every request's
// signature the way the real server does.
func server(t *testing.T, handler func(w http.ResponseWriter, r *http.Request, params phpquery.Map)) *Client {
	t.Helper()
	return serve(t, true, handler)
}

// rawServer is server without the signature check, so the handler decides
// whether and when the body is read.
func rawServer(t *testing.T, handler func(w http.ResponseWriter, r *http.Request)) *Client {
	t.Helper()
	return serve(t, false, func(w http.ResponseWriter, r *http.Request, _ phpquery.Map) { handler(w, r) })
}

func serve(t *testing.T, verify bool, handler func(w http.ResponseWriter, r *http.Request, params phpquery.Map)) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !verify {
			handler(w, r, nil)
			return
		}
		var params phpquery.Map
		var err error
		if r.Method == http.MethodGet {
			params, err = phpquery.ParseQuery(r.URL.RawQuery)
		} else {
			var body []byte
			body, err = io.ReadAll(r.Body)
			if err == nil {
				params, err = phpquery.DecodeJSONObject(body)
			}
		}
		if err != nil || r.Header.Get("Security-Key") != phpquery.SecurityKey(params, token) || r.Header.Get("App-Id") != "1" {
			http.Error(w, "bad signature", http.StatusForbidden)
			return
		}
		handler(w, r, params)
	}))
	t.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL + "/api2/online-office", Token: token, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func envelope(success bool, payload any, errs any) []byte {
	b, _ := json.Marshal(map[string]any{
		"errorCode": 0, "errorMessage": "", "errorExtended": nil,
		"primary":   map[string]any{"success": success, "payload": payload, "message": "", "errors": errs},
		"secondary": []any{}, "locale": "en_US",
	})
	return b
}

func TestTypedCallsAndPayloads(t *testing.T) {
	t.Parallel()
	c := server(t, func(w http.ResponseWriter, r *http.Request, params phpquery.Map) {
		get := func(k string) string { v, _ := params.Get(k); s, _ := v.(string); return s }
		switch r.URL.Path {
		case "/api2/online-office/user/create":
			if get("login") != "jane@example.com" || get("type") != "member" {
				http.Error(w, "bad params", 400)
				return
			}
			w.Write(envelope(true, map[string]any{"queueRequest": true, "documentId": "48213"}, []any{}))
		case "/api2/online-office/document/get":
			w.Write(envelope(true, map[string]any{"document": map[string]any{"id": 48213, "context": map[string]any{"entity": "user", "action": "create"},
				"result": json.RawMessage(envelope(true, map[string]any{"auth": map[string]any{"login": "jane@example.com", "user": map[string]any{"id": 7, "account": map[string]any{"id": 9007}}}}, []any{}))}}, []any{}))
		case "/api2/online-office/user/exists":
			w.Write(envelope(true, map[string]any{"exist": true, "auth": map[string]any{"user": map[string]any{"id": "7", "account": map[string]any{"id": 9007}}}}, []any{}))
		case "/api2/online-office/user/check-auth":
			if get("password") != "p@ss word&=?" {
				w.Write(envelope(false, nil, []any{"Wrong password"}))
				return
			}
			w.Write(envelope(true, map[string]any{"auth": map[string]any{"login": "jane@example.com", "user": map[string]any{"id": 7, "account": map[string]any{"id": 9007, "title": "Jane"}}}}, []any{}))
		case "/api2/online-office/account/volume-change":
			w.Write(envelope(true, map[string]any{}, []any{}))
		}
	})
	ctx := context.Background()
	cr, err := c.CreateUser(ctx, CreateUser{Login: "jane@example.com", Password: "x", SponsorID: 1001, Profile: Profile{FirstName: "Jane"}})
	if err != nil || !cr.Queued || cr.DocumentID != 48213 {
		t.Fatalf("CreateUser = %+v, %v", cr, err)
	}
	doc, err := c.GetDocument(ctx, 48213)
	if err != nil || !doc.Processed || !doc.Success || doc.UserID != 7 || doc.AccountID != 9007 {
		t.Fatalf("GetDocument = %+v, %v", doc, err)
	}
	ex, err := c.UserExists(ctx, "jane@example.com")
	if err != nil || !ex.Exists || ex.UserID != 7 || ex.AccountID != 9007 {
		t.Fatalf("UserExists = %+v, %v", ex, err)
	}
	au, err := c.CheckAuth(ctx, "jane@example.com", "p@ss word&=?")
	if err != nil || au.AccountID != 9007 || au.Title != "Jane" {
		t.Fatalf("CheckAuth = %+v, %v", au, err)
	}
	_, err = c.CheckAuth(ctx, "jane@example.com", "wrong-Passw0rd")
	if KindOf(err) != Business || !strings.Contains(err.Error(), "Wrong password") || strings.Contains(err.Error(), "wrong-Passw0rd") {
		t.Fatalf("CheckAuth with a wrong password = %v", err)
	}
	if _, err := c.ChangeVolume(ctx, VolumeChange{AccountID: 9007, Amount: "0.1", OrderID: "o1", Alias: "PV"}); err != nil {
		t.Fatalf("ChangeVolume = %v", err)
	}
}

func TestDocumentNotProcessedShapes(t *testing.T) {
	t.Parallel()
	for _, result := range []string{`null`, `""`, `[]`, `{}`, `false`} {
		c := server(t, func(w http.ResponseWriter, r *http.Request, _ phpquery.Map) {
			w.Write([]byte(`{"errorCode":0,"primary":{"success":true,"payload":{"document":{"id":5,"result":` + result + `}},"errors":[]}}`))
		})
		d, err := c.GetDocument(context.Background(), 5)
		if err != nil || d.Processed {
			t.Errorf("result %s: %+v, %v", result, d, err)
		}
	}
	c := server(t, func(w http.ResponseWriter, r *http.Request, _ phpquery.Map) {
		w.Write([]byte(`{"errorCode":0,"primary":{"success":true,"payload":{"document":{"id":5}},"errors":[]}}`))
	})
	if d, err := c.GetDocument(context.Background(), 5); err != nil || d.Processed {
		t.Errorf("absent result: %+v, %v", d, err)
	}
	c = server(t, func(w http.ResponseWriter, r *http.Request, _ phpquery.Map) {
		w.Write([]byte(`{"errorCode":0,"primary":{"success":true,"payload":{"document":{"id":5,"result":{"errorCode":0,"primary":{"success":false,"errors":[{"message":"Sponsor not found"}]}}}},"errors":[]}}`))
	})
	if d, err := c.GetDocument(context.Background(), 5); err != nil || !d.Processed || d.Success || d.Message != "Sponsor not found" {
		t.Errorf("failed result: %+v, %v", d, err)
	}
}

func TestBusinessErrorShapes(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		`{"errorCode":0,"primary":{"success":false,"errors":["Login exists"]}}`:                       "Login exists",
		`{"errorCode":0,"primary":{"success":false,"errors":[["Login exists"]]}}`:                     "Login exists",
		`{"errorCode":0,"primary":{"success":false,"errors":[{"message":"Login exists"}]}}`:           "Login exists",
		`{"errorCode":0,"primary":{"success":false,"errors":{"login":[{"message":"Login exists"}]}}}`: "Login exists",
		`{"errorCode":17,"errorMessage":"Login exists","primary":{"success":true}}`:                   "Login exists",
		`{"errorCode":0,"primary":{"success":false,"message":"Login exists","errors":[]}}`:            "Login exists",
	}
	for body, want := range cases {
		c := server(t, func(w http.ResponseWriter, r *http.Request, _ phpquery.Map) { w.Write([]byte(body)) })
		_, err := c.ChangeVolume(context.Background(), VolumeChange{AccountID: 1, Amount: "1", OrderID: "o", Alias: "PV"})
		var e *Error
		if !errors.As(err, &e) || e.Kind != Business || e.Message != want {
			t.Errorf("%s: %v", body, err)
		}
	}
}

// TestFailureClassification checks the rule end to end against a Go
// server: a POST failure is retryable only if MLM Soft cannot have applied
// the request, which needs the body unread; a GET failure always is, unless
// MLM Soft refused it or the configuration is wrong.
func TestFailureClassification(t *testing.T) {
	t.Parallel()
	hijackClose := func(w http.ResponseWriter) {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}
	answer := func(status int, body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	afterReading := func(status int, body string) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			answer(status, body)(w, r)
		}
	}
	cases := []struct {
		name      string
		handler   func(w http.ResponseWriter, r *http.Request)
		post, get Kind
		retryWait time.Duration
	}{
		{"success before reading", answer(200, okEnv), success, success, 0},
		{"success after reading", afterReading(200, okEnv), success, success, 0},
		{"500 before reading", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }, Retryable, Retryable, 0},
		{"503 with Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(503)
		}, Retryable, Retryable, 7 * time.Second},
		{"429 with Retry-After", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(429)
		}, Retryable, Retryable, 3 * time.Second},
		{"non-JSON before reading", answer(200, "<html>oops</html>"), Retryable, Retryable, 0},
		{"non-JSON after reading", afterReading(200, "<html>oops</html>"), Ambiguous, Retryable, 0},
		{"502 HTML after reading", afterReading(502, gatewayHTML), Ambiguous, Retryable, 0},
		{"504 HTML after reading", afterReading(504, gatewayHTML), Ambiguous, Retryable, 0},
		{"500 envelope after reading", afterReading(500, serverEnv), Ambiguous, Retryable, 0},
		{"429 HTML after reading", afterReading(429, gatewayHTML), Ambiguous, Retryable, 0},
		{"429 envelope after reading", afterReading(429, tooManyEnv), Retryable, Retryable, 0},
		{"400 envelope after reading", afterReading(400, badJSONEnv), Business, Business, 0},
		{"400 envelope before reading", answer(400, badJSONEnv), Retryable, Business, 0},
		{"200 failed envelope after reading", afterReading(200, failedEnv), Business, Business, 0},
		{"401 HTML", answer(401, gatewayHTML), Misconfigured, Misconfigured, 0},
		{"403 envelope after reading", afterReading(403, fakeForbidden), Misconfigured, Misconfigured, 0},
		{"404 HTML", answer(404, gatewayHTML), Misconfigured, Misconfigured, 0},
		{"404 envelope after reading", afterReading(404, notFoundEnv), Misconfigured, Misconfigured, 0},
		{"200 envelope naming the token", afterReading(200, tokenEnv), Misconfigured, Misconfigured, 0},
		{"302 before reading", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/api2/online-office/", http.StatusFound)
		}, Misconfigured, Misconfigured, 0},
		// Go's server does not notice a client leaving while the body is
		// unread, so the hang is bounded.
		{"hang before reading", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
		}, Retryable, Retryable, 0},
		{"drop before reading", func(w http.ResponseWriter, r *http.Request) { hijackClose(w) }, Retryable, Retryable, 0},
		{"read then drop", func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			hijackClose(w)
		}, Ambiguous, Retryable, 0},
		{"read then hang", func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			<-r.Context().Done()
		}, Ambiguous, Retryable, 0},
		{"cut answer after reading", func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, okEnv[:30])
			w.(http.Flusher).Flush()
			hijackClose(w)
		}, Ambiguous, Retryable, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := rawServer(t, tc.handler)
			_, err := c.ChangeVolume(context.Background(), VolumeChange{AccountID: 1, Amount: "1", OrderID: "o", Alias: "PV"})
			if KindOf(err) != tc.post {
				t.Fatalf("POST: got %v (kind %v), want kind %v", err, KindOf(err), tc.post)
			}
			checkErrorText(t, err, EndpointVolumeChange)
			var e *Error
			if errors.As(err, &e) && e.RetryAfter != tc.retryWait {
				t.Errorf("RetryAfter = %v, want %v", e.RetryAfter, tc.retryWait)
			}
			_, err = c.GetDocument(context.Background(), 1)
			if KindOf(err) != tc.get {
				t.Errorf("GET: got %v (kind %v), want kind %v", err, KindOf(err), tc.get)
			}
			checkErrorText(t, err, EndpointDocumentGet)
		})
	}
}

// checkErrorText checks that err, if any, names the endpoint once, first,
// and says its kind in words.
func checkErrorText(t *testing.T, err error, endpoint string) {
	t.Helper()
	if err == nil {
		return
	}
	text := err.Error()
	rest, ok := strings.CutPrefix(text, endpoint+": ")
	if !ok || strings.HasPrefix(rest, endpoint) {
		t.Errorf("%q does not start with %q exactly once", text, endpoint)
	}
	words := map[Kind]string{
		Retryable:     "not processed",
		Ambiguous:     "no usable answer after the request was sent (it may have been applied)",
		Business:      "refused by MLM Soft",
		Misconfigured: "MLM Soft refused the credentials or the path",
	}[KindOf(err)]
	if words == "" || !strings.HasPrefix(rest, words) {
		t.Errorf("%q does not say %q", text, words)
	}
}

// A refused connection: nothing can have reached MLM Soft.
func TestConnectionRefusedIsRetryable(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := New(Config{BaseURL: "http://" + addr + "/api2/online-office/", Token: token, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ChangeVolume(context.Background(), VolumeChange{AccountID: 1, Amount: "1", OrderID: "o", Alias: "PV"})
	if KindOf(err) != Retryable {
		t.Fatalf("got %v", err)
	}
}

func TestNoSecretsInErrors(t *testing.T) {
	t.Parallel()
	c := rawServer(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	_, err := c.CheckAuth(context.Background(), "jane@example.com", "Hunter2-PASSWORD")
	if err == nil {
		t.Fatal("want a timeout")
	}
	key := phpquery.SecurityKey(phpquery.Map{{Key: "login", Value: "jane@example.com"}, {Key: "type", Value: "member"}, {Key: "password", Value: "Hunter2-PASSWORD"}}, token)
	for _, secret := range []string{"Hunter2-PASSWORD", token, key, "password="} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q contains %q", err, secret)
		}
	}
}

func TestHostClientIsNotChanged(t *testing.T) {
	t.Parallel()
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	if _, err := New(Config{BaseURL: "https://x.example/api2/online-office/", Token: "t", HTTPClient: hc}); err != nil {
		t.Fatal(err)
	}
	if tr.ExpectContinueTimeout != 0 || hc.Transport != tr || hc.CheckRedirect != nil {
		t.Fatal("the host's client or transport was modified")
	}
	for _, bad := range []Config{{BaseURL: "ftp://x", Token: "t"}, {BaseURL: "/relative", Token: "t"}, {BaseURL: "https://x.example/"}} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

func TestRetryAfterParsing(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]time.Duration{"": 0, "12": 12 * time.Second, "0": 0, "-3": 0, "soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second, now.Add(-time.Hour).Format(http.TimeFormat): 0}
	for in, want := range cases {
		if got := retryAfter(in, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}
