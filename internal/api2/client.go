// Package api2 is the client of MLM Soft's API2 "online-office" gateway:
// request signing, the answer envelope, and the classification of every
// failure into retryable, ambiguous or business. Every assumption about the
// wire that MLMSOFT-API.md marks [assume] lives in this package.
package api2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	HTTPClient *http.Client  // nil means a client of our own
	Timeout    time.Duration // per request; 0 means 30s
	UserType   string        // the "type" parameter; "" means "member"
}

// Client sends signed API2 requests. Safe for concurrent use.
type Client struct {
	base     *url.URL
	token    string
	appID    string
	http     *http.Client
	timeout  time.Duration
	userType string
	// expect reports whether POST bodies wait for "100 Continue": only then
	// does an unread body prove that a failed request was not processed.
	expect bool
}

// maxAnswer bounds how much of an answer is read.
const maxAnswer = 8 << 20

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
	c.http, c.expect = httpClient(cfg.HTTPClient, c.timeout)
	return c, nil
}

// httpClient returns the client to use and whether it gates request bodies
// on "100 Continue". A host's client is copied, never changed; its transport
// is cloned with ExpectContinueTimeout set when it is an *http.Transport.
func httpClient(hc *http.Client, timeout time.Duration) (*http.Client, bool) {
	var out http.Client
	if hc != nil {
		out = *hc
	}
	var base *http.Transport
	switch t := out.Transport.(type) {
	case nil:
		base = http.DefaultTransport.(*http.Transport)
	case *http.Transport:
		base = t
	default:
		return &out, false // unknown RoundTripper: every post-send failure is ambiguous
	}
	t := base.Clone()
	// The body goes only after the server says "100 Continue" (which Go and
	// nginx send when the handler starts reading it). If the server answers,
	// hangs or drops before that, it cannot have processed the request.
	t.ExpectContinueTimeout = timeout + time.Minute
	out.Transport = t
	return &out, true
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Kind classifies a failure.
type Kind int

// The kinds of failure.
const (
	// Retryable: MLM Soft certainly did not process the request (network
	// error before the body went out, 5xx, 429, non-JSON, another non-2xx).
	Retryable Kind = iota + 1
	// Ambiguous: the request may have been processed but no usable answer
	// came back. Never resend blindly.
	Ambiguous
	// Business: MLM Soft answered and refused (a failed envelope). Permanent.
	Business
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case Retryable:
		return "retryable"
	case Ambiguous:
		return "ambiguous"
	case Business:
		return "business"
	}
	return "unknown"
}

// Error is every failure the client returns. Its text never includes the
// token, the Security-Key, a password or the request URL's query.
type Error struct {
	Kind       Kind
	Endpoint   string
	Status     int           // HTTP status, 0 if none came
	RetryAfter time.Duration // from a 429 or 503 Retry-After, 0 if none
	Code       int           // envelope errorCode, for business errors
	Message    string        // MLM Soft's message, for business errors
	Err        error         // the transport cause, if any
}

// Error describes the failure without secrets.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", e.Endpoint)
	switch e.Kind {
	case Business:
		b.WriteString("refused by MLM Soft")
		if e.Code != 0 {
			fmt.Fprintf(&b, " (errorCode %d)", e.Code)
		}
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
		return b.String()
	case Ambiguous:
		b.WriteString("no answer after the request was sent (it may have been processed)")
	default:
		b.WriteString("not processed")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the transport cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of err, or 0 when err is not from this client.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
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
// answer, or an *Error. Exported for the fake server's tests; the plugin
// uses the typed methods.
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
	var sent atomic.Bool
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, &Error{Kind: Retryable, Endpoint: endpoint, Err: errors.New("build request")}
	}
	if body != nil {
		req.ContentLength = int64(len(body))
		req.Body = io.NopCloser(bodyTracker{bytes.NewReader(body), &sent})
		req.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(bodyTracker{bytes.NewReader(body), &sent}), nil
		}
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
	req.Header.Set("Security-Key", phpquery.SecurityKey(signed, c.token))

	// GETs only read; a lost answer to one is as harmless as no request.
	mayHaveApplied := func() bool { return method != http.MethodGet && (sent.Load() || !c.expect) }

	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the URL, and a GET's query holds parameters
		}
		kind := Retryable
		if mayHaveApplied() {
			kind = Ambiguous
		}
		return nil, &Error{Kind: kind, Endpoint: endpoint, Err: err}
	}
	defer resp.Body.Close()
	raw, readErr := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// [assume] MLM Soft's error statuses are undocumented: any non-2xx
		// is a transport failure, retried (MLMSOFT-API.md, Envelope).
		return nil, &Error{Kind: Retryable, Endpoint: endpoint, Status: resp.StatusCode,
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	var env Envelope
	if readErr == nil {
		readErr = json.Unmarshal(raw, &env)
	}
	if readErr != nil {
		// A 2xx whose answer is cut or unreadable: if MLM Soft had the body
		// it may have acted on it.
		kind := Retryable
		if mayHaveApplied() {
			kind = Ambiguous
		}
		return nil, &Error{Kind: kind, Endpoint: endpoint, Status: resp.StatusCode, Err: fmt.Errorf("unreadable answer: %w", readErr)}
	}
	if !env.OK() {
		return nil, &Error{Kind: Business, Endpoint: endpoint, Status: resp.StatusCode, Code: env.ErrorCode, Message: env.Reason()}
	}
	return &env, nil
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
