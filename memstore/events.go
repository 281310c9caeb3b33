package memstore

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// eventRec is a stored hook event and its place in the claim heaps.
type eventRec struct {
	e    mlmsoft.Event
	heap heapSlot
}

func (r *eventRec) slot() *heapSlot { return &r.heap }

func eventDue(r *eventRec) time.Time      { return r.e.NextAttemptAt }
func eventLeaseEnd(r *eventRec) time.Time { return r.e.Lease.Until }

// eventOrder breaks ties of NextAttemptAt: CreatedAt, then ID.
func eventOrder(a, b *eventRec) int {
	return cmp.Or(a.e.CreatedAt.Compare(b.e.CreatedAt), strings.Compare(a.e.ID, b.e.ID))
}

func eventIDOrder(a, b *eventRec) int { return strings.Compare(a.e.ID, b.e.ID) }

// cloneEvent copies e so that it shares no memory with the caller's value;
// a nil Payload stays nil and an empty one stays empty.
func cloneEvent(e mlmsoft.Event) mlmsoft.Event {
	e.Payload = bytes.Clone(e.Payload)
	return e
}

// checkEvents returns an error wrapping mlmsoft.ErrDuplicate if an event of
// evs has the ID of a stored event or of an earlier one of evs. Callers
// check before they write anything, so that a write with its events is
// all or nothing.
func (s *Store) checkEvents(evs []mlmsoft.Event) error {
	for i, e := range evs {
		if _, ok := s.events[e.ID]; ok {
			return fmt.Errorf("event %q: %w", e.ID, mlmsoft.ErrDuplicate)
		}
		for _, f := range evs[:i] {
			if f.ID == e.ID {
				return fmt.Errorf("event %q given twice: %w", e.ID, mlmsoft.ErrDuplicate)
			}
		}
	}
	return nil
}

// addEvents stores evs, which checkEvents accepted, without a lease.
func (s *Store) addEvents(evs []mlmsoft.Event) {
	for _, e := range evs {
		r := &eventRec{e: cloneEvent(e)}
		r.e.Lease = mlmsoft.Lease{}
		s.events[e.ID] = r
		if e.Attempts > 0 {
			s.failing++
		}
		s.placeEvent(r)
	}
}

func (s *Store) placeEvent(r *eventRec) {
	s.eventHeaps.place(r, true, r.e.Lease.Owner)
}

// ClaimEvents leases to c.Owner, until c.Now+c.Lease, up to c.Limit events
// whose NextAttemptAt is not after c.Now and whose lease is free or has
// ended by c.Now, and returns them earliest NextAttemptAt first, then by
// CreatedAt, then by ID. A Limit of 0 or less claims nothing; an empty
// Owner is an error wrapping mlmsoft.ErrInvalidInput.
func (s *Store) ClaimEvents(ctx context.Context, c mlmsoft.EventClaim) ([]mlmsoft.Event, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: claim events: %w", err)
	}
	defer s.mu.Unlock()
	if c.Owner == "" {
		return nil, fmt.Errorf("memstore: claim events: empty Owner: %w", mlmsoft.ErrInvalidInput)
	}
	now := c.Now
	h := &s.eventHeaps
	h.lapse(now, s.placeEvent)
	var out []mlmsoft.Event
	for len(out) < c.Limit && h.ready.len() > 0 && h.due(now) {
		r := h.ready.top()
		r.heap.lapsed = false
		if !r.e.Lease.Held(now) {
			r.e.Lease = mlmsoft.Lease{Owner: c.Owner, Until: now.Add(c.Lease)}
			out = append(out, cloneEvent(r.e))
		}
		// else: seen lapsed by a claim with a later now; held at this one.
		s.placeEvent(r)
	}
	return out, nil
}

// UpdateEvent settles an event u.Owner claimed: u.Done deletes it;
// otherwise its Attempts, NextAttemptAt and LastError are written and its
// lease ends. Errors wrap mlmsoft.ErrNotFound (no such event) or
// mlmsoft.ErrLeaseLost (u.Owner does not hold its lease, lapsed or not:
// someone else claimed it since, or nobody gave it to u.Owner).
func (s *Store) UpdateEvent(ctx context.Context, u mlmsoft.EventUpdate) error {
	if err := s.lock(ctx); err != nil {
		return fmt.Errorf("memstore: update event: %w", err)
	}
	defer s.mu.Unlock()
	r, ok := s.events[u.ID]
	if !ok {
		return fmt.Errorf("memstore: update event %q: %w", u.ID, mlmsoft.ErrNotFound)
	}
	if u.Owner == "" || r.e.Lease.Owner != u.Owner {
		return fmt.Errorf("memstore: update event %q: not leased to %q: %w", u.ID, u.Owner, mlmsoft.ErrLeaseLost)
	}
	if r.e.Attempts > 0 {
		s.failing--
	}
	if u.Done {
		relocate(r, nil, &s.eventHeaps.ready, &s.eventHeaps.leased)
		delete(s.events, u.ID)
		return nil
	}
	r.e.Attempts = u.Attempts
	r.e.NextAttemptAt = u.NextAttemptAt
	r.e.LastError = u.LastError
	r.e.Lease = mlmsoft.Lease{}
	r.heap.lapsed = false
	if r.e.Attempts > 0 {
		s.failing++
	}
	s.placeEvent(r)
	return nil
}
