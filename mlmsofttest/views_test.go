package mlmsofttest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// viewGet fetches a view of s (path relative to the server's root).
func viewGet(t *testing.T, root, path string) (int, http.Header, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(root + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func serverRoot(s *Server) string { return strings.TrimSuffix(s.URL, BasePath) }

// sameLedger compares ledgers field by field (At with Equal: a time read
// back from JSON has another representation of UTC).
func sameLedger(a, b []LedgerEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Seq != y.Seq || x.AccountID != y.AccountID || x.Alias != y.Alias || x.Amount != y.Amount || x.OrderID != y.OrderID || !x.At.Equal(y.At) {
			return false
		}
	}
	return true
}

func TestViews(t *testing.T) {
	t.Parallel()
	clock := NewClock(time.Time{})
	s, c := newTestServer(t, Options{Clock: clock, DocumentDelay: time.Minute, Token: "view-token", WebhookSecret: []byte("hook-secret")})
	c.token = "view-token"
	root := s.AddAccount("<script>@x.com", "root-password", 0)
	a := c.post("user/create", createParams(`o"neil&co@example.com`, "jane-password", root.AccountID))
	mustOK(t, a)
	doc1 := num(t, dig(a.payload(t), "documentId"))
	clock.Advance(time.Minute)
	s.ProcessDue()
	jane, _ := s.Account(`o"neil&co@example.com`)
	a = c.post("user/create", createParams("pending@example.com", "pending-password", jane.AccountID))
	doc2 := num(t, dig(a.payload(t), "documentId"))
	mustOK(t, c.post("account/volume-change", volumeParams(root.AccountID, "0.10", "<b>ord-1</b>", "PV")))
	mustOK(t, c.post("account/volume-change", volumeParams(jane.AccountID, "-3.75", "ord-2", "Status")))
	base := serverRoot(s)

	status, h, page := viewGet(t, base, ViewsPath)
	if status != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %d %v", status, h)
	}
	for _, want := range []string{
		"&lt;script&gt;@x.com", "o&#34;neil&amp;co@example.com", "&lt;b&gt;ord-1&lt;/b&gt;",
		strconv.FormatInt(root.AccountID, 10), strconv.FormatInt(jane.UserID, 10), strconv.FormatInt(doc1, 10), strconv.FormatInt(doc2, 10),
		"user/create", ">0.10<", ">-3.75<", "Status", "account/volume-change</td><td class=\"n\">2<", "user/create</td><td class=\"n\">2<",
		"pending: pending@example.com", "2026-01-01 12:01:00.000 UTC",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for _, never := range []string{"<script", "<b>", "root-password", "jane-password", "pending-password", "view-token", "hook-secret", "Security-Key"} {
		if strings.Contains(page, never) {
			t.Errorf("page holds %q", never)
		}
	}

	status, _, body := viewGet(t, base, ViewsPath+"accounts")
	var accounts []Account
	if err := json.Unmarshal([]byte(body), &accounts); err != nil || status != http.StatusOK {
		t.Fatalf("accounts: %d %v %s", status, err, body)
	}
	if len(accounts) != 2 || accounts[0] != root || accounts[1] != jane {
		t.Errorf("accounts %+v", accounts)
	}

	status, _, body = viewGet(t, base, ViewsPath+"documents")
	var docs []struct {
		ID        int64           `json:"id"`
		Entity    string          `json:"entity"`
		Action    string          `json:"action"`
		Due       time.Time       `json:"due"`
		Processed bool            `json:"processed"`
		Summary   string          `json:"summary"`
		Result    json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &docs); err != nil || status != http.StatusOK || len(docs) != 2 {
		t.Fatalf("documents: %d %v %s", status, err, body)
	}
	if d := docs[0]; d.ID != doc1 || d.Entity != "user" || d.Action != "create" || !d.Processed ||
		!strings.Contains(string(d.Result), `"success":true`) || !strings.Contains(d.Summary, strconv.FormatInt(jane.AccountID, 10)) {
		t.Errorf("processed document %+v", d)
	}
	if d := docs[1]; d.ID != doc2 || d.Processed || string(d.Result) != "null" || !d.Due.Equal(clock.Now().Add(time.Minute)) {
		t.Errorf("pending document %+v", d)
	}
	for _, never := range []string{"password", "view-token"} {
		if strings.Contains(body, never) {
			t.Errorf("documents hold %q", never)
		}
	}

	var ledger []LedgerEntry
	status, _, body = viewGet(t, base, ViewsPath+"ledger")
	if err := json.Unmarshal([]byte(body), &ledger); err != nil || status != http.StatusOK || !sameLedger(ledger, s.AllLedger()) {
		t.Errorf("ledger: %d %v %s", status, err, body)
	}
	status, _, body = viewGet(t, base, ViewsPath+"ledger?account="+strconv.FormatInt(jane.AccountID, 10))
	if err := json.Unmarshal([]byte(body), &ledger); err != nil || status != http.StatusOK || len(ledger) != 1 || ledger[0].Amount != "-3.75" {
		t.Errorf("ledger of one account: %d %v %s", status, err, body)
	}
	if !strings.Contains(body, `"amount":"-3.75"`) {
		t.Errorf("amount literal not kept: %s", body)
	}
	status, _, body = viewGet(t, base, ViewsPath+"ledger?account=999")
	if status != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Errorf("ledger of an unknown account: %d %s", status, body)
	}

	calls := s.Calls("account/volume-change")
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, ViewsPath + "ledger?account=abc", http.StatusBadRequest},
		{http.MethodGet, ViewsPath + "nothing", http.StatusNotFound},
		{http.MethodGet, strings.TrimSuffix(ViewsPath, "/"), http.StatusMovedPermanently},
		{http.MethodPost, ViewsPath, http.StatusMethodNotAllowed},
		{http.MethodPost, ViewsPath + "inject", http.StatusNotFound}, // Control is off
		{http.MethodHead, ViewsPath + "accounts", http.StatusOK},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, nil)
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, resp.StatusCode, tc.status)
		}
		if tc.status == http.StatusMovedPermanently && resp.Header.Get("Location") != ViewsPath {
			t.Errorf("redirect to %q", resp.Header.Get("Location"))
		}
	}
	if s.Calls("account/volume-change") != calls || s.Calls(ViewsPath) != 0 || s.Calls("accounts") != 0 {
		t.Error("views counted as API calls")
	}
}

