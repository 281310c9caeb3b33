package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// linkRec is a stored link and its place in the claim heaps.
type linkRec struct {
	l    mlmsoft.Link
	heap heapSlot
}

func (r *linkRec) slot() *heapSlot { return &r.heap }

func linkDue(r *linkRec) time.Time      { return r.l.NextAttemptAt }
func linkLeaseEnd(r *linkRec) time.Time { return r.l.Lease.Until }
func linkOrder(a, b *linkRec) int       { return strings.Compare(a.l.UserID, b.l.UserID) }

// cloneLink copies l so that it shares no memory with the caller's value;
// a nil SealedPassword stays nil and an empty one stays empty.
func cloneLink(l mlmsoft.Link) mlmsoft.Link {
	l.SealedPassword = bytes.Clone(l.SealedPassword)
	return l
}

// placeLink files r in the claim heaps: only a link with a NextAttemptAt
// can ever be due.
func (s *Store) placeLink(r *linkRec) {
	s.linkHeaps.place(r, !r.l.NextAttemptAt.IsZero(), r.l.Lease.Owner)
}

// CreateLink stores l with Version 1 and no lease, and the events, and
// returns the link as stored. It fails with an error wrapping
// mlmsoft.ErrDuplicate, and stores nothing, when a link has the same UserID
// or the same non-empty Email (or when an event's ID is taken).
func (s *Store) CreateLink(ctx context.Context, l mlmsoft.Link, events ...mlmsoft.Event) (mlmsoft.Link, error) {
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
	if err := s.checkEvents(events); err != nil {
		return mlmsoft.Link{}, fmt.Errorf("memstore: create link %q: %w", l.UserID, err)
	}
	l = cloneLink(l)
	l.Version = 1
	l.Lease = mlmsoft.Lease{}
	r := &linkRec{l: l}
	s.links[l.UserID] = r
	if l.Email != "" {
		s.emails[l.Email] = r
	}
	i, _ := slices.BinarySearch(s.linkIDs, l.UserID)
	s.linkIDs = slices.Insert(s.linkIDs, i, l.UserID)
	s.linkCounts[l.State]++
	s.placeLink(r)
	s.addEvents(events)
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

// UpdateLink writes u.Link over the stored link of u.Link.UserID (every
// field but Version, which goes up by one, and Lease), applies u's lease
// change, wakes the user's volume changes if u.WakeVolumes, stores u.Events,
// and returns the link as stored. Errors wrap mlmsoft.ErrNotFound,
// mlmsoft.ErrLeaseLost (u.Owner is set and does not hold the lease),
// mlmsoft.ErrConflict (the stored Version differs) or mlmsoft.ErrDuplicate
// (another link has the new non-empty Email, or an event's ID is taken),
// checked in that order; nothing is written on error.
func (s *Store) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	if err := s.lock(ctx); err != nil {
		return mlmsoft.Link{}, fmt.Errorf("memstore: update link: %w", err)
	}
	defer s.mu.Unlock()
	l := u.Link
	r, ok := s.links[l.UserID]
	if !ok {
		return mlmsoft.Link{}, fmt.Errorf("memstore: update link %q: %w", l.UserID, mlmsoft.ErrNotFound)
	}
	if u.Owner != "" && r.l.Lease.Owner != u.Owner {
		return mlmsoft.Link{}, fmt.Errorf("memstore: update link %q: not leased to %q: %w", l.UserID, u.Owner, mlmsoft.ErrLeaseLost)
	}
	if r.l.Version != l.Version {
		return mlmsoft.Link{}, fmt.Errorf("memstore: update link %q: version %d, stored %d: %w", l.UserID, l.Version, r.l.Version, mlmsoft.ErrConflict)
	}
	if other, ok := s.emails[l.Email]; ok && l.Email != "" && other != r {
		return mlmsoft.Link{}, fmt.Errorf("memstore: update link %q: email taken by another link: %w", l.UserID, mlmsoft.ErrDuplicate)
	}
	if err := s.checkEvents(u.Events); err != nil {
		return mlmsoft.Link{}, fmt.Errorf("memstore: update link %q: %w", l.UserID, err)
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
	l.Lease = r.l.Lease
	if u.Owner != "" {
		l.Lease = mlmsoft.Lease{}
		if u.KeepLease {
			l.Lease = mlmsoft.Lease{Owner: u.Owner, Until: u.LeaseUntil}
		}
		r.heap.lapsed = false
	}
	r.l = l
	s.placeLink(r)
	if u.WakeVolumes {
		s.wakeVolumes(l.UserID, l.UpdatedAt)
	}
	s.addEvents(u.Events)
	return cloneLink(r.l), nil
}

// ClaimLinks leases to c.Owner, until c.Now+c.Lease, up to c.Limit links
// whose NextAttemptAt is set and not after c.Now and whose lease is free or
// has ended by c.Now, and returns them as stored, earliest NextAttemptAt
// first, then by UserID. A Limit of 0 or less claims nothing; an empty
// Owner is an error wrapping mlmsoft.ErrInvalidInput.
func (s *Store) ClaimLinks(ctx context.Context, c mlmsoft.LinkClaim) ([]mlmsoft.Link, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: claim links: %w", err)
	}
	defer s.mu.Unlock()
	if c.Owner == "" {
		return nil, fmt.Errorf("memstore: claim links: empty Owner: %w", mlmsoft.ErrInvalidInput)
	}
	now := c.Now
	h := &s.linkHeaps
	h.lapse(now, s.placeLink)
	var out []mlmsoft.Link
	for len(out) < c.Limit && h.ready.len() > 0 && h.due(now) {
		r := h.ready.top()
		r.heap.lapsed = false
		if !r.l.Lease.Held(now) {
			r.l.Lease = mlmsoft.Lease{Owner: c.Owner, Until: now.Add(c.Lease)}
			out = append(out, cloneLink(r.l))
		}
		// else: seen lapsed by a claim with a later now; held at this one.
		s.placeLink(r)
	}
	return out, nil
}

// ListLinks returns the links matching f in UserID order (byte-wise); its
// EmailPrefix is matched byte-wise, every character standing for itself.
func (s *Store) ListLinks(ctx context.Context, f mlmsoft.LinkFilter) ([]mlmsoft.Link, error) {
	if err := s.lock(ctx); err != nil {
		return nil, fmt.Errorf("memstore: list links: %w", err)
	}
	defer s.mu.Unlock()
	out := []mlmsoft.Link{}
	start := sort.SearchStrings(s.linkIDs, f.AfterID)
	if start < len(s.linkIDs) && s.linkIDs[start] == f.AfterID {
		start++
	}
	for _, id := range s.linkIDs[start:] {
		if f.Limit > 0 && len(out) >= f.Limit {
			break
		}
		r := s.links[id]
		if len(f.States) > 0 && !slices.Contains(f.States, r.l.State) {
			continue
		}
		if !strings.HasPrefix(r.l.Email, f.EmailPrefix) {
			continue
		}
		out = append(out, cloneLink(r.l))
	}
	return out, nil
}
