package api2

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpServer is a raw HTTP/1.1 server: handle gets each request with only
// its head read; reading r.Body does not send "100 Continue", so handle
// alone decides what goes back, and when. After handle returns, whatever
// else the client sends on the connection is counted in late (bytes) until
// the client or the test closes it. It returns the API base URL.
func tcpServer(t *testing.T, handle func(conn net.Conn, r *http.Request)) (baseURL string, late func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		extra int
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				br := bufio.NewReader(conn)
				r, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				handle(conn, r)
				buf := make([]byte, 512)
				for {
					n, err := br.Read(buf)
					mu.Lock()
					extra += n
					mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return "http://" + l.Addr().String() + "/api2/online-office/", func() int {
		mu.Lock()
		defer mu.Unlock()
		return extra
	}
}

func writeAnswer(conn net.Conn, status int, body string, headers ...string) {
	fmt.Fprintf(conn, "HTTP/1.1 %d %s\r\nContent-Type: text/html\r\nContent-Length: %d\r\n", status, http.StatusText(status), len(body))
	for _, h := range headers {
		fmt.Fprintf(conn, "%s\r\n", h)
	}
	fmt.Fprintf(conn, "\r\n%s", body)
}

func reset(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// TestExpectWithoutContinue: servers that never send "100 Continue" (PHP's
// built-in server, some proxies) get the body after
// ExpectContinueTimeoutDefault; from then on, a failure is ambiguous.
func TestExpectWithoutContinue(t *testing.T) {
	t.Parallel()
	const wait = ExpectContinueTimeoutDefault
	readBody := func(t *testing.T, r *http.Request) {
		if r.Header.Get("Expect") != "100-continue" {
			t.Errorf("Expect = %q", r.Header.Get("Expect"))
		}
		b, err := io.ReadAll(r.Body)
		if err != nil || !strings.Contains(string(b), `"orderId":"o-1"`) {
			t.Errorf("body %q, %v", b, err)
		}
	}
	cases := []struct {
		name     string
		timeout  time.Duration
		handle   func(t *testing.T, conn net.Conn, r *http.Request)
		want     Kind
		slow     bool // the body waited for the Expect timeout
		lateBody bool // the transport sent the body after the answer
	}{
		{"(a) body after the wait, then success", 0, func(t *testing.T, conn net.Conn, r *http.Request) {
			readBody(t, r)
			writeAnswer(conn, 200, okEnv)
		}, success, true, false},
		{"(b) body after the wait, then 502", 0, func(t *testing.T, conn net.Conn, r *http.Request) {
			readBody(t, r)
			writeAnswer(conn, 502, gatewayHTML)
		}, Ambiguous, true, false},
		{"(c) 503 at once, connection kept", 0, func(t *testing.T, conn net.Conn, r *http.Request) {
			writeAnswer(conn, 503, gatewayHTML)
		}, Retryable, false, true},
		{"(c) 503 at once, connection closed", 0, func(t *testing.T, conn net.Conn, r *http.Request) {
			writeAnswer(conn, 503, gatewayHTML, "Connection: close")
			conn.(*net.TCPConn).CloseWrite()
		}, Retryable, false, false},
		{"(c) 103 then 503 at once, connection closed", 0, func(t *testing.T, conn net.Conn, r *http.Request) {
			io.WriteString(conn, "HTTP/1.1 103 Early Hints\r\nLink: </x.css>\r\n\r\n")
			writeAnswer(conn, 503, gatewayHTML, "Connection: close")
			conn.(*net.TCPConn).CloseWrite()
		}, Retryable, false, false},
		{"100 Continue, body, then 502", 0, func(t *testing.T, conn net.Conn, r *http.Request) {
			io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n")
			readBody(t, r)
			writeAnswer(conn, 502, gatewayHTML)
		}, Ambiguous, false, false},
		{"100 Continue, body, then success", 0, func(t *testing.T, conn net.Conn, r *http.Request) {
			io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n")
			readBody(t, r)
			writeAnswer(conn, 200, okEnv)
		}, success, false, false},
		{"reset before the body", 0, func(t *testing.T, conn net.Conn, r *http.Request) {
			reset(conn)
		}, Retryable, false, false},
		{"reset after the body", 0, func(t *testing.T, conn net.Conn, r *http.Request) {
			readBody(t, r)
			reset(conn)
		}, Ambiguous, true, false},
		{"timeout before the body", wait / 2, func(t *testing.T, conn net.Conn, r *http.Request) {
			io.Copy(io.Discard, conn) // until the client gives up
		}, Retryable, false, false},
		{"timeout after the body", wait * 3 / 2, func(t *testing.T, conn net.Conn, r *http.Request) {
			readBody(t, r)
			io.Copy(io.Discard, conn)
		}, Ambiguous, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base, late := tcpServer(t, func(conn net.Conn, r *http.Request) { tc.handle(t, conn, r) })
			c, err := New(Config{BaseURL: base, Token: token, Timeout: cmpOrDuration(tc.timeout, 5*time.Second)})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = c.ChangeVolume(context.Background(), VolumeChange{AccountID: 1, Amount: "1", OrderID: "o-1", Alias: "PV"})
			took := time.Since(start)
			if KindOf(err) != tc.want {
				t.Fatalf("got %v (kind %v), want kind %v", err, KindOf(err), tc.want)
			}
			checkErrorText(t, err, EndpointVolumeChange)
			if slow := took >= wait*9/10; slow != tc.slow && tc.timeout == 0 {
				t.Errorf("took %v, want slow = %v", took, tc.slow)
			}
			if tc.lateBody {
				// Go sends the body after such an answer to keep the
				// connection: proof of nothing.
				deadline := time.Now().Add(2 * time.Second)
				for late() == 0 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if late() == 0 {
					t.Errorf("the transport did not send the body after the answer; the case is not exercised")
				}
			}
		})
	}
}

func cmpOrDuration(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// TestExpectDisabled: without "Expect: 100-continue" the body follows the
// head at once, without waiting, so any failure after it is ambiguous; a
// refused connection still sent nothing. (An answer that beats the body
// out is still retryable, as with Expect; it is a race, not tested here.)
func TestExpectDisabled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		handle func(conn net.Conn, r *http.Request)
		want   Kind
	}{
		{"success", func(conn net.Conn, r *http.Request) {
			io.ReadAll(r.Body)
			writeAnswer(conn, 200, okEnv)
		}, success},
		{"503 after the body", func(conn net.Conn, r *http.Request) {
			io.ReadAll(r.Body)
			writeAnswer(conn, 503, gatewayHTML)
		}, Ambiguous},
		{"reset after the body", func(conn net.Conn, r *http.Request) {
			io.ReadAll(r.Body)
			reset(conn)
		}, Ambiguous},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var expect atomic.Value
			base, _ := tcpServer(t, func(conn net.Conn, r *http.Request) {
				expect.Store(r.Header.Get("Expect"))
				tc.handle(conn, r)
			})
			c, err := New(Config{BaseURL: base, Token: token, Timeout: 5 * time.Second, ExpectContinueTimeout: -1})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			_, err = c.ChangeVolume(context.Background(), VolumeChange{AccountID: 1, Amount: "1", OrderID: "o-1", Alias: "PV"})
			if KindOf(err) != tc.want {
				t.Fatalf("got %v, want kind %v", err, tc.want)
			}
			if took := time.Since(start); took > ExpectContinueTimeoutDefault/2 {
				t.Errorf("took %v", took)
			}
			if e, _ := expect.Load().(string); e != "" {
				t.Errorf("Expect = %q", e)
			}
		})
	}
	// A refused connection: the body was never read.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := New(Config{BaseURL: "http://" + addr + "/", Token: token, ExpectContinueTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ChangeVolume(context.Background(), VolumeChange{AccountID: 1, Amount: "1", OrderID: "o", Alias: "PV"}); KindOf(err) != Retryable {
		t.Errorf("refused: %v", err)
	}
}

