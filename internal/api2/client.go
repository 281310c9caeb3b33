package api2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
)

// Config configures a Client. BaseURL and Token are required.
type Config struct {
	BaseURL    string        // e.g. https://acme.mlmsoft.com/api2/online-office/
	Token      string        // the API token; never logged
	AppID      string        // the App-Id header; "" means "1"
	HTTPClient *http.Client  // nil means a client of our own; copied, never changed
	Timeout    time.Duration // per request; 0 means 30s
	UserType   string        // the "type" parameter; "" means "member"
	// ExpectContinueTimeout bounds how long a POST waits for the server's
	// "100 Continue" before sending its body anyway; 0 means
	// ExpectContinueTimeoutDefault. Negative sends no "Expect:
	// 100-continue" at all: the body goes with the head, so every failure
	// once it went is Ambiguous. Ignored with a RoundTripper that is not an
	// *http.Transport.
	ExpectContinueTimeout time.Duration
	// MaxIdleConnsPerHost is how many idle connections to MLM Soft are
	// kept for reuse, so that N concurrent workers do not open and close a
	// socket per request; 0 means MaxIdleConnsPerHostDefault, negative
	// keeps none. Ignored with a RoundTripper that is not an
	// *http.Transport.
	MaxIdleConnsPerHost int
	// MisconfigMessages lists case-insensitive parts of MLM Soft's refusal
	// texts that blame the credentials (token, App-Id) rather than the
	// request: a failed envelope whose reason contains one is a Misconfigured
	// error, not a Business one. nil means MisconfigMessagesDefault; an
	// empty non-nil list matches nothing.
	MisconfigMessages []string
}

// Client sends signed API2 requests. Safe for concurrent use.
type Client struct {
	base      *url.URL
	token     string
	appID     string
	http      *http.Client
	timeout   time.Duration
	userType  string
	misconfig []string // lower-cased
	// expect reports whether POSTs send "Expect: 100-continue", so that
	// their body waits (a bounded time) until the server asks for it.
	expect bool
}

// maxAnswer bounds how much of an answer is read.
const maxAnswer = 8 << 20

// MaxIdleConnsPerHostDefault is Config.MaxIdleConnsPerHost when it is 0.
const MaxIdleConnsPerHostDefault = 16

// ExpectContinueTimeoutDefault is how long a POST waits for "100 Continue"
// when Config.ExpectContinueTimeout is 0: one second, as curl does (MLM
// Soft's own PHP integration sends its requests with curl). A server that
// never sends "100 Continue" (PHP's built-in server, some proxies) then
// gets the body after that second instead of never.
const ExpectContinueTimeoutDefault = time.Second

// New returns a Client for cfg.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("base URL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	if cfg.Token == "" {
		return nil, errors.New("API token is empty")
	}
	c := &Client{
		base:     u,
		token:    cfg.Token,
		appID:    cmpOr(cfg.AppID, "1"),
		timeout:  cfg.Timeout,
		userType: cmpOr(cfg.UserType, "member"),
	}
	if c.timeout <= 0 {
		c.timeout = 30 * time.Second
	}
	misconfig := cfg.MisconfigMessages
	if misconfig == nil {
		misconfig = MisconfigMessagesDefault
	}
	for _, m := range misconfig {
		if m = strings.ToLower(strings.TrimSpace(m)); m != "" {
			c.misconfig = append(c.misconfig, m)
		}
	}
	expectWait := cfg.ExpectContinueTimeout
	if expectWait == 0 {
		expectWait = ExpectContinueTimeoutDefault
	}
	idle := cfg.MaxIdleConnsPerHost
	if idle == 0 {
		idle = MaxIdleConnsPerHostDefault
	}
	c.http, c.expect = httpClient(cfg.HTTPClient, expectWait, idle)
	return c, nil
}

