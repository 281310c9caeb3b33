package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// fake is the fake MLM Soft (mlmsofttest) served on a loopback listener of
// our own, behind a thin handler that counts the account/volume-change
// requests it acknowledged (HTTP 200), so that a measurement ends the
// moment the last change of a workload was acknowledged.
type fake struct {
	URL  string // the API2 base URL of our listener
	Addr string // host:port of our listener
	srv  *http.Server

	inner     atomic.Pointer[mlmsofttest.Server]
	nAccounts int // made by accounts, made again by reset

	acked atomic.Int64
	mu    sync.Mutex
	goal  int64         // acked value that closes done; 0: none
	done  chan struct{} // closed when acked reaches goal
}

const volumeEndpoint = "account/volume-change"

// newFake starts the fake with no faults, no delay and synchronous
// user/create answers.
func newFake() (*fake, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &fake{Addr: ln.Addr().String()}
	f.inner.Store(mlmsofttest.NewServer(mlmsofttest.Options{Synchronous: true}))
	f.URL = "http://" + f.Addr + mlmsofttest.BasePath
	f.srv = &http.Server{Handler: f, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

func (f *fake) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = f.srv.Shutdown(ctx)
	f.inner.Load().Close()
}

// reset replaces the fake MLM Soft behind the listener by a new one with
// the same accounts (same ids: they are handed out in order), so that the
// ledger of earlier measurements, which the fake keeps in memory, does not
// grow the heap, and the garbage collector's work, of later ones. Call it
// between measurements only.
func (f *fake) reset() {
	s := mlmsofttest.NewServer(mlmsofttest.Options{Synchronous: true})
	before := f.inner.Load()
	makeAccounts(s, f.nAccounts)
	if a, ok := s.Account(userEmail(f.nAccounts - 1)); f.nAccounts > 0 {
		if b, _ := before.Account(userEmail(f.nAccounts - 1)); !ok || a.AccountID != b.AccountID {
			panic("fake.reset: the new fake handed out other account ids")
		}
	}
	f.inner.Swap(s).Close()
}

// AllLedger returns the current fake's ledger.
func (f *fake) AllLedger() []mlmsofttest.LedgerEntry { return f.inner.Load().AllLedger() }

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	inner := f.inner.Load()
	if !strings.HasSuffix(r.URL.Path, volumeEndpoint) {
		inner.ServeHTTP(w, r)
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	inner.ServeHTTP(rec, r)
	if rec.code != http.StatusOK {
		return
	}
	n := f.acked.Add(1)
	f.mu.Lock()
	if f.goal != 0 && n >= f.goal && f.done != nil {
		close(f.done)
		f.done = nil
	}
	f.mu.Unlock()
}

// expect returns a channel closed once n more volume changes than now were
// acknowledged.
func (f *fake) expect(n int) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	f.goal = f.acked.Load() + int64(n)
	if n <= 0 {
		close(ch)
		return ch
	}
	f.done = ch
	return ch
}

// wait waits for ch, at most timeout.
func (f *fake) wait(ch <-chan struct{}, timeout time.Duration, what string) error {
	select {
	case <-ch:
		return nil
	case <-time.After(timeout):
		f.mu.Lock()
		goal := f.goal
		f.mu.Unlock()
		return fmt.Errorf("%s: timed out after %s with %d of the expected changes acknowledged short", what, timeout, goal-f.acked.Load())
	}
}

// accounts makes n accounts in the fake (logins bench-<i>@example.com
// under one root) and returns their account ids.
func (f *fake) accounts(n int) []int64 {
	f.nAccounts = n
	return makeAccounts(f.inner.Load(), n)
}

func makeAccounts(s *mlmsofttest.Server, n int) []int64 {
	root := s.AddAccount("root@example.com", "pw", 0)
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = s.AddAccount(userEmail(i), "pw", root.AccountID).AccountID
	}
	return ids
}

func userID(i int) string    { return fmt.Sprintf("u%d", i) }
func userEmail(i int) string { return fmt.Sprintf("bench-%d@example.com", i) }

// delayProxy is a TCP proxy to target that holds every chunk read in
// either direction for oneWay before writing it on, in order: a link with a
// round-trip time of 2×oneWay and unlimited bandwidth.
type delayProxy struct {
	ln      net.Listener
	target  string
	oneWay  time.Duration
	wg      sync.WaitGroup
	closing atomic.Bool
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

func newDelayProxy(target string, oneWay time.Duration) (*delayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &delayProxy{ln: ln, target: target, oneWay: oneWay, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	return p, nil
}

func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

func (p *delayProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *delayProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() {
			// Connecting costs one delayed round trip, as over the WAN.
			time.Sleep(2 * p.oneWay)
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				return
			}
			p.track(c, true)
			p.track(up, true)
			var inner sync.WaitGroup
			inner.Go(func() { p.pipe(up, c) })
			inner.Go(func() { p.pipe(c, up) })
			inner.Wait()
			c.Close()
			up.Close()
			p.track(c, false)
			p.track(up, false)
		})
	}
}

type chunk struct {
	at  time.Time
	b   []byte
	eof bool
}

// pipe copies src to dst, each chunk oneWay after it was read.
func (p *delayProxy) pipe(dst, src net.Conn) {
	q := make(chan chunk, 1024)
	go func() {
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				q <- chunk{at: time.Now().Add(p.oneWay), b: buf[:n]}
			}
			if err != nil {
				q <- chunk{at: time.Now().Add(p.oneWay), eof: true}
				close(q)
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.at); d > 0 {
			time.Sleep(d)
		}
		if c.eof {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			} else {
				dst.Close()
			}
			continue
		}
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			dst.Close()
			for range q {
			}
			return
		}
	}
}

func (p *delayProxy) Close() {
	p.closing.Store(true)
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
