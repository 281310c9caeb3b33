// Package metrics exports the MLM Soft integration's state to Prometheus:
// NewCollector returns a prometheus.Collector that reads Plugin.Stats once
// per scrape. Only this package imports the Prometheus client; the plugin
// itself does not.
//
// Register it once per plugin and expose the registry as usual:
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(metrics.NewCollector(p, metrics.Options{}))
//	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// # Metrics
//
// With the default namespace "mlmsoft", read from the store (so counting
// every replica's work):
//
//	mlmsoft_volume_changes{state}            gauge: stored volume changes per state (pending, sending, parked,
//	                                         uncertain, delivered, rejected, skipped); the first four are the
//	                                         queue not yet delivered, parked and uncertain ones wait for a person
//	mlmsoft_links{state}                     gauge: links per state (pending, created, linked, failed)
//	mlmsoft_oldest_open_change_age_seconds   gauge: age of the oldest change not yet delivered, rejected or
//	                                         skipped; 0 when there is none
//	mlmsoft_hooks_owed                       gauge: hook events the host's hooks have not handled yet
//	mlmsoft_hooks_failing                    gauge: of which the hook failed at least once
//
// kept in this process's memory:
//
//	mlmsoft_health{state}                    gauge: 1 for the current state (ok, unavailable, misconfigured), 0
//	                                         for the others
//	mlmsoft_breaker_state{state}             gauge: 1 for the circuit breaker's state (closed, open,
//	                                         half-open), 0 for the others
//	mlmsoft_breaker_trips_total              counter: how often the breaker opened
//	mlmsoft_volume_deliveries_total          counter: volume changes MLM Soft acknowledged
//	mlmsoft_retries_total                    counter: requests that failed before MLM Soft could process them
//	                                         and will be sent again
//	mlmsoft_request_failures_total{class}    counter: failed requests by class (not-processed, ambiguous,
//	                                         refused, misconfigured)
//	mlmsoft_volume_uncertain_total           counter: changes this process marked uncertain
//	mlmsoft_links_completed_total{via}       counter: links completed, by way (create, document, webhook,
//	                                         check-auth, exists)
//	mlmsoft_link_failures_total              counter: links that failed
//	mlmsoft_hook_failures_total              counter: hook calls that returned an error or panicked
//	mlmsoft_misconfigurations_total          counter: how often MLM Soft began refusing the configuration
//	mlmsoft_stats_up                         gauge: 1 when this scrape read the store, 0 when it could not
//
// Every label takes a fixed set of values, so the number of series never
// grows; MLM Soft's own messages (Plugin.Health's Reason) are not exported:
// the console of package admin shows them.
//
// # When the store cannot be read
//
// Plugin.Stats reads the store's counts and, with them, the breaker and
// this process's totals. When it fails (or takes longer than
// Options.Timeout), the store-backed gauges and the breaker state are
// reported as invalid metrics carrying the error, mlmsoft_stats_up is 0,
// mlmsoft_health is still current (Plugin.Health needs no store), and the
// counters repeat the values of the last scrape that succeeded (counters
// only grow, so they stay true, if late; before any success they are
// invalid too). promhttp answers such a scrape with 500 unless
// promhttp.HandlerOpts.ErrorHandling is promhttp.ContinueOnError, which
// serves the rest: use it to keep mlmsoft_health and mlmsoft_stats_up
// during a database outage.
package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mlmsoft-go/mlmsoft"
)

// Defaults of Options.
const (
	// NamespaceDefault prefixes every metric name when Options.Namespace is
	// empty.
	NamespaceDefault = "mlmsoft"
	// TimeoutDefault bounds the Stats call of a scrape when Options.Timeout
	// is zero.
	TimeoutDefault = 5 * time.Second
)

