// Package chaosproxy is a real TCP HTTP/1.1 reverse proxy for tests, put
// between a client and an API server, that misbehaves the way gateways do:
// it answers 5xx after the server applied the request, refuses before
// forwarding, drops the connection or hangs. Production code never imports
// it.
//
// Like nginx with request buffering, the proxy reads each request in full
// before forwarding it, answering "100 Continue" itself to a client that
// sent "Expect: 100-continue" (when it starts reading the body), and
// forwards it without the Expect header. It reads the server's whole answer
// before deciding what the client gets. A request forwarded is always
// completed towards the server, even if the client gave up, so counts of
// forwarded requests are exact once the client has its outcome.
//
// Each request's Mode comes first from the queue filled by Next, then from
// a random source seeded by Options.Seed: outcomes are reproducible for a
// seed and an order of requests.
package chaosproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// Mode is what the proxy does with one request.
type Mode int

// The modes.
const (
	// Pass forwards the request and returns the server's answer (or 502 if
	// the server could not be reached).
	Pass Mode = iota
	// ForwardThen5xx forwards the request, waits for the server's whole
	// answer, discards it and answers 502 or 504 with an HTML page: the
	// server applied the request but the client sees a gateway error.
	ForwardThen5xx
	// Reject5xxBeforeForward reads the request and answers 502 with an
	// HTML page without forwarding it.
	Reject5xxBeforeForward
	// ForwardThenDrop forwards the request, waits for the server's answer,
	// then closes the client's connection without answering.
	ForwardThenDrop
	// ForwardThenHang forwards the request, waits for the server's answer,
	// then holds the client's connection open, silent, until the client
	// closes it or the proxy is closed.
	ForwardThenHang

	numModes
)

// String names the mode.
func (m Mode) String() string {
	switch m {
	case Pass:
		return "pass"
	case ForwardThen5xx:
		return "forward-then-5xx"
	case Reject5xxBeforeForward:
		return "reject-5xx-before-forward"
	case ForwardThenDrop:
		return "forward-then-drop"
	case ForwardThenHang:
		return "forward-then-hang"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// maxBody is the largest request body the proxy accepts (nginx answers
// 413 past its client_max_body_size too).
const maxBody = 8 << 20

// Options configures a Proxy. The zero value passes every request.
type Options struct {
	// Seed seeds the random source that picks modes and 5xx statuses.
	Seed uint64
	// Rates gives each misbehaving mode its probability per request, for
	// requests the Next queue does not cover; the rest pass. The rates must
	// be non-negative and sum to at most 1.
	Rates map[Mode]float64
	// Paths, when not empty, limits misbehaviour to these paths (relative
	// to the target's path, like "account/volume-change"): other requests
	// pass and use neither the Next queue nor the random source.
	Paths []string
}

// Counts counts requests, for one path or for all.
type Counts struct {
	// Seen is the number of requests received.
	Seen int
	// Forwarded is the number of requests the server answered in full.
	Forwarded int
	// ForwardErrors is the number of forwarded requests that got no full
	// answer from the server (it may still have applied them).
	ForwardErrors int
	// Modes is the number of requests handled in each mode.
	Modes map[Mode]int
}

// Event is one request's decision.
type Event struct {
	// Seq numbers requests in arrival order, from 1.
	Seq int
	// Path is the request path relative to the target's path.
	Path string
	// Mode is what the proxy did with it.
	Mode Mode
}

// Proxy is a misbehaving reverse proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	// URL is the proxy's URL with the target's path, to use in place of
	// the target's URL (for example "http://127.0.0.1:41234/api2/online-office/").
	URL string

	target *url.URL
	opts   Options
	ln     net.Listener
	srv    *http.Server
	tr     *http.Transport
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // handlers in flight

	mu     sync.Mutex
	closed bool
	rng    *rand.Rand
	next   []Mode
	counts map[string]*Counts
	events []Event
	held   map[net.Conn]struct{} // hijacked connections
}

// New starts a proxy to target, an absolute http URL, listening on
// 127.0.0.1 on a free port. It panics on a bad target or bad Options, as
// they are test bugs. Stop it with Close.
func New(target string, opts Options) *Proxy {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		panic(fmt.Sprintf("chaosproxy: target %q is not an absolute http URL", target))
	}
	sum := 0.0
	for m, r := range opts.Rates {
		if m <= Pass || m >= numModes || r < 0 {
			panic(fmt.Sprintf("chaosproxy: bad rate %v for %v", r, m))
		}
		sum += r
	}
	if sum > 1 {
		panic(fmt.Sprintf("chaosproxy: rates sum to %v > 1", sum))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("chaosproxy: listen: " + err.Error())
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		URL:    "http://" + ln.Addr().String() + u.EscapedPath(),
		target: u,
		opts:   opts,
		tr:     &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
		ctx:    ctx,
		cancel: cancel,
		rng:    rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15)),
		counts: map[string]*Counts{},
		held:   map[net.Conn]struct{}{},
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve)}
	p.ln = ln
	go func() { _ = p.srv.Serve(ln) }()
	return p
}

// Next makes the next n requests (on Options.Paths, if set) use mode,
// after those queued by earlier calls.
func (p *Proxy) Next(mode Mode, n int) {
	if mode < Pass || mode >= numModes {
		panic(fmt.Sprintf("chaosproxy: unknown %v", mode))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for range n {
		p.next = append(p.next, mode)
	}
}

// Counts returns the counts of path (relative to the target's path, like
// "account/volume-change").
func (p *Proxy) Counts(path string) Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	return copyCounts(p.counts[path])
}

