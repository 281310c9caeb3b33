package mlmsofttest

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
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

type faultKind int

const (
	faultNone faultKind = iota
	faultBusiness
	faultServerError
	faultTooMany
	faultHang
	faultReset
	faultApplyThenDrop
	faultNonJSON
)

var faultNames = [...]string{"none", "business error", "server error", "too many requests", "hang", "reset", "apply then drop", "non-JSON"}

func (k faultKind) String() string { return faultNames[k] }

type faultPlan struct {
	kind    faultKind
	latency time.Duration
	variant int // error shape or 5xx status, 0..2
	f       Faults
}

// plan draws the faults of one request to endpoint.
func (s *Server) plan(endpoint string) faultPlan {
	s.mu.Lock()
	f, ok := s.faults[endpoint]
	if !ok {
		f, ok = s.faults["*"]
	}
	s.mu.Unlock()
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
	rates := []struct {
		rate float64
		kind faultKind
	}{
		{f.BusinessErrorRate, faultBusiness},
		{f.ServerErrorRate, faultServerError},
		{f.TooManyRate, faultTooMany},
		{f.HangRate, faultHang},
		{f.ResetRate, faultReset},
		{f.ApplyThenDropRate, faultApplyThenDrop},
		{f.NonJSONRate, faultNonJSON},
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
	case faultServerError:
		code := [...]int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[p.variant]
		writeText(w, code, "text/html; charset=utf-8", htmlPage(code))
	case faultTooMany:
		if p.f.RetryAfter > 0 {
			secs := int64(math.Ceil(p.f.RetryAfter.Seconds()))
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
		writeText(w, http.StatusTooManyRequests, "text/html; charset=utf-8", htmlPage(http.StatusTooManyRequests))
	case faultNonJSON:
		writeText(w, http.StatusOK, "text/html; charset=utf-8", htmlPage(http.StatusOK))
	case faultHang:
		s.hang(w, r)
	case faultReset:
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