// roundTripper is a RoundTripper we cannot configure.
type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestCustomRoundTripper: a custom RoundTripper is used as is and gets no
// Expect header; only whether it read the body tells.
func TestCustomRoundTripper(t *testing.T) {
	t.Parallel()
	fail := errors.New("boom")
	for _, tc := range []struct {
		name string
		rt   roundTripper
		want Kind
	}{
		{"fails without reading", func(r *http.Request) (*http.Response, error) { return nil, fail }, Retryable},
		{"fails after reading", func(r *http.Request) (*http.Response, error) {
			io.ReadAll(r.Body)
			return nil, fail
		}, Ambiguous},
		{"502 after reading", func(r *http.Request) (*http.Response, error) {
			io.ReadAll(r.Body)
			return &http.Response{StatusCode: 502, Body: io.NopCloser(strings.NewReader(gatewayHTML)), Header: http.Header{}, Request: r}, nil
		}, Ambiguous},
		{"reads through GetBody", func(r *http.Request) (*http.Response, error) {
			b, _ := r.GetBody()
			io.ReadAll(b)
			return nil, fail
		}, Ambiguous},
		{"success", func(r *http.Request) (*http.Response, error) {
			if r.Header.Get("Expect") != "" {
				return nil, errors.New("Expect sent")
			}
			io.ReadAll(r.Body)
			return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(okEnv)), Header: http.Header{}, Request: r}, nil
		}, success},
	} {
		c, err := New(Config{BaseURL: "https://mlm.example/api2/online-office/", Token: token, HTTPClient: &http.Client{Transport: tc.rt}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ChangeVolume(context.Background(), VolumeChange{AccountID: 1, Amount: "1", OrderID: "o", Alias: "PV"})
		if KindOf(err) != tc.want {
			t.Errorf("%s: got %v, want kind %v", tc.name, err, tc.want)
		}
		if tc.want == Retryable && !errors.Is(err, fail) {
			t.Errorf("%s: %v does not wrap the cause", tc.name, err)
		}
	}
}

func TestTransportSettings(t *testing.T) {
	t.Parallel()
	tr := &http.Transport{ExpectContinueTimeout: 9 * time.Second}
	for _, tc := range []struct {
		cfg    time.Duration
		want   time.Duration
		expect bool
	}{
		{0, ExpectContinueTimeoutDefault, true},
		{250 * time.Millisecond, 250 * time.Millisecond, true},
		{-1, 9 * time.Second, false}, // untouched: no Expect header is sent
	} {
		c, err := New(Config{BaseURL: "https://x.example/", Token: "t", HTTPClient: &http.Client{Transport: tr}, ExpectContinueTimeout: tc.cfg})
		if err != nil {
			t.Fatal(err)
		}
		got := c.http.Transport.(*http.Transport)
		if got == tr || got.ExpectContinueTimeout != tc.want || c.expect != tc.expect {
			t.Errorf("ExpectContinueTimeout %v: transport %v, expect %v", tc.cfg, got.ExpectContinueTimeout, c.expect)
		}
	}
	if tr.ExpectContinueTimeout != 9*time.Second {
		t.Error("the host's transport was modified")
	}
}
