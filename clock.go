package mlmsoft

import "time"

// Clock is the plugin's source of time. Every deadline, backoff and lease is
// computed from it, so tests can drive time without sleeping. The zero
// Config uses the real clock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After waits for d to pass and then sends the current time on the
	// returned channel, like time.After.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