func TestViewsMounted(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{})
	defer s.Close()
	acc := s.AddAccount("a@example.com", "pw", 0)
	mux := http.NewServeMux()
	mux.Handle("/mlm/", s.Handler())
	hs := httptest.NewServer(mux)
	defer hs.Close()
	status, _, body := viewGet(t, hs.URL+"/mlm", ViewsPath+"accounts")
	if status != http.StatusOK || !strings.Contains(body, `"accountId":`+strconv.FormatInt(acc.AccountID, 10)) {
		t.Errorf("mounted view: %d %s", status, body)
	}
	status, _, body = viewGet(t, hs.URL+"/mlm", ViewsPath)
	if status != http.StatusOK || !strings.Contains(body, `href="ledger?account=`+strconv.FormatInt(acc.AccountID, 10)) {
		t.Errorf("mounted page: %d %.300s", status, body)
	}
}

func TestControl(t *testing.T) {
	t.Parallel()
	post := func(t *testing.T, s *Server, form url.Values) (int, string) {
		t.Helper()
		resp, err := http.PostForm(serverRoot(s)+ViewsPath+"inject", form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	t.Run("off", func(t *testing.T) {
		t.Parallel()
		s, c := newTestServer(t, Options{})
		if status, _ := post(t, s, url.Values{"endpoint": {"user/exists"}, "kind": {"server-error"}}); status != http.StatusNotFound {
			t.Errorf("status %d, want 404", status)
		}
		mustOK(t, c.get("user/exists", loginParams("a@example.com")))
	})

	t.Run("on", func(t *testing.T) {
		t.Parallel()
		logs := newLogRecorder(t)
		s, c := newTestServer(t, Options{Control: true, Logf: logs.Logf})
		root := s.AddAccount("root@example.com", "pw", 0)
		bad := []url.Values{
			{"endpoint": {"user/nothing"}, "kind": {"hang"}},
			{"endpoint": {""}, "kind": {"hang"}},
			{"endpoint": {"user/exists"}, "kind": {"explode"}},
			{"endpoint": {"user/exists"}, "kind": {""}},
			{"endpoint": {"user/exists"}, "kind": {"hang"}, "count": {"x"}},
			{"endpoint": {"user/exists"}, "kind": {"hang"}, "count": {"-1"}},
		}
		for _, form := range bad {
			if status, body := post(t, s, form); status != http.StatusBadRequest {
				t.Errorf("%v: %d %s, want 400", form, status, body)
			}
		}
		resp, err := http.Get(serverRoot(s) + ViewsPath + "inject")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET inject: %d", resp.StatusCode)
		}

		for _, form := range []url.Values{
			{"endpoint": {"account/volume-change"}, "kind": {"server-error-after-apply"}, "count": {"2"}},
			{"endpoint": {"account/volume-change"}, "kind": {"business-error"}}, // count 1
			{"endpoint": {"user/exists"}, "kind": {"hang"}, "count": {"3"}},
			{"endpoint": {"user/exists"}, "kind": {"hang"}, "count": {"0"}}, // cancels
			{"endpoint": {"*"}, "kind": {"apply-then-drop"}},
		} {
			if status, body := post(t, s, form); status != http.StatusNoContent || body != "" {
				t.Errorf("%v: %d %s, want 204", form, status, body)
			}
		}
		for i, want := range []int{500, 502} {
			if a := c.post("account/volume-change", volumeParams(root.AccountID, "1", "o", "PV")); a.status != want {
				t.Errorf("change %d: status %d, want %d", i, a.status, want)
			}
		}
		if a := c.post("account/volume-change", volumeParams(root.AccountID, "1", "o", "PV")); a.env.Primary == nil || a.env.Primary.Success || !strings.Contains(string(a.raw), msgInjected) {
			t.Errorf("business error: %s", a.raw)
		}
		if a := c.post("account/volume-change", volumeParams(root.AccountID, "1", "o", "PV")); a.err == nil {
			t.Errorf(`"*" apply-then-drop: status %d`, a.status)
		}
		mustOK(t, c.get("user/exists", loginParams("a@example.com")))
		if n := len(s.AllLedger()); n != 3 {
			t.Errorf("ledger has %d entries, want 3 (two after apply, one dropped)", n)
		}
		if n := logs.count("mlmsofttest: control: the next 2 requests to account/volume-change meet server error after apply"); n != 1 {
			t.Errorf("control not logged:\n%s", logs.all())
		}
	})
}