// httpClient returns the client to use and whether POSTs send "Expect:
// 100-continue" (expectWait > 0 and a transport that honours it). A host's
// client is copied, never changed; its transport is cloned when it is an
// *http.Transport, and keeps idle connections per host (negative: none).
// Redirects are never followed: a redirect means the base URL is wrong
// (http for https, a moved host), and following one would resend a POST's
// body.
func httpClient(hc *http.Client, expectWait time.Duration, idle int) (*http.Client, bool) {
	var out http.Client
	if hc != nil {
		out = *hc
	}
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	var base *http.Transport
	switch t := out.Transport.(type) {
	case nil:
		dt, ok := http.DefaultTransport.(*http.Transport)
		if !ok {
			return &out, false // a host replaced it: a RoundTripper we cannot configure
		}
		base = dt
	case *http.Transport:
		base = t
	default:
		return &out, false // unknown RoundTripper: used as is
	}
	t := base.Clone()
	if expectWait > 0 {
		// The body goes when the server says "100 Continue" (which Go and
		// nginx send when the handler starts reading it) or when expectWait
		// passes. An answer or a failure before that proves the server
		// never had the body.
		t.ExpectContinueTimeout = expectWait
	}
	t.MaxIdleConnsPerHost = idle // Go reads a negative value as "keep none"
	if t.MaxIdleConns != 0 && t.MaxIdleConns < idle {
		t.MaxIdleConns = idle // 0 is no limit
	}
	out.Transport = t
	return &out, expectWait > 0
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Envelope is the API2 answer wrapper.
type Envelope struct {
	ErrorCode    int    `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
	Primary      struct {
		Success bool            `json:"success"`
		Payload json.RawMessage `json:"payload"`
		Message string          `json:"message"`
		Errors  Messages        `json:"errors"`
	} `json:"primary"`
}

// OK reports whether the envelope says success.
func (e *Envelope) OK() bool { return e.ErrorCode == 0 && e.Primary.Success }

// Reason joins every message a failed envelope carries.
func (e *Envelope) Reason() string {
	var parts []string
	add := func(s string) {
		s = strings.TrimSpace(s)
		for _, p := range parts {
			if p == s {
				return
			}
		}
		if s != "" {
			parts = append(parts, s)
		}
	}
	add(e.ErrorMessage)
	add(e.Primary.Message)
	for _, m := range e.Primary.Errors {
		add(m)
	}
	if len(parts) == 0 {
		return "no reason given"
	}
	return strings.Join(parts, "; ")
}

// Messages reads primary.errors in all three shapes MLM Soft uses: strings,
// [msg] arrays, and {message} objects (also nested in a map by field).
type Messages []string

// UnmarshalJSON implements json.Unmarshaler.
func (m *Messages) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*m = nil
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			*m = append(*m, x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			if s, ok := x["message"].(string); ok {
				*m = append(*m, s)
				return
			}
			for _, e := range x {
				walk(e)
			}
		case float64, bool:
			*m = append(*m, fmt.Sprint(x))
		}
	}
	walk(v)
	return nil
}

// ID is an id that MLM Soft sends as a number or a numeric string.
type ID int64

// UnmarshalJSON implements json.Unmarshaler.
func (id *ID) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*id = 0
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != float64(int64(f)) {
			return fmt.Errorf("id %s is not an integer", b)
		}
		n = int64(f)
	}
	*id = ID(n)
	return nil
}

// bodyWatch follows a POST's body through the transport, to tell whether
// the server may have read it.
type bodyWatch struct {
	read      atomic.Bool // the transport started reading the body
	continued atomic.Bool // the server asked for it with "100 Continue"
	other1xx  atomic.Bool // another informational answer came first
	answered  atomic.Bool // an answer started
	readFirst atomic.Bool // the body was being read when the answer started
}

// body returns a reader of b that records its first read.
func (w *bodyWatch) body(b []byte) io.ReadCloser {
	return io.NopCloser(bodyTracker{bytes.NewReader(b), &w.read})
}

// trace returns the hooks that tell when the answer started.
func (w *bodyWatch) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GotFirstResponseByte: func() {
			w.readFirst.Store(w.read.Load())
			w.answered.Store(true)
		},
		Got100Continue: func() { w.continued.Store(true) },
		Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
			if code != http.StatusContinue {
				w.other1xx.Store(true)
			}
			return nil
		},
	}
}

// mayHaveRead reports whether the server may have read the body, once the
// request ended with an answer (gotAnswer) or without one. Nil (a GET) has
// no body.
//
// Bytes leave only after the transport reads them from the body, so a body
// never read never left, with or without "Expect: 100-continue" and with
// any RoundTripper. When an answer began before the body was read, the
// server decided without it: Go's transport sends the body after such an
// answer only to keep the connection usable.
func (w *bodyWatch) mayHaveRead(gotAnswer bool) bool {
	switch {
	case w == nil:
		return false
	case w.continued.Load():
		return true
	case gotAnswer && w.answered.Load() && !w.other1xx.Load():
		return w.readFirst.Load()
	}
	// No answer, or one whose start we could not see (a RoundTripper that
	// ignores traces, or a 1xx before it): whatever was read may have gone.
	return w.read.Load()
}

// bodyTracker records whether the transport started reading the body.
type bodyTracker struct {
	r    io.Reader
	read *atomic.Bool
}

func (t bodyTracker) Read(p []byte) (int, error) {
	t.read.Store(true)
	return t.r.Read(p)
}

// Call sends one signed request and returns the envelope of a successful
// answer, or an *Error classified by the rule in the package comment. The
// typed methods use it; it is exported for tests and for endpoints they do
// not cover.
func (c *Client) Call(ctx context.Context, method, endpoint string, params phpquery.Map) (*Envelope, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := *c.base
	u.Path += endpoint
	var body []byte
	if method == http.MethodGet {
		u.RawQuery = phpquery.BuildQuery(params)
	} else {
		if params == nil {
			params = phpquery.Map{}
		}
		var err error
		if body, err = params.MarshalJSON(); err != nil {
			return nil, &Error{Kind: Retryable, Endpoint: endpoint, Err: fmt.Errorf("encode body: %w", err)}
		}
	}
	var watch *bodyWatch
	if body != nil {
		watch = &bodyWatch{}
		ctx = httptrace.WithClientTrace(ctx, watch.trace())
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, &Error{Kind: Retryable, Endpoint: endpoint, Err: errors.New("build request")}
	}
	if body != nil {
		req.ContentLength = int64(len(body))
		req.Body = watch.body(body)
		req.GetBody = func() (io.ReadCloser, error) { return watch.body(body), nil }
		if c.expect {
			req.Header.Set("Expect", "100-continue")
		}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("App-Id", c.appID)
	signed := params
	if method == http.MethodGet {
		// The server signs what PHP puts in $_GET: parse our own query the
		// same way, so names PHP rewrites and values it drops sign alike.
		if signed, err = phpquery.ParseQuery(u.RawQuery); err != nil {
			return nil, &Error{Kind: Retryable, Endpoint: endpoint, Err: fmt.Errorf("encode query: %w", err)}
		}
	}
	key := phpquery.SecurityKey(signed, c.token)
	req.Header.Set("Security-Key", key)

	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL, and a GET's query holds parameters
		}
		o := outcome{method: method, bodyRead: watch.mayHaveRead(false), err: err}
		return nil, c.failure(endpoint, o, nil, nil, secrets(c.token, key, u.RawQuery, params))
	}
	defer resp.Body.Close()
	bodyRead := watch.mayHaveRead(true)
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	o, env := answered(method, bodyRead, resp.StatusCode, raw, readErr, c.misconfig)
	if classify(o) == success {
		return env, nil
	}
	return nil, c.failure(endpoint, o, env, resp, secrets(c.token, key, u.RawQuery, params))
}

// failure builds the *Error of a failed outcome. env and resp are nil when
// none came; secrets are taken out of every text MLM Soft or the transport
// supplied.
func (c *Client) failure(endpoint string, o outcome, env *Envelope, resp *http.Response, secrets []string) *Error {
	e := &Error{Kind: classify(o), Endpoint: endpoint, Status: o.status, Err: scrubErr(o.err, secrets)}
	if o.err == nil && env != nil {
		e.Code = env.ErrorCode
		if !env.OK() {
			e.Message = env.Reason()
		}
	}
	if resp != nil {
		if !is2xx(resp.StatusCode) {
			e.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
		if e.Kind == Misconfigured && e.Message == "" {
			e.Message = describe(resp)
		}
	}
	e.Message = scrub(e.Message, secrets)
	return e
}

// secrets lists what must never appear in an error: the token, the
// Security-Key, a GET's query and every password parameter, raw and in
// each encoding a server could echo back.
func secrets(token, key, query string, params phpquery.Map) []string {
	out := []string{token, key, query}
	var walk func(m phpquery.Map)
	walk = func(m phpquery.Map) {
		for _, p := range m {
			switch v := p.Value.(type) {
			case phpquery.Map:
				walk(v)
			case string:
				if strings.Contains(strings.ToLower(p.Key), "password") {
					form := strings.TrimPrefix(phpquery.BuildQuery(phpquery.Map{{Key: "p", Value: v}}), "p=")
					quoted, _ := phpquery.Map{{Key: "p", Value: v}}.MarshalJSON()
					quoted = bytes.TrimSuffix(bytes.TrimPrefix(quoted, []byte(`{"p":"`)), []byte(`"}`))
					out = append(out, v, form, string(quoted), url.QueryEscape(v), url.PathEscape(v))
				}
			}
		}
	}
	walk(params)
	return out
}

// retryAfter parses a Retry-After header: seconds or an HTTP date.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
