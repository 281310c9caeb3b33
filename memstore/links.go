package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// linkRec is a stored link and its place in the claim heaps.
type linkRec struct {
	l    mlmsoft.Link
	heap heapSlot
}

func (r *linkRec) slot() *heapSlot { return &r.heap }

// cloneLink copies l so that it shares no memory with the caller's value;
// a nil SealedPassword stays nil and an empty one stays empty.
func cloneLink(l mlmsoft.Link) mlmsoft.Link {
	l.SealedPassword = bytes.Clone(l.SealedPassword)
	return l
}

func claimableLink(st mlmsoft.LinkState) bool {
	return st == mlmsoft.LinkPending || st == mlmsoft.LinkCreated
}

// placeLink files r in the heap its state calls for: none unless pending or
// created; the lease heap while it has an owner whose lease has not been
// seen lapsed; otherwise the due heap.
func (s *Store) placeLink(r *linkRec) {
	var to *timeHeap[*linkRec]
	switch {
	case !claimableLink(r.l.State):
	case r.l.LeaseOwner != "" && !r.heap.lapsed:
		to = &s.linkLeased
	default:
		to = &s.linkReady
	}
	relocate(r, to, &s.linkReady, &s.linkLeased)
}

// CreateLink stores l with Version 1 and returns it as stored. It fails with
// an error wrapping mlmsoft.ErrDuplicate when a link has the same UserID or
// the same non-empty Email, and with the context's error when ctx is done.
func (s *Store) CreateLink(ctx context.Context, l mlmsoft.Link) (mlmsoft.Link, error) {
	if err := s.lock(ctx); err != nil {
		return mlmsoft.Link{}, fmt.Errorf("memstore: create link: %w", err)
	}
	defer s.mu.Unlock()
	if _, ok := s.links[l.UserID]; ok {
		return mlmsoft.Link{}, fmt.Errorf("memstore: create link %q: user: %w", l.UserID, mlmsoft.ErrDuplicate)
	}
	if _, ok := s.emails[l.Email]; ok && l.Email != "" {
		return mlmsoft.Link{}, fmt.Errorf("memstore: create link %q: email taken by another link: %w", l.UserID, mlmsoft.ErrDuplicate)
	}
	l = cloneLink(l)
	l.Version = 1
	r := &linkRec{l: l, heap: heapSlot{seq: s.nextSeq()}}
	s.links[l.UserID] = r
	if l.Email != "" {
		s.emails[l.Email] = r
	}
	i, _ := slices.BinarySearch(s.linkIDs, l.UserID)
	s.linkIDs = slices.Insert(s.linkIDs, i, l.UserID)
	s.linkCounts[l.State]++
	s.placeLink(r)
	return cloneLink(r.l), nil
}

// GetLink returns the link of userID, or an error wrapping
// mlmsoft.ErrNotFound.
func (s *Store) GetLink(ctx context.Context, userID string) (mlmsoft.Link, error) {
	if err := s.lock(ctx); err != nil {
		return mlmsoft.Link{}, fmt.Errorf("memstore: get link: %w", err)
	}
	defer s.mu.Unlock()
	r, ok := s.links[userID]
	if !ok {
		return mlmsoft.Link{}, fmt.Errorf("memstore: get link %q: %w", userID, mlmsoft.ErrNotFound)
	}
	return cloneLink(r.l), nil
}

// GetLinkByEmail returns the link whose Email equals email exactly, or an
// error wrapping mlmsoft.ErrNotFound (always so for the empty email, which
// several links may share).
func (s *Store) GetLinkByEmail(ctx context.Context, email string) (mlmsoft.Link, error) {
	if err := s.lock(ctx); err != nil {
		return mlmsoft.Link{}, fmt.Errorf("memstore: get link by email: %w", err)
	}
	defer s.mu.Unlock()
	r, ok := s.emails[email]
	if !ok {
		return mlmsoft.Link{}, fmt.Errorf("memstore: get link by email: %w", mlmsoft.ErrNotFound)
	}
	return cloneLink(r.l), nil
}

