package sqlstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/mlmsoft-go/mlmsoft"
)

// eventCols are the columns of an event, in the order scanEvent reads them.
var eventCols = []string{
	"id", "kind", "user_id", "payload", "attempts", "next_attempt_at", "last_error", "created_at",
	"lease_owner", "lease_until",
}

// eventChunk bounds the events of one INSERT.
const eventChunk = 200

// addEvents adds to w the insertion of events, free of any lease. An event
// whose ID is stored already is left as it is: it is the same event,
// written again by a retried write.
func (s *Store) addEvents(w *writes, events []mlmsoft.Event) error {
	for chunk := range slices.Chunk(events, eventChunk) {
		args := make([]any, 0, 8*len(chunk))
		for _, e := range chunk {
			if e.ID == "" {
				return fmt.Errorf("%w: event with an empty ID", mlmsoft.ErrInvalidInput)
			}
			vals, err := s.args(e.ID, string(e.Kind), e.UserID, nullBytes(e.Payload), e.Attempts, e.NextAttemptAt, e.LastError, e.CreatedAt)
			if err != nil {
				return fmt.Errorf("event %q: %w", e.ID, err)
			}
			args = append(args, vals...)
		}
		w.add("INSERT INTO {p}events ("+strings.Join(eventCols, ", ")+") VALUES "+
			valuesRows(len(chunk), "?, ?, ?, ?, ?, ?, ?, ?, '', NULL")+s.d.ignoreDuplicate(), args...)
	}
	return nil
}

func (s *Store) scanEvent(sc scanner) (mlmsoft.Event, error) {
	var (
		e    mlmsoft.Event
		kind string
	)
	err := sc.Scan(&e.ID, &kind, &e.UserID, bytesCol{&e.Payload}, &e.Attempts, s.t(&e.NextAttemptAt), &e.LastError,
		s.t(&e.CreatedAt), &e.Lease.Owner, s.t(&e.Lease.Until))
	e.Kind = mlmsoft.EventKind(kind)
	return e, err
}

// ClaimEvents leases to c.Owner, until c.Now + c.Lease, up to c.Limit
// events due at c.Now (an event whose NextAttemptAt is zero is due at once)
// whose lease is free or lapsed, and returns them, earliest NextAttemptAt
// first, then by CreatedAt, then by ID. Like the other claims, it locks the
// events it picks with FOR UPDATE SKIP LOCKED (SQLite: under the write
// lock). It returns an error wrapping mlmsoft.ErrInvalidInput when c.Owner
// is empty or c.Limit is not positive.
func (s *Store) ClaimEvents(ctx context.Context, c mlmsoft.EventClaim) ([]mlmsoft.Event, error) {
	if c.Owner == "" || c.Limit <= 0 {
		return nil, fmt.Errorf("%w: sqlstore: claim events: Owner must be set and Limit positive", mlmsoft.ErrInvalidInput)
	}
	until := storedTime(c.Now.Add(c.Lease))
	args, err := s.args(c.Owner, until, c.Now, c.Now, c.Limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim events: %w", err)
	}
	var out []mlmsoft.Event
	if s.d.returning() {
		err = s.inStatement(ctx, func(q querier) error {
			out, err = collect(ctx, q, s.scanEvent, s.q.claimEvents, args...)
			return err
		})
	} else {
		err = s.inTx(ctx, func(q querier) error {
			out, err = collect(ctx, q, s.scanEvent, s.q.pickEvents, args[2:]...)
			if err != nil || len(out) == 0 {
				return err
			}
			ids := make([]any, len(out))
			for i, e := range out {
				ids[i] = e.ID
				out[i].Lease = mlmsoft.Lease{Owner: c.Owner, Until: until}
			}
			_, err := q.ExecContext(ctx, s.sql("UPDATE {p}events SET lease_owner = ?, lease_until = ? WHERE id IN ("+marks(len(ids))+")"),
				append(args[:2:2], ids...)...)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim events: %w", err)
	}
	slices.SortFunc(out, func(a, b mlmsoft.Event) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// UpdateEvent applies u: with Done it deletes the event, otherwise it
// writes Attempts, NextAttemptAt and LastError and ends the lease. Errors
// wrap mlmsoft.ErrNotFound (no such event) or mlmsoft.ErrLeaseLost (u.Owner
// does not hold its lease; an empty Owner never does); nothing is written
// on error. It is one statement.
func (s *Store) UpdateEvent(ctx context.Context, u mlmsoft.EventUpdate) error {
	query, args := s.sql("DELETE FROM {p}events WHERE id = ? AND lease_owner = ? AND lease_owner <> ''"), []any{u.ID, u.Owner}
	if !u.Done {
		var err error
		args, err = s.args(u.Attempts, u.NextAttemptAt, u.LastError, u.ID, u.Owner)
		if err != nil {
			return fmt.Errorf("sqlstore: update event %q: %w", u.ID, err)
		}
		query = s.sql(`UPDATE {p}events SET attempts = ?, next_attempt_at = ?, last_error = ?, lease_owner = '', lease_until = NULL
WHERE id = ? AND lease_owner = ? AND lease_owner <> ''`)
	}
	err := s.inStatement(ctx, func(q querier) error {
		res, err := q.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n > 0 {
			return err
		}
		var owner string
		if err := q.QueryRowContext(ctx, s.q.eventOwner, u.ID).Scan(&owner); errNoRows(err) {
			return mlmsoft.ErrNotFound
		} else if err != nil {
			return err
		}
		return mlmsoft.ErrLeaseLost
	})
	if err != nil {
		return fmt.Errorf("sqlstore: update event %q: %w", u.ID, err)
	}
	return nil
}
