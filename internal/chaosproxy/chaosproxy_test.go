package chaosproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const base = "/api2/online-office/"

// backend is an API server that counts requests and echoes what it got.
type backend struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

type echo struct {
	Path, Query, Body, Expect string
}

func newBackend(t *testing.T) *backend {
	b := &backend{hits: map[string]int{}}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.hits[r.URL.Path]++
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", "yes")
		_ = json.NewEncoder(w).Encode(echo{r.URL.Path, r.URL.RawQuery, string(body), r.Header.Get("Expect")})
	}))
	t.Cleanup(b.Close)
	return b
}

// count returns how many requests reached path (relative to base).
func (b *backend) count(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits[base+path]
}

func start(t *testing.T, opts Options) (*Proxy, *backend) {
	t.Helper()
	b := newBackend(t)
	p := New(b.URL+base, opts)
	t.Cleanup(p.Close)
	return p, b
}

// newClient returns a keep-alive client whose POSTs wait up to 5s for
// "100 Continue".
func newClient(t *testing.T, timeout time.Duration) *http.Client {
	tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// post sends a POST with "Expect: 100-continue" and returns the status (0
// for a transport error), the body and the error.
func post(c *http.Client, url, body string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Expect", "100-continue")
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestPassForwardsEverything(t *testing.T) {
	p, b := start(t, Options{})
	c := newClient(t, 5*time.Second)
	if !strings.HasSuffix(p.URL, base) {
		t.Fatalf("URL %q does not keep the target's path", p.URL)
	}

	began := time.Now()
	status, body, err := post(c, p.URL+"account/volume-change", `{"pointsAmount":0.1}`)
	if err != nil || status != http.StatusOK {
		t.Fatalf("POST: %d %v", status, err)
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("POST took %v: the proxy did not answer 100 Continue", took)
	}
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	if e != (echo{Path: base + "account/volume-change", Body: `{"pointsAmount":0.1}`}) {
		t.Errorf("backend got %+v", e)
	}

	resp, err := c.Get(p.URL + "user/exists?login=a%2Bb%7Ec&type=member")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err := json.Unmarshal(raw, &e); err != nil || e.Query != "login=a%2Bb%7Ec&type=member" || resp.Header.Get("X-Backend") != "yes" {
		t.Errorf("GET: backend got %+v (%v), headers %v", e, err, resp.Header)
	}

	if got := p.Counts("account/volume-change"); got.Seen != 1 || got.Forwarded != 1 || got.Modes[Pass] != 1 {
		t.Errorf("counts = %+v", got)
	}
	if got := p.Total(); got.Seen != 2 || got.Forwarded != 2 || got.ForwardErrors != 0 || got.Modes[Pass] != 2 {
		t.Errorf("total = %+v", got)
	}
	if b.count("account/volume-change") != 1 || b.count("user/exists") != 1 {
		t.Errorf("backend hits = %v", b.hits)
	}
}

func TestModes(t *testing.T) {
	for _, tc := range []struct {
		mode      Mode
		forwarded int
		status    []int // empty: the client gets no answer
	}{
		{Pass, 1, []int{200}},
		{ForwardThen5xx, 1, []int{502, 504}},
		{Reject5xxBeforeForward, 0, []int{502}},
		{ForwardThenDrop, 1, nil},
		{ForwardThenHang, 1, nil},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			p, b := start(t, Options{})
			c := newClient(t, 500*time.Millisecond)
			p.Next(tc.mode, 1)
			status, body, err := post(c, p.URL+"account/volume-change", `{"a":1}`)
			switch {
			case len(tc.status) == 0 && err == nil:
				t.Fatalf("got HTTP %d, want no answer", status)
			case len(tc.status) > 0 && !slices.Contains(tc.status, status):
				t.Fatalf("got HTTP %d (%v), want %v", status, err, tc.status)
			case status >= 500 && !strings.Contains(body, fmt.Sprintf("<h1>%d ", status)):
				t.Errorf("5xx page = %q", body)
			}
			var ne net.Error
			if timedOut := errors.As(err, &ne) && ne.Timeout(); timedOut != (tc.mode == ForwardThenHang) {
				t.Errorf("timed out = %v (%v)", timedOut, err)
			}
			if n := b.count("account/volume-change"); n != tc.forwarded {
				t.Errorf("backend got %d requests, want %d", n, tc.forwarded)
			}
			got := p.Counts("account/volume-change")
			if got.Seen != 1 || got.Forwarded != tc.forwarded || got.Modes[tc.mode] != 1 {
				t.Errorf("counts = %+v", got)
			}
			// The queue is used up: the next request passes.
			if status, _, err := post(c, p.URL+"account/volume-change", `{}`); status != http.StatusOK {
				t.Errorf("next request: %d %v", status, err)
			}
		})
	}
}

