package mlmsoft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
	"github.com/mlmsoft-go/mlmsoft/internal/backoff"
)

// HealthState says whether the integration can reach MLM Soft.
type HealthState string

// The health states.
const (
	// HealthOK: MLM Soft answers (or nothing says otherwise).
	HealthOK HealthState = "ok"
	// HealthUnavailable: MLM Soft cannot be reached or keeps failing; the
	// circuit breaker is open or probing. Work waits and resumes by itself.
	HealthUnavailable HealthState = "unavailable"
	// HealthMisconfigured: MLM Soft refuses the integration itself (a wrong
	// API token, App-Id or base URL). Sending is paused, no attempt is
	// spent, no link fails and no change is parked; the plugin probes MLM
	// Soft with backoff (up to Config.ProbeMax apart) and resumes by itself
	// once it accepts the configuration.
	HealthMisconfigured HealthState = "misconfigured"
)

// BreakerState is the state of the circuit breaker in front of MLM Soft.
type BreakerState string

// The breaker states.
const (
	BreakerClosed   BreakerState = "closed"    // requests flow
	BreakerOpen     BreakerState = "open"      // requests are held back
	BreakerHalfOpen BreakerState = "half-open" // a few probes are let through
)

// Health is where the integration stands, for health checks and operators.
type Health struct {
	State HealthState `json:"state"`
	// Reason is MLM Soft's own message when misconfigured (such as
	// "user/exists: MLM Soft refused the credentials or the path (HTTP 403):
	// Security key is invalid"), or the last failure when unavailable.
	Reason string `json:"reason,omitempty"`
	// Since is when the state began (zero for HealthOK).
	Since time.Time `json:"since,omitzero"`
}

// Health returns where the integration stands now. It does no I/O.
func (p *Plugin) Health() Health {
	// The breaker may report a state change, whose callback reads the
	// health state: ask it before taking the lock.
	breaker := BreakerState(p.brk.State())
	h := p.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.misconfigured {
		return Health{State: HealthMisconfigured, Reason: h.reason, Since: h.since}
	}
	if breaker != BreakerClosed {
		return Health{State: HealthUnavailable, Reason: h.failure, Since: h.failureSince}
	}
	return Health{State: HealthOK}
}

// Check makes one signed, harmless call to MLM Soft (user/exists for a login
// that cannot exist) to verify BaseURL, AppID and APIToken, for a host to run
// at boot or in a readiness probe. It bypasses the circuit breaker. It
// returns nil when MLM Soft accepts the configuration (and ends a
// misconfigured state), an error wrapping ErrMisconfigured with MLM Soft's
// own message when it refuses it (and enters that state), or an error
// wrapping ErrUpstreamUnavailable when MLM Soft cannot be reached.
func (p *Plugin) Check(ctx context.Context) error {
	err := p.client.Probe(ctx)
	switch kind := api2.KindOf(err); {
	case err == nil:
		p.health.answered()
		return nil
	case kind == api2.Misconfigured:
		p.health.refused(err)
		return fmt.Errorf("%w: %w", ErrMisconfigured, err)
	case kind == api2.Business:
		// MLM Soft answered, in its own words: the credentials work.
		p.health.answered()
		return nil
	default:
		return fmt.Errorf("%w: %w", ErrUpstreamUnavailable, err)
	}
}

// healthState tracks configuration refusals and transport failures. Safe
// for concurrent use.
type healthState struct {
	p  *Plugin
	mu sync.Mutex

	misconfigured bool
	reason        string    // MLM Soft's message
	since         time.Time // misconfigured since
	probes        int       // failed probes since
	nextProbe     time.Time
	lastErrorLog  time.Time

	failure      string // last transport failure, for Health and breaker errors
	failureSince time.Time

	probe *backoff.Policy
	wake  chan struct{} // tells the maintenance loop a probe is now scheduled
}

func newHealthState(p *Plugin) *healthState {
	return &healthState{
		p:     p,
		probe: backoff.New(time.Second, p.cfg.ProbeMax, 0.2, uint64(p.clock.Now().UnixNano())+7),
		wake:  make(chan struct{}, 1),
	}
}

// misconfigLogEvery bounds how often a lasting configuration refusal is
// logged at ERROR.
const misconfigLogEvery = time.Minute

// refused enters (or stays in) the misconfigured state with err's message.
func (h *healthState) refused(err error) {
	now := h.p.clock.Now()
	msg := err.Error()
	h.mu.Lock()
	entering := !h.misconfigured
	if entering {
		h.misconfigured, h.since, h.probes = true, now, 0
		h.nextProbe = now.Add(h.probe.Delay(1))
	}
	h.reason = msg
	logNow := entering || now.Sub(h.lastErrorLog) >= misconfigLogEvery
	if logNow {
		h.lastErrorLog = now
	}
	h.mu.Unlock()
	if logNow {
		h.p.log.Error("MLM Soft refuses the integration's configuration; sending is paused until it accepts it",
			"reason", msg, "since", h.since)
	}
	if entering {
		h.p.totals.misconfigurations.Add(1)
		signal(h.wake)
	}
}

// answered records that MLM Soft answered in its own words: the
// configuration works, and a misconfigured state ends.
func (h *healthState) answered() {
	h.mu.Lock()
	was := h.misconfigured
	h.misconfigured, h.reason, h.since, h.probes = false, "", time.Time{}, 0
	h.failure = ""
	h.mu.Unlock()
	if was {
		h.p.log.Warn("MLM Soft accepts the integration's configuration again; sending resumes")
		h.p.wakeAll()
	}
}

// failed records a transport failure (not processed, or no usable answer).
func (h *healthState) failed(err error) {
	now := h.p.clock.Now()
	h.mu.Lock()
	if h.failure == "" {
		h.failureSince = now
	}
	h.failure = err.Error()
	h.mu.Unlock()
}

func (h *healthState) lastFailure() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failure
}

func (h *healthState) isMisconfigured() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.misconfigured
}

// probeDue returns when the next probe is due, and false when none is
// (the configuration is not refused).
func (h *healthState) probeDue() (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nextProbe, h.misconfigured
}

// runProbe probes MLM Soft once and schedules the next probe if the
// configuration is still refused.
func (h *healthState) runProbe(ctx context.Context) {
	err := h.p.Check(ctx)
	if err == nil || ctx.Err() != nil {
		return
	}
	now := h.p.clock.Now()
	h.mu.Lock()
	h.probes++
	h.nextProbe = now.Add(h.probe.Delay(h.probes + 1))
	next := h.nextProbe
	h.mu.Unlock()
	if !errors.Is(err, ErrMisconfigured) {
		h.p.log.Debug("probe of MLM Soft failed", "err", err, "next", next)
	}
}
