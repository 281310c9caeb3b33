package metrics_test

// The collector's tests run it against a plugin over the fake MLM Soft
// (mlmsofttest), on a manual clock, with memstore (wrapped so that its
// Counts can fail or hang on demand).

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/metrics"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

const (
	volumeEP = "account/volume-change"
	deadline = 10 * time.Second // real-time bound of every wait
)

// store is memstore whose Counts fails (mode 1) or waits for its context
// to end (mode 2).
type store struct {
	*memstore.Store
	mode *atomic.Int32
}

func (s store) Counts(ctx context.Context) (mlmsoft.Counts, error) {
	switch s.mode.Load() {
	case 1:
		return mlmsoft.Counts{}, errors.New("database is down (test)")
	case 2:
		<-ctx.Done()
		return mlmsoft.Counts{}, ctx.Err()
	}
	return s.Store.Counts(ctx)
}

type fixture struct {
	t     *testing.T
	p     *mlmsoft.Plugin
	fake  *mlmsofttest.Server
	clock *mlmsofttest.Clock
	mode  atomic.Int32
}

// newFixture builds a started plugin over the fake; its breaker opens at
// the first failure and stays open for 5 s of the manual clock.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, clock: mlmsofttest.NewClock(time.Time{})}
	f.fake = mlmsofttest.NewServer(mlmsofttest.Options{Clock: f.clock, Synchronous: true})
	t.Cleanup(f.fake.Close)
	root := f.fake.AddAccount("root@example.com", "root-password-1", 0)
	p, err := mlmsoft.New(store{Store: memstore.New(), mode: &f.mode}, mlmsoft.Config{
		BaseURL:                 f.fake.URL,
		APIToken:                mlmsofttest.DefaultToken,
		DefaultSponsorAccountID: root.AccountID,
		RequestTimeout:          3 * time.Second,
		Lease:                   time.Minute,
		Clock:                   f.clock,
		Logger:                  slog.New(slog.DiscardHandler),
		Volumes:                 mlmsoft.VolumeConfig{RetryInitial: time.Second, RetryMax: 4 * time.Second},
		Breaker:                 mlmsoft.BreakerConfig{ConsecutiveFailures: 1, OpenTimeout: 5 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		_ = p.Shutdown(ctx)
	})
	return f
}

// eventually polls cond in real time (the plugin's workers run on their
// own goroutines), moving the manual clock by step each time.
func (f *fixture) eventually(what string, step time.Duration, cond func() bool) {
	f.t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			f.t.Fatalf("timed out waiting for %s", what)
		}
		f.clock.Advance(step)
		time.Sleep(2 * time.Millisecond)
	}
}

func (f *fixture) link(id string) mlmsoft.LinkInfo {
	l, _ := f.p.Link(context.Background(), id)
	return l
}

func (f *fixture) linkedUser(id string) {
	f.t.Helper()
	if err := f.p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: id, Email: id + "@example.com"}); err != nil {
		f.t.Fatal(err)
	}
	f.eventually(id+" linked", 0, func() bool { return f.link(id).State == mlmsoft.LinkLinked })
}

// apply enqueues one change for user, the next request meeting fault (if
// any), and waits for its outcome.
func (f *fixture) apply(user, order string, fault mlmsofttest.FaultKind) mlmsoft.VolumeChange {
	f.t.Helper()
	if fault != 0 {
		f.fake.InjectNext(volumeEP, fault, 1)
	}
	b, err := f.p.ApplyVolumes(context.Background(), user, mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount("10"), OrderID: order})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	cs, err := b.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		f.t.Fatalf("Wait: %v", err)
	}
	return cs[0]
}

