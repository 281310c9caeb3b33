package api2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
)

// Bodies MLM Soft, its gateways and the fake answer with.
const (
	okEnv     = `{"errorCode":0,"errorMessage":"","errorExtended":null,"primary":{"success":true,"payload":{"queueRequest":true,"documentId":5},"message":"","errors":[]},"secondary":[],"locale":"en_US"}`
	failedEnv = `{"errorCode":0,"errorMessage":"","errorExtended":null,"primary":{"success":false,"payload":[],"message":"Sponsor not found","errors":[{"message":"Sponsor not found"}]},"secondary":[],"locale":"en_US"}`
	// the fake's own answer to a bad Security-Key
	fakeForbidden  = `{"errorCode":403,"errorMessage":"Security key is invalid","errorExtended":null,"primary":null,"secondary":[],"locale":"en_US"}`
	tokenEnv       = `{"errorCode":0,"primary":{"success":false,"message":"API token is invalid","errors":[]}}`
	notFoundEnv    = `{"errorCode":404,"errorMessage":"Not found","errorExtended":null,"primary":null}`
	methodEnv      = `{"errorCode":405,"errorMessage":"Method not allowed","primary":null}`
	badJSONEnv     = `{"errorCode":400,"errorMessage":"Invalid JSON body","primary":null}`
	tooManyEnv     = `{"errorCode":429,"errorMessage":"Too many requests","primary":null}`
	rateKeyEnv     = `{"errorCode":429,"errorMessage":"API key rate limit exceeded","primary":null}`
	serverEnv      = `{"errorCode":500,"errorMessage":"Internal server error","primary":null}`
	codeOnlyFailed = `{"errorCode":17,"errorMessage":"Login exists","primary":{"success":true}}`
	gatewayHTML    = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>\n"
)

var (
	errReset   = fmt.Errorf("read tcp 127.0.0.1:1->127.0.0.1:2: %w", syscall.ECONNRESET)
	errTimeout = context.DeadlineExceeded
	errCut     = io.ErrUnexpectedEOF
)

