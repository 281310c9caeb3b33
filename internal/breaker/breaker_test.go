package breaker

import (
	"errors"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

var errDown = errors.New("down")
var errBusiness = errors.New("refused")

func newTestBreaker(clk *clock, changes *[]string) *Breaker {
	return New(Settings{
		ConsecutiveFailures: 3, OpenTimeout: 30 * time.Second, HalfOpenRequests: 1, Now: clk.Now,
		IsFailure:     func(err error) bool { return errors.Is(err, errDown) },
		OnStateChange: func(from, to string) { *changes = append(*changes, from+">"+to) },
	})
}

func call(t *testing.T, b *Breaker, err error) error {
	t.Helper()
	done, aerr := b.Allow()
	if aerr != nil {
		return aerr
	}
	done(err)
	return nil
}

func TestOpensHalfOpensAndRecoversOnTheInjectedClock(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1000, 0)}
	var changes []string
	b := newTestBreaker(clk, &changes)

	// Business errors and successes never trip it.
	for range 10 {
		if err := call(t, b, errBusiness); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if err := call(t, b, errDown); err != nil {
			t.Fatalf("failure %d refused early: %v", i, err)
		}
	}
	if b.State() != "open" || b.Trips() != 1 {
		t.Fatalf("after 3 failures: state %s trips %d", b.State(), b.Trips())
	}
	// Open: no traffic, however much wall time passes, until the clock moves.
	time.Sleep(5 * time.Millisecond)
	if err := call(t, b, nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("open breaker let a request through: %v", err)
	}
	clk.Advance(29 * time.Second)
	if err := call(t, b, nil); !errors.Is(err, ErrOpen) {
		t.Fatalf("before the timeout: %v", err)
	}
	clk.Advance(2 * time.Second)
	if b.State() != "half-open" {
		t.Fatalf("after the timeout: %s", b.State())
	}
	// Half-open admits one probe; a second concurrent one is refused.
	done, err := b.Allow()
	if err != nil {
		t.Fatalf("probe refused: %v", err)
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("second probe admitted: %v", err)
	}
	done(errDown) // the probe fails: open again for a full timeout
	if b.State() != "open" || b.Trips() != 2 {
		t.Fatalf("failed probe: state %s trips %d", b.State(), b.Trips())
	}
	clk.Advance(31 * time.Second)
	if err := call(t, b, nil); err != nil {
		t.Fatalf("probe after second timeout: %v", err)
	}
	if b.State() != "closed" {
		t.Fatalf("successful probe left it %s", b.State())
	}
	want := []string{"closed>open", "open>half-open", "half-open>open", "open>half-open", "half-open>closed"}
	if len(changes) != len(want) {
		t.Fatalf("state changes %v, want %v", changes, want)
	}
	for i := range want {
		if changes[i] != want[i] {
			t.Fatalf("state changes %v, want %v", changes, want)
		}
	}
}

func TestExcludedErrorsDoNotResetOrCount(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1000, 0)}
	var changes []string
	b := newTestBreaker(clk, &changes)
	call(t, b, errDown)
	call(t, b, errDown)
	call(t, b, errBusiness) // excluded: neither resets nor counts
	call(t, b, errDown)
	if b.State() != "open" {
		t.Fatalf("state %s, want open (business error must not reset the failure run)", b.State())
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Unix(1000, 0)}
	var changes []string
	var mu sync.Mutex
	b := New(Settings{ConsecutiveFailures: 5, OpenTimeout: time.Second, HalfOpenRequests: 2, Now: clk.Now,
		OnStateChange: func(from, to string) { mu.Lock(); changes = append(changes, to); mu.Unlock() }})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				if done, err := b.Allow(); err == nil {
					if (i+g)%3 == 0 {
						done(errDown)
					} else {
						done(nil)
					}
				}
				if i%50 == 0 {
					clk.Advance(300 * time.Millisecond)
				}
				_ = b.State()
			}
		}()
	}
	wg.Wait()
}
