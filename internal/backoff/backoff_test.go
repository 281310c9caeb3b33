package backoff

import (
	"testing"
	"time"
)

func TestCeilingGrowsAndCaps(t *testing.T) {
	t.Parallel()
	p := New(time.Second, 30*time.Second, 0, 1)
	want := []time.Duration{time.Second, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for n, w := range want {
		if got := p.Delay(n); got != w {
			t.Errorf("Delay(%d) = %v, want %v", n, got, w)
		}
	}
	if got := p.Delay(1000); got != 30*time.Second {
		t.Errorf("Delay(1000) = %v, want the cap", got)
	}
}

func TestJitterStaysInRangeAndIsSeeded(t *testing.T) {
	t.Parallel()
	a := New(time.Second, time.Minute, 0.5, 42)
	b := New(time.Second, time.Minute, 0.5, 42)
	spread := map[time.Duration]bool{}
	for n := 1; n <= 200; n++ {
		da, db := a.Delay(n), b.Delay(n)
		if da != db {
			t.Fatalf("same seed, attempt %d: %v != %v", n, da, db)
		}
		ceil := a.Ceiling(n)
		if da > ceil || da < ceil/2 {
			t.Fatalf("attempt %d: %v outside [%v, %v]", n, da, ceil/2, ceil)
		}
		spread[da] = true
	}
	if len(spread) < 50 {
		t.Errorf("jitter produced only %d distinct delays", len(spread))
	}
}