// UpdateLink replaces the stored link of l.UserID with l if the stored
// Version equals l.Version, stores Version+1 and returns the link as stored.
// Errors wrap mlmsoft.ErrNotFound (no such link), mlmsoft.ErrConflict (the
// version differs) or mlmsoft.ErrDuplicate (another link has l's non-empty
// Email); nothing is written on error.
func (s *Store) UpdateLink(ctx context.Context, l mlmsoft.Link) (mlmsoft.Link, error) {
	if err := s.lock(ctx); err != nil {
		return mlmsoft.Link{}, fmt.Errorf("memstore: update link: %w", err)
	}
	defer s.mu.Unlock()
	r, ok := s.links[l.UserID]
	if !ok {
		return mlmsoft.Link{}, fmt.Errorf("memstore: update link %q: %w", l.UserID, mlmsoft.ErrNotFound)
	}
	if r.l.Version != l.Version {
		return mlmsoft.Link{}, fmt.Errorf("memstore: update link %q: version %d, stored %d: %w", l.UserID, l.Version, r.l.Version, mlmsoft.ErrConflict)
	}
	if other, ok := s.emails[l.Email]; ok && l.Email != "" && other != r {
		return mlmsoft.Link{}, fmt.Errorf("memstore: update link %q: email taken by another link: %w", l.UserID, mlmsoft.ErrDuplicate)
	}
	if r.l.Email != l.Email {
		if r.l.Email != "" {
			delete(s.emails, r.l.Email)
		}
		if l.Email != "" {
			s.emails[l.Email] = r
		}
	}
	s.linkCounts[r.l.State]--
	s.linkCounts[l.State]++
	l = cloneLink(l)
	l.Version = r.l.Version + 1
	r.l = l
	r.heap.lapsed = false
	s.placeLink(r)
	return cloneLink(r.l), nil
}

// ClaimLinks leases up to c.Limit due links that are pending or created and
// whose lease is free (no LeaseOwner) or expired at c.Now, earliest
// NextAttemptAt first (ties in creation order). Each gets LeaseOwner c.Owner,
// LeaseUntil c.Now+c.Lease and Version+1. A Limit of 0 or less claims
// nothing; an empty Owner is an error wrapping mlmsoft.ErrInvalidInput.
func (s *Store) ClaimLinks(ctx context.Context, c mlmsoft.LinkClaim) ([]mlmsoft.Link, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: claim links: %w", err)
	}
	defer s.mu.Unlock()
	if c.Owner == "" {
		return nil, fmt.Errorf("memstore: claim links: empty Owner: %w", mlmsoft.ErrInvalidInput)
	}
	now := c.Now
	// Leases that have ended by now make their links candidates.
	for s.linkLeased.len() > 0 {
		r := s.linkLeased.top()
		if r.l.LeaseUntil.After(now) {
			break
		}
		r.heap.lapsed = true
		s.placeLink(r)
	}
	var out []mlmsoft.Link
	for len(out) < c.Limit && s.linkReady.len() > 0 {
		r := s.linkReady.top()
		if r.l.NextAttemptAt.After(now) {
			break
		}
		if leaseLive(r.l.LeaseOwner, r.l.LeaseUntil, now) {
			// Seen lapsed by a claim with a later now; live at this one.
			r.heap.lapsed = false
			s.placeLink(r)
			continue
		}
		r.l.LeaseOwner = c.Owner
		r.l.LeaseUntil = now.Add(c.Lease)
		r.l.Version++
		r.heap.lapsed = false
		s.placeLink(r)
		out = append(out, cloneLink(r.l))
	}
	return out, nil
}

// ListLinks returns the links matching f in UserID order (byte-wise).
func (s *Store) ListLinks(ctx context.Context, f mlmsoft.LinkFilter) ([]mlmsoft.Link, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: list links: %w", err)
	}
	defer s.mu.Unlock()
	out := []mlmsoft.Link{}
	start := sort.Search(len(s.linkIDs), func(i int) bool { return s.linkIDs[i] > f.AfterID })
	for _, id := range s.linkIDs[start:] {
		if f.Limit > 0 && len(out) >= f.Limit {
			break
		}
		r := s.links[id]
		if len(f.States) > 0 && !slices.Contains(f.States, r.l.State) {
			continue
		}
		out = append(out, cloneLink(r.l))
	}
	return out, nil
}

// CountLinks returns how many links are in each state; states with none are
// absent.
func (s *Store) CountLinks(ctx context.Context) (map[mlmsoft.LinkState]int, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: count links: %w", err)
	}
	defer s.mu.Unlock()
	out := make(map[mlmsoft.LinkState]int, len(s.linkCounts))
	for st, n := range s.linkCounts {
		if n > 0 {
			out[st] = n
		}
	}
	return out, nil
}

// leaseLive reports whether a lease held by owner until until is live at t.
func leaseLive(owner string, until, t time.Time) bool {
	return owner != "" && until.After(t)
}
