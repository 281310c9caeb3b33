package mlmsofttest

import (
	"sort"
	"sync"
	"time"
)

// Clock is a manual clock satisfying mlmsoft.Clock: time moves only when a
// test calls Advance or Set, and After channels fire then. Safe for
// concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []clockWaiter
	notify  chan struct{} // closed and replaced whenever a waiter is added
}

type clockWaiter struct {
	at time.Time
	ch chan time.Time
}

// NewClock returns a Clock set to start (a fixed date when start is zero).
func NewClock(start time.Time) *Clock {
	if start.IsZero() {
		start = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	}
	return &Clock{now: start, notify: make(chan struct{})}
}

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the clock's time once it has been
// advanced by d or more. A d of zero or less fires at once.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, clockWaiter{at: c.now.Add(d), ch: ch})
	close(c.notify)
	c.notify = make(chan struct{})
	return ch
}

// Advance moves the clock forward by d and fires every After whose time has
// come, earliest first.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards) and fires due Afters.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	sort.SliceStable(c.waiters, func(i, j int) bool { return c.waiters[i].at.Before(c.waiters[j].at) })
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
			continue
		}
		keep = append(keep, w)
	}
	c.waiters = keep
}

// Waiters returns how many After calls are waiting for time to move.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// BlockUntil waits (in real time, up to timeout) until at least n After
// calls are waiting, so a test knows its goroutines are parked before it
// advances the clock. It reports whether that happened.
func (c *Clock) BlockUntil(n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		got, ch := len(c.waiters), c.notify
		c.mu.Unlock()
		if got >= n {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		select {
		case <-ch:
		case <-time.After(left):
		}
	}
}
