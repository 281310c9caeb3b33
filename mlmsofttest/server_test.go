package mlmsofttest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
)

func TestSignature(t *testing.T) {
	t.Parallel()
	s, c := newTestServer(t, Options{Token: "tok-1", AppID: "7"})
	c.token, c.appID = "tok-1", "7"
	root := s.AddAccount("root@example.com", "pw", 0)

	mustOK(t, c.get("user/exists", loginParams("a@example.com")))
	mustOK(t, c.post("account/volume-change", volumeParams(root.AccountID, "1", "o-1", "PV")))

	cases := []struct {
		name    string
		method  string
		params  phpquery.Map
		opt     reqOpt
		wantMsg string
	}{
		{"GET missing key", http.MethodGet, loginParams("a@example.com"),
			func(r *http.Request) { r.Header.Del("Security-Key") }, msgBadKey},
		{"GET key of another token", http.MethodGet, loginParams("a@example.com"),
			func(r *http.Request) {
				r.Header.Set("Security-Key", phpquery.SecurityKey(loginParams("a@example.com"), "other"))
			}, msgBadKey},
		{"GET uppercase hex key", http.MethodGet, loginParams("a@example.com"),
			func(r *http.Request) { r.Header.Set("Security-Key", strings.ToUpper(r.Header.Get("Security-Key"))) }, msgBadKey},
		{"GET query changed after signing", http.MethodGet, loginParams("a@example.com"),
			func(r *http.Request) { r.URL.RawQuery = strings.Replace(r.URL.RawQuery, "a%40", "b%40", 1) }, msgBadKey},
		{"GET wrong App-Id", http.MethodGet, loginParams("a@example.com"),
			func(r *http.Request) { r.Header.Set("App-Id", "1") }, msgBadAppID},
		{"GET missing App-Id", http.MethodGet, loginParams("a@example.com"),
			func(r *http.Request) { r.Header.Del("App-Id") }, msgBadAppID},
		{"POST key of other params", http.MethodPost, volumeParams(root.AccountID, "1", "o-2", "PV"),
			func(r *http.Request) {
				r.Header.Set("Security-Key", phpquery.SecurityKey(volumeParams(root.AccountID, "2", "o-2", "PV"), "tok-1"))
			}, msgBadKey},
		{"POST key of another token", http.MethodPost, volumeParams(root.AccountID, "1", "o-3", "PV"),
			func(r *http.Request) {
				r.Header.Set("Security-Key", phpquery.SecurityKey(volumeParams(root.AccountID, "1", "o-3", "PV"), "tok-2"))
			}, msgBadKey},
	}
	ep := map[string]string{http.MethodGet: "user/exists", http.MethodPost: "account/volume-change"}
	for _, tc := range cases {
		a := c.do(t.Context(), tc.method, ep[tc.method], tc.params, tc.opt)
		if a.err != nil || a.status != http.StatusForbidden {
			t.Errorf("%s: err=%v status=%d body=%s, want 403", tc.name, a.err, a.status, a.raw)
			continue
		}
		if a.env.ErrorCode != 403 || a.env.ErrorMessage != tc.wantMsg || a.env.Primary != nil {
			t.Errorf("%s: envelope %s", tc.name, a.raw)
		}
		if strings.Contains(string(a.raw), "tok-1") {
			t.Errorf("%s: answer leaks the token: %s", tc.name, a.raw)
		}
	}
	if got := len(s.Ledger(root.AccountID)); got != 1 {
		t.Errorf("ledger has %d entries, want only the signed one", got)
	}
	if got := s.Calls("account/volume-change"); got != 3 {
		t.Errorf("Calls(volume-change) = %d, want 3 (refused ones count)", got)
	}
}

