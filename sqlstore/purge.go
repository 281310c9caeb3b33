package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// PurgeVolumes deletes up to limit changes that are in a final state and
// whose UpdatedAt is before before (a zero UpdatedAt counts as before any
// time), lowest ID first, and returns how many it deleted (0 when none is
// left); their idempotency keys are forgotten with them and the counters
// go down in the same transaction. It returns an error wrapping
// mlmsoft.ErrInvalidInput when limit is not positive.
//
// It finds the changes through the index on created_at (a change updated
// before before was created before it), so a call that finds nothing left
// reads only the changes created before before that are still kept; call it
// in a loop until it returns 0 to purge a backlog in batches.
func (s *Store) PurgeVolumes(ctx context.Context, before time.Time, limit int) (int, error) {
	if limit <= 0 {
		return 0, fmt.Errorf("%w: sqlstore: purge volumes: limit must be positive", mlmsoft.ErrInvalidInput)
	}
	if before.IsZero() {
		return 0, nil // nothing is before the zero time
	}
	b, err := s.timeArg(before)
	if err != nil {
		return 0, fmt.Errorf("sqlstore: purge volumes: %w", err)
	}
	ids, err := s.purgeCandidates(ctx, b, limit)
	if err != nil || len(ids) == 0 {
		if err != nil {
			err = fmt.Errorf("sqlstore: purge volumes: %w", err)
		}
		return 0, err
	}
	finals := strs(mlmsoft.FinalVolumeStates)
	var n int
	err = s.inTx(ctx, func(q querier) error {
		n = 0
		// Check again under the row locks: a change may have been opened
		// again (or purged) since.
		where := " FROM {p}volume_changes WHERE id IN (" + marks(len(ids)) + ") AND " + isFinal + " AND " + purgeable
		args := slices.Concat(anys(ids), finals, []any{b})
		var gone []volumeRef
		var err error
		if s.d.returning() {
			gone, err = collect(ctx, q, s.scanRef, s.sql("DELETE"+where+" RETURNING user_id, state, id, updated_at"), args...)
		} else {
			gone, err = collect(ctx, q, s.scanRef, s.sql("SELECT user_id, state, id, updated_at"+where+s.d.forUpdate()), args...)
			if err == nil && len(gone) > 0 {
				del := make([]any, len(gone))
				for i, g := range gone {
					del[i] = g.id
				}
				_, err = q.ExecContext(ctx, s.sql("DELETE FROM {p}volume_changes WHERE id IN ("+marks(len(del))+")"), del...)
			}
		}
		if err != nil {
			return err
		}
		w := &writes{}
		for _, g := range gone {
			w.counts.add(countVolumes, g.state, g.user, -1)
			if g.updated.IsZero() {
				w.counts.add(countUnstamped, "", g.user, -1)
			}
		}
		n = len(gone)
		return s.run(ctx, q, w)
	})
	if err != nil {
		return 0, fmt.Errorf("sqlstore: purge volumes: %w", err)
	}
	return n, nil
}

// purgeCandidates returns the ids of the (up to) limit lowest-id changes
// PurgeVolumes may delete, read without locks.
func (s *Store) purgeCandidates(ctx context.Context, before any, limit int) ([]int64, error) {
	finals := strs(mlmsoft.FinalVolumeStates)
	// Through the created_at index, oldest first; changes without a
	// CreatedAt (NULL) apart.
	old, err := collect(ctx, s.db, scanInt64, s.q.purgeOld, slices.Concat([]any{before}, finals, []any{before, limit})...)
	if err != nil {
		return nil, err
	}
	null, err := collect(ctx, s.db, scanInt64, s.q.purgeNull, slices.Concat(finals, []any{before, limit})...)
	if err != nil {
		return nil, err
	}
	// Final changes without UpdatedAt, whatever their CreatedAt: searched
	// (without an index) only while the counters say there are some.
	var unstamped int64
	if err := s.db.QueryRowContext(ctx, s.q.sumUnstamped, countUnstamped).Scan(&unstamped); err != nil {
		return nil, err
	}
	var stampless []int64
	if unstamped > 0 {
		if stampless, err = collect(ctx, s.db, scanInt64, s.q.purgeUnstamped, slices.Concat(finals, []any{limit})...); err != nil {
			return nil, err
		}
	}
	ids := slices.Compact(slices.Sorted(slices.Values(slices.Concat(old, null, stampless))))
	if len(old) < limit && len(null) < limit && len(stampless) < limit {
		// Every purgeable change was found.
		return ids[:min(limit, len(ids))], nil
	}
	// One search may have stopped at the limit: the limit lowest ids are
	// at most the limit-th found. Read them by primary key up to it.
	bound := ids[limit-1]
	return collect(ctx, s.db, scanInt64, s.q.purgeUpTo, slices.Concat([]any{bound, before}, finals, []any{before, limit})...)
}

// volumeRef is a deleted change's user, state, id and UpdatedAt.
type volumeRef struct {
	user    string
	state   string
	id      int64
	updated time.Time
}

func (s *Store) scanRef(sc scanner) (volumeRef, error) {
	var r volumeRef
	err := sc.Scan(&r.user, &r.state, &r.id, s.t(&r.updated))
	return r, err
}
