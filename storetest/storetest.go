// Package storetest is the conformance suite for mlmsoft.Store
// implementations: memstore and every sqlstore dialect pass it, and so can a
// host's own store.
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) mlmsoft.Store {
//			return mystore.Open(t) // a fresh, empty store
//		})
//	}
//
// The suite checks only what the doc comments in mlmsoft's storage.go
// promise. It assumes a store keeps times to the millisecond: every time it
// writes is a whole number of milliseconds, in UTC, and times read back are
// compared with time.Equal, so a store may return them in any location. User
// ids whose order it checks are lower-case ASCII letters and digits, which
// sort the same byte-wise and under common database collations. Emails are
// compared as given, letter case included (a MySQL store needs a binary
// collation for them). Profile and error text includes non-ASCII letters,
// SealedPassword arbitrary bytes, and id values above 2^53: all must
// round-trip exactly, and a nil SealedPassword must stay nil while an empty
// one stays empty.
//
// Each subtest calls newStore for a fresh, empty store and runs in parallel
// with the others (t.Parallel), so newStore must be safe for concurrent
// calls; a store that cannot run tests side by side can serialize inside
// newStore, holding a lock until t.Cleanup. Concurrency cases use a bounded
// number of goroutines (fewer under testing.Short) so that database-backed
// stores finish in seconds. Times passed as "now" are fixed values, never
// the wall clock, so leases expire only when a test says so.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// Run runs the conformance suite against the stores newStore returns. It
// calls newStore once per subtest, with the subtest's t, and expects a
// fresh, empty store each time; newStore reports its own setup failures
// through that t (t.Fatal) and registers any teardown with t.Cleanup.
// Run does not call t.Parallel on t itself.
func Run(t *testing.T, newStore func(t *testing.T) mlmsoft.Store) {
	t.Helper()
	s := suite{newStore: newStore}
	t.Run("Link", s.links)
	t.Run("Volume", s.volumes)
	t.Run("Concurrency", s.concurrency)
}

type suite struct {
	newStore func(t *testing.T) mlmsoft.Store
}

// test runs f as a parallel subtest of t with a fresh store.
func (s suite) test(t *testing.T, name string, f func(t *testing.T, st mlmsoft.Store)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		st := s.newStore(t)
		if st == nil {
			t.Fatal("newStore returned nil")
		}
		f(t, st)
	})
}

// t0 is the suite's epoch: every time it writes is t0 plus whole
// milliseconds.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// at returns t0+d; d must be a whole number of milliseconds.
func at(d time.Duration) time.Time { return t0.Add(d) }

// diff lists the fields in which got differs from want, two structs of one
// type: times by time.Equal, byte slices by content and nil-ness, the rest
// by ==.
func diff(want, got any) []string {
	wv, gv := reflect.ValueOf(want), reflect.ValueOf(got)
	var out []string
	for i := range wv.NumField() {
		name := wv.Type().Field(i).Name
		w, g := wv.Field(i).Interface(), gv.Field(i).Interface()
		switch wx := w.(type) {
		case time.Time:
			if gx := g.(time.Time); !wx.Equal(gx) {
				out = append(out, fmt.Sprintf("%s = %s, want %s", name, fmtTime(gx), fmtTime(wx)))
			}
		case []byte:
			if gx := g.([]byte); !bytes.Equal(wx, gx) || (wx == nil) != (gx == nil) {
				out = append(out, fmt.Sprintf("%s = %s, want %s", name, fmtBytes(gx), fmtBytes(wx)))
			}
		default:
			if w != g {
				out = append(out, fmt.Sprintf("%s = %#v, want %#v", name, g, w))
			}
		}
	}
	return out
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "zero time"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000000Z")
}

func fmtBytes(b []byte) string {
	if b == nil {
		return "nil"
	}
	return fmt.Sprintf("[]byte(%x) (len %d)", b, len(b))
}

// same reports through t.Errorf every field in which got differs from want.
func same(t *testing.T, what string, want, got any) {
	t.Helper()
	for _, d := range diff(want, got) {
		t.Errorf("%s: %s", what, d)
	}
}

// wantErr fails t unless err wraps target.
func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one wrapping %v", what, target)
		return
	}
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want one wrapping %v", what, err, target)
	}
}

// mustOK stops the test on an unexpected error.
func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// countsEqual compares two count maps, a missing key counting as 0.
func countsEqual[K comparable](want, got map[K]int) bool {
	for k, n := range want {
		if got[k] != n {
			return false
		}
	}
	for k, n := range got {
		if want[k] != n {
			return false
		}
	}
	return true
}