func TestNextOrder(t *testing.T) {
	p, b := start(t, Options{Rates: map[Mode]float64{Reject5xxBeforeForward: 1}})
	c := newClient(t, 5*time.Second)
	p.Next(Pass, 1)
	p.Next(ForwardThen5xx, 2)
	p.Next(Pass, 1)
	var got []int
	var hits []int
	for range 5 {
		status, _, err := post(c, p.URL+"user/create", `{}`)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, status/100*100) // 502 and 504 alike
		hits = append(hits, b.count("user/create"))
	}
	// Once the queue is empty, the rates apply (here: always reject).
	if fmt.Sprint(got, hits) != "[200 500 500 200 500] [1 2 3 4 4]" {
		t.Fatalf("statuses %v, backend hits %v", got, hits)
	}
	var modes []Mode
	for i, e := range p.Events() {
		if e.Seq != i+1 || e.Path != "user/create" {
			t.Errorf("event %d = %+v", i, e)
		}
		modes = append(modes, e.Mode)
	}
	want := []Mode{Pass, ForwardThen5xx, ForwardThen5xx, Pass, Reject5xxBeforeForward}
	if !slices.Equal(modes, want) {
		t.Fatalf("modes %v, want %v", modes, want)
	}
}

func TestPathsLimitMisbehaviour(t *testing.T) {
	p, b := start(t, Options{Paths: []string{"account/volume-change"}, Rates: map[Mode]float64{Reject5xxBeforeForward: 1}})
	c := newClient(t, 5*time.Second)
	p.Next(ForwardThen5xx, 1)
	if status, _, _ := post(c, p.URL+"user/create", `{}`); status != http.StatusOK {
		t.Fatalf("user/create: HTTP %d", status)
	}
	if status, _, _ := post(c, p.URL+"account/volume-change", `{}`); status != 502 && status != 504 {
		t.Fatalf("volume-change, queued: HTTP %d", status)
	}
	if status, _, _ := post(c, p.URL+"account/volume-change", `{}`); status != 502 || b.count("account/volume-change") != 1 {
		t.Fatalf("volume-change, by rate: HTTP %d", status)
	}
}

// outcomes sends n POSTs one after the other through a proxy seeded with
// seed and returns the modes chosen and the statuses seen (0: no answer).
func outcomes(t *testing.T, seed uint64, n int) ([]Mode, []int) {
	p, b := start(t, Options{Seed: seed, Rates: map[Mode]float64{
		ForwardThen5xx: 0.25, Reject5xxBeforeForward: 0.25, ForwardThenDrop: 0.2,
	}})
	c := newClient(t, 5*time.Second)
	var statuses []int
	for range n {
		status, _, _ := post(c, p.URL+"account/volume-change", `{}`)
		statuses = append(statuses, status)
	}
	var modes []Mode
	for _, e := range p.Events() {
		modes = append(modes, e.Mode)
	}
	if tot := p.Total(); tot.Seen != n || tot.Forwarded != b.count("account/volume-change") {
		t.Fatalf("total %+v, backend %d", tot, b.count("account/volume-change"))
	}
	return modes, statuses
}

