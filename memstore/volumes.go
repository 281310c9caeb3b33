package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// volRec is a stored volume change, its queue and index there, and its
// place in the heap of open changes (those not in a final state).
type volRec struct {
	c    mlmsoft.VolumeChange
	q    *userQueue
	pos  int
	gone bool // deleted by PurgeVolumes
	heap heapSlot
}

func (r *volRec) slot() *heapSlot { return &r.heap }

func volCreated(r *volRec) time.Time { return r.c.CreatedAt }
func volOrder(a, b *volRec) int      { return cmp.Compare(a.c.ID, b.c.ID) }

// userQueue is one user's outbox: every stored change in Seq order, a
// pointer to the head (the lowest-Seq change not in a final state), the
// lease on the user and the queue's place in the claim heaps. A queue stays
// when its changes are purged, so that Seq goes on from lastSeq.
type userQueue struct {
	id      string
	changes []*volRec
	head    int // index of the head in changes; len(changes) when none
	lastSeq int64
	lease   mlmsoft.Lease
	heap    heapSlot
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

// userDue is the claim heaps' key for a queue: its head's NextAttemptAt.
func userDue(q *userQueue) time.Time {
	if h := q.headRec(); h != nil {
		return h.c.NextAttemptAt
	}
	return time.Time{}
}

func userLeaseEnd(q *userQueue) time.Time { return q.lease.Until }

// userOrder breaks ties between queues: by their heads' IDs.
func userOrder(a, b *userQueue) int {
	var x, y int64
	if h := a.headRec(); h != nil {
		x = h.c.ID
	}
	if h := b.headRec(); h != nil {
		y = h.c.ID
	}
	return cmp.Compare(x, y)
}

// placeUser files q in the claim heaps: only a queue whose head has a
// NextAttemptAt can ever be due. Callers re-file a queue as soon as its
// head or its head's NextAttemptAt changes.
func (s *Store) placeUser(q *userQueue) {
	h := q.headRec()
	s.userHeaps.place(q, h != nil && !h.c.NextAttemptAt.IsZero(), q.lease.Owner)
}

// setState records r's move into state st in the counters and the heap of
// open changes.
func (s *Store) setState(r *volRec, st mlmsoft.VolumeState) {
	s.volCounts[r.c.State]--
	s.volCounts[st]++
	r.c.State = st
	var to *timeHeap[*volRec]
	if !st.Final() {
		to = &s.open
	}
	relocate(r, to, &s.open)
}

// dueAt reports whether a NextAttemptAt of next is due at t: set, and not
// after t.
func dueAt(next, t time.Time) bool { return !next.IsZero() && !next.After(t) }

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
			q = &userQueue{id: c.UserID}
			s.users[c.UserID] = q
		}
		s.lastID++
		q.lastSeq++
		c.ID, c.Seq = s.lastID, q.lastSeq
		r := &volRec{c: c, q: q, pos: len(q.changes)}
		s.volCounts[c.State]++
		if !c.State.Final() {
			s.open.push(r)
		}
		s.vols[c.ID] = r
		s.byID = append(s.byID, r)
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
		r := s.vols[id]
		if r == nil {
			return nil, fmt.Errorf("memstore: get volume %d: %w", id, mlmsoft.ErrNotFound)
		}
		out[i] = r.c
	}
	return out, nil
}

// ClaimVolumes leases to c.Owner, until c.Now+c.Lease, up to c.Limit users
// whose head (lowest-Seq change not in a final state) has a NextAttemptAt
// not after c.Now and whose lease is free or has ended by c.Now; it returns
// their heads, earliest NextAttemptAt first, then by ID. A Limit of 0 or
// less claims nothing; an empty Owner is an error wrapping
// mlmsoft.ErrInvalidInput.
func (s *Store) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.ClaimedVolume, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: claim volumes: %w", err)
	}
	defer s.mu.Unlock()
	if c.Owner == "" {
		return nil, fmt.Errorf("memstore: claim volumes: empty Owner: %w", mlmsoft.ErrInvalidInput)
	}
	now := c.Now
	h := &s.userHeaps
	h.lapse(now, s.placeUser)
	var out []mlmsoft.ClaimedVolume
	for len(out) < c.Limit && h.ready.len() > 0 && h.due(now) {
		q := h.ready.top()
		q.heap.lapsed = false
		if !q.lease.Held(now) {
			q.lease = mlmsoft.Lease{Owner: c.Owner, Until: now.Add(c.Lease)}
			head := q.headRec()
			sending := false
			if c.Send && head.c.State == mlmsoft.VolumePending && head.c.DocumentID == 0 {
				if l := s.links[q.id]; l != nil && l.l.State == mlmsoft.LinkLinked && l.l.AccountID != 0 {
					s.markSending(head, now, l.l.AccountID)
					sending = true
				}
			}
			out = append(out, mlmsoft.ClaimedVolume{Change: head.c, Sending: sending})
		}
		// else: seen lapsed by a claim with a later now; held at this one.
		s.placeUser(q)
	}
	return out, nil
}