// Total returns the counts over all paths.
func (p *Proxy) Total() Counts {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := Counts{Modes: map[Mode]int{}}
	for _, c := range p.counts {
		t.Seen += c.Seen
		t.Forwarded += c.Forwarded
		t.ForwardErrors += c.ForwardErrors
		for m, n := range c.Modes {
			t.Modes[m] += n
		}
	}
	return t
}

// Events returns every request's decision so far, in arrival order.
func (p *Proxy) Events() []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Event(nil), p.events...)
}

func copyCounts(c *Counts) Counts {
	out := Counts{Modes: map[Mode]int{}}
	if c != nil {
		out.Seen, out.Forwarded, out.ForwardErrors = c.Seen, c.Forwarded, c.ForwardErrors
		for m, n := range c.Modes {
			out.Modes[m] = n
		}
	}
	return out
}

// Close stops the proxy: it closes every client connection, held ones
// included, cancels forwards in flight and waits for its handlers.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	held := p.held
	p.held = nil
	p.mu.Unlock()

	p.cancel()
	p.ln.Close() // in case Serve has not started yet
	_ = p.srv.Close()
	for c := range held {
		c.Close()
	}
	p.wg.Wait()
	p.tr.CloseIdleConnections()
}

// relPath is path relative to the target's path.
func (p *Proxy) relPath(path string) string {
	base := p.target.Path
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	if rest, ok := strings.CutPrefix(path, base); ok {
		return rest
	}
	return strings.TrimPrefix(path, "/")
}

// decide counts a new request and picks its mode and, for ForwardThen5xx,
// its status.
func (p *Proxy) decide(path string) (Mode, int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Pass, 0, false
	}
	p.wg.Add(1)
	c := p.counts[path]
	if c == nil {
		c = &Counts{Modes: map[Mode]int{}}
		p.counts[path] = c
	}
	c.Seen++
	mode := Pass
	if len(p.opts.Paths) == 0 || contains(p.opts.Paths, path) {
		if len(p.next) > 0 {
			mode, p.next = p.next[0], p.next[1:]
		} else {
			x, acc := p.rng.Float64(), 0.0
			for m := Pass + 1; m < numModes; m++ {
				acc += p.opts.Rates[m]
				if x < acc {
					mode = m
					break
				}
			}
		}
	}
	status := 0
	if mode == ForwardThen5xx {
		status = http.StatusBadGateway
		if p.rng.IntN(2) == 1 {
			status = http.StatusGatewayTimeout
		}
	}
	c.Modes[mode]++
	p.events = append(p.events, Event{Seq: len(p.events) + 1, Path: path, Mode: mode})
	return mode, status, true
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// serve handles one client request.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	path := p.relPath(r.URL.Path)
	mode, status, ok := p.decide(path)
	if !ok {
		writePage(w, http.StatusServiceUnavailable)
		return
	}
	defer p.wg.Done()

	// Reading the body sends "100 Continue" to a client that expects it.
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			writePage(w, http.StatusRequestEntityTooLarge)
		}
		return // the client went away
	}
	if mode == Reject5xxBeforeForward {
		writePage(w, http.StatusBadGateway)
		return
	}

	resp, answer, err := p.forward(r, body)
	p.mu.Lock()
	if err != nil {
		p.counts[path].ForwardErrors++
	} else {
		p.counts[path].Forwarded++
	}
	p.mu.Unlock()

	switch mode {
	case Pass:
		if err != nil {
			writePage(w, http.StatusBadGateway)
			return
		}
		h := w.Header()
		for k, v := range resp.Header {
			if !hopByHop(k) {
				h[k] = v
			}
		}
		h.Del("Content-Length")
		if r.Method != http.MethodHead && resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified {
			h.Set("Content-Length", strconv.Itoa(len(answer)))
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(answer)
	case ForwardThen5xx:
		writePage(w, status)
	case ForwardThenDrop:
		if c := p.hijack(w); c != nil {
			p.release(c)
		}
	case ForwardThenHang:
		if c := p.hijack(w); c != nil {
			_, _ = io.Copy(io.Discard, c) // until the client or Close closes it
			p.release(c)
		}
	}
}

// forward sends the request to the target and reads the whole answer.
func (p *Proxy) forward(r *http.Request, body []byte) (*http.Response, []byte, error) {
	u := *p.target
	u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	out, err := http.NewRequestWithContext(p.ctx, r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range r.Header {
		if !hopByHop(k) && k != "Expect" {
			out.Header[k] = v
		}
	}
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	return resp, answer, nil
}

// hijack takes over the client connection, or returns nil if the proxy is
// closing (the connection is then closed).
func (p *Proxy) hijack(w http.ResponseWriter) net.Conn {
	c, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held == nil { // closed
		c.Close()
		return nil
	}
	p.held[c] = struct{}{}
	return c
}

// release closes a hijacked connection.
func (p *Proxy) release(c net.Conn) {
	p.mu.Lock()
	delete(p.held, c)
	p.mu.Unlock()
	c.Close()
}

// hopByHop reports whether a header belongs to one connection only.
func hopByHop(k string) bool {
	switch http.CanonicalHeaderKey(k) {
	case "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// writePage answers status with an HTML page like nginx's.
func writePage(w http.ResponseWriter, status int) {
	text := fmt.Sprintf("%d %s", status, http.StatusText(status))
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n<hr><center>chaosproxy</center>\r\n</body>\r\n</html>\r\n", text, text)
}
