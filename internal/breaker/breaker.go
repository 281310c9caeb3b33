// Package breaker wraps github.com/sony/gobreaker so that its open period is
// measured on an injectable clock: gobreaker counts failures, trips and
// admits half-open probes; this wrapper only holds the open state until the
// clock says the open timeout has passed. Hosts never see gobreaker.
package breaker

import (
	"errors"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrOpen is returned by Allow while the breaker is open or while the
// half-open state has as many probes in flight as it admits.
var ErrOpen = errors.New("circuit breaker open")

// Settings configure a Breaker.
type Settings struct {
	Name                string
	ConsecutiveFailures uint32        // failures in a row that trip it; > 0
	OpenTimeout         time.Duration // how long it stays open; > 0
	HalfOpenRequests    uint32        // probes admitted while half-open; > 0
	Now                 func() time.Time
	// IsFailure tells whether a request's error counts against MLM Soft;
	// errors it does not count are excluded (neither success nor failure).
	IsFailure func(err error) bool
	// OnStateChange is called with the new state ("closed", "open",
	// "half-open"), outside the breaker's lock.
	OnStateChange func(from, to string)
}

// Breaker is a circuit breaker. Safe for concurrent use.
type Breaker struct {
	cb        *gobreaker.TwoStepCircuitBreaker[struct{}]
	now       func() time.Time
	timeout   time.Duration
	isFailure func(error) bool
	notify    func(from, to string)

	mu        sync.Mutex
	openUntil time.Time // zero unless gobreaker tripped and the clock has not passed it
	trips     int
	state     string
}

// New returns a closed breaker.
func New(s Settings) *Breaker {
	b := &Breaker{now: s.Now, timeout: s.OpenTimeout, isFailure: s.IsFailure, notify: s.OnStateChange, state: "closed"}
	if b.now == nil {
		b.now = time.Now
	}
	if b.isFailure == nil {
		b.isFailure = func(err error) bool { return err != nil }
	}
	failures := s.ConsecutiveFailures
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        s.Name,
		MaxRequests: s.HalfOpenRequests,
		// gobreaker's own open period runs on the wall clock; keep it
		// negligible so that openUntil, on our clock, decides instead.
		Timeout:     time.Nanosecond,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsSuccessful: func(err error) bool {
			return err == nil
		},
		IsExcluded: func(err error) bool { return err != nil && !b.isFailure(err) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			// Called under gobreaker's lock, from Allow or done below.
			if to == gobreaker.StateOpen {
				b.mu.Lock()
				b.openUntil = b.now().Add(b.timeout)
				b.trips++
				b.mu.Unlock()
			}
		},
	})
	return b
}

// Allow asks to send one request. On success it returns done, which must be
// called exactly once with the request's error (nil for success).
func (b *Breaker) Allow() (done func(error), err error) {
	b.mu.Lock()
	open := !b.openUntil.IsZero() && b.now().Before(b.openUntil)
	if !open {
		b.openUntil = time.Time{}
	}
	b.mu.Unlock()
	if open {
		b.observe()
		return nil, ErrOpen
	}
	gdone, err := b.cb.Allow()
	b.observe()
	if err != nil {
		return nil, errors.Join(ErrOpen, err)
	}
	var once sync.Once
	return func(err error) {
		once.Do(func() {
			gdone(err)
			b.observe()
		})
	}, nil
}

// State returns "closed", "open" or "half-open" as of now on the clock.
func (b *Breaker) State() string {
	b.observe()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

// Trips returns how many times the breaker has opened.
func (b *Breaker) Trips() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.trips
}

// observe computes the visible state and reports a change.
func (b *Breaker) observe() {
	// gobreaker's lock is taken before ours, never inside it: its
	// OnStateChange takes ours.
	gs := b.cb.State()
	b.mu.Lock()
	var s string
	switch {
	case !b.openUntil.IsZero() && b.now().Before(b.openUntil):
		s = "open"
	case gs == gobreaker.StateClosed:
		s = "closed"
	default:
		// gobreaker says open (its nanosecond timeout not yet seen) or
		// half-open: past our open period, probes are admitted.
		s = "half-open"
	}
	from := b.state
	b.state = s
	b.mu.Unlock()
	if from != s && b.notify != nil {
		b.notify(from, s)
	}
}