// TestPHPVectors sends requests exactly as PHP 8.2 built and signed them
// (internal/phpquery/testdata/api2-signing-vectors.json): the server must accept the
// signatures and see the same parameters.
func TestPHPVectors(t *testing.T) {
	t.Parallel()
	s, c := newTestServer(t, Options{Token: "s3cr3t-token"})
	c.token = "s3cr3t-token"
	s.AddAccount("jane.doe+shop@example.com", "p@ss word&=?", 0)

	a := c.raw(http.MethodGet, "user/check-auth",
		"login=jane.doe%2Bshop%40example.com&type=member&password=p%40ss+word%26%3D%3F", "", "47282395cea28c3756c72be7a822c087")
	mustOK(t, a)
	if got := dig(a.payload(t), "auth", "login"); got != "jane.doe+shop@example.com" {
		t.Errorf("auth.login = %v", got)
	}
	mustOK(t, c.raw(http.MethodGet, "user/exists", "login=jane%40example.com&type=member", "", "948497f9bc1e9206c522456e640fa08a"))
	mustRefuse(t, c.raw(http.MethodGet, "document/get", "id=48213", "", "6d2f829a0721c1b9fdfbd42848978e98"), msgDocNotFound)
	// Unknown sponsor and account: the signature passed, the content is refused.
	mustRefuse(t, c.raw(http.MethodPost, "user/create", "",
		`{"login":"jane@example.com","type":"member","password":"Secret 123!","sponsorId":1001,"profile":{"firstname":"Jane","lastname":"O'Neil","email":"jane@example.com","phone":"+1 555 0100","countryId":"US"}}`,
		"ab082eb5d1d9135926df0abce6dadf4f"), msgSponsorNotFound)
	mustRefuse(t, c.raw(http.MethodPost, "account/volume-change", "",
		`{"accountId":1234,"pointsAmount":12.5,"orderId":"ord-9002","volumePropertyAlias":"PV"}`,
		"fe8b05411859f2ae661cec5e6760a7a9"), msgAccountNotFound)
	// An empty POST body is an empty parameter list: the key is md5(token).
	mustRefuse(t, c.raw(http.MethodPost, "account/volume-change", "", "", phpquery.SecurityKey(phpquery.Map{}, "s3cr3t-token")), required("accountId"))
	// One changed byte in the body breaks the signature.
	a = c.raw(http.MethodPost, "account/volume-change", "",
		`{"accountId":1234,"pointsAmount":12.5,"orderId":"ord-9003","volumePropertyAlias":"PV"}`,
		"fe8b05411859f2ae661cec5e6760a7a9")
	if a.status != http.StatusForbidden {
		t.Errorf("tampered body: status %d, want 403", a.status)
	}
}

func TestEnvelopeExact(t *testing.T) {
	t.Parallel()
	_, c := newTestServer(t, Options{})
	a := c.get("user/exists", loginParams("nobody@example.com"))
	want := `{"errorCode":0,"errorMessage":"","errorExtended":null,"primary":{"success":true,"payload":{"exist":false},"message":"","errors":[]},"secondary":[],"locale":"en_US"}`
	var got bytes.Buffer
	if err := json.Compact(&got, a.raw); err != nil || got.String() != want {
		t.Errorf("answer\n %s\nwant\n %s", a.raw, want)
	}
	if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type %q", ct)
	}
	a = c.get("document/get", docParams(1))
	want = `{"errorCode":0,"errorMessage":"","errorExtended":null,"primary":{"success":false,"payload":[],"message":"Document not found","errors":[{"message":"Document not found"}]},"secondary":[],"locale":"en_US"}`
	got.Reset()
	if err := json.Compact(&got, a.raw); err != nil || got.String() != want {
		t.Errorf("answer\n %s\nwant\n %s", a.raw, want)
	}
}

