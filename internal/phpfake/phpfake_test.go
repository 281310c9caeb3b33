package phpfake

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
)

// noExpect hides the transport's type from api2.Client, so that it sends no
// "Expect: 100-continue", which php -S never answers (see the package doc).
type noExpect struct{ http.RoundTripper }

func newClient(t *testing.T, s *Server, token, appID string) *api2.Client {
	t.Helper()
	c, err := api2.New(api2.Config{
		BaseURL:    s.URL,
		Token:      token,
		AppID:      appID,
		HTTPClient: &http.Client{Transport: noExpect{http.DefaultTransport}},
		Timeout:    10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func client(t *testing.T, s *Server) *api2.Client { return newClient(t, s, s.Token, s.AppID) }

// wantBusiness fails unless err is a business refusal containing msg.
func wantBusiness(t *testing.T, err error, msg string) {
	t.Helper()
	var e *api2.Error
	if !errors.As(err, &e) || e.Kind != api2.Business || !strings.Contains(e.Message, msg) {
		t.Fatalf("got %v, want a business refusal %q", err, msg)
	}
}

// wantForbidden fails unless err is an HTTP 403.
func wantForbidden(t *testing.T, err error) {
	t.Helper()
	var e *api2.Error
	if !errors.As(err, &e) || e.Status != http.StatusForbidden {
		t.Fatalf("got %v, want HTTP 403", err)
	}
}

func createUser(t *testing.T, c *api2.Client, s *Server, login, password string) api2.Document {
	t.Helper()
	ctx := context.Background()
	created, err := c.CreateUser(ctx, api2.CreateUser{Login: login, Password: password, SponsorID: s.Root.AccountID})
	if err != nil {
		t.Fatalf("create %q: %v", login, err)
	}
	doc, err := c.GetDocument(ctx, created.DocumentID)
	if err != nil || !doc.Processed || !doc.Success {
		t.Fatalf("document of %q: %+v, %v", login, doc, err)
	}
	return doc
}

func TestUserLifecycle(t *testing.T) {
	s := Start(t, Options{RootLogin: "boss@example.com", RootPassword: "b0ss"})
	c := client(t, s)
	ctx := context.Background()

	if s.Root.Login != "boss@example.com" || s.Root.UserID != 100001 || s.Root.AccountID != 700001 {
		t.Fatalf("root = %+v", s.Root)
	}
	if _, err := c.CheckAuth(ctx, "boss@example.com", "b0ss"); err != nil {
		t.Fatalf("root check-auth: %v", err)
	}

	created, err := c.CreateUser(ctx, api2.CreateUser{
		Login: "alice@example.com", Password: "s3cret", SponsorID: s.Root.AccountID,
		ConfirmationURL: "https://shop.example/confirm?a=1&b=2",
		Profile:         api2.Profile{FirstName: "Alice", LastName: "Liddell", Email: "alice@example.com", Phone: "+1 555", CountryID: "US"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !created.Queued || created.DocumentID != 40001 {
		t.Fatalf("created = %+v, want queued document 40001", created)
	}
	if _, ok := s.Account(t, "alice@example.com"); ok {
		t.Fatal("user exists before any request processed its document")
	}
	if n := s.CreatesAccepted(t, "ALICE@example.com"); n != 1 {
		t.Fatalf("creates accepted = %d, want 1", n)
	}

	doc, err := c.GetDocument(ctx, created.DocumentID)
	if err != nil {
		t.Fatal(err)
	}
	if !doc.Processed || !doc.Success || doc.UserID != 100002 || doc.AccountID != 700002 {
		t.Fatalf("document = %+v", doc)
	}
	acc, ok := s.Account(t, "Alice@Example.com")
	want := Account{Login: "alice@example.com", UserID: 100002, AccountID: 700002, SponsorAccountID: 700001, Title: "Alice Liddell"}
	if !ok || acc != want {
		t.Fatalf("account = %+v, %v; want %+v", acc, ok, want)
	}

	ex, err := c.UserExists(ctx, "alice@example.com")
	if err != nil || !ex.Exists || ex.UserID != 100002 || ex.AccountID != 700002 {
		t.Fatalf("exists = %+v, %v", ex, err)
	}
	if ex, err := c.UserExists(ctx, "nobody@example.com"); err != nil || ex.Exists {
		t.Fatalf("exists(nobody) = %+v, %v", ex, err)
	}
	auth, err := c.CheckAuth(ctx, "alice@example.com", "s3cret")
	if err != nil || auth.UserID != 100002 || auth.AccountID != 700002 || auth.Title != "Alice Liddell" {
		t.Fatalf("check-auth = %+v, %v", auth, err)
	}
	_, err = c.CheckAuth(ctx, "alice@example.com", "wrong")
	wantBusiness(t, err, "Invalid login or password")

	_, err = c.CreateUser(ctx, api2.CreateUser{Login: "ALICE@example.com", Password: "x", SponsorID: s.Root.AccountID})
	wantBusiness(t, err, "User with this login already exists")
	_, err = c.CreateUser(ctx, api2.CreateUser{Login: "bob@example.com", Password: "x", SponsorID: 799999})
	wantBusiness(t, err, "Sponsor not found")
	_, err = c.GetDocument(ctx, 49999)
	wantBusiness(t, err, "Document not found")

	st := s.State(t)
	if len(st.Accounts) != 2 || len(st.Documents) != 1 || !st.Documents[0].Processed() ||
		st.Creates["alice@example.com"] != 1 || st.Creates["bob@example.com"] != 0 {
		t.Fatalf("state = %+v", st)
	}
	if strings.Contains(fmt.Sprint(st), "s3cret") {
		t.Fatal("/_state shows a password")
	}
}

func TestDocumentDelay(t *testing.T) {
	const delay = 300 * time.Millisecond
	s := Start(t, Options{DocumentDelay: delay})
	c := client(t, s)
	ctx := context.Background()

	start := time.Now()
	created, err := c.CreateUser(ctx, api2.CreateUser{Login: "late@example.com", Password: "p", SponsorID: s.Root.AccountID})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := c.GetDocument(ctx, created.DocumentID)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < delay && doc.Processed {
		t.Fatalf("document processed before its delay: %+v", doc)
	}
	_, err = c.CreateUser(ctx, api2.CreateUser{Login: "late@example.com", Password: "p", SponsorID: s.Root.AccountID})
	wantBusiness(t, err, "User with this login already exists")

	time.Sleep(time.Until(start.Add(delay + 20*time.Millisecond)))
	if doc, err = c.GetDocument(ctx, created.DocumentID); err != nil || !doc.Processed || doc.AccountID == 0 {
		t.Fatalf("after the delay: %+v, %v", doc, err)
	}
	if n := s.CreatesAccepted(t, "late@example.com"); n != 1 {
		t.Fatalf("creates accepted = %d, want 1", n)
	}
}

func TestVolumeLiteralsRecordedExactly(t *testing.T) {
	s := Start(t, Options{})
	c := client(t, s)
	ctx := context.Background()
	acc := createUser(t, c, s, "buyer@example.com", "p").AccountID

	amounts := []string{"0.1", "149.9", "-3.75", "1234567.5", "150", "1e2", "0.30000000000000004"}
	for i, a := range amounts {
		_, err := c.ChangeVolume(ctx, api2.VolumeChange{AccountID: acc, Amount: json.Number(a), OrderID: fmt.Sprint("order-", i), Alias: "PV"})
		if err != nil {
			t.Fatalf("amount %s: %v", a, err)
		}
	}
	_, err := c.ChangeVolume(ctx, api2.VolumeChange{AccountID: 799999, Amount: "1", OrderID: "x", Alias: "PV"})
	wantBusiness(t, err, "Account not found")

	got := s.Ledger(t, acc)
	if len(got) != len(amounts) {
		t.Fatalf("ledger = %+v", got)
	}
	for i, e := range got {
		want := LedgerEntry{Seq: int64(i + 1), AccountID: acc, Alias: "PV", Amount: amounts[i], OrderID: fmt.Sprint("order-", i)}
		if e != want {
			t.Errorf("entry %d = %+v, want %+v", i, e, want)
		}
	}
	if len(s.Ledger(t, s.Root.AccountID)) != 0 {
		t.Error("the root's ledger is not empty")
	}
}

func TestSignatureRefused(t *testing.T) {
	s := Start(t, Options{Token: "right-token", AppID: "7"})
	ctx := context.Background()

	_, err := newClient(t, s, "wrong-token", "7").CheckAuth(ctx, s.Root.Login, DefaultRootPassword)
	wantForbidden(t, err)
	_, err = newClient(t, s, "right-token", "8").UserExists(ctx, s.Root.Login)
	wantForbidden(t, err)
	_, err = newClient(t, s, "wrong-token", "7").ChangeVolume(ctx, api2.VolumeChange{AccountID: s.Root.AccountID, Amount: "1", OrderID: "o", Alias: "PV"})
	wantForbidden(t, err)
	if len(s.State(t).Ledger) != 0 {
		t.Fatal("a refused volume change reached the ledger")
	}
	if _, err := client(t, s).CheckAuth(ctx, s.Root.Login, DefaultRootPassword); err != nil {
		t.Fatalf("right token and App-Id: %v", err)
	}

	// The refusal's exact body.
	q := phpquery.Map{{Key: "login", Value: s.Root.Login}, {Key: "type", Value: "member"}}
	for _, tc := range []struct{ appID, key string }{
		{"7", "0123456789abcdef0123456789abcdef"},
		{"8", phpquery.SecurityKey(q, "right-token")},
		{"", phpquery.SecurityKey(q, "right-token")},
	} {
		status, body := get(t, s.URL+"user/exists?"+phpquery.BuildQuery(q), tc.appID, tc.key)
		if status != http.StatusForbidden || body != `{"errorCode":403,"errorMessage":"Security key is invalid","primary":null}` {
			t.Errorf("App-Id %q: HTTP %d %s", tc.appID, status, body)
		}
	}
}

func get(t *testing.T, u, appID, key string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("App-Id", appID)
	req.Header.Set("Security-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPHPEncodedGET is the differential point: PHP parses the query into
// $_GET and re-encodes it with http_build_query; our client must predict
// that byte for byte, where a naive Go encoding does not.
func TestPHPEncodedGET(t *testing.T) {
	s := Start(t, Options{})
	c := client(t, s)
	ctx := context.Background()
	const password = "p@ss w+rd~ü&=%20"
	for _, login := range []string{
		"a+b~c@x.com",
		"first last@x.com",
		"ünïcødé@例え.jp",
		"a&b=c;d@x.com",
		"100%25real*'()!@x.com",
	} {
		doc := createUser(t, c, s, login, password)
		ex, err := c.UserExists(ctx, login)
		if err != nil || !ex.Exists || ex.AccountID != doc.AccountID {
			t.Errorf("exists(%q) = %+v, %v", login, ex, err)
		}
		auth, err := c.CheckAuth(ctx, login, password)
		if err != nil || auth.Login != login || auth.AccountID != doc.AccountID {
			t.Errorf("check-auth(%q) = %+v, %v", login, auth, err)
		}
		if a, ok := s.Account(t, login); !ok || a.Login != login {
			t.Errorf("account(%q) = %+v, %v", login, a, ok)
		}
	}

	// Go's own query encoding leaves "~" as is; PHP's encodes it as %7E,
	// so a key computed from url.Values is refused.
	v := url.Values{"login": {"a+b~c@x.com"}, "type": {"member"}}
	sum := md5.Sum([]byte(v.Encode() + s.Token))
	if status, body := get(t, s.URL+"user/exists?"+v.Encode(), s.AppID, hex.EncodeToString(sum[:])); status != http.StatusForbidden {
		t.Errorf("a url.Values signature was accepted: HTTP %d %s", status, body)
	}
}

// TestExpectContinue records how php -S treats "Expect: 100-continue": it
// never answers "100 Continue", so the client sends its body only after its
// ExpectContinueTimeout, and the request is then processed normally.
func TestExpectContinue(t *testing.T) {
	s := Start(t, Options{})
	const wait = time.Second
	hc := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: wait}, Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()

	params := phpquery.Map{
		{Key: "accountId", Value: s.Root.AccountID}, {Key: "pointsAmount", Value: json.Number("12.50")},
		{Key: "orderId", Value: "expect-1"}, {Key: "volumePropertyAlias", Value: "PV"},
	}
	body, err := params.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+"account/volume-change", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("App-Id", s.AppID)
	req.Header.Set("Security-Key", phpquery.SecurityKey(params, s.Token))
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	t.Logf("php -S answered HTTP %d after %v (ExpectContinueTimeout %v)", resp.StatusCode, took.Round(time.Millisecond), wait)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(answer, []byte(`"success":true`)) {
		t.Fatalf("HTTP %d %s", resp.StatusCode, answer)
	}
	if took < wait-100*time.Millisecond {
		t.Errorf("answered after %v: php -S sent 100 Continue after all?", took)
	}
	if l := s.Ledger(t, s.Root.AccountID); len(l) != 1 || l[0].Amount != "12.50" || l[0].OrderID != "expect-1" {
		t.Fatalf("ledger = %+v", l)
	}
}

// TestWorkers checks that parallel PHP workers share one consistent state.
func TestWorkers(t *testing.T) {
	s := Start(t, Options{Workers: 3})
	c := client(t, s)
	ctx := context.Background()

	const n = 24
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			_, err := c.ChangeVolume(ctx, api2.VolumeChange{AccountID: s.Root.AccountID, Amount: json.Number(fmt.Sprint(i, ".5")), OrderID: fmt.Sprint("o", i), Alias: "PV"})
			errs <- err
		})
	}
	var accepted sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for range 8 {
		accepted.Go(func() {
			_, err := c.CreateUser(ctx, api2.CreateUser{Login: "race@example.com", Password: "p", SponsorID: s.Root.AccountID})
			if err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			} else if api2.KindOf(err) != api2.Business {
				errs <- err
			}
		})
	}
	wg.Wait()
	accepted.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if ok != 1 || s.CreatesAccepted(t, "race@example.com") != 1 {
		t.Fatalf("%d parallel creates of one login succeeded, %d accepted; want 1", ok, s.CreatesAccepted(t, "race@example.com"))
	}
	ledger := s.Ledger(t, s.Root.AccountID)
	var orders []string
	for i, e := range ledger {
		if e.Seq != int64(i+1) {
			t.Errorf("entry %d has seq %d", i, e.Seq)
		}
		orders = append(orders, e.OrderID+"="+e.Amount)
	}
	sort.Strings(orders)
	var want []string
	for i := range n {
		want = append(want, fmt.Sprint("o", i, "=", i, ".5"))
	}
	sort.Strings(want)
	if fmt.Sprint(orders) != fmt.Sprint(want) {
		t.Fatalf("ledger = %v, want %v", orders, want)
	}
}
