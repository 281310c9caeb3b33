package memstore

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// volRec is a stored volume change, its index in its user's queue and its
// place in the heap of open (pending or sending) changes.
type volRec struct {
	c    mlmsoft.VolumeChange
	pos  int
	heap heapSlot
}

func (r *volRec) slot() *heapSlot { return &r.heap }

// userQueue is one user's outbox: every change in Seq order, a pointer to
// the head (the oldest change not in a final state), the lease on the user
// and the queue's place in the claim heaps.
type userQueue struct {
	id         string
	changes    []*volRec
	head       int // index of the head in changes; len(changes) when none
	lastSeq    int64
	leaseOwner string // "" when free
	leaseUntil time.Time
	heap       heapSlot
}

func (q *userQueue) slot() *heapSlot { return &q.heap }

// headRec returns the head change, or nil when every change is final.
func (q *userQueue) headRec() *volRec {
	if q.head < len(q.changes) {
		return q.changes[q.head]
	}
	return nil
}

// advance moves the head past final changes.
func (q *userQueue) advance() {
	for q.head < len(q.changes) && q.changes[q.head].c.State.Final() {
		q.head++
	}
}

func openState(st mlmsoft.VolumeState) bool {
	return st == mlmsoft.VolumePending || st == mlmsoft.VolumeSending
}

// placeUser files q in the claim heap its head and lease call for: none
// unless the head is pending or sending; the lease heap while a lease not
// seen lapsed holds it; otherwise the due heap.
func (s *Store) placeUser(q *userQueue) {
	var to *timeHeap[*userQueue]
	h := q.headRec()
	switch {
	case h == nil || !openState(h.c.State):
	case q.leaseOwner != "" && !q.heap.lapsed:
		to = &s.userLease
	default:
		to = &s.userReady
	}
	relocate(q, to, &s.userReady, &s.userLease)
}

// setState records r's move into state st in the counters and the heap of
// open changes.
func (s *Store) setState(r *volRec, st mlmsoft.VolumeState) {
	s.volCounts[r.c.State]--
	s.volCounts[st]++
	r.c.State = st
	var to *timeHeap[*volRec]
	if openState(st) {
		to = &s.open
	}
	relocate(r, to, &s.open)
}

func sameContent(a, b mlmsoft.VolumeChange) bool {
	return a.UserID == b.UserID && a.Alias == b.Alias && a.Amount == b.Amount && a.OrderID == b.OrderID
}

// EnqueueVolumes stores changes atomically in the given order and returns
// them as stored: each new change gets the next ID and the next Seq of its
// user. A change whose IdempotencyKey is stored already, or appears earlier
// in the same call, is not stored again; the stored (or earlier) change is
// returned in its place. If such a change differs in UserID, Alias, Amount
// or OrderID, the call stores nothing and fails with an error wrapping
// mlmsoft.ErrIdempotencyConflict. The empty key is a key like any other.
func (s *Store) EnqueueVolumes(ctx context.Context, changes []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: enqueue volumes: %w", err)
	}
	defer s.mu.Unlock()

	// Check the whole batch before writing anything. from[i] is the stored
	// record standing in for change i, or nil; first[i] is the index of an
	// earlier change of the batch with the same key, or -1.
	from := make([]*volRec, len(changes))
	first := make([]int, len(changes))
	seen := make(map[string]int, len(changes))
	for i, c := range changes {
		first[i] = -1
		if r, ok := s.keys[c.IdempotencyKey]; ok {
			if !sameContent(r.c, c) {
				return nil, fmt.Errorf("memstore: enqueue volumes: change %d: key stored with change %d: %w", i, r.c.ID, mlmsoft.ErrIdempotencyConflict)
			}
			from[i] = r
			continue
		}
		if j, ok := seen[c.IdempotencyKey]; ok {
			if !sameContent(changes[j], c) {
				return nil, fmt.Errorf("memstore: enqueue volumes: change %d: key used by change %d of the batch: %w", i, j, mlmsoft.ErrIdempotencyConflict)
			}
			first[i] = j
			continue
		}
		seen[c.IdempotencyKey] = i
	}

	out := make([]mlmsoft.VolumeChange, len(changes))
	for i, c := range changes {
		switch {
		case from[i] != nil:
			out[i] = from[i].c
			continue
		case first[i] >= 0:
			out[i] = out[first[i]]
			continue
		}
		q := s.users[c.UserID]
		if q == nil {
			q = &userQueue{id: c.UserID, heap: heapSlot{seq: s.nextSeq()}}
			s.users[c.UserID] = q
		}
		q.lastSeq++
		c.ID = int64(len(s.vols)) + 1
		c.Seq = q.lastSeq
		r := &volRec{c: c, pos: len(q.changes), heap: heapSlot{seq: s.nextSeq()}}
		s.volCounts[c.State]++
		if openState(c.State) {
			s.open.push(r)
		}
		s.vols = append(s.vols, r)
		s.keys[c.IdempotencyKey] = r
		q.changes = append(q.changes, r)
		q.advance()
		s.placeUser(q)
		out[i] = r.c
	}
	return out, nil
}

