// Package memstore is an in-memory mlmsoft.Store, for tests, demos and
// single-process hosts that accept losing every link, every undelivered
// volume change and every owed hook event when the process stops. Hosts
// that need durability, or that run several replicas, use sqlstore instead.
//
// A Store keeps its data behind one mutex and copies records in and out, so
// nothing a caller holds aliases stored data. Claims use indexes (per-user
// queues with a head pointer, and heaps ordered by due time and by lease
// end), so claiming work costs about O(k log n) for k claimed records
// rather than a scan of the whole outbox, and Counts reads counters kept up
// to date by every write. Final volume changes stay until PurgeVolumes
// deletes them; it scans the outbox, as ListLinks and ListVolumes scan
// from their AfterID on.
//
// Keys and emails are compared byte-wise, letter case included. Event ids
// must be unique: a write giving one that is taken fails with
// mlmsoft.ErrDuplicate and writes nothing.
//
// A Store does not implement mlmsoft.TxStore (it has no database
// transactions) nor mlmsoft.WorkListener (it has no other process to hear
// from). It passes storetest.Run, the conformance suite every Store must
// pass.
package memstore

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/mlmsoft-go/mlmsoft"
)

var _ mlmsoft.Store = (*Store)(nil)

// Heap tags: which heap a record's heapSlot says it is in.
const (
	inReady  uint8 = 1 // due-ordered heap of records that may be claimable
	inLeased uint8 = 2 // lease-ordered heap of leased records
	inOpen   uint8 = 1 // volume changes not in a final state, by CreatedAt
)

// Store is an in-memory mlmsoft.Store. Create one with New; the zero value is
// not usable. A Store is safe for concurrent use by many goroutines, but its
// data lives only as long as the process.
type Store struct {
	mu sync.Mutex

	// Links.
	links      map[string]*linkRec // by UserID
	emails     map[string]*linkRec // by non-empty Email
	linkIDs    []string            // every UserID, sorted, for ListLinks
	linkCounts map[mlmsoft.LinkState]int
	linkHeaps  leasePair[*linkRec] // links with a NextAttemptAt

	// Volumes.
	lastID    int64
	vols      map[int64]*volRec
	byID      []*volRec // every stored change, in ID order
	keys      map[string]*volRec
	users     map[string]*userQueue
	volCounts map[mlmsoft.VolumeState]int
	open      timeHeap[*volRec]     // changes not in a final state, by CreatedAt
	userHeaps leasePair[*userQueue] // users whose head has a NextAttemptAt

	// Hook events.
	events     map[string]*eventRec
	failing    int // events with Attempts > 0
	eventHeaps leasePair[*eventRec]
}

// New returns an empty Store.
func New() *Store {
	s := &Store{
		links:      make(map[string]*linkRec),
		emails:     make(map[string]*linkRec),
		linkCounts: make(map[mlmsoft.LinkState]int),
		vols:       make(map[int64]*volRec),
		keys:       make(map[string]*volRec),
		users:      make(map[string]*userQueue),
		volCounts:  make(map[mlmsoft.VolumeState]int),
		events:     make(map[string]*eventRec),
	}
	s.linkHeaps = leasePair[*linkRec]{
		ready:  timeHeap[*linkRec]{tag: inReady, key: linkDue, tie: linkOrder},
		leased: timeHeap[*linkRec]{tag: inLeased, key: linkLeaseEnd, tie: linkOrder},
	}
	s.open = timeHeap[*volRec]{tag: inOpen, key: volCreated, tie: volOrder}
	s.userHeaps = leasePair[*userQueue]{
		ready:  timeHeap[*userQueue]{tag: inReady, key: userDue, tie: userOrder},
		leased: timeHeap[*userQueue]{tag: inLeased, key: userLeaseEnd, tie: userOrder},
	}
	s.eventHeaps = leasePair[*eventRec]{
		ready:  timeHeap[*eventRec]{tag: inReady, key: eventDue, tie: eventOrder},
		leased: timeHeap[*eventRec]{tag: inLeased, key: eventLeaseEnd, tie: eventIDOrder},
	}
	return s
}

// lock takes the mutex unless ctx is done already.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	return nil
}

// Counts returns how many links and volume changes are in each state
// (states with none are absent), the CreatedAt of the oldest change not in
// a final state, and how many hook events are owed and failing. It reads
// counters: its cost does not grow with the store.
func (s *Store) Counts(ctx context.Context) (mlmsoft.Counts, error) {
	if err := s.lock(ctx); err != nil {
		return mlmsoft.Counts{}, fmt.Errorf("memstore: counts: %w", err)
	}
	defer s.mu.Unlock()
	out := mlmsoft.Counts{
		Links:         nonZero(s.linkCounts),
		Volumes:       nonZero(s.volCounts),
		Events:        len(s.events),
		FailingEvents: s.failing,
	}
	if s.open.len() > 0 {
		out.OldestOpen = s.open.top().c.CreatedAt
	}
	return out, nil
}

// nonZero copies the counters that are not zero.
func nonZero[K comparable](m map[K]int) map[K]int {
	out := maps.Clone(m)
	maps.DeleteFunc(out, func(_ K, n int) bool { return n == 0 })
	if out == nil {
		out = map[K]int{}
	}
	return out
}
