// Package memstore is an in-memory mlmsoft.Store, for tests, demos and
// single-process hosts that accept losing every link and every undelivered
// volume change when the process stops. Hosts that need durability, or that
// run several replicas, use sqlstore instead.
//
// A Store keeps its data behind one mutex and copies records in and out, so
// nothing a caller holds aliases stored data. Claims use indexes (per-user
// queues with a head pointer, and heaps ordered by due time and by lease
// expiry), so claiming work costs about O(k log n) for k claimed records
// rather than a scan of the whole outbox. Delivered changes are kept for the
// life of the Store, as a database would keep them.
//
// It passes storetest.Run, the conformance suite every Store must pass.
package memstore

import (
	"context"
	"sync"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

var _ mlmsoft.Store = (*Store)(nil)

// Heap tags: which heap a record's heapSlot says it is in.
const (
	inReady  uint8 = 1 // due-ordered heap of records that may be claimable
	inLeased uint8 = 2 // lease-ordered heap of leased records
	inOpen   uint8 = 1 // volume changes pending or sending, by CreatedAt
)

// Store is an in-memory mlmsoft.Store. Create one with New; the zero value is
// not usable. A Store is safe for concurrent use by many goroutines, but its
// data lives only as long as the process.
type Store struct {
	mu  sync.Mutex
	seq uint64 // last record number given out

	// Links.
	links      map[string]*linkRec // by UserID
	emails     map[string]*linkRec // by non-empty Email
	linkIDs    []string            // every UserID, sorted, for ListLinks
	linkCounts map[mlmsoft.LinkState]int
	linkReady  timeHeap[*linkRec] // pending or created, lease free or lapsed; by NextAttemptAt
	linkLeased timeHeap[*linkRec] // pending or created, leased; by LeaseUntil

	// Volumes.
	vols      []*volRec // by ID: vols[i].c.ID == i+1
	keys      map[string]*volRec
	users     map[string]*userQueue
	volCounts map[mlmsoft.VolumeState]int
	open      timeHeap[*volRec]    // pending or sending changes, by CreatedAt
	userReady timeHeap[*userQueue] // head pending or sending, lease free or lapsed; by head NextAttemptAt
	userLease timeHeap[*userQueue] // head pending or sending, leased; by lease end
}

// New returns an empty Store.
func New() *Store {
	s := &Store{
		links:      make(map[string]*linkRec),
		emails:     make(map[string]*linkRec),
		linkCounts: make(map[mlmsoft.LinkState]int),
		keys:       make(map[string]*volRec),
		users:      make(map[string]*userQueue),
		volCounts:  make(map[mlmsoft.VolumeState]int),
	}
	s.linkReady = timeHeap[*linkRec]{tag: inReady, key: func(r *linkRec) time.Time { return r.l.NextAttemptAt }}
	s.linkLeased = timeHeap[*linkRec]{tag: inLeased, key: func(r *linkRec) time.Time { return r.l.LeaseUntil }}
	s.open = timeHeap[*volRec]{tag: inOpen, key: func(r *volRec) time.Time { return r.c.CreatedAt }}
	s.userReady = timeHeap[*userQueue]{tag: inReady, key: func(q *userQueue) time.Time { return q.changes[q.head].c.NextAttemptAt }}
	s.userLease = timeHeap[*userQueue]{tag: inLeased, key: func(q *userQueue) time.Time { return q.leaseUntil }}
	return s
}

// nextSeq numbers a new record; heaps order records with equal keys by it.
func (s *Store) nextSeq() uint64 {
	s.seq++
	return s.seq
}

// lock takes the mutex unless ctx is done already.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	return nil
}