func TestRequestLevelErrors(t *testing.T) {
	t.Parallel()
	s, c := newTestServer(t, Options{})
	cases := []struct {
		name   string
		a      answer
		status int
	}{
		{"unknown endpoint", c.get("user/nothing", nil), http.StatusNotFound},
		{"wrong method", c.get("user/create", createParams("a@example.com", "pw", 1)), http.StatusMethodNotAllowed},
		{"wrong content type", c.post("account/volume-change", volumeParams(1, "1", "o", "PV"),
			func(r *http.Request) { r.Header.Set("Content-Type", "text/plain") }), http.StatusUnsupportedMediaType},
		{"invalid JSON", c.raw(http.MethodPost, "account/volume-change", "", `{"accountId":`, "x"), http.StatusBadRequest},
		{"not an object", c.raw(http.MethodPost, "account/volume-change", "", `[1,2]`, "x"), http.StatusBadRequest},
		{"too large", c.raw(http.MethodPost, "account/volume-change", "", `{"a":"`+strings.Repeat("x", maxBody)+`"}`, "x"), http.StatusRequestEntityTooLarge},
	}
	for _, tc := range cases {
		if tc.a.err != nil || tc.a.status != tc.status || tc.a.env.ErrorCode != tc.status || tc.a.env.Primary != nil {
			t.Errorf("%s: err=%v status=%d body=%.200s, want %d", tc.name, tc.a.err, tc.a.status, tc.a.raw, tc.status)
		}
	}
	if got := s.Calls("user/nothing"); got != 1 {
		t.Errorf("Calls(user/nothing) = %d", got)
	}
}

func TestCreateQueuedDelayed(t *testing.T) {
	t.Parallel()
	clock := NewClock(time.Time{})
	s, c := newTestServer(t, Options{Clock: clock, DocumentDelay: 10 * time.Second})
	root := s.AddAccount("root@example.com", "root-pw", 0)
	const login = "Jane@Example.com"

	a := c.post("user/create", createParams(login, "s3cret", root.AccountID))
	mustOK(t, a)
	p := a.payload(t)
	if dig(p, "queueRequest") != true {
		t.Fatalf("not queued: %s", a.raw)
	}
	docID := num(t, dig(p, "documentId"))

	a = c.get("document/get", docParams(docID))
	mustOK(t, a)
	doc := dig(a.payload(t), "document")
	if num(t, dig(doc, "id")) != docID || dig(doc, "context", "entity") != "user" || dig(doc, "context", "action") != "create" {
		t.Fatalf("document: %s", a.raw)
	}
	if m, _ := doc.(map[string]any); m["result"] != nil {
		t.Fatalf("result before the delay: %s", a.raw)
	}
	mustOK(t, c.get("user/exists", loginParams(login)))
	if dig(c.get("user/exists", loginParams(login)).payload(t), "exist") != false {
		t.Fatal("user exists before its document was processed")
	}
	mustRefuse(t, c.get("user/check-auth", append(loginParams(login), phpquery.Pair{Key: "password", Value: "s3cret"})), msgBadCredentials)
	if _, ok := s.Account(login); ok {
		t.Fatal("Account exists before processing")
	}

	clock.Advance(9 * time.Second)
	s.ProcessDue()
	if _, ok := s.Account(login); ok {
		t.Fatal("Account exists before the delay passed")
	}
	clock.Advance(time.Second)
	a = c.get("document/get", docParams(strconv.FormatInt(docID, 10))) // processed lazily
	mustOK(t, a)
	res := dig(a.payload(t), "document", "result")
	if dig(res, "errorCode") != json.Number("0") || dig(res, "primary", "success") != true || dig(res, "locale") != "en_US" {
		t.Fatalf("result is not a whole successful envelope: %s", a.raw)
	}
	auth := dig(res, "primary", "payload", "auth")
	userID, accountID := num(t, dig(auth, "user", "id")), num(t, dig(auth, "user", "account", "id"))
	if dig(auth, "login") != login || dig(auth, "user", "account", "title") != "Jane Doe" {
		t.Errorf("auth: %v", auth)
	}
	acc, ok := s.Account(strings.ToLower(login))
	want := Account{Login: login, UserID: userID, AccountID: accountID, SponsorAccountID: root.AccountID}
	if !ok || acc != want {
		t.Fatalf("Account = %+v, %v; want %+v", acc, ok, want)
	}
	if userID == accountID || userID == root.UserID || accountID == root.AccountID || userID == docID || accountID == docID {
		t.Errorf("ids not distinct: user %d account %d root %+v document %d", userID, accountID, root, docID)
	}

	a = c.get("user/exists", loginParams("jane@example.COM"))
	mustOK(t, a)
	p = a.payload(t)
	if dig(p, "exist") != true || num(t, dig(p, "auth", "user", "id")) != userID || num(t, dig(p, "auth", "user", "account", "id")) != accountID {
		t.Errorf("user/exists: %s", a.raw)
	}

	a = c.get("user/check-auth", append(loginParams(login), phpquery.Pair{Key: "password", Value: "s3cret"}))
	mustOK(t, a)
	p = a.payload(t)
	if dig(p, "auth", "login") != login || num(t, dig(p, "auth", "user", "id")) != userID ||
		num(t, dig(p, "auth", "user", "account", "id")) != accountID || dig(p, "auth", "user", "account", "title") != "Jane Doe" {
		t.Errorf("check-auth: %s", a.raw)
	}
	if prof, ok := dig(p, "auth", "user", "profile").([]any); !ok || len(prof) != 0 {
		t.Errorf("check-auth profile: %s", a.raw)
	}
	if strings.Contains(string(a.raw), "s3cret") {
		t.Errorf("check-auth answer leaks the password: %s", a.raw)
	}
	mustRefuse(t, c.get("user/check-auth", append(loginParams(login), phpquery.Pair{Key: "password", Value: "S3cret"})), msgBadCredentials)
	mustRefuse(t, c.get("user/check-auth", append(loginParams("ghost@example.com"), phpquery.Pair{Key: "password", Value: "x"})), msgBadCredentials)
	mustRefuse(t, c.get("user/check-auth", loginParams(login)), required("password"))
}

