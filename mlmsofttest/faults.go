package mlmsofttest

import (
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Faults describes the failures injected into one endpoint's requests. The
// zero value injects nothing.
//
// The rates are probabilities (0 to 1) of mutually exclusive outcomes: for
// each request one number is drawn and compared with the rates added up in
// the order of the fields below, so if they sum to more than 1 the later
// ones get what is left. Latency is drawn independently and comes first.
// Each request to an endpoint with faults takes exactly three draws from the
// server's seeded source (latency, outcome, variant), so a sequence of
// requests sent one after another always meets the same faults for a seed.
type Faults struct {
	// BusinessErrorRate answers HTTP 200 with a failed envelope, after the
	// body was read and the signature checked, without applying anything.
	// primary.errors has one of three shapes, chosen at random: ["msg"],
	// [["msg"]] or [{"message":"msg"}].
	BusinessErrorRate float64
	// ServerErrorRate answers 500, 502 or 503 before reading the body.
	ServerErrorRate float64
	// TooManyRate answers 429 before reading the body.
	TooManyRate float64
	// RetryAfter is sent with 429 answers as Retry-After in whole seconds,
	// rounded up; zero sends no Retry-After.
	RetryAfter time.Duration
	// LatencyMin and LatencyMax bound a uniformly drawn delay, in real
	// time, before the body is read (then the request goes on as drawn). A
	// LatencyMax below LatencyMin means exactly LatencyMin.
	LatencyMin, LatencyMax time.Duration
	// HangRate never answers: the connection is held, the body never read
	// and nothing applied, until the client goes away or the server closes.
	HangRate float64
	// ResetRate closes the connection with a TCP RST before reading the
	// body.
	ResetRate float64
	// ApplyThenDropRate reads the body (so "100 Continue" is sent), applies
	// the request as usual, then closes the connection without answering.
	ApplyThenDropRate float64
	// NonJSONRate answers HTTP 200 with an HTML page, before reading the
	// body and without applying anything.
	NonJSONRate float64
	// ServerErrorAfterApplyRate reads the body (so "100 Continue" is
	// sent), checks and applies the request as usual, then answers 500,
	// 502 or 504 with an HTML page and no envelope: a gateway that failed
	// or timed out after MLM Soft applied the request.
	ServerErrorAfterApplyRate float64
	// ServerErrorAfterReadRate reads the body (so "100 Continue" is sent),
	// applies nothing, and answers 502, 503 or 504 with an HTML page: a
	// gateway that took the request but never got it through.
	ServerErrorAfterReadRate float64
}

func (f Faults) isZero() bool { return f == Faults{} }

// SetFaults sets the faults injected into requests to endpoint (such as
// "account/volume-change"), or, with "*", into every endpoint that has no
// faults of its own. A specific endpoint's Faults replace the "*" ones
// entirely. The zero Faults removes the setting.
func (s *Server) SetFaults(endpoint string, f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.isZero() {
		delete(s.faults, endpoint)
		return
	}
	s.faults[endpoint] = f
}

// FaultKind names one kind of injected failure, for InjectNext and the
// control endpoint. The zero FaultKind is no fault; the named constants are
// the kinds the Faults rates draw from, with the same effects.
type FaultKind int

// The kinds of fault. Each acts like the Faults rate of the same name.
const (
	// FaultBusinessError answers HTTP 200 with a failed envelope after the
	// body was read and the signature checked; nothing is applied.
	FaultBusinessError FaultKind = iota + 1
	// FaultServerError answers 500, 502 or 503 before the body is read.
	FaultServerError
	// FaultTooMany answers 429 before the body is read.
	FaultTooMany
	// FaultHang never answers and never reads the body.
	FaultHang
	// FaultReset closes the connection with a TCP RST before the body is
	// read.
	FaultReset
	// FaultApplyThenDrop reads the body, applies the request, then closes
	// the connection without answering.
	FaultApplyThenDrop
	// FaultNonJSON answers HTTP 200 with an HTML page before the body is
	// read.
	FaultNonJSON
	// FaultServerErrorAfterApply reads the body, applies the request, then
	// answers 500, 502 or 504 with an HTML page.
	FaultServerErrorAfterApply
	// FaultServerErrorAfterRead reads the body, applies nothing, and
	// answers 502, 503 or 504 with an HTML page.
	FaultServerErrorAfterRead
)

// faultNames holds, per FaultKind, the name String returns and
// ParseFaultKind reads, and the name used in log lines (which tests count,
// so they never change).
var faultNames = [...]struct{ name, log string }{
	{"none", "none"},
	{"business-error", "business error"},
	{"server-error", "server error"},
	{"too-many", "too many requests"},
	{"hang", "hang"},
	{"reset", "reset"},
	{"apply-then-drop", "apply then drop"},
	{"non-json", "non-JSON"},
	{"server-error-after-apply", "server error after apply"},
	{"server-error-after-read", "server error after read"},
}

func (k FaultKind) valid() bool { return k > 0 && int(k) < len(faultNames) }

// String returns the kind's name as ParseFaultKind reads it, such as
// "business-error" or "server-error-after-apply"; "none" for the zero
// FaultKind and "FaultKind(n)" for an unknown one.
func (k FaultKind) String() string {
	if k == 0 || k.valid() {
		return faultNames[k].name
	}
	return "FaultKind(" + strconv.Itoa(int(k)) + ")"
}

func (k FaultKind) logName() string {
	if k == 0 || k.valid() {
		return faultNames[k].log
	}
	return k.String()
}

// ParseFaultKind returns the FaultKind named name, as FaultKind.String
// writes it ("business-error", "server-error", "too-many", "hang",
// "reset", "apply-then-drop", "non-json", "server-error-after-apply",
// "server-error-after-read"). Case does not matter and spaces or
// underscores may stand for the hyphens. It returns an error for any other
// name, "none" included.
func ParseFaultKind(name string) (FaultKind, error) {
	n := strings.NewReplacer(" ", "-", "_", "-").Replace(strings.ToLower(strings.TrimSpace(name)))
	for k := FaultKind(1); k.valid(); k++ {
		if faultNames[k].name == n {
			return k, nil
		}
	}
	names := make([]string, 0, len(faultNames)-1)
	for _, f := range faultNames[1:] {
		names = append(names, f.name)
	}
	return 0, fmt.Errorf("mlmsofttest: unknown fault kind %q (want one of %s)", name, strings.Join(names, ", "))
}

// injection is one InjectNext call still pending.
type injection struct {
	kind FaultKind
	left int // requests still to meet it
	used int // requests that met it, for the variant
}

// InjectNext makes the next n requests to endpoint (such as
// "account/volume-change", or "*" for any endpoint without injections of
// its own) meet a fault of kind, before and without any random draw of
// SetFaults: a test gets exactly the failure it wants, on the request it
// wants, and a seeded run stays reproducible. Injections queue up in call
// order: InjectNext(ep, FaultHang, 1) then InjectNext(ep, FaultReset, 2)
// makes the next request hang and the two after it reset. Only requests
// that reach fault injection consume them: not those to an unknown
// endpoint or with the wrong method, nor those refused by SetDown; a
// request refused after that (bad signature, App-Id or body) consumes its
// injection like one that met it, as it would its random draws. An
// injected fault comes without latency; its variant cycles with each
// request it hits (server errors answer 500, 502, 503 in turn, the after
// apply ones 500, 502, 504, the after read ones 502, 503, 504, business
// errors use the three shapes of primary.errors in turn), and 429 answers
// carry the RetryAfter of the endpoint's Faults, if any. A business error
// says "Injected business error (mlmsofttest)", like the random one.
//
// An n of zero or less cancels the injections pending for endpoint. It
// panics if kind is not one of the named FaultKind constants, a mistake in
// the test itself. Safe for concurrent use.
func (s *Server) InjectNext(endpoint string, kind FaultKind, n int) {
	if n > 0 && !kind.valid() {
		panic(fmt.Sprintf("mlmsofttest: InjectNext: unknown fault kind %d", int(kind)))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if n <= 0 {
		delete(s.injections, endpoint)
		return
	}
	s.injections[endpoint] = append(s.injections[endpoint], &injection{kind: kind, left: n})
}

// takeInjectionLocked consumes the next injection for endpoint, if any.
func (s *Server) takeInjectionLocked(endpoint string) (FaultKind, int, bool) {
	key := endpoint
	q := s.injections[key]
	if len(q) == 0 {
		key = "*"
		q = s.injections[key]
	}
	if len(q) == 0 {
		return 0, 0, false
	}
	in := q[0]
	variant := in.used % 3
	in.used++
	in.left--
	if in.left == 0 {
		if len(q) == 1 {
			delete(s.injections, key)
		} else {
			s.injections[key] = q[1:]
		}
	}
	return in.kind, variant, true
}

type faultPlan struct {
	kind    FaultKind
	latency time.Duration
	variant int // error shape or 5xx status, 0..2
	f       Faults
}

// plan decides the faults of one request to endpoint: a pending injection,
// else three draws when the endpoint has Faults.
func (s *Server) plan(endpoint string) faultPlan {
	s.mu.Lock()
	f, ok := s.faults[endpoint]
	if !ok {
		f, ok = s.faults["*"]
	}
	kind, variant, injected := s.takeInjectionLocked(endpoint)
	s.mu.Unlock()
	if injected {
		return faultPlan{kind: kind, variant: variant, f: f}
	}
	if !ok {
		return faultPlan{}
	}
	s.rngMu.Lock()
	l, u, v := s.rng.Float64(), s.rng.Float64(), s.rng.Intn(3)
	s.rngMu.Unlock()

	p := faultPlan{f: f, variant: v, latency: f.LatencyMin}
	if f.LatencyMax > f.LatencyMin {
		p.latency += time.Duration(l * float64(f.LatencyMax-f.LatencyMin))
	}
	// The order of addition: new rates go last so that an old seed keeps
	// its outcomes.
	rates := []struct {
		rate float64
		kind FaultKind
	}{
		{f.BusinessErrorRate, FaultBusinessError},
		{f.ServerErrorRate, FaultServerError},
		{f.TooManyRate, FaultTooMany},
		{f.HangRate, FaultHang},
		{f.ResetRate, FaultReset},
		{f.ApplyThenDropRate, FaultApplyThenDrop},
		{f.NonJSONRate, FaultNonJSON},
		{f.ServerErrorAfterApplyRate, FaultServerErrorAfterApply},
		{f.ServerErrorAfterReadRate, FaultServerErrorAfterRead},
	}
	acc := 0.0
	for _, r := range rates {
		acc += max(r.rate, 0)
		if u < acc {
			p.kind = r.kind
			break
		}
	}
	return p
}

// sleep waits d in real time; it reports false if the client went away or
// the server closed first.
func (s *Server) sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.ctx.Done():
		return false
	}
}