// GetVolumes returns the changes with the given ids, in the order asked; a
// missing id fails the call with an error wrapping mlmsoft.ErrNotFound.
func (s *Store) GetVolumes(ctx context.Context, ids []int64) ([]mlmsoft.VolumeChange, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: get volumes: %w", err)
	}
	defer s.mu.Unlock()
	out := make([]mlmsoft.VolumeChange, len(ids))
	for i, id := range ids {
		r := s.vol(id)
		if r == nil {
			return nil, fmt.Errorf("memstore: get volume %d: %w", id, mlmsoft.ErrNotFound)
		}
		out[i] = r.c
	}
	return out, nil
}

func (s *Store) vol(id int64) *volRec {
	if id < 1 || id > int64(len(s.vols)) {
		return nil
	}
	return s.vols[id-1]
}

// ClaimVolumes leases to c.Owner, until c.Now+c.Lease, up to c.Limit users
// not in c.Exclude whose head (oldest change not in a final state) is
// pending or sending and due at c.Now, and whose lease is free or ended at
// or before c.Now; it returns their heads, earliest NextAttemptAt first
// (ties in the order the users first had a change enqueued). A Limit of 0
// or less claims nothing; an empty Owner is an error wrapping
// mlmsoft.ErrInvalidInput.
func (s *Store) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.VolumeChange, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: claim volumes: %w", err)
	}
	defer s.mu.Unlock()
	if c.Owner == "" {
		return nil, fmt.Errorf("memstore: claim volumes: empty Owner: %w", mlmsoft.ErrInvalidInput)
	}
	now := c.Now
	for s.userLease.len() > 0 {
		q := s.userLease.top()
		if q.leaseUntil.After(now) {
			break
		}
		q.heap.lapsed = true
		s.placeUser(q)
	}
	var excluded map[string]bool
	if len(c.Exclude) > 0 {
		excluded = make(map[string]bool, len(c.Exclude))
		for _, u := range c.Exclude {
			excluded[u] = true
		}
	}
	var out []mlmsoft.VolumeChange
	var skipped []*userQueue
	for len(out) < c.Limit && s.userReady.len() > 0 {
		q := s.userReady.top()
		h := q.headRec()
		if h.c.NextAttemptAt.After(now) {
			break
		}
		if leaseLive(q.leaseOwner, q.leaseUntil, now) {
			// Seen lapsed by a claim with a later now; live at this one.
			q.heap.lapsed = false
			s.placeUser(q)
			continue
		}
		if excluded[q.id] {
			s.userReady.remove(q)
			skipped = append(skipped, q)
			continue
		}
		q.leaseOwner, q.leaseUntil, q.heap.lapsed = c.Owner, now.Add(c.Lease), false
		s.placeUser(q)
		out = append(out, h.c)
	}
	for _, q := range skipped {
		s.placeUser(q)
	}
	return out, nil
}