func TestCreateValidationAndDuplicates(t *testing.T) {
	t.Parallel()
	clock := NewClock(time.Time{})
	s, c := newTestServer(t, Options{Clock: clock, DocumentDelay: time.Minute})
	root := s.AddAccount("root@example.com", "pw", 0)

	noType := createParams("x@example.com", "pw", root.AccountID)
	noType[1].Value = "partner"
	cases := []struct {
		name   string
		params phpquery.Map
		msg    string
	}{
		{"unknown sponsor", createParams("x@example.com", "pw", root.AccountID+1), msgSponsorNotFound},
		{"sponsor is a user id", createParams("x@example.com", "pw", root.UserID), msgSponsorNotFound},
		{"no login", createParams("", "pw", root.AccountID), required("login")},
		{"no password", createParams("x@example.com", "", root.AccountID), required("password")},
		{"no sponsor", createParams("x@example.com", "pw", root.AccountID)[:3], required("sponsorId")},
		{"wrong type", noType, msgBadType},
		{"existing login", createParams("ROOT@example.com", "pw", root.AccountID), msgLoginTaken},
	}
	for _, tc := range cases {
		mustRefuse(t, c.post("user/create", tc.params), tc.msg)
	}
	if n := s.CreatesAccepted("x@example.com"); n != 0 {
		t.Fatalf("CreatesAccepted = %d after refusals", n)
	}

	mustOK(t, c.post("user/create", createParams("x@example.com", "pw", root.AccountID)))
	mustRefuse(t, c.post("user/create", createParams("X@example.com", "pw2", root.AccountID)), msgLoginTaken) // pending
	clock.Advance(time.Minute)
	s.ProcessDue()
	mustRefuse(t, c.post("user/create", createParams("x@example.com", "pw", root.AccountID)), msgLoginTaken) // exists
	if n := s.CreatesAccepted("X@EXAMPLE.COM"); n != 1 {
		t.Errorf("CreatesAccepted = %d, want 1", n)
	}
	x, _ := s.Account("x@example.com")
	// A processed user can sponsor; a pending one cannot.
	mustOK(t, c.post("user/create", createParams("y@example.com", "pw", x.AccountID)))
	y := phpquery.Map{{Key: "login", Value: "z@example.com"}, {Key: "type", Value: "member"}, {Key: "password", Value: "pw"}, {Key: "sponsorId", Value: strconv.FormatInt(x.AccountID, 10)}}
	mustOK(t, c.post("user/create", y)) // sponsorId as a numeric string, no profile
	if got := s.Calls("user/create"); got != len(cases)+5 {
		t.Errorf("Calls = %d", got)
	}
}