// actBeforeBody carries out the faults that happen before the body is read.
// It reports whether the request was dealt with.
func (s *Server) actBeforeBody(w http.ResponseWriter, r *http.Request, p faultPlan) bool {
	switch p.kind {
	case FaultServerError:
		writeServerError(w, p.variant, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable)
	case FaultTooMany:
		if p.f.RetryAfter > 0 {
			secs := int64(math.Ceil(p.f.RetryAfter.Seconds()))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
		writeText(w, http.StatusTooManyRequests, "text/html; charset=utf-8", htmlPage(http.StatusTooManyRequests))
	case FaultNonJSON:
		writeText(w, http.StatusOK, "text/html; charset=utf-8", htmlPage(http.StatusOK))
	case FaultHang:
		s.hang(w, r)
	case FaultReset:
		drop(w, true)
	default:
		return false
	}
	return true
}

// hang holds the request without answering until the client goes away or
// the server closes. The connection is hijacked so that a client giving up
// is noticed even though the body was never read.
func (s *Server) hang(w http.ResponseWriter, r *http.Request) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			stop := context.AfterFunc(s.ctx, func() { conn.Close() })
			_, _ = io.Copy(io.Discard, conn) // ends on the client's close or ours
			stop()
			conn.Close()
			return
		}
	}
	select {
	case <-r.Context().Done():
	case <-s.ctx.Done():
	}
}

// drop closes the connection without an answer; with rst, with a TCP RST.
func drop(w http.ResponseWriter, rst bool) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok && rst {
				_ = tc.SetLinger(0)
			}
			conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// writeServerError answers the HTML error page of codes[variant].
func writeServerError(w http.ResponseWriter, variant int, codes ...int) {
	code := codes[variant%len(codes)]
	writeText(w, code, "text/html; charset=utf-8", htmlPage(code))
}

func htmlPage(code int) string {
	text := strconv.Itoa(code) + " " + http.StatusText(code)
	if code == http.StatusOK {
		text = "Maintenance"
	}
	return "<!DOCTYPE html>\n<html><head><title>" + text + "</title></head><body><h1>" + text + "</h1></body></html>\n"
}

func writeText(w http.ResponseWriter, code int, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}