// Options configures a collector. The zero value works.
type Options struct {
	// Namespace prefixes every metric name ("mlmsoft_links"). Empty:
	// NamespaceDefault.
	Namespace string
	// Timeout bounds the Plugin.Stats call of each scrape (keep it below
	// Prometheus's scrape timeout). Zero or negative: TimeoutDefault.
	Timeout time.Duration
	// ConstLabels are added to every metric, for instance to tell apart
	// two plugins registered in one registry. Nil: none.
	ConstLabels prometheus.Labels
}

// The label values each labelled metric always exports, so that the series
// stay the same from scrape to scrape.
var (
	healthStates   = []mlmsoft.HealthState{mlmsoft.HealthOK, mlmsoft.HealthUnavailable, mlmsoft.HealthMisconfigured}
	breakerStates  = []mlmsoft.BreakerState{mlmsoft.BreakerClosed, mlmsoft.BreakerOpen, mlmsoft.BreakerHalfOpen}
	failureClasses = []string{mlmsoft.FailureNotProcessed, mlmsoft.FailureAmbiguous, mlmsoft.FailureRefused, mlmsoft.FailureMisconfigured}
	linkedVias     = []mlmsoft.LinkedVia{
		mlmsoft.LinkedViaCreate, mlmsoft.LinkedViaDocument, mlmsoft.LinkedViaWebhook, mlmsoft.LinkedViaCheckAuth, mlmsoft.LinkedViaExists,
	}
)

// collector is the prometheus.Collector NewCollector returns.
type collector struct {
	p       *mlmsoft.Plugin
	timeout time.Duration

	// Read from the store.
	volumes, links, oldestOpen, hooksOwed, hooksFailing *prometheus.Desc
	// In memory.
	health, breaker, statsUp                                          *prometheus.Desc
	breakerTrips, deliveries, retries, failures, uncertain, linksDone *prometheus.Desc
	linkFailures, hookFailures, misconfigurations                     *prometheus.Desc

	mu   sync.Mutex
	last *mlmsoft.Stats // the last Stats that succeeded, for its counters
}

// NewCollector returns a collector of p's metrics (see the package
// documentation), which calls p.Stats once per scrape. Register it once in
// a registry; it is safe for concurrent scrapes. It panics if p is nil.
func NewCollector(p *mlmsoft.Plugin, opts Options) prometheus.Collector {
	if p == nil {
		panic("metrics: NewCollector: the *mlmsoft.Plugin is nil")
	}
	ns := opts.Namespace
	if ns == "" {
		ns = NamespaceDefault
	}
	if opts.Timeout <= 0 {
		opts.Timeout = TimeoutDefault
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, opts.ConstLabels)
	}
	return &collector{
		p:       p,
		timeout: opts.Timeout,

		volumes: desc("volume_changes",
			"Volume changes stored, per state; pending, sending, parked and uncertain ones are not delivered yet, parked and uncertain ones wait for a person.", "state"),
		links:        desc("links", "Links between host users and MLM Soft accounts, per state.", "state"),
		oldestOpen:   desc("oldest_open_change_age_seconds", "Age of the oldest volume change not yet delivered, rejected or skipped; 0 when there is none."),
		hooksOwed:    desc("hooks_owed", "Hook events the host's hooks have not handled yet."),
		hooksFailing: desc("hooks_failing", "Owed hook events whose hook failed at least once."),

		health:  desc("health", "1 for the integration's current health state (ok, unavailable, misconfigured), 0 for the others.", "state"),
		breaker: desc("breaker_state", "1 for the circuit breaker's current state (closed, open, half-open), 0 for the others.", "state"),
		statsUp: desc("stats_up", "1 when this scrape could read the plugin's store, 0 when it could not."),

		breakerTrips:      desc("breaker_trips_total", "How often the circuit breaker in front of MLM Soft opened in this process."),
		deliveries:        desc("volume_deliveries_total", "Volume changes MLM Soft acknowledged, in this process."),
		retries:           desc("retries_total", "Requests that failed before MLM Soft could process them and will be sent again, in this process."),
		failures:          desc("request_failures_total", "Failed requests to MLM Soft by class (not-processed, ambiguous, refused, misconfigured), in this process.", "class"),
		uncertain:         desc("volume_uncertain_total", "Volume changes this process marked uncertain (they may or may not have been applied)."),
		linksDone:         desc("links_completed_total", "Links this process completed, by the way they completed.", "via"),
		linkFailures:      desc("link_failures_total", "Links that failed in this process."),
		hookFailures:      desc("hook_failures_total", "Hook calls that returned an error or panicked, in this process."),
		misconfigurations: desc("misconfigurations_total", "How often MLM Soft began refusing the integration's configuration, in this process."),
	}
}