// markSending marks r sending at at, to the account accountID: the
// write-ahead of its request.
func (s *Store) markSending(r *volRec, at time.Time, accountID int64) {
	s.setState(r, mlmsoft.VolumeSending)
	r.c.Attempts++
	r.c.SentAt, r.c.UpdatedAt, r.c.AccountID = at, at, accountID
}

// UpdateVolume applies u atomically: it writes u's fields to the change,
// marks the user's next change sending when u.Send asks and it is due,
// applies u's lease change and stores u.Events. With u.Owner set, u.Owner
// must hold the lease on the change's user (lapsed or not, as long as
// nobody claimed the user since); with u.Owner empty the lease is neither
// needed nor changed, and u.Send is ignored. Errors wrap
// mlmsoft.ErrNotFound, mlmsoft.ErrLeaseLost, mlmsoft.ErrConflict (the state
// is not in u.From) or mlmsoft.ErrDuplicate (an event's ID is taken),
// checked in that order; nothing is written on error. When u.KeepLease and
// u.Send are both set, the lease is kept until u.LeaseUntil whether or not
// a next change was marked.
func (s *Store) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	if err := s.lock(ctx); err != nil {
		return mlmsoft.VolumeUpdated{}, fmt.Errorf("memstore: update volume: %w", err)
	}
	defer s.mu.Unlock()
	r := s.vols[u.ID]
	if r == nil {
		return mlmsoft.VolumeUpdated{}, fmt.Errorf("memstore: update volume %d: %w", u.ID, mlmsoft.ErrNotFound)
	}
	q := r.q
	if u.Owner != "" && q.lease.Owner != u.Owner {
		return mlmsoft.VolumeUpdated{}, fmt.Errorf("memstore: update volume %d: user not leased to %q: %w", u.ID, u.Owner, mlmsoft.ErrLeaseLost)
	}
	if !slices.Contains(u.From, r.c.State) {
		return mlmsoft.VolumeUpdated{}, fmt.Errorf("memstore: update volume %d: state %s, want one of %v: %w", u.ID, r.c.State, u.From, mlmsoft.ErrConflict)
	}
	if err := s.checkEvents(u.Events); err != nil {
		return mlmsoft.VolumeUpdated{}, fmt.Errorf("memstore: update volume %d: %w", u.ID, err)
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

	var out mlmsoft.VolumeUpdated
	if u.Owner != "" {
		keep := u.KeepLease
		if u.Send != nil {
			if h := q.headRec(); h != nil && h != r && h.c.State == mlmsoft.VolumePending &&
				h.c.DocumentID == 0 && dueAt(h.c.NextAttemptAt, u.Send.At) {
				s.markSending(h, u.Send.At, u.Send.AccountID)
				out.Next = h.c
				keep = true
			}
		}
		q.lease = mlmsoft.Lease{}
		if keep {
			q.lease = mlmsoft.Lease{Owner: u.Owner, Until: u.LeaseUntil}
		}
		q.heap.lapsed = false
	}
	s.placeUser(q)
	s.addEvents(u.Events)
	out.Change = r.c
	return out, nil
}

// wakeVolumes makes every open change of userID whose NextAttemptAt is
// later than at due at at.
func (s *Store) wakeVolumes(userID string, at time.Time) {
	q := s.users[userID]
	if q == nil {
		return
	}
	// Changes before the head are all final.
	for _, r := range q.changes[q.head:] {
		if !r.c.State.Final() && r.c.NextAttemptAt.After(at) {
			r.c.NextAttemptAt = at
		}
	}
	s.placeUser(q)
}

// ListVolumes returns the changes matching f in ID order.
func (s *Store) ListVolumes(ctx context.Context, f mlmsoft.VolumeFilter) ([]mlmsoft.VolumeChange, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: list volumes: %w", err)
	}
	defer s.mu.Unlock()
	// A user's changes are in ID order as well as Seq order: both are
	// assigned under the one lock.
	recs := s.byID
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

// PurgeVolumes deletes up to limit changes in a final state whose
// UpdatedAt is before before, lowest ID first, with their idempotency
// keys, and returns how many it deleted. It scans the outbox.
func (s *Store) PurgeVolumes(ctx context.Context, before time.Time, limit int) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, fmt.Errorf("memstore: purge volumes: %w", err)
	}
	defer s.mu.Unlock()
	n := 0
	touched := map[*userQueue]bool{}
	for _, r := range s.byID {
		if n >= limit {
			break
		}
		if !r.c.State.Final() || !r.c.UpdatedAt.Before(before) {
			continue
		}
		r.gone = true
		n++
		delete(s.vols, r.c.ID)
		if s.keys[r.c.IdempotencyKey] == r {
			delete(s.keys, r.c.IdempotencyKey)
		}
		s.volCounts[r.c.State]--
		touched[r.q] = true
	}
	if n == 0 {
		return 0, nil
	}
	s.byID = slices.DeleteFunc(s.byID, func(r *volRec) bool { return r.gone })
	for q := range touched {
		// Only final changes went, so the head is the same record.
		head := q.headRec()
		q.changes = slices.DeleteFunc(q.changes, func(r *volRec) bool { return r.gone })
		for i, r := range q.changes {
			r.pos = i
		}
		q.head = len(q.changes)
		if head != nil {
			q.head = head.pos
		}
		s.placeUser(q)
	}
	return n, nil
}