// The series of a fresh plugin, as Prometheus reads them.
const fresh = `
# HELP mlmsoft_breaker_state 1 for the circuit breaker's current state (closed, open, half-open), 0 for the others.
# TYPE mlmsoft_breaker_state gauge
mlmsoft_breaker_state{state="closed"} 1
mlmsoft_breaker_state{state="half-open"} 0
mlmsoft_breaker_state{state="open"} 0
# HELP mlmsoft_breaker_trips_total How often the circuit breaker in front of MLM Soft opened in this process.
# TYPE mlmsoft_breaker_trips_total counter
mlmsoft_breaker_trips_total 0
# HELP mlmsoft_health 1 for the integration's current health state (ok, unavailable, misconfigured), 0 for the others.
# TYPE mlmsoft_health gauge
mlmsoft_health{state="misconfigured"} 0
mlmsoft_health{state="ok"} 1
mlmsoft_health{state="unavailable"} 0
# HELP mlmsoft_hook_failures_total Hook calls that returned an error or panicked, in this process.
# TYPE mlmsoft_hook_failures_total counter
mlmsoft_hook_failures_total 0
# HELP mlmsoft_hooks_failing Owed hook events whose hook failed at least once.
# TYPE mlmsoft_hooks_failing gauge
mlmsoft_hooks_failing 0
# HELP mlmsoft_hooks_owed Hook events the host's hooks have not handled yet.
# TYPE mlmsoft_hooks_owed gauge
mlmsoft_hooks_owed 0
# HELP mlmsoft_link_failures_total Links that failed in this process.
# TYPE mlmsoft_link_failures_total counter
mlmsoft_link_failures_total 0
# HELP mlmsoft_links Links between host users and MLM Soft accounts, per state.
# TYPE mlmsoft_links gauge
mlmsoft_links{state="created"} 0
mlmsoft_links{state="failed"} 0
mlmsoft_links{state="linked"} 0
mlmsoft_links{state="pending"} 0
# HELP mlmsoft_links_completed_total Links this process completed, by the way they completed.
# TYPE mlmsoft_links_completed_total counter
mlmsoft_links_completed_total{via="check-auth"} 0
mlmsoft_links_completed_total{via="create"} 0
mlmsoft_links_completed_total{via="document"} 0
mlmsoft_links_completed_total{via="exists"} 0
mlmsoft_links_completed_total{via="webhook"} 0
# HELP mlmsoft_misconfigurations_total How often MLM Soft began refusing the integration's configuration, in this process.
# TYPE mlmsoft_misconfigurations_total counter
mlmsoft_misconfigurations_total 0
# HELP mlmsoft_oldest_open_change_age_seconds Age of the oldest volume change not yet delivered, rejected or skipped; 0 when there is none.
# TYPE mlmsoft_oldest_open_change_age_seconds gauge
mlmsoft_oldest_open_change_age_seconds 0
# HELP mlmsoft_request_failures_total Failed requests to MLM Soft by class (not-processed, ambiguous, refused, misconfigured), in this process.
# TYPE mlmsoft_request_failures_total counter
mlmsoft_request_failures_total{class="ambiguous"} 0
mlmsoft_request_failures_total{class="misconfigured"} 0
mlmsoft_request_failures_total{class="not-processed"} 0
mlmsoft_request_failures_total{class="refused"} 0
# HELP mlmsoft_retries_total Requests that failed before MLM Soft could process them and will be sent again, in this process.
# TYPE mlmsoft_retries_total counter
mlmsoft_retries_total 0
# HELP mlmsoft_stats_up 1 when this scrape could read the plugin's store, 0 when it could not.
# TYPE mlmsoft_stats_up gauge
mlmsoft_stats_up 1
# HELP mlmsoft_volume_changes Volume changes stored, per state; pending, sending, parked and uncertain ones are not delivered yet, parked and uncertain ones wait for a person.
# TYPE mlmsoft_volume_changes gauge
mlmsoft_volume_changes{state="delivered"} 0
mlmsoft_volume_changes{state="parked"} 0
mlmsoft_volume_changes{state="pending"} 0
mlmsoft_volume_changes{state="rejected"} 0
mlmsoft_volume_changes{state="sending"} 0
mlmsoft_volume_changes{state="skipped"} 0
mlmsoft_volume_changes{state="uncertain"} 0
# HELP mlmsoft_volume_deliveries_total Volume changes MLM Soft acknowledged, in this process.
# TYPE mlmsoft_volume_deliveries_total counter
mlmsoft_volume_deliveries_total 0
# HELP mlmsoft_volume_uncertain_total Volume changes this process marked uncertain (they may or may not have been applied).
# TYPE mlmsoft_volume_uncertain_total counter
mlmsoft_volume_uncertain_total 0
`

