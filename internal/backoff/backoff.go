// Package backoff computes capped exponential retry delays with jitter.
package backoff

import (
	"math/rand/v2"
	"sync"
	"time"
)

// Policy is a capped exponential backoff: attempt 1 waits about Initial,
// each further attempt Multiplier times longer, never more than Max. Jitter
// spreads each delay uniformly over [d*(1-Jitter), d], so that many clients
// failing together do not retry together.
type Policy struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64 // <= 1 means 2
	Jitter     float64 // 0..1; 0 means none

	mu  sync.Mutex
	rng *rand.Rand
}

// New returns a Policy whose jitter comes from a generator seeded with seed,
// so delays are reproducible in tests.
func New(initial, max time.Duration, jitter float64, seed uint64) *Policy {
	return &Policy{Initial: initial, Max: max, Multiplier: 2, Jitter: jitter, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Delay returns the wait before attempt n (n >= 1; n < 1 counts as 1).
func (p *Policy) Delay(n int) time.Duration {
	d := p.Ceiling(n)
	if p.Jitter <= 0 || d <= 0 {
		return d
	}
	p.mu.Lock()
	f := p.rng.Float64()
	p.mu.Unlock()
	return d - time.Duration(float64(d)*p.Jitter*f)
}

// Ceiling returns the delay before attempt n without jitter: the most Delay
// can return.
func (p *Policy) Ceiling(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	m := p.Multiplier
	if m <= 1 {
		m = 2
	}
	d := float64(p.Initial)
	for i := 1; i < n && d < float64(p.Max); i++ {
		d *= m
	}
	if d > float64(p.Max) {
		d = float64(p.Max)
	}
	return time.Duration(d)
}
