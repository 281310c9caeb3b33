package mlmsofttest

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
)

// clientWaiting returns a client whose transport waits up to wait for
// "100 Continue" before sending a POST body anyway.
func clientWaiting(t *testing.T, s *Server, wait time.Duration) *apiClient {
	c := newClient(t, s)
	tr := &http.Transport{ExpectContinueTimeout: wait, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	c.hc = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return c
}

// TestIgnoreExpect plays a server that never answers "Expect: 100-continue"
// against real Go clients: one that sends the body after waiting 1 s gets
// its answer about 1 s late, faults included; one that waits for 100
// Continue as long as it takes never sends the body, and nothing is
// applied.
func TestIgnoreExpect(t *testing.T) {
	t.Parallel()
	const ep = "account/volume-change"
	cases := []struct {
		name   string
		inject FaultKind
		check  func(t *testing.T, a answer)
		want   int // ledger entries
	}{
		{name: "served", want: 1, check: func(t *testing.T, a answer) { mustOK(t, a) }},
		{name: "server error after apply", inject: FaultServerErrorAfterApply, want: 1, check: func(t *testing.T, a answer) {
			if a.err != nil || a.status != http.StatusInternalServerError || a.jsonErr == nil {
				t.Errorf("err=%v status=%d body=%s", a.err, a.status, a.raw)
			}
		}},
		{name: "business error", inject: FaultBusinessError, check: func(t *testing.T, a answer) {
			if a.err != nil || a.status != http.StatusOK || a.env.Primary == nil || a.env.Primary.Success {
				t.Errorf("err=%v status=%d body=%s", a.err, a.status, a.raw)
			}
		}},
		{name: "reset", inject: FaultReset, check: func(t *testing.T, a answer) {
			if a.err == nil {
				t.Errorf("status %d, want a transport error", a.status)
			}
		}},
		{name: "apply then drop", inject: FaultApplyThenDrop, want: 1, check: func(t *testing.T, a answer) {
			if a.err == nil {
				t.Errorf("status %d, want a transport error", a.status)
			}
		}},
	}
	// The cases run at once, each on its own server: the 1 s waits overlap
	// (t.Parallel would run only GOMAXPROCS of them at a time).
	var wg sync.WaitGroup
	for _, tc := range cases {
		s, _ := newTestServer(t, Options{IgnoreExpect: true})
		root := s.AddAccount("root@example.com", "pw", 0)
		c := clientWaiting(t, s, time.Second)
		if tc.inject != 0 {
			s.InjectNext(ep, tc.inject, 1)
		}
		wg.Go(func() {
			a := c.post(ep, volumeParams(root.AccountID, "2.5", "ord-1", "PV"))
			t.Run(tc.name, func(t *testing.T) {
				tc.check(t, a)
				if !a.bodyRead || a.elapsed < 900*time.Millisecond || a.elapsed > 5*time.Second {
					t.Errorf("body read %v, answered after %v; want the body sent and the answer about 1 s late", a.bodyRead, a.elapsed)
				}
				if l := s.Ledger(root.AccountID); len(l) != tc.want || tc.want == 1 && l[0].Amount != "2.5" {
					t.Errorf("ledger %+v, want %d entries", l, tc.want)
				}
			})
		})
	}
	wg.Wait()

	t.Run("client waiting for 100 Continue", func(t *testing.T) {
		t.Parallel()
		logs := newLogRecorder(t)
		s, _ := newTestServer(t, Options{IgnoreExpect: true, Logf: logs.Logf})
		root := s.AddAccount("root@example.com", "pw", 0)
		c := clientWaiting(t, s, time.Hour)

		// Requests without a body to wait for are served as usual.
		mustOK(t, c.get("user/exists", loginParams("root@example.com")))
		mustOK(t, c.post(ep, volumeParams(root.AccountID, "1", "ord-0", "PV"), func(r *http.Request) { r.Header.Del("Expect") }))

		var a answer

		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		a = c.do(ctx, http.MethodPost, ep, volumeParams(root.AccountID, "2", "ord-1", "PV"))
		if a.err == nil || a.bodyRead {
			t.Errorf("err=%v status=%d body read %v; want a timeout with the body never sent", a.err, a.status, a.bodyRead)
		}
		// The plugin's own client waits as long as its timeout allows: the
		// request is not processed, and it knows.
		ac, err := api2.New(api2.Config{BaseURL: s.URL, Token: DefaultToken, Timeout: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		_, err = ac.ChangeVolume(t.Context(), api2.VolumeChange{AccountID: root.AccountID, Amount: json.Number("3"), OrderID: "ord-2", Alias: "PV"})
		if api2.KindOf(err) != api2.Retryable {
			t.Errorf("api2 client: %v (kind %v), want retryable", err, api2.KindOf(err))
		}

		mark := s.RequestMark()
		for end := time.Now().Add(5 * time.Second); !s.RequestsDone(mark); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatal("the server still waits for bodies the clients gave up on")
			}
		}
		if l := s.Ledger(root.AccountID); len(l) != 1 || l[0].OrderID != "ord-0" {
			t.Errorf("ledger %+v", l)
		}
		if n := logs.count("mlmsofttest: " + ep + ": the body never came (100 Continue not sent): the client closed the connection"); n != 2 {
			t.Errorf("logged %d bodies that never came, want 2:\n%s", n, logs.all())
		}
	})

	t.Run("without IgnoreExpect", func(t *testing.T) {
		t.Parallel()
		s, _ := newTestServer(t, Options{})
		root := s.AddAccount("root@example.com", "pw", 0)
		// A client that never sends its body unasked is served: the
		// server did send 100 Continue.
		mustOK(t, clientWaiting(t, s, time.Hour).post(ep, volumeParams(root.AccountID, "1", "o", "PV")))
	})
}

// rawExchange writes req on a new connection to s and returns the answer's
// status line and the rest.
func rawExchange(t *testing.T, s *Server, req string) (string, string) {
	t.Helper()
	addr := strings.TrimPrefix(strings.TrimSuffix(s.URL, BasePath), "http://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	rest, _ := io.ReadAll(br)
	return strings.TrimSpace(status), string(rest)
}

func TestIgnoreExpectRaw(t *testing.T) {
	t.Parallel()
	s, _ := newTestServer(t, Options{IgnoreExpect: true})
	head := "POST " + BasePath + "account/volume-change HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nApp-Id: 1\r\nSecurity-Key: x\r\nExpect: 100-continue\r\n"

	status, rest := rawExchange(t, s, head+"Transfer-Encoding: chunked\r\n\r\n")
	if status != "HTTP/1.1 411 Length Required" || !strings.Contains(rest, "Connection: close") {
		t.Errorf("chunked: %s\n%s", status, rest)
	}
	status, _ = rawExchange(t, s, head+"Content-Length: 2000000\r\n\r\n")
	if status != "HTTP/1.1 413 Request Entity Too Large" {
		t.Errorf("too large: %s", status)
	}
	// A body sent at once: never a 100 Continue, a well-formed answer.
	body := `{"accountId":1}`
	status, rest = rawExchange(t, s, head+"Content-Length: 15\r\n\r\n"+body)
	if status != "HTTP/1.1 403 Forbidden" {
		t.Errorf("signed wrong: %s\n%s", status, rest)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(status+"\r\n"+rest)), nil)
	if err != nil {
		t.Fatalf("malformed answer: %v\n%s", err, rest)
	}
	b, _ := io.ReadAll(resp.Body)
	if !resp.Close || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") ||
		resp.ContentLength != int64(len(b)) || !strings.Contains(string(b), msgBadKey) {
		t.Errorf("answer %v %s", resp.Header, b)
	}
}

// TestIgnoreExpectClose: Close does not wait for a body that never comes.
func TestIgnoreExpectClose(t *testing.T) {
	t.Parallel()
	s := NewServer(Options{IgnoreExpect: true, Logf: t.Logf})
	root := s.AddAccount("root@example.com", "pw", 0)
	c := clientWaiting(t, s, time.Hour)
	done := make(chan answer, 1)
	go func() { done <- c.post("account/volume-change", volumeParams(root.AccountID, "1", "o", "PV")) }()
	for s.Calls("account/volume-change") == 0 {
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { s.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for the body")
	}
	if a := <-done; a.err == nil || a.bodyRead {
		t.Errorf("err=%v body read %v", a.err, a.bodyRead)
	}
}