// classifyRows is the rule as a table: for each answer, the Kind for a GET,
// for a POST whose body never left (Expect: 100-continue, unread) and for a
// POST whose body the server may have read. success is 0.
var classifyRows = []struct {
	name                 string
	status               int // 0: no answer
	body                 string
	err                  error // a transport failure (with status: reading the answer failed)
	get, unread, mayRead Kind
}{
	// MLM Soft's own answers.
	{"200 success envelope", 200, okEnv, nil, success, success, success},
	{"201 success envelope", 201, okEnv, nil, success, success, success},
	{"200 failed envelope", 200, failedEnv, nil, Business, Business, Business},
	{"200 errorCode without message", 200, codeOnlyFailed, nil, Business, Business, Business},
	{"200 failed envelope naming the token", 200, tokenEnv, nil, Misconfigured, Misconfigured, Misconfigured},
	{"200 the fake's 403 envelope", 200, fakeForbidden, nil, Misconfigured, Misconfigured, Misconfigured},
	{"400 failed envelope", 400, badJSONEnv, nil, Business, Retryable, Business},
	{"405 failed envelope", 405, methodEnv, nil, Business, Retryable, Business},
	{"422 failed envelope", 422, failedEnv, nil, Business, Retryable, Business},
	{"429 envelope", 429, tooManyEnv, nil, Retryable, Retryable, Retryable},
	{"429 envelope naming the API key", 429, rateKeyEnv, nil, Retryable, Retryable, Retryable},
	{"400 success envelope", 400, okEnv, nil, Retryable, Retryable, Ambiguous},
	// Server errors: with or without an envelope, a POST may be half applied.
	{"500 envelope", 500, serverEnv, nil, Retryable, Retryable, Ambiguous},
	{"502 envelope", 502, failedEnv, nil, Retryable, Retryable, Ambiguous},
	{"503 envelope", 503, serverEnv, nil, Retryable, Retryable, Ambiguous},
	{"504 envelope", 504, serverEnv, nil, Retryable, Retryable, Ambiguous},
	{"500 success envelope", 500, okEnv, nil, Retryable, Retryable, Ambiguous},
	{"503 envelope naming the security key", 503, fakeForbidden, nil, Misconfigured, Misconfigured, Misconfigured},
	{"500 HTML", 500, gatewayHTML, nil, Retryable, Retryable, Ambiguous},
	{"502 HTML", 502, gatewayHTML, nil, Retryable, Retryable, Ambiguous},
	{"503 HTML", 503, gatewayHTML, nil, Retryable, Retryable, Ambiguous},
	{"504 HTML", 504, gatewayHTML, nil, Retryable, Retryable, Ambiguous},
	{"429 HTML", 429, gatewayHTML, nil, Retryable, Retryable, Ambiguous},
	{"400 HTML", 400, gatewayHTML, nil, Retryable, Retryable, Ambiguous},
	{"409 empty", 409, "", nil, Retryable, Retryable, Ambiguous},
	// The credentials or the path.
	{"401 HTML", 401, gatewayHTML, nil, Misconfigured, Misconfigured, Misconfigured},
	{"401 envelope", 401, `{"errorCode":401,"errorMessage":"Unauthorized","primary":null}`, nil, Misconfigured, Misconfigured, Misconfigured},
	{"403 the fake's envelope", 403, fakeForbidden, nil, Misconfigured, Misconfigured, Misconfigured},
	{"403 HTML", 403, gatewayHTML, nil, Misconfigured, Misconfigured, Misconfigured},
	{"403 success envelope", 403, okEnv, nil, Misconfigured, Misconfigured, Misconfigured},
	{"404 HTML", 404, gatewayHTML, nil, Misconfigured, Misconfigured, Misconfigured},
	{"404 envelope", 404, notFoundEnv, nil, Misconfigured, Misconfigured, Misconfigured},
	{"403 cut", 403, `{"errorCode":4`, errCut, Misconfigured, Misconfigured, Misconfigured},
	{"300", 300, "", nil, Misconfigured, Misconfigured, Misconfigured},
	{"301", 301, gatewayHTML, nil, Misconfigured, Misconfigured, Misconfigured},
	{"302", 302, "", nil, Misconfigured, Misconfigured, Misconfigured},
	{"303", 303, "", nil, Misconfigured, Misconfigured, Misconfigured},
	{"307", 307, "", nil, Misconfigured, Misconfigured, Misconfigured},
	{"308", 308, okEnv, nil, Misconfigured, Misconfigured, Misconfigured},
	// 2xx that MLM Soft did not write, or not wholly.
	{"200 HTML", 200, gatewayHTML, nil, Retryable, Retryable, Ambiguous},
	{"200 empty", 200, "", nil, Retryable, Retryable, Ambiguous},
	{"204 no content", 204, "", nil, Retryable, Retryable, Ambiguous},
	{"200 garbage", 200, "\x00\xff{]", nil, Retryable, Retryable, Ambiguous},
	{"200 foreign JSON", 200, `{"status":"ok"}`, nil, Retryable, Retryable, Ambiguous},
	{"200 JSON list", 200, `[]`, nil, Retryable, Retryable, Ambiguous},
	{"200 errorCode as a string", 200, `{"errorCode":"0","primary":{"success":true}}`, nil, Retryable, Retryable, Ambiguous},
	{"200 errorCode not an integer", 200, `{"errorCode":0.5,"primary":{"success":true}}`, nil, Retryable, Retryable, Ambiguous},
	{"200 errorCode 0 without primary", 200, `{"errorCode":0}`, nil, Retryable, Retryable, Ambiguous},
	{"200 errorCode 0, primary null", 200, `{"errorCode":0,"primary":null}`, nil, Retryable, Retryable, Ambiguous},
	{"200 errorCode 0, unreadable primary", 200, `{"errorCode":0,"primary":{"success":"yes"}}`, nil, Retryable, Retryable, Ambiguous},
	{"200 refusal with an unreadable primary", 200, `{"errorCode":9,"errorMessage":"Login exists","primary":{"success":"no"}}`, nil, Business, Business, Business},
	{"200 cut envelope", 200, okEnv[:40], errCut, Retryable, Retryable, Ambiguous},
	{"200 whole envelope, then a reset", 200, okEnv, errReset, Retryable, Retryable, Ambiguous},
	{"200 reset before any byte of the body", 200, "", errReset, Retryable, Retryable, Ambiguous},
	{"200 timeout while reading the answer", 200, okEnv[:10], errTimeout, Retryable, Retryable, Ambiguous},
	// No answer at all: a reset or a timeout before the body left (unread)
	// or after (mayRead).
	{"reset", 0, "", errReset, Retryable, Retryable, Ambiguous},
	{"timeout", 0, "", errTimeout, Retryable, Retryable, Ambiguous},
	{"malformed answer", 0, "", errors.New(`malformed HTTP response "\x00"`), Retryable, Retryable, Ambiguous},
}

