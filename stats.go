package mlmsoft

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of the plugin's state for dashboards, metrics and
// health checks.
type Stats struct {
	// Health is where the integration stands (see Plugin.Health).
	Health Health `json:"health"`

	// Links counts links per state, in the store (every replica's).
	Links map[LinkState]int `json:"links"`
	// Volumes counts the stored volume changes per state; delivered,
	// rejected and skipped ones leave after Config.Retention.
	Volumes map[VolumeState]int `json:"volumes"`
	// OldestOpen is the age of the oldest volume change not yet in a final
	// state (pending, sending, parked or uncertain); 0 when there is none.
	OldestOpen time.Duration `json:"oldestOpen"`
	// Hooks counts the hook events owed to the host, and how many of them
	// failed at least once (they are retried with backoff).
	Hooks HookStats `json:"hooks"`

	// Breaker is the circuit breaker's state, and BreakerTrips how often it
	// opened since New.
	Breaker      BreakerState `json:"breaker"`
	BreakerTrips int          `json:"breakerTrips"`

	// Totals counts what this process did since New.
	Totals Totals `json:"totals"`
}

// HookStats counts owed hook events.
type HookStats struct {
	Owed    int `json:"owed"`    // events whose hook has not yet returned without error
	Failing int `json:"failing"` // of which the hook failed (error or panic) at least once
}

// Totals counts what one process did since New, for metrics: they only grow.
type Totals struct {
	// Delivered counts volume changes MLM Soft acknowledged.
	Delivered int64 `json:"delivered"`
	// Retries counts requests that failed before MLM Soft could process
	// them and will be sent again (volume changes and link steps).
	Retries int64 `json:"retries"`
	// Failures counts failed requests by class: "not-processed" (safe to
	// retry), "ambiguous" (may have been applied), "refused" (MLM Soft said
	// no) and "misconfigured" (MLM Soft refused the integration).
	Failures map[string]int64 `json:"failures"`
	// Uncertain counts volume changes this process marked uncertain.
	Uncertain int64 `json:"uncertain"`
	// Linked counts links completed by this process, by the way they were
	// completed; LinkFailures counts links that failed.
	Linked       map[LinkedVia]int64 `json:"linked"`
	LinkFailures int64               `json:"linkFailures"`
	// Misconfigurations counts how often MLM Soft began refusing the
	// configuration.
	Misconfigurations int64 `json:"misconfigurations"`
	// HookFailures counts hook calls that returned an error or panicked.
	HookFailures int64 `json:"hookFailures"`
}

// Failure classes of Totals.Failures.
const (
	FailureNotProcessed  = "not-processed"
	FailureAmbiguous     = "ambiguous"
	FailureRefused       = "refused"
	FailureMisconfigured = "misconfigured"
)

// totals are the counters behind Stats.Totals.
type totals struct {
	delivered, retries, uncertain, linkFailures, misconfigurations, hookFailures atomic.Int64
	notProcessed, ambiguous, refused, misconfigured                              atomic.Int64
	viaCreate, viaDocument, viaWebhook, viaCheckAuth, viaExists                  atomic.Int64
}

func (t *totals) linked(via LinkedVia) {
	switch via {
	case LinkedViaCreate:
		t.viaCreate.Add(1)
	case LinkedViaDocument:
		t.viaDocument.Add(1)
	case LinkedViaWebhook:
		t.viaWebhook.Add(1)
	case LinkedViaCheckAuth:
		t.viaCheckAuth.Add(1)
	case LinkedViaExists:
		t.viaExists.Add(1)
	}
}

func (t *totals) snapshot() Totals {
	return Totals{
		Delivered: t.delivered.Load(),
		Retries:   t.retries.Load(),
		Failures: map[string]int64{
			FailureNotProcessed: t.notProcessed.Load(), FailureAmbiguous: t.ambiguous.Load(),
			FailureRefused: t.refused.Load(), FailureMisconfigured: t.misconfigured.Load(),
		},
		Uncertain: t.uncertain.Load(),
		Linked: map[LinkedVia]int64{
			LinkedViaCreate: t.viaCreate.Load(), LinkedViaDocument: t.viaDocument.Load(),
			LinkedViaWebhook: t.viaWebhook.Load(), LinkedViaCheckAuth: t.viaCheckAuth.Load(),
			LinkedViaExists: t.viaExists.Load(),
		},
		LinkFailures:      t.linkFailures.Load(),
		Misconfigurations: t.misconfigurations.Load(),
		HookFailures:      t.hookFailures.Load(),
	}
}

// Stats reads the store's counts (one Store.Counts call) and adds the
// breaker's state, the health and this process's totals.
func (p *Plugin) Stats(ctx context.Context) (Stats, error) {
	c, err := p.store.Counts(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("mlmsoft: stats: %w", err)
	}
	s := Stats{
		Health:       p.Health(),
		Links:        c.Links,
		Volumes:      c.Volumes,
		Hooks:        HookStats{Owed: c.Events, Failing: c.FailingEvents},
		Breaker:      BreakerState(p.brk.State()),
		BreakerTrips: p.brk.Trips(),
		Totals:       p.totals.snapshot(),
	}
	if s.Links == nil {
		s.Links = map[LinkState]int{}
	}
	if s.Volumes == nil {
		s.Volumes = map[VolumeState]int{}
	}
	if !c.OldestOpen.IsZero() {
		s.OldestOpen = max(p.clock.Now().Sub(c.OldestOpen), 0)
	}
	return s, nil
}
