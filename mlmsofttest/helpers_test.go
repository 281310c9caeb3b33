package mlmsofttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
)

// apiClient talks to a Server the way the plugin does: signed requests,
// POSTs with "Expect: 100-continue" and a transport that waits for the
// 100 Continue as long as it takes.
type apiClient struct {
	base, token, appID string
	hc                 *http.Client
}

func newClient(t testing.TB, s *Server) *apiClient {
	tr := &http.Transport{ExpectContinueTimeout: time.Minute, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &apiClient{base: s.URL, token: DefaultToken, appID: DefaultAppID, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// trackedBody records whether the transport read the request body, which it
// does only after the server asked for it with 100 Continue.
type trackedBody struct {
	r    io.Reader
	read atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.r.Read(p)
}

type primary struct {
	Success bool            `json:"success"`
	Payload json.RawMessage `json:"payload"`
	Message string          `json:"message"`
	Errors  []any           `json:"errors"`
}

type envelopeT struct {
	ErrorCode     int             `json:"errorCode"`
	ErrorMessage  string          `json:"errorMessage"`
	ErrorExtended json.RawMessage `json:"errorExtended"`
	Primary       *primary        `json:"primary"`
	Secondary     []any           `json:"secondary"`
	Locale        string          `json:"locale"`
}

type answer struct {
	status   int
	header   http.Header
	raw      []byte
	env      envelopeT
	jsonErr  error
	bodyRead bool // POST: the transport sent the body
	err      error
	elapsed  time.Duration
}

// payload decodes primary.payload into generic values (numbers as
// json.Number).
func (a answer) payload(t testing.TB) any {
	t.Helper()
	if a.env.Primary == nil {
		t.Fatalf("no primary in %s", a.raw)
	}
	return decode(t, a.env.Primary.Payload)
}

func decode(t testing.TB, b []byte) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

// dig walks objects by key.
func dig(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func num(t testing.TB, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("%v (%T) is not a JSON number", v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("%v is not an integer", n)
	}
	return i
}

type reqOpt func(*http.Request)

func (c *apiClient) get(ep string, params phpquery.Map, opts ...reqOpt) answer {
	return c.do(context.Background(), http.MethodGet, ep, params, opts...)
}

func (c *apiClient) post(ep string, params phpquery.Map, opts ...reqOpt) answer {
	return c.do(context.Background(), http.MethodPost, ep, params, opts...)
}

func (c *apiClient) do(ctx context.Context, method, ep string, params phpquery.Map, opts ...reqOpt) answer {
	u := c.base + ep
	var body *trackedBody
	var n int
	if method == http.MethodGet {
		if q := phpquery.BuildQuery(params); q != "" {
			u += "?" + q
		}
	} else {
		b, err := json.Marshal(params)
		if err != nil {
			return answer{err: err}
		}
		body, n = &trackedBody{r: bytes.NewReader(b)}, len(b)
	}
	var req *http.Request
	var err error
	if body != nil {
		req, err = http.NewRequestWithContext(ctx, method, u, body)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, u, nil)
	}
	if err != nil {
		return answer{err: err}
	}
	if body != nil {
		req.ContentLength = int64(n)
		req.Header.Set("Expect", "100-continue")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("App-Id", c.appID)
	req.Header.Set("Security-Key", phpquery.SecurityKey(params, c.token))
	for _, o := range opts {
		o(req)
	}
	return c.send(req, body)
}

func (c *apiClient) send(req *http.Request, body *trackedBody) answer {
	start := time.Now()
	resp, err := c.hc.Do(req)
	a := answer{err: err}
	if err != nil {
		a.elapsed = time.Since(start)
		if body != nil {
			a.bodyRead = body.read.Load()
		}
		return a
	}
	defer resp.Body.Close()
	a.status, a.header = resp.StatusCode, resp.Header
	a.raw, a.err = io.ReadAll(resp.Body)
	a.elapsed = time.Since(start)
	a.jsonErr = json.Unmarshal(a.raw, &a.env)
	if body != nil {
		a.bodyRead = body.read.Load()
	}
	return a
}

// raw sends a request built by hand (exact query or body).
func (c *apiClient) raw(method, ep, query, body, key string) answer {
	u := c.base + ep
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	if body == "" {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("App-Id", c.appID)
	req.Header.Set("Security-Key", key)
	return c.send(req, nil)
}

// mustOK fails the test unless a is a successful envelope.
func mustOK(t testing.TB, a answer) {
	t.Helper()
	if a.err != nil || a.status != http.StatusOK || a.jsonErr != nil || a.env.ErrorCode != 0 || a.env.Primary == nil || !a.env.Primary.Success {
		t.Fatalf("want success, got err=%v status=%d body=%s", a.err, a.status, a.raw)
	}
}

// mustRefuse fails the test unless a is a business refusal mentioning msg.
func mustRefuse(t testing.TB, a answer, msg string) {
	t.Helper()
	if a.err != nil || a.status != http.StatusOK || a.jsonErr != nil || a.env.Primary == nil || a.env.Primary.Success {
		t.Fatalf("want a business error, got err=%v status=%d body=%s", a.err, a.status, a.raw)
	}
	if !strings.Contains(a.env.Primary.Message, msg) || !strings.Contains(string(a.raw), msg) {
		t.Fatalf("want a business error containing %q, got %s", msg, a.raw)
	}
}

func createParams(login, password string, sponsor int64) phpquery.Map {
	return phpquery.Map{
		{Key: "login", Value: login},
		{Key: "type", Value: "member"},
		{Key: "password", Value: password},
		{Key: "sponsorId", Value: sponsor},
		{Key: "profile", Value: phpquery.Map{
			{Key: "firstname", Value: "Jane"},
			{Key: "lastname", Value: "Doe"},
			{Key: "email", Value: login},
		}},
	}
}

func volumeParams(account int64, amount, orderID, alias string) phpquery.Map {
	return phpquery.Map{
		{Key: "accountId", Value: account},
		{Key: "pointsAmount", Value: json.Number(amount)},
		{Key: "orderId", Value: orderID},
		{Key: "volumePropertyAlias", Value: alias},
	}
}

func loginParams(login string) phpquery.Map {
	return phpquery.Map{{Key: "login", Value: login}, {Key: "type", Value: "member"}}
}

func docParams(id any) phpquery.Map {
	return phpquery.Map{{Key: "id", Value: id}}
}

// newTestServer starts a server closed at the end of the test.
func newTestServer(t testing.TB, opts Options) (*Server, *apiClient) {
	t.Helper()
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	s := NewServer(opts)
	t.Cleanup(s.Close)
	return s, newClient(t, s)
}

// logRecorder keeps the lines a Server logs, for tests that count events.
type logRecorder struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

func newLogRecorder(t testing.TB) *logRecorder { return &logRecorder{t: t} }

func (l *logRecorder) Logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	l.t.Log(line)
}

// count returns how many lines equal line.
func (l *logRecorder) count(line string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if s == line {
			n++
		}
	}
	return n
}

// all returns every line logged so far.
func (l *logRecorder) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// describe sums up what a request met, to compare runs.
func describe(a answer) string {
	switch {
	case a.err != nil:
		return "error"
	case a.jsonErr != nil:
		return fmt.Sprintf("%d html", a.status)
	case a.env.Primary != nil && !a.env.Primary.Success:
		return fmt.Sprintf("refused %T", a.env.Primary.Errors[0])
	default:
		return fmt.Sprint(a.status)
	}
}