func TestSeededReproducible(t *testing.T) {
	const n = 40
	m1, s1 := outcomes(t, 42, n)
	m2, s2 := outcomes(t, 42, n)
	m3, _ := outcomes(t, 43, n)
	if !slices.Equal(m1, m2) || !slices.Equal(s1, s2) {
		t.Fatalf("same seed, different outcomes:\n%v %v\n%v %v", m1, s1, m2, s2)
	}
	if slices.Equal(m1, m3) {
		t.Fatalf("seeds 42 and 43 gave the same modes %v", m1)
	}
	for m := Pass; m <= ForwardThenDrop; m++ {
		if !slices.Contains(m1, m) {
			t.Errorf("%v never chosen in %v", m, m1)
		}
	}
	for i, m := range m1 {
		want := map[Mode][]int{Pass: {200}, ForwardThen5xx: {502, 504}, Reject5xxBeforeForward: {502}, ForwardThenDrop: {0}}[m]
		if !slices.Contains(want, s1[i]) {
			t.Errorf("request %d: mode %v, status %d", i, m, s1[i])
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	p, b := start(t, Options{Seed: 7, Rates: map[Mode]float64{
		ForwardThen5xx: 0.2, Reject5xxBeforeForward: 0.2, ForwardThenDrop: 0.2,
	}})
	c := newClient(t, 5*time.Second)
	const workers, each = 8, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				path := []string{"account/volume-change", "user/create"}[(w+i)%2]
				_, _, _ = post(c, p.URL+path, `{}`)
				if i%5 == 0 {
					p.Next(ForwardThen5xx, 1)
					_ = p.Counts(path)
					_ = p.Events()
				}
			}
		})
	}
	wg.Wait()
	tot := p.Total()
	sum := 0
	for _, n := range tot.Modes {
		sum += n
	}
	hits := b.count("account/volume-change") + b.count("user/create")
	if tot.Seen != workers*each || sum != tot.Seen || tot.Forwarded != hits ||
		tot.Forwarded != tot.Seen-tot.Modes[Reject5xxBeforeForward] || tot.ForwardErrors != 0 {
		t.Fatalf("total %+v (modes sum %d), backend hits %d", tot, sum, hits)
	}
	if len(p.Events()) != tot.Seen {
		t.Fatalf("%d events for %d requests", len(p.Events()), tot.Seen)
	}
}

func TestCloseReleasesHungClients(t *testing.T) {
	p, b := start(t, Options{})
	p.Next(ForwardThenHang, 2)
	c := newClient(t, 0) // would wait forever
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, err := post(c, p.URL+"account/volume-change", `{}`)
			errs <- err
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.Counts("account/volume-change").Forwarded < 2 {
		if time.Now().After(deadline) {
			t.Fatal("requests were not forwarded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	for range 2 {
		select {
		case err := <-errs:
			if err == nil {
				t.Error("a hung request got an answer")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not release a hung client")
		}
	}
	<-closed
	if b.count("account/volume-change") != 2 {
		t.Fatalf("backend got %d requests", b.count("account/volume-change"))
	}
	if status, _, err := post(c, p.URL+"account/volume-change", `{}`); err == nil {
		t.Fatalf("closed proxy answered HTTP %d", status)
	}
}

func TestBadOptionsPanic(t *testing.T) {
	for name, f := range map[string]func(){
		"target": func() { New("127.0.0.1:80", Options{}) },
		"rate sum": func() {
			New("http://127.0.0.1:1/", Options{Rates: map[Mode]float64{ForwardThen5xx: 0.7, ForwardThenDrop: 0.5}})
		},
		"pass rate": func() { New("http://127.0.0.1:1/", Options{Rates: map[Mode]float64{Pass: 0.5}}) },
		"next mode": func() { (&Proxy{}).Next(Mode(99), 1) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