// UpdateVolume applies u and returns the change as stored. With u.Owner set,
// u.Owner must hold the lease on the change's user (expired or not); with
// u.Owner empty (an operator), nobody may hold a lease live at u.UpdatedAt.
// Errors wrap mlmsoft.ErrNotFound, mlmsoft.ErrLeaseLost or
// mlmsoft.ErrConflict (the state is not in a non-empty u.From); nothing is
// written on error. u.Release frees the user when u.Owner holds it.
func (s *Store) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeChange, error) {
	if err := s.lock(ctx); err != nil {
		return mlmsoft.VolumeChange{}, fmt.Errorf("memstore: update volume: %w", err)
	}
	defer s.mu.Unlock()
	r := s.vol(u.ID)
	if r == nil {
		return mlmsoft.VolumeChange{}, fmt.Errorf("memstore: update volume %d: %w", u.ID, mlmsoft.ErrNotFound)
	}
	q := s.users[r.c.UserID]
	if u.Owner != "" && q.leaseOwner != u.Owner {
		return mlmsoft.VolumeChange{}, fmt.Errorf("memstore: update volume %d: user not leased to %q: %w", u.ID, u.Owner, mlmsoft.ErrLeaseLost)
	}
	if u.Owner == "" && leaseLive(q.leaseOwner, q.leaseUntil, u.UpdatedAt) {
		return mlmsoft.VolumeChange{}, fmt.Errorf("memstore: update volume %d: user leased to a worker: %w", u.ID, mlmsoft.ErrLeaseLost)
	}
	if len(u.From) > 0 && !slices.Contains(u.From, r.c.State) {
		return mlmsoft.VolumeChange{}, fmt.Errorf("memstore: update volume %d: state %s: %w", u.ID, r.c.State, mlmsoft.ErrConflict)
	}
	s.setState(r, u.State)
	c := &r.c
	c.Attempts = u.Attempts
	c.NextAttemptAt = u.NextAttemptAt
	c.LastError = u.LastError
	c.DocumentID = u.DocumentID
	c.AccountID = u.AccountID
	c.SentAt = u.SentAt
	c.DeliveredAt = u.DeliveredAt
	c.ResolvedBy = u.ResolvedBy
	c.ResolvedNote = u.ResolvedNote
	c.ResolvedAt = u.ResolvedAt
	c.UpdatedAt = u.UpdatedAt
	if !u.State.Final() && r.pos < q.head {
		q.head = r.pos
	}
	q.advance()
	if u.Release && u.Owner != "" {
		q.leaseOwner, q.leaseUntil, q.heap.lapsed = "", time.Time{}, false
	}
	s.placeUser(q)
	return r.c, nil
}

// ReleaseVolumeUser ends owner's lease on userID. It does nothing, and
// returns nil, when owner does not hold that lease.
func (s *Store) ReleaseVolumeUser(ctx context.Context, owner, userID string) error {
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("memstore: release volume user: %w", err)
	}
	defer s.mu.Unlock()
	q := s.users[userID]
	if q == nil || owner == "" || q.leaseOwner != owner {
		return nil
	}
	q.leaseOwner, q.leaseUntil, q.heap.lapsed = "", time.Time{}, false
	s.placeUser(q)
	return nil
}

// WakeVolumes sets NextAttemptAt to at for userID's pending changes whose
// NextAttemptAt is later. An unknown user is not an error.
func (s *Store) WakeVolumes(ctx context.Context, userID string, at time.Time) error {
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("memstore: wake volumes: %w", err)
	}
	defer s.mu.Unlock()
	q := s.users[userID]
	if q == nil {
		return nil
	}
	for _, r := range q.changes[q.head:] {
		if r.c.State == mlmsoft.VolumePending && r.c.NextAttemptAt.After(at) {
			r.c.NextAttemptAt = at
		}
	}
	s.placeUser(q)
	return nil
}

// ListVolumes returns the changes matching f in ID order.
func (s *Store) ListVolumes(ctx context.Context, f mlmsoft.VolumeFilter) ([]mlmsoft.VolumeChange, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: list volumes: %w", err)
	}
	defer s.mu.Unlock()
	// A user's changes are in ID order as well as Seq order: both are
	// assigned under the one lock.
	recs := s.vols
	if f.UserID != "" {
		q := s.users[f.UserID]
		if q == nil {
			return []mlmsoft.VolumeChange{}, nil
		}
		recs = q.changes
	}
	start := sort.Search(len(recs), func(i int) bool { return recs[i].c.ID > f.AfterID })
	out := []mlmsoft.VolumeChange{}
	for _, r := range recs[start:] {
		if f.Limit > 0 && len(out) >= f.Limit {
			break
		}
		if len(f.States) > 0 && !slices.Contains(f.States, r.c.State) {
			continue
		}
		out = append(out, r.c)
	}
	return out, nil
}

// CountVolumes returns how many changes are in each state (states with none
// are absent) and the CreatedAt of the oldest pending or sending change.
func (s *Store) CountVolumes(ctx context.Context) (mlmsoft.VolumeCounts, error) {
	if err := s.lock(ctx); err != nil {
		return mlmsoft.VolumeCounts{}, fmt.Errorf("memstore: count volumes: %w", err)
	}
	defer s.mu.Unlock()
	out := mlmsoft.VolumeCounts{ByState: make(map[mlmsoft.VolumeState]int, len(s.volCounts))}
	for st, n := range s.volCounts {
		if n > 0 {
			out.ByState[st] = n
		}
	}
	if s.open.len() > 0 {
		out.OldestPending = s.open.top().c.CreatedAt
	}
	return out, nil
}