// TestClassifyTable checks the rule, row by row, through the same parsing
// that Call uses.
func TestClassifyTable(t *testing.T) {
	t.Parallel()
	msgs := MisconfigMessagesDefault
	for _, r := range classifyRows {
		for _, col := range []struct {
			method   string
			bodyRead bool
			want     Kind
		}{
			{http.MethodGet, false, r.get},
			{http.MethodPost, false, r.unread},
			{http.MethodPost, true, r.mayRead},
		} {
			var o outcome
			if r.status == 0 {
				o = outcome{method: col.method, bodyRead: col.bodyRead, err: r.err}
			} else {
				o, _ = answered(col.method, col.bodyRead, r.status, []byte(r.body), r.err, msgs)
			}
			if got := classify(o); got != col.want {
				t.Errorf("%s, %s (body read: %v): got %v, want %v", r.name, col.method, col.bodyRead, got, col.want)
			}
		}
	}
}

// TestClassifyExhaustive runs every combination of the outcome's fields
// through the rule and checks it against the rule's wording, bullet by
// bullet.
func TestClassifyExhaustive(t *testing.T) {
	t.Parallel()
	statuses := []int{0, 100, 101, 199}
	for s := 200; s <= 599; s++ {
		statuses = append(statuses, s)
	}
	n := 0
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut} {
		for _, bodyRead := range []bool{false, true} {
			for _, err := range []error{nil, errReset} {
				for _, status := range statuses {
					if status == 0 && err == nil {
						continue // no answer and no error does not happen
					}
					for _, env := range []envState{envAbsent, envOK, envFailed} {
						for _, mis := range []bool{false, true} {
							if mis && env != envFailed {
								continue
							}
							o := outcome{method: method, bodyRead: bodyRead, err: err, status: status, env: env, misconfig: mis}
							if want := expected(o); classify(o) != want {
								t.Errorf("%+v: got %v, want %v", o, classify(o), want)
							}
							n++
						}
					}
				}
			}
		}
	}
	if n < 10000 {
		t.Fatalf("only %d combinations", n)
	}
}

// expected is the rule as the package documents it, written independently
// of classify.
func expected(o outcome) Kind {
	usable := o.err == nil // an answer read to its end
	env := o.env
	if !usable {
		env = envAbsent
	}
	st := o.status
	switch {
	// Misconfigured: 401, 403, 404, any redirect, or a failed envelope
	// blaming the credentials (unless it is a 429: MLM Soft says "later").
	case st == 401 || st == 403 || st == 404 || (st >= 300 && st < 400):
		return Misconfigured
	case env == envFailed && o.misconfig && st != 429:
		return Misconfigured
	// 2xx + envelope: MLM Soft's answer, whatever was sent.
	case st >= 200 && st < 300 && env == envOK:
		return success
	case st >= 200 && st < 300 && env == envFailed:
		return Business
	// GETs change nothing.
	case o.method == http.MethodGet:
		if env == envFailed && st >= 400 && st < 500 && st != 429 {
			return Business
		}
		return Retryable
	// A POST whose body never left: not applied.
	case !o.bodyRead:
		return Retryable
	// A POST the server may have read: only a failed 4xx envelope decides.
	case env == envFailed && st == 429:
		return Retryable
	case env == envFailed && st >= 400 && st < 500:
		return Business
	}
	return Ambiguous
}