// Describe sends every metric's description.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.volumes, c.links, c.oldestOpen, c.hooksOwed, c.hooksFailing,
		c.health, c.breaker, c.statsUp,
		c.breakerTrips, c.deliveries, c.retries, c.failures, c.uncertain, c.linksDone,
		c.linkFailures, c.hookFailures, c.misconfigurations,
	} {
		ch <- d
	}
}

// Collect calls Plugin.Stats once and sends the metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	st, err := c.p.Stats(ctx)
	if err != nil {
		c.collectWithoutStore(ch, err)
		return
	}
	c.mu.Lock()
	c.last = &st
	c.mu.Unlock()

	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range mlmsoft.VolumeStates {
		gauge(c.volumes, float64(st.Volumes[s]), string(s))
	}
	for _, s := range mlmsoft.LinkStates {
		gauge(c.links, float64(st.Links[s]), string(s))
	}
	gauge(c.oldestOpen, st.OldestOpen.Seconds())
	gauge(c.hooksOwed, float64(st.Hooks.Owed))
	gauge(c.hooksFailing, float64(st.Hooks.Failing))
	c.collectHealth(ch, st.Health)
	for _, s := range breakerStates {
		gauge(c.breaker, oneIf(st.Breaker == s), string(s))
	}
	gauge(c.statsUp, 1)
	c.collectCounters(ch, st)
}

// collectWithoutStore sends what can be known when Stats failed.
func (c *collector) collectWithoutStore(ch chan<- prometheus.Metric, err error) {
	for _, d := range []*prometheus.Desc{c.volumes, c.links, c.oldestOpen, c.hooksOwed, c.hooksFailing, c.breaker} {
		ch <- prometheus.NewInvalidMetric(d, err)
	}
	c.collectHealth(ch, c.p.Health())
	ch <- prometheus.MustNewConstMetric(c.statsUp, prometheus.GaugeValue, 0)
	c.mu.Lock()
	last := c.last
	c.mu.Unlock()
	if last != nil {
		c.collectCounters(ch, *last)
		return
	}
	for _, d := range []*prometheus.Desc{
		c.breakerTrips, c.deliveries, c.retries, c.failures, c.uncertain, c.linksDone,
		c.linkFailures, c.hookFailures, c.misconfigurations,
	} {
		ch <- prometheus.NewInvalidMetric(d, err)
	}
}

func (c *collector) collectHealth(ch chan<- prometheus.Metric, h mlmsoft.Health) {
	for _, s := range healthStates {
		ch <- prometheus.MustNewConstMetric(c.health, prometheus.GaugeValue, oneIf(h.State == s), string(s))
	}
}

// collectCounters sends the breaker's trips and the process's totals.
func (c *collector) collectCounters(ch chan<- prometheus.Metric, st mlmsoft.Stats) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	t := st.Totals
	counter(c.breakerTrips, int64(st.BreakerTrips))
	counter(c.deliveries, t.Delivered)
	counter(c.retries, t.Retries)
	for _, class := range failureClasses {
		counter(c.failures, t.Failures[class], class)
	}
	counter(c.uncertain, t.Uncertain)
	for _, via := range linkedVias {
		counter(c.linksDone, t.Linked[via], string(via))
	}
	counter(c.linkFailures, t.LinkFailures)
	counter(c.hookFailures, t.HookFailures)
	counter(c.misconfigurations, t.Misconfigurations)
}

func oneIf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