func TestCreateVariants(t *testing.T) {
	t.Parallel()
	t.Run("synchronous", func(t *testing.T) {
		t.Parallel()
		s, c := newTestServer(t, Options{Synchronous: true})
		root := s.AddAccount("root@example.com", "pw", 0)
		a := c.post("user/create", createParams("s@example.com", "pw", root.AccountID))
		mustOK(t, a)
		p := a.payload(t)
		acc, ok := s.Account("s@example.com")
		if !ok || dig(p, "queueRequest") != nil || num(t, dig(p, "auth", "user", "id")) != acc.UserID ||
			num(t, dig(p, "auth", "user", "account", "id")) != acc.AccountID {
			t.Errorf("answer %s, account %+v", a.raw, acc)
		}
	})
	t.Run("document id as string, processed at once", func(t *testing.T) {
		t.Parallel()
		s, c := newTestServer(t, Options{DocumentIDAsString: true})
		root := s.AddAccount("root@example.com", "pw", 0)
		a := c.post("user/create", createParams("d@example.com", "pw", root.AccountID))
		mustOK(t, a)
		id, ok := dig(a.payload(t), "documentId").(string)
		if !ok {
			t.Fatalf("documentId is not a string: %s", a.raw)
		}
		if _, ok := s.Account("d@example.com"); !ok {
			t.Fatal("DocumentDelay 0 did not process at once")
		}
		a = c.get("document/get", docParams(id))
		if dig(a.payload(t), "document", "id") != id || dig(a.payload(t), "document", "result", "primary", "success") != true {
			t.Errorf("document/get: %s", a.raw)
		}
	})
	t.Run("never processed", func(t *testing.T) {
		t.Parallel()
		clock := NewClock(time.Time{})
		s, c := newTestServer(t, Options{Clock: clock, NeverProcess: true})
		root := s.AddAccount("root@example.com", "pw", 0)
		a := c.post("user/create", createParams("n@example.com", "pw", root.AccountID))
		id := num(t, dig(a.payload(t), "documentId"))
		clock.Advance(1000 * time.Hour)
		s.ProcessDue()
		a = c.get("document/get", docParams(id))
		if m, _ := dig(a.payload(t), "document").(map[string]any); m == nil || m["result"] != nil {
			t.Errorf("document/get: %s", a.raw)
		}
		if _, ok := s.Account("n@example.com"); ok {
			t.Error("account created")
		}
	})
	t.Run("processed by the background loop", func(t *testing.T) {
		t.Parallel()
		clock := NewClock(time.Time{})
		s, c := newTestServer(t, Options{Clock: clock, DocumentDelay: time.Second})
		root := s.AddAccount("root@example.com", "pw", 0)
		mustOK(t, c.post("user/create", createParams("b@example.com", "pw", root.AccountID)))
		clock.Advance(time.Second)
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, ok := s.Account("b@example.com"); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("not processed without a request")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("bad document ids", func(t *testing.T) {
		t.Parallel()
		_, c := newTestServer(t, Options{})
		mustRefuse(t, c.get("document/get", nil), msgDocNotFound)
		mustRefuse(t, c.get("document/get", docParams("abc")), msgDocNotFound)
		mustRefuse(t, c.get("document/get", docParams(firstDocumentID)), msgDocNotFound)
	})
}

func TestUserEndpointsValidation(t *testing.T) {
	t.Parallel()
	_, c := newTestServer(t, Options{})
	mustRefuse(t, c.get("user/exists", nil), required("login"))
	mustRefuse(t, c.get("user/exists", loginParams("a@example.com")[:1]), required("type"))
	mustRefuse(t, c.get("user/exists", phpquery.Map{{Key: "login", Value: "a@example.com"}, {Key: "type", Value: "admin"}}), msgBadType)
	mustRefuse(t, c.get("user/check-auth", phpquery.Map{{Key: "password", Value: "x"}}), required("login"))
}

func TestVolumeLedger(t *testing.T) {
	t.Parallel()
	clock := NewClock(time.Time{})
	s, c := newTestServer(t, Options{Clock: clock, Aliases: []string{"PV", "Status"}})
	a1 := s.AddAccount("a@example.com", "pw", 0)
	a2 := s.AddAccount("b@example.com", "pw", a1.AccountID)

	sent := []struct {
		account int64
		amount  string
		order   string
		alias   string
	}{
		{a1.AccountID, "3", "ord-1", "Status"},
		{a1.AccountID, "0.1", "ord-1", "PV"},
		{a2.AccountID, "150", "ord-2", "PV"},
		{a1.AccountID, "-3.75", "ord-3", "PV"},
		{a1.AccountID, "0.10", "ord-3", "PV"},
		{a1.AccountID, "0.1", "ord-1", "PV"}, // not deduplicated
	}
	for _, v := range sent {
		a := c.post("account/volume-change", volumeParams(v.account, v.amount, v.order, v.alias))
		mustOK(t, a)
		p := a.payload(t)
		if num(t, dig(p, "accountId")) != v.account || dig(p, "pointsAmount") != json.Number(v.amount) {
			t.Errorf("answer %s", a.raw)
		}
		clock.Advance(time.Second)
	}
	all := s.AllLedger()
	if len(all) != len(sent) {
		t.Fatalf("ledger has %d entries, want %d", len(all), len(sent))
	}
	start := NewClock(time.Time{}).Now()
	for i, e := range all {
		v := sent[i]
		want := LedgerEntry{Seq: int64(i + 1), AccountID: v.account, Alias: v.alias, Amount: v.amount, OrderID: v.order, At: start.Add(time.Duration(i) * time.Second)}
		if e != want {
			t.Errorf("entry %d = %+v, want %+v", i, e, want)
		}
	}
	if l := s.Ledger(a2.AccountID); len(l) != 1 || l[0].Amount != "150" {
		t.Errorf("Ledger(a2) = %+v", l)
	}
	if l := s.Ledger(a1.AccountID); len(l) != 5 || l[1].Amount != "0.1" || l[3].Amount != "0.10" {
		t.Errorf("Ledger(a1) = %+v", l)
	}

	stringAmount := volumeParams(a1.AccountID, "1", "o", "PV")
	stringAmount[1].Value = "1"
	numberOrder := volumeParams(a1.AccountID, "1", "o", "PV")
	numberOrder[2].Value = 17
	refusals := []struct {
		params phpquery.Map
		msg    string
	}{
		{volumeParams(a2.AccountID+1, "1", "o", "PV"), msgAccountNotFound},
		{volumeParams(a1.UserID, "1", "o", "PV"), msgAccountNotFound},
		{volumeParams(a1.AccountID, "1", "o", "GV"), msgAliasNotFound},
		{volumeParams(a1.AccountID, "1", "o", "pv"), msgAliasNotFound},
		{volumeParams(a1.AccountID, "1", "o", "PV")[1:], required("accountId")},
		{append(volumeParams(a1.AccountID, "1", "o", "PV")[:1:1], volumeParams(0, "1", "o", "PV")[2:]...), required("pointsAmount")},
		{volumeParams(a1.AccountID, "1", "", "PV"), required("orderId")},
		{volumeParams(a1.AccountID, "1", "o", "PV")[:3], required("volumePropertyAlias")},
		{stringAmount, "must be a number"},
		{numberOrder, required("orderId")},
	}
	for _, r := range refusals {
		mustRefuse(t, c.post("account/volume-change", r.params), r.msg)
	}
	if n := len(s.AllLedger()); n != len(sent) {
		t.Errorf("refusals changed the ledger: %d entries", n)
	}
}

func TestQueuedVolumeChanges(t *testing.T) {
	t.Parallel()
	clock := NewClock(time.Time{})
	s, c := newTestServer(t, Options{Clock: clock, QueueVolumeChanges: true, DocumentDelay: 5 * time.Second})
	acc := s.AddAccount("a@example.com", "pw", 0)
	a := c.post("account/volume-change", volumeParams(acc.AccountID, "12.5", "ord-1", "PV"))
	mustOK(t, a)
	if dig(a.payload(t), "queueRequest") != true {
		t.Fatalf("not queued: %s", a.raw)
	}
	id := num(t, dig(a.payload(t), "documentId"))
	clock.Advance(time.Second)
	mustOK(t, c.post("account/volume-change", volumeParams(acc.AccountID, "1", "ord-2", "PV")))
	if n := len(s.AllLedger()); n != 0 {
		t.Fatalf("applied before processing: %d", n)
	}
	a = c.get("document/get", docParams(id))
	if dig(a.payload(t), "document", "context", "entity") != "account" || dig(a.payload(t), "document", "result") != nil {
		t.Fatalf("document/get before processing: %s", a.raw)
	}
	clock.Advance(4 * time.Second)
	a = c.get("document/get", docParams(id))
	res := dig(a.payload(t), "document", "result")
	if dig(res, "primary", "success") != true || dig(res, "primary", "payload", "pointsAmount") != json.Number("12.5") {
		t.Fatalf("document/get after processing: %s", a.raw)
	}
	if l := s.AllLedger(); len(l) != 1 || l[0].Seq != 1 || l[0].Amount != "12.5" || !l[0].At.Equal(clock.Now()) {
		t.Fatalf("ledger %+v", l)
	}
	clock.Advance(time.Second)
	s.ProcessDue()
	if l := s.AllLedger(); len(l) != 2 || l[1].Seq != 2 || l[1].OrderID != "ord-2" {
		t.Fatalf("ledger %+v", l)
	}
}

func TestHandlerMountedElsewhere(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{})
	defer s.Close()
	mux := http.NewServeMux()
	mux.Handle("/mlm/", s.Handler())
	hs := httptest.NewServer(mux)
	defer hs.Close()
	c := newClient(t, s)
	c.base = hs.URL + "/mlm" + BasePath
	mustOK(t, c.get("user/exists", loginParams("a@example.com")))
	if s.Calls("user/exists") != 1 {
		t.Error("call not counted")
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	s, err := Start("127.0.0.1:0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") || !strings.HasSuffix(s.URL, BasePath) {
		t.Errorf("URL %q", s.URL)
	}
	mustOK(t, newClient(t, s).get("user/exists", loginParams("a@example.com")))
	addr := strings.TrimSuffix(strings.TrimPrefix(s.URL, "http://"), BasePath)
	if _, err := Start(addr, Options{}); err == nil {
		t.Error("Start on a busy address succeeded")
	}
}

func TestAddAccountPanics(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{})
	defer s.Close()
	root := s.AddAccount("root@example.com", "pw", 0)
	for name, f := range map[string]func(){
		"empty login":     func() { s.AddAccount("", "pw", 0) },
		"duplicate login": func() { s.AddAccount("Root@example.com", "pw", 0) },
		"unknown sponsor": func() { s.AddAccount("x@example.com", "pw", root.AccountID+1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func TestRequestsDone(t *testing.T) {
	t.Parallel()
	s, c := newTestServer(t, Options{})
	acct := s.AddAccount("a@example.com", "pw", 0)
	s.SetFaults("account/volume-change", Faults{LatencyMin: 300 * time.Millisecond})
	done := make(chan answer)
	go func() { done <- c.post("account/volume-change", volumeParams(acct.AccountID, "1", "o1", "PV")) }()
	for s.Calls("account/volume-change") == 0 {
		time.Sleep(time.Millisecond)
	}
	mark := s.RequestMark()
	if s.RequestsDone(mark) {
		t.Fatal("RequestsDone while a request received before the mark is being handled")
	}
	if !s.RequestsDone(0) {
		t.Fatal("RequestsDone(0) must hold: no request came before it")
	}
	mustOK(t, <-done)
	for end := time.Now().Add(5 * time.Second); !s.RequestsDone(mark); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("RequestsDone stays false after the request was answered")
		}
	}
	if len(s.Ledger(acct.AccountID)) != 1 {
		t.Fatal("the request was not applied")
	}
}