// TestParseEnvelope checks what counts as MLM Soft's answer.
func TestParseEnvelope(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body       string
		ok         bool // well-formed
		code       int
		success    bool
		reasonPart string
	}{
		{okEnv, true, 0, true, ""},
		{failedEnv, true, 0, false, "Sponsor not found"},
		{fakeForbidden, true, 403, false, "Security key is invalid"},
		{" \n" + notFoundEnv + "\n", true, 404, false, "Not found"},
		{`{"errorCode":-1,"errorMessage":"Internal","primary":null}`, true, -1, false, "Internal"},
		{`{"errorCode":9,"errorMessage":"Login exists","primary":"x"}`, true, 9, false, "Login exists"},
		{`{"errorCode":9,"errorMessage":7,"primary":"x"}`, true, 9, false, "no reason given"},
		{`{"errorCode":0,"primary":{"success":false}}`, true, 0, false, "no reason given"},
		{`{"errorCode":0,"primary":null}`, false, 0, false, ""},
		{`{"errorCode":0}`, false, 0, false, ""},
		{`{"errorCode":null,"primary":{"success":true}}`, false, 0, false, ""},
		{`{"errorCode":true}`, false, 0, false, ""},
		{`{"errorCode":1e3}`, false, 0, false, ""},
		{`{"primary":{"success":true}}`, false, 0, false, ""},
		{`"errorCode"`, false, 0, false, ""},
		{`{"errorCode":0,"primary":{"success":true}} trailing`, false, 0, false, ""},
		{gatewayHTML, false, 0, false, ""},
		{"", false, 0, false, ""},
	}
	for _, c := range cases {
		env := parseEnvelope([]byte(c.body))
		if (env != nil) != c.ok {
			t.Errorf("%q: well-formed = %v, want %v", c.body, env != nil, c.ok)
			continue
		}
		if env == nil {
			continue
		}
		if env.ErrorCode != c.code || env.OK() != c.success {
			t.Errorf("%q: code %d ok %v", c.body, env.ErrorCode, env.OK())
		}
		if !c.success && env.Reason() != c.reasonPart && c.reasonPart != "" {
			t.Errorf("%q: reason %q, want %q", c.body, env.Reason(), c.reasonPart)
		}
	}
}

func TestMisconfigMessages(t *testing.T) {
	t.Parallel()
	for _, reason := range []string{"Security key is invalid", "Invalid SECURITY-KEY", "App-Id is invalid", "Unknown app id",
		"Wrong API key", "API token expired", "Invalid token", "The token is invalid"} {
		if !misconfigured(reason, MisconfigMessagesDefault) {
			t.Errorf("%q is not recognised", reason)
		}
	}
	for _, reason := range []string{"Sponsor not found", "User with this login already exists", "Invalid login or password", "no reason given"} {
		if misconfigured(reason, MisconfigMessagesDefault) {
			t.Errorf("%q is taken for a configuration error", reason)
		}
	}
	c, err := New(Config{BaseURL: "https://x.example/", Token: "t", MisconfigMessages: []string{" Licence EXPIRED ", ""}})
	if err != nil {
		t.Fatal(err)
	}
	if !misconfigured("Your licence expired", c.misconfig) || misconfigured("Security key is invalid", c.misconfig) {
		t.Errorf("custom messages %q", c.misconfig)
	}
	if c, _ = New(Config{BaseURL: "https://x.example/", Token: "t", MisconfigMessages: []string{}}); len(c.misconfig) != 0 {
		t.Errorf("an empty list kept %q", c.misconfig)
	}
}
