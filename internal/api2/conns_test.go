package api2

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConnectionReuse: a dispatcher's workers share a pool of connections
// instead of opening and closing a socket per request (Go keeps 2 idle
// connections per host by default).
func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	const workers, rounds = 8, 10
	run := func(t *testing.T, idle int) int64 {
		var opened atomic.Int64
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.ReadAll(r.Body)
			time.Sleep(2 * time.Millisecond) // keep the workers overlapping
			io.WriteString(w, okEnv)
		}))
		srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				opened.Add(1)
			}
		}
		srv.Start()
		defer srv.Close()
		c, err := New(Config{BaseURL: srv.URL + "/api2/online-office/", Token: token, Timeout: 5 * time.Second, MaxIdleConnsPerHost: idle})
		if err != nil {
			t.Fatal(err)
		}
		defer c.http.CloseIdleConnections()
		for i := range rounds {
			// All the workers' connections go idle together between rounds.
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					if _, err := c.ChangeVolume(context.Background(), VolumeChange{AccountID: 1, Amount: "1", OrderID: "o", Alias: "PV"}); err != nil {
						t.Error(err)
					}
					if _, err := c.GetDocument(context.Background(), int64(i)); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
		}
		return opened.Load()
	}
	if n := run(t, 0); n > MaxIdleConnsPerHostDefault {
		t.Errorf("%d workers opened %d connections with the default pool", workers, n)
	}
	if n := run(t, -1); n < workers*rounds {
		t.Errorf("with no idle connections kept, %d connections for %d requests", n, 2*workers*rounds)
	}
}

func TestIdleSettings(t *testing.T) {
	t.Parallel()
	host := &http.Transport{MaxIdleConns: 4, MaxIdleConnsPerHost: 1}
	for _, tc := range []struct {
		cfg, perHost, total int
	}{
		{0, MaxIdleConnsPerHostDefault, MaxIdleConnsPerHostDefault},
		{64, 64, 64},
		{3, 3, 4},
		{-1, -1, 4},
	} {
		c, err := New(Config{BaseURL: "https://x.example/", Token: "t", HTTPClient: &http.Client{Transport: host}, MaxIdleConnsPerHost: tc.cfg})
		if err != nil {
			t.Fatal(err)
		}
		tr := c.http.Transport.(*http.Transport)
		if tr.MaxIdleConnsPerHost != tc.perHost || tr.MaxIdleConns != tc.total {
			t.Errorf("MaxIdleConnsPerHost %d: per host %d, total %d", tc.cfg, tr.MaxIdleConnsPerHost, tr.MaxIdleConns)
		}
	}
	if host.MaxIdleConns != 4 || host.MaxIdleConnsPerHost != 1 {
		t.Error("the host's transport was modified")
	}
	// Our own transport: Go's default keeps 100 in all.
	c, _ := New(Config{BaseURL: "https://x.example/", Token: "t", MaxIdleConnsPerHost: 200})
	if tr := c.http.Transport.(*http.Transport); tr.MaxIdleConnsPerHost != 200 || tr.MaxIdleConns != 200 {
		t.Errorf("default transport: %d per host, %d in all", tr.MaxIdleConnsPerHost, tr.MaxIdleConns)
	}
}