func TestFreshPlugin(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := metrics.NewCollector(f.p, metrics.Options{})
	if err := testutil.CollectAndCompare(c, strings.NewReader(fresh)); err != nil {
		t.Error(err)
	}
	// Names, help and units follow Prometheus's conventions.
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// Describe and Collect agree: a pedantic registry checks it.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err != nil {
		t.Error(err)
	}
}

// value returns the value of the series name{labels} that g gathers.
func value(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// TestKnownEvents: a delivery, a parked change, an uncertain one and a
// breaker trip show in the metrics with exactly the values they imply.
func TestKnownEvents(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(f.p, metrics.Options{}))
	want := func(v float64, name string, labels ...string) {
		t.Helper()
		if got := value(t, reg, name, labels...); got != v {
			t.Errorf("%s%v = %v, want %v", name, labels, got, v)
		}
	}

	f.linkedUser("ann")
	f.linkedUser("bob")
	f.linkedUser("cy")
	want(3, "mlmsoft_links", "state", "linked")
	want(3, "mlmsoft_links_completed_total", "via", "create")

	if c := f.apply("ann", "o1", 0); c.State != mlmsoft.VolumeDelivered {
		t.Fatalf("o1: %s", c.State)
	}
	want(1, "mlmsoft_volume_deliveries_total")
	want(1, "mlmsoft_volume_changes", "state", "delivered")
	want(0, "mlmsoft_oldest_open_change_age_seconds")

	if c := f.apply("bob", "o2", mlmsofttest.FaultBusinessError); c.State != mlmsoft.VolumeParked {
		t.Fatalf("o2: %s", c.State)
	}
	want(1, "mlmsoft_volume_changes", "state", "parked")
	want(1, "mlmsoft_request_failures_total", "class", "refused")

	// The answer is lost after MLM Soft read the request: uncertain, and a
	// failure that counts against MLM Soft, so the breaker (opening at the
	// first failure) opens.
	if c := f.apply("cy", "o3", mlmsofttest.FaultApplyThenDrop); c.State != mlmsoft.VolumeUncertain {
		t.Fatalf("o3: %s", c.State)
	}
	want(1, "mlmsoft_volume_changes", "state", "uncertain")
	want(1, "mlmsoft_volume_uncertain_total")
	want(1, "mlmsoft_request_failures_total", "class", "ambiguous")
	want(1, "mlmsoft_breaker_state", "state", "open")
	want(0, "mlmsoft_breaker_state", "state", "closed")
	want(1, "mlmsoft_breaker_trips_total")
	want(1, "mlmsoft_health", "state", "unavailable")
	want(0, "mlmsoft_health", "state", "ok")

	// Its open time passes on the plugin's clock: half-open, and the parked
	// and uncertain changes are 6 s old.
	f.clock.Advance(6 * time.Second)
	want(1, "mlmsoft_breaker_state", "state", "half-open")
	want(0, "mlmsoft_breaker_state", "state", "open")
	want(6, "mlmsoft_oldest_open_change_age_seconds")

	// A request goes through: closed again.
	if _, err := f.p.ApplyVolumes(context.Background(), "ann", mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount("1"), OrderID: "o4"}); err != nil {
		t.Fatal(err)
	}
	f.eventually("o4 delivered", time.Second, func() bool { return value(t, reg, "mlmsoft_volume_deliveries_total") == 2 })
	want(1, "mlmsoft_breaker_state", "state", "closed")
	want(1, "mlmsoft_health", "state", "ok")
	want(1, "mlmsoft_breaker_trips_total")

	// MLM Soft goes down: the first failure opens the breaker again.
	f.fake.SetDown(true)
	if _, err := f.p.ApplyVolumes(context.Background(), "ann", mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount("1"), OrderID: "o5"}); err != nil {
		t.Fatal(err)
	}
	f.eventually("the breaker open", 0, func() bool { return value(t, reg, "mlmsoft_breaker_state", "state", "open") == 1 })
	want(2, "mlmsoft_breaker_trips_total")
	want(1, "mlmsoft_health", "state", "unavailable")
	want(1, "mlmsoft_retries_total")
	want(1, "mlmsoft_request_failures_total", "class", "not-processed")
	want(1, "mlmsoft_volume_changes", "state", "pending")

	// MLM Soft is back: the breaker lets a probe through and closes.
	f.fake.SetDown(false)
	f.eventually("o5 delivered", time.Second, func() bool { return value(t, reg, "mlmsoft_volume_deliveries_total") == 3 })
	want(1, "mlmsoft_breaker_state", "state", "closed")
	want(2, "mlmsoft_breaker_trips_total")
	want(1, "mlmsoft_health", "state", "ok")
	want(3, "mlmsoft_volume_changes", "state", "delivered")
	want(0, "mlmsoft_volume_changes", "state", "pending")
	want(1, "mlmsoft_volume_changes", "state", "parked")
	want(1, "mlmsoft_volume_changes", "state", "uncertain")
	want(0, "mlmsoft_link_failures_total")
	want(0, "mlmsoft_misconfigurations_total")
}

