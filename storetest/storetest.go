// Package storetest is the conformance suite for mlmsoft.Store
// implementations: memstore and every sqlstore dialect pass it, and so must
// a host's own store.
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) mlmsoft.Store {
//			return mystore.Open(t) // a fresh, empty store
//		})
//	}
//
// A store that also implements mlmsoft.TxStore runs RunTx as well, giving it
// the *sql.DB the store writes to:
//
//	func TestStoreTx(t *testing.T) {
//		storetest.RunTx(t, func(t *testing.T) (mlmsoft.TxStore, *sql.DB) {
//			db := openScratchDB(t)
//			return mystore.New(db), db
//		})
//	}
//
// # What it checks
//
// The suite checks the promises written in the doc comments of mlmsoft's
// storage.go, and nothing more: keys and uniqueness, compare-and-swap,
// leases, the head of each user's queue, the continuation of a worker's run
// (VolumeUpdate.Send), hook events written with the state they report,
// retention, Counts and the order of every list. Records are filled by
// reflection: every exported field of Link, VolumeChange and Event gets a
// distinctive value (text with quotes, backslashes and letters outside
// ASCII, ids above 2^53, bytes that are not UTF-8, times in a zone other
// than UTC), so that a store that drops or mangles a field fails — one
// added to a record in a later release included, as soon as the store is
// tested against that release. Fields the store owns (Link.Version,
// Link.Lease, Event.Lease, VolumeChange.ID and Seq) are checked for their
// documented values instead. State labels other than the ones mlmsoft
// defines must be stored too: a store reads State only through Final.
//
// # What it assumes
//
// Every time the suite writes is a whole number of milliseconds (stores
// keep at least that precision), in a fixed zone east of UTC; times read
// back are compared with time.Equal, so a store may return them in any
// location, and the zero time must come back as the zero time. User ids
// and event ids whose order the suite checks are made of lower-case ASCII
// letters and digits, which sort the same byte-wise and under common
// database collations. Keys and emails are compared as given, letter case
// included (a MySQL store needs binary collations for them), and
// LinkFilter.EmailPrefix byte-wise, '%', '_' and '\' standing for
// themselves. Text may hold any UTF-8, four-byte characters included
// (MySQL: utf8mb4), and a []byte any bytes. Every volume change the suite
// enqueues has a non-empty IdempotencyKey; every event a NextAttemptAt.
//
// Times passed as "now" are fixed values, never the wall clock, so leases
// lapse only when a test says so. The plugin makes each claim's owner
// token unique; the suite reuses a worker's token for several claims only
// while none of that worker's leases lapses, where a store cannot tell the
// difference.
//
// # What it covers
//
// Run covers mlmsoft.Store. RunTx covers mlmsoft.TxStore, the optional
// capability of writing in the host's *sql.Tx; a TxStore passes both.
// Nothing covers mlmsoft.WorkListener, whose promise (a wake-up when work
// may be due) no generic test can hold a store to.
//
// # How it runs
//
// Each subtest calls newStore for a fresh, empty store and runs in parallel
// with the others (t.Parallel), so newStore must be safe for concurrent
// calls; a store that cannot run tests side by side can serialize inside
// newStore, holding a lock until t.Cleanup. Concurrency cases use a bounded
// number of goroutines (fewer under testing.Short) so that database-backed
// stores finish in seconds; they check that no lease is ever given to two
// owners at once and that each user's changes are delivered once each, in
// Seq order, while workers and writers race.
package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
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
	t.Run("Send", s.sends)
	t.Run("Purge", s.purges)
	t.Run("Event", s.events)
	t.Run("Count", s.counts)
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

// zone is where the suite's times are: east of UTC, and not by whole
// hours, so that a store that drops or misreads the offset is caught.
var zone = time.FixedZone("UTC+05:45", 5*3600+45*60)

// t0 is the suite's epoch: every time it writes is t0 plus whole
// milliseconds.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, zone)

// at returns t0+d; d must be a whole number of milliseconds.
func at(d time.Duration) time.Time { return t0.Add(d) }

const (
	ms     = time.Millisecond
	minute = time.Minute
	hour   = time.Hour
)

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

// same fails t, listing every field in which got differs from want (two
// records of one type), unless they agree. See diff.
func same(t testing.TB, what string, want, got any) {
	t.Helper()
	if d := diff(want, got); len(d) > 0 {
		t.Errorf("%s: %d field(s) differ:\n\t%s", what, len(d), strings.Join(d, "\n\t"))
	}
}

// wantErr fails t unless err wraps target.
func wantErr(t testing.TB, what string, err, target error) {
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
func mustOK(t testing.TB, what string, err error) {
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

// wantIDs fails t unless got lists want, in order.
func wantIDs[T comparable](t testing.TB, what string, got, want []T) {
	t.Helper()
	if want == nil {
		want = []T{}
	}
	if got == nil {
		got = []T{}
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}