// TestMisconfigured: MLM Soft refusing the token shows as the health state
// and a counted misconfiguration, with no message in any label.
func TestMisconfigured(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := metrics.NewCollector(f.p, metrics.Options{})
	f.fake.SetToken("another-token")
	if err := f.p.Check(context.Background()); !errors.Is(err, mlmsoft.ErrMisconfigured) {
		t.Fatalf("Check = %v", err)
	}
	err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP mlmsoft_health 1 for the integration's current health state (ok, unavailable, misconfigured), 0 for the others.
# TYPE mlmsoft_health gauge
mlmsoft_health{state="misconfigured"} 1
mlmsoft_health{state="ok"} 0
mlmsoft_health{state="unavailable"} 0
# HELP mlmsoft_misconfigurations_total How often MLM Soft began refusing the integration's configuration, in this process.
# TYPE mlmsoft_misconfigurations_total counter
mlmsoft_misconfigurations_total 1
`), "mlmsoft_health", "mlmsoft_misconfigurations_total")
	if err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c); n != 37 {
		t.Errorf("%d series, want 37 (the number never changes)", n)
	}
}

// TestStoreDown: a failed Stats call reports the store-backed metrics as
// invalid and still exports the health, stats_up 0 and the last counters.
func TestStoreDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(f.p, metrics.Options{Timeout: 50 * time.Millisecond}))

	// Before any scrape succeeded, the counters are unknown too.
	f.mode.Store(1)
	mfs, err := reg.Gather()
	if err == nil || !strings.Contains(err.Error(), "database is down (test)") {
		t.Fatalf("Gather error = %v", err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	if !names["mlmsoft_health"] || !names["mlmsoft_stats_up"] || names["mlmsoft_links"] || names["mlmsoft_volume_deliveries_total"] || names["mlmsoft_breaker_state"] {
		t.Errorf("gathered %v", names)
	}

	// After a good scrape, a failing one repeats its counters.
	f.mode.Store(0)
	f.linkedUser("ann")
	f.apply("ann", "o1", 0)
	if v := value(t, reg, "mlmsoft_volume_deliveries_total"); v != 1 {
		t.Fatalf("deliveries %v", v)
	}
	for _, mode := range []int32{1, 2} { // failing, then hanging past the timeout
		f.mode.Store(mode)
		start := time.Now()
		mfs, err := reg.Gather()
		if err == nil || time.Since(start) > 5*time.Second {
			t.Fatalf("mode %d: Gather error = %v after %s", mode, err, time.Since(start))
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if m.GetCounter() != nil {
					got[mf.GetName()] += m.GetCounter().GetValue()
				} else if len(m.GetLabel()) == 0 {
					got[mf.GetName()] = m.GetGauge().GetValue()
				}
			}
		}
		if got["mlmsoft_volume_deliveries_total"] != 1 || got["mlmsoft_links_completed_total"] != 1 || got["mlmsoft_stats_up"] != 0 {
			t.Errorf("mode %d: gathered %v", mode, got)
		}
		if _, ok := got["mlmsoft_hooks_owed"]; ok {
			t.Errorf("mode %d: a store-backed gauge was exported", mode)
		}
	}

	// Over HTTP, promhttp answers 500 by default, or serves the rest with
	// ContinueOnError.
	f.mode.Store(1)
	for _, tc := range []struct {
		opts promhttp.HandlerOpts
		code int
	}{{promhttp.HandlerOpts{}, http.StatusInternalServerError}, {promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}, http.StatusOK}} {
		srv := httptest.NewServer(promhttp.HandlerFor(reg, tc.opts))
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%+v: %d", tc.opts, resp.StatusCode)
		}
		if tc.code == http.StatusOK && (!strings.Contains(string(body), `mlmsoft_health{state="ok"} 1`) || !strings.Contains(string(body), "mlmsoft_stats_up 0")) {
			t.Errorf("ContinueOnError body:\n%s", body)
		}
	}
}

// TestScrapeOverHTTP: the collector in a registry served by promhttp, as a
// host exposes it, with a namespace and constant labels of its own.
func TestScrapeOverHTTP(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.linkedUser("ann")
	f.apply("ann", "o1", mlmsofttest.FaultBusinessError)
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(f.p, metrics.Options{Namespace: "shop_mlm", ConstLabels: prometheus.Labels{"tenant": "acme"}}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	err := testutil.ScrapeAndCompare(srv.URL+"/metrics", strings.NewReader(`
# HELP shop_mlm_volume_changes Volume changes stored, per state; pending, sending, parked and uncertain ones are not delivered yet, parked and uncertain ones wait for a person.
# TYPE shop_mlm_volume_changes gauge
shop_mlm_volume_changes{state="delivered",tenant="acme"} 0
shop_mlm_volume_changes{state="parked",tenant="acme"} 1
shop_mlm_volume_changes{state="pending",tenant="acme"} 0
shop_mlm_volume_changes{state="rejected",tenant="acme"} 0
shop_mlm_volume_changes{state="sending",tenant="acme"} 0
shop_mlm_volume_changes{state="skipped",tenant="acme"} 0
shop_mlm_volume_changes{state="uncertain",tenant="acme"} 0
# HELP shop_mlm_links Links between host users and MLM Soft accounts, per state.
# TYPE shop_mlm_links gauge
shop_mlm_links{state="created",tenant="acme"} 0
shop_mlm_links{state="failed",tenant="acme"} 0
shop_mlm_links{state="linked",tenant="acme"} 1
shop_mlm_links{state="pending",tenant="acme"} 0
`), "shop_mlm_volume_changes", "shop_mlm_links")
	if err != nil {
		t.Error(err)
	}
	// Two plugins can share a registry when their labels differ.
	other := newFixture(t)
	reg.MustRegister(metrics.NewCollector(other.p, metrics.Options{Namespace: "shop_mlm", ConstLabels: prometheus.Labels{"tenant": "globex"}}))
	if n, err := testutil.GatherAndCount(reg, "shop_mlm_links"); err != nil || n != 8 {
		t.Errorf("two plugins: %d series of links, %v", n, err)
	}
}

func TestNewCollectorNilPlugin(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("NewCollector(nil) did not panic")
		}
	}()
	metrics.NewCollector(nil, metrics.Options{})
}
