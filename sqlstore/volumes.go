package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// volumeCols are the columns of a volume change, in the order scanVolume
// reads them and volumeValues writes them (id first).
var volumeCols = []string{
	"id", "user_id", "seq", "batch_id", "idempotency_key", "alias", "amount",
	"order_id", "state", "attempts", "next_attempt_at", "last_error",
	"document_id", "account_id", "created_at", "updated_at", "sent_at",
	"delivered_at", "resolved_by", "resolved_note", "resolved_at",
}

// volumeValues returns v's values for volumeCols without id.
func (s *Store) volumeValues(v mlmsoft.VolumeChange) ([]any, error) {
	return s.args(
		v.UserID, v.Seq, v.BatchID, nullString(v.IdempotencyKey), v.Alias, v.Amount.String(),
		v.OrderID, string(v.State), v.Attempts, v.NextAttemptAt, v.LastError,
		v.DocumentID, v.AccountID, v.CreatedAt, v.UpdatedAt, v.SentAt,
		v.DeliveredAt, v.ResolvedBy, v.ResolvedNote, v.ResolvedAt,
	)
}

func (s *Store) scanVolume(sc scanner) (mlmsoft.VolumeChange, error) {
	var (
		v      mlmsoft.VolumeChange
		key    sql.NullString
		amount string
		state  string
	)
	err := sc.Scan(
		&v.ID, &v.UserID, &v.Seq, &v.BatchID, &key, &v.Alias, &amount,
		&v.OrderID, &state, &v.Attempts, s.t(&v.NextAttemptAt), &v.LastError,
		&v.DocumentID, &v.AccountID, s.t(&v.CreatedAt), s.t(&v.UpdatedAt), s.t(&v.SentAt),
		s.t(&v.DeliveredAt), &v.ResolvedBy, &v.ResolvedNote, s.t(&v.ResolvedAt),
	)
	if err != nil {
		return mlmsoft.VolumeChange{}, err
	}
	v.IdempotencyKey, v.State = key.String, mlmsoft.VolumeState(state)
	if v.Amount, err = mlmsoft.ParseAmount(amount); err != nil {
		return mlmsoft.VolumeChange{}, fmt.Errorf("change %d: stored amount: %w", v.ID, err)
	}
	return v, nil
}

// queryVolumes runs a query selecting volumeCols and collects the changes.
func (s *Store) queryVolumes(ctx context.Context, q querier, query string, args ...any) ([]mlmsoft.VolumeChange, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []mlmsoft.VolumeChange
	for rows.Next() {
		v, err := s.scanVolume(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// inChunk bounds the placeholders of one IN list, well under every
// database's limit on the number of arguments.
const inChunk = 500

// volumesWhereIn returns the changes whose column col is one of vals, in
// no particular order.
func volumesWhereIn[T any](ctx context.Context, s *Store, q querier, col string, vals []T) ([]mlmsoft.VolumeChange, error) {
	var out []mlmsoft.VolumeChange
	for chunk := range slices.Chunk(vals, inChunk) {
		args := make([]any, len(chunk))
		for i, v := range chunk {
			args[i] = v
		}
		got, err := s.queryVolumes(ctx, q, s.sql(fmt.Sprintf("SELECT %s FROM {p}volume_changes WHERE %s IN (%s)",
			strings.Join(volumeCols, ", "), col, marks(len(chunk)))), args...)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
	}
	return out, nil
}

// maxEnqueueAttempts bounds how often EnqueueVolumes starts over after a
// concurrent enqueue stored one of its idempotency keys first.
const maxEnqueueAttempts = 3

// EnqueueVolumes stores the changes atomically (all or none) in the given
// order and returns them as stored, in the same order, with ID and Seq
// assigned: each user's new changes take the next positions of that user's
// queue. Concurrent enqueues for one user serialize on the user's row of
// the volume_users table, so Seq order is commit order.
//
// A change whose IdempotencyKey is stored already (or appears earlier in the
// same call) is not stored again: the stored change is returned in its
// place, or, if it differs in UserID, Alias, Amount or OrderID, the call
// fails with an error wrapping mlmsoft.ErrIdempotencyConflict and stores
// nothing. An empty IdempotencyKey is never deduplicated. An empty UserID is
// an error wrapping mlmsoft.ErrInvalidInput.
func (s *Store) EnqueueVolumes(ctx context.Context, changes []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	for i, c := range changes {
		if c.UserID == "" {
			return nil, fmt.Errorf("%w: sqlstore: enqueue volumes: change %d: empty UserID", mlmsoft.ErrInvalidInput, i)
		}
	}
	if len(changes) == 0 {
		return []mlmsoft.VolumeChange{}, nil
	}
	for attempt := 1; ; attempt++ {
		var out []mlmsoft.VolumeChange
		err := s.inTx(ctx, func(q querier) error {
			var err error
			out, err = s.enqueue(ctx, q, changes)
			return err
		})
		if err == nil {
			return out, nil
		}
		// A unique violation means a concurrent call committed one of our
		// idempotency keys after we looked: start over to find it.
		if s.d.uniqueViolation(err) && attempt < maxEnqueueAttempts && ctx.Err() == nil {
			continue
		}
		return nil, fmt.Errorf("sqlstore: enqueue volumes: %w", err)
	}
}

func sameContent(a, b mlmsoft.VolumeChange) bool {
	return a.UserID == b.UserID && a.Alias == b.Alias && a.Amount == b.Amount && a.OrderID == b.OrderID
}

func (s *Store) enqueue(ctx context.Context, q querier, changes []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	var keys []string
	for _, c := range changes {
		if c.IdempotencyKey != "" {
			keys = append(keys, c.IdempotencyKey)
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	stored, err := volumesWhereIn(ctx, s, q, "idempotency_key", keys)
	if err != nil {
		return nil, err
	}
	byKey := make(map[string]mlmsoft.VolumeChange, len(stored))
	for _, v := range stored {
		byKey[v.IdempotencyKey] = v
	}

	// Sort the changes into stored ones, repeats within the call, and new.
	var (
		ids      = make([]int64, len(changes)) // stored id, or 0
		repeatOf = make([]int, len(changes))   // index of the first with the key, or -1
		firstNew = make(map[string]int)
		perUser  = make(map[string]int64) // new changes per user
	)
	for i, c := range changes {
		repeatOf[i] = -1
		if k := c.IdempotencyKey; k != "" {
			if v, ok := byKey[k]; ok {
				if !sameContent(v, c) {
					return nil, fmt.Errorf("change %d, idempotency key %q: %w", i, k, mlmsoft.ErrIdempotencyConflict)
				}
				ids[i] = v.ID
				continue
			}
			if j, ok := firstNew[k]; ok {
				if !sameContent(changes[j], c) {
					return nil, fmt.Errorf("change %d, idempotency key %q: %w", i, k, mlmsoft.ErrIdempotencyConflict)
				}
				repeatOf[i] = j
				continue
			}
			firstNew[k] = i
		}
		perUser[c.UserID]++
	}

	// Take the next positions of each user's queue, locking the users'
	// rows in a fixed order so that concurrent batches cannot deadlock.
	users := slices.Sorted(maps.Keys(perUser))
	nextSeq := make(map[string]int64, len(users))
	for _, u := range users {
		n := perUser[u]
		var last int64
		if s.d.seqReturning() {
			if err := q.QueryRowContext(ctx, s.q.seqUpsert, u, n).Scan(&last); err != nil {
				return nil, fmt.Errorf("assign seq: %w", err)
			}
		} else {
			if _, err := q.ExecContext(ctx, s.q.seqUpsert, u, n, n); err != nil {
				return nil, fmt.Errorf("assign seq: %w", err)
			}
			if err := q.QueryRowContext(ctx, s.q.seqSelect, u).Scan(&last); err != nil {
				return nil, fmt.Errorf("assign seq: %w", err)
			}
		}
		nextSeq[u] = last - n + 1
	}

	for i, c := range changes {
		if ids[i] != 0 || repeatOf[i] >= 0 {
			continue
		}
		c.Seq = nextSeq[c.UserID]
		nextSeq[c.UserID]++
		vals, err := s.volumeValues(c)
		if err != nil {
			return nil, err
		}
		if s.d.returningID() {
			err = q.QueryRowContext(ctx, s.q.insertVolume, vals...).Scan(&ids[i])
		} else {
			var res sql.Result
			if res, err = q.ExecContext(ctx, s.q.insertVolume, vals...); err == nil {
				ids[i], err = res.LastInsertId()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("insert change %d: %w", i, err)
		}
	}
	for i, j := range repeatOf {
		if j >= 0 {
			ids[i] = ids[j]
		}
	}
	return s.getVolumes(ctx, q, ids)
}

// getVolumes returns the changes with the given ids in the order asked, or
// an error wrapping mlmsoft.ErrNotFound.
func (s *Store) getVolumes(ctx context.Context, q querier, ids []int64) ([]mlmsoft.VolumeChange, error) {
	distinct := slices.Compact(slices.Sorted(slices.Values(ids)))
	got, err := volumesWhereIn(ctx, s, q, "id", distinct)
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]mlmsoft.VolumeChange, len(got))
	for _, v := range got {
		byID[v.ID] = v
	}
	out := make([]mlmsoft.VolumeChange, len(ids))
	for i, id := range ids {
		v, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("change %d: %w", id, mlmsoft.ErrNotFound)
		}
		out[i] = v
	}
	return out, nil
}

// GetVolumes returns the changes with the given ids, in the order asked. A
// missing id is an error wrapping mlmsoft.ErrNotFound.
func (s *Store) GetVolumes(ctx context.Context, ids []int64) ([]mlmsoft.VolumeChange, error) {
	out, err := s.getVolumes(ctx, s.db, ids)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: get volumes: %w", err)
	}
	return out, nil
}

// ClaimVolumes finds users whose head (oldest change not in a final state)
// is pending or sending with NextAttemptAt not after c.Now, whose lease is
// free or expired, and who are not in c.Exclude; leases up to c.Limit of them
// to c.Owner until c.Now + c.Lease and returns their heads, earliest
// NextAttemptAt first (then by ID). Users are locked with FOR UPDATE SKIP
// LOCKED (SQLite: under the write lock), so concurrent claims from any
// process neither wait for each other nor lease one user twice. It may
// return fewer than c.Limit heads while other claims run. It returns an
// error wrapping mlmsoft.ErrInvalidInput when c.Owner is empty or c.Limit is
// not positive.
func (s *Store) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.VolumeChange, error) {
	if c.Owner == "" || c.Limit <= 0 {
		return nil, fmt.Errorf("%w: sqlstore: claim volumes: Owner must be set and Limit positive", mlmsoft.ErrInvalidInput)
	}
	query := `SELECT c.user_id FROM {p}volume_changes c
JOIN {p}volume_users u ON u.user_id = c.user_id
WHERE c.state IN (?, ?) AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= ?)
	AND (u.lease_owner = '' OR u.lease_until IS NULL OR u.lease_until <= ?)
	AND ` + notHead
	args := []any{string(mlmsoft.VolumePending), string(mlmsoft.VolumeSending), c.Now, c.Now}
	args = append(args, anys(unfinishedStates)...)
	if len(c.Exclude) > 0 {
		query += "\n\tAND c.user_id NOT IN (" + marks(len(c.Exclude)) + ")"
		args = append(args, anys(c.Exclude)...)
	}
	query += "\nORDER BY c.next_attempt_at" + s.d.nullsFirst() + ", c.id\nLIMIT ?" + s.d.skipLocked("u")
	args = append(args, c.Limit)
	pick, err := s.args(args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim volumes: %w", err)
	}
	pickQuery := s.sql(query)

	var out []mlmsoft.VolumeChange
	err = s.inTx(ctx, func(q querier) error {
		out = nil
		users, err := queryStrings(ctx, q, pickQuery, pick...)
		if err != nil || len(users) == 0 {
			return err
		}
		// The users' rows are locked now, and every writer of a user's
		// changes locks that row first: read the heads afresh, as the pick
		// may have seen them before a writer committed.
		headArgs := append(anys(users), anys(unfinishedStates)...)
		heads, err := s.queryVolumes(ctx, q, s.sql(fmt.Sprintf(
			"SELECT %s FROM {p}volume_changes c WHERE c.user_id IN (%s) AND c.state IN (?, ?, ?, ?) AND %s",
			"c."+strings.Join(volumeCols, ", c."), marks(len(users)), notHead)),
			append(headArgs, anys(unfinishedStates)...)...)
		if err != nil {
			return err
		}
		lease, err := s.args(c.Owner, c.Now.Add(c.Lease), c.Now)
		if err != nil {
			return err
		}
		for _, h := range heads {
			due := h.State == mlmsoft.VolumePending || h.State == mlmsoft.VolumeSending
			if !due || h.NextAttemptAt.After(c.Now) {
				continue
			}
			res, err := q.ExecContext(ctx, s.q.leaseUser, slices.Concat(lease, []any{h.UserID})...)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				out = append(out, h)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim volumes: %w", err)
	}
	slices.SortFunc(out, func(a, b mlmsoft.VolumeChange) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// UpdateVolume applies u and returns the change as stored. Errors wrap
// mlmsoft.ErrNotFound (no such id), mlmsoft.ErrLeaseLost (u.Owner does not
// hold the lease on the change's user; or, for an operator update with Owner
// "", someone holds a lease still live at u.UpdatedAt) or
// mlmsoft.ErrConflict (the state is not in u.From), checked in that order.
// A worker whose lease expired may still update while no one else has
// claimed the user. With Release, the Owner's lease ends. Nothing is written
// on error.
func (s *Store) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeChange, error) {
	set, err := s.args(string(u.State), u.Attempts, u.NextAttemptAt, u.LastError, u.DocumentID,
		u.AccountID, u.SentAt, u.DeliveredAt, u.ResolvedBy, u.ResolvedNote, u.ResolvedAt, u.UpdatedAt, u.ID)
	if err != nil {
		return mlmsoft.VolumeChange{}, fmt.Errorf("sqlstore: update volume %d: %w", u.ID, err)
	}
	var out mlmsoft.VolumeChange
	err = s.inTx(ctx, func(q querier) error {
		var userID string
		if err := q.QueryRowContext(ctx, s.q.volumeUser, u.ID).Scan(&userID); errNoRows(err) {
			return mlmsoft.ErrNotFound
		} else if err != nil {
			return err
		}
		// Lock the user first, as every writer of its changes does.
		var (
			owner string
			until time.Time
		)
		if err := q.QueryRowContext(ctx, s.q.lockUser, userID).Scan(&owner, s.t(&until)); err != nil {
			return fmt.Errorf("lock user: %w", err)
		}
		if u.Owner != "" && owner != u.Owner {
			return mlmsoft.ErrLeaseLost
		}
		if u.Owner == "" && owner != "" && until.After(u.UpdatedAt) {
			return fmt.Errorf("user leased until %s: %w", until.Format(time.RFC3339Nano), mlmsoft.ErrLeaseLost)
		}
		var state string
		if err := q.QueryRowContext(ctx, s.q.volumeState, u.ID).Scan(&state); err != nil {
			return err
		}
		if len(u.From) > 0 && !slices.Contains(u.From, mlmsoft.VolumeState(state)) {
			return fmt.Errorf("state is %s: %w", state, mlmsoft.ErrConflict)
		}
		if _, err := q.ExecContext(ctx, s.q.updateVolume, set...); err != nil {
			return err
		}
		if u.Release && u.Owner != "" {
			if _, err := q.ExecContext(ctx, s.q.releaseUser, userID, u.Owner); err != nil {
				return fmt.Errorf("release user: %w", err)
			}
		}
		out, err = s.scanVolume(q.QueryRowContext(ctx, s.q.getVolume, u.ID))
		return err
	})
	if err != nil {
		return mlmsoft.VolumeChange{}, fmt.Errorf("sqlstore: update volume %d: %w", u.ID, err)
	}
	return out, nil
}

// ReleaseVolumeUser ends owner's lease on userID. Releasing a lease one does
// not hold is not an error and changes nothing.
func (s *Store) ReleaseVolumeUser(ctx context.Context, owner, userID string) error {
	if owner == "" {
		return nil
	}
	err := s.inTx(ctx, func(q querier) error {
		_, err := q.ExecContext(ctx, s.q.releaseUser, userID, owner)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: release volume user %q: %w", userID, err)
	}
	return nil
}

// WakeVolumes sets NextAttemptAt to at for the user's pending changes whose
// NextAttemptAt is later, so they are claimed at once.
func (s *Store) WakeVolumes(ctx context.Context, userID string, at time.Time) error {
	query, args := s.q.wakeVolumesTo, []any{userID, string(mlmsoft.VolumePending)}
	if !at.IsZero() {
		var err error
		if args, err = s.args(at, userID, string(mlmsoft.VolumePending), at); err != nil {
			return fmt.Errorf("sqlstore: wake volumes of %q: %w", userID, err)
		}
		query = s.q.wakeVolumes
	}
	err := s.inTx(ctx, func(q querier) error {
		_, err := q.ExecContext(ctx, query, args...)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlstore: wake volumes of %q: %w", userID, err)
	}
	return nil
}

// ListVolumes returns changes matching f ordered by ID.
func (s *Store) ListVolumes(ctx context.Context, f mlmsoft.VolumeFilter) ([]mlmsoft.VolumeChange, error) {
	var (
		where []string
		args  []any
	)
	if f.UserID != "" {
		where = append(where, "user_id = ?")
		args = append(args, f.UserID)
	}
	if len(f.States) > 0 {
		where = append(where, "state IN ("+marks(len(f.States))+")")
		args = append(args, anys(f.States)...)
	}
	if f.AfterID > 0 {
		where = append(where, "id > ?")
		args = append(args, f.AfterID)
	}
	query := "SELECT " + strings.Join(volumeCols, ", ") + " FROM {p}volume_changes"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id"
	if f.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, f.Limit)
	}
	out, err := s.queryVolumes(ctx, s.db, s.sql(query), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list volumes: %w", err)
	}
	return out, nil
}

// CountVolumes summarises the outbox: how many changes are in each state
// (states with none are absent) and the CreatedAt of the oldest pending or
// sending change.
func (s *Store) CountVolumes(ctx context.Context) (mlmsoft.VolumeCounts, error) {
	out := mlmsoft.VolumeCounts{ByState: make(map[mlmsoft.VolumeState]int)}
	rows, err := s.db.QueryContext(ctx, s.q.countVolumes)
	if err != nil {
		return mlmsoft.VolumeCounts{}, fmt.Errorf("sqlstore: count volumes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			state string
			n     int
		)
		if err := rows.Scan(&state, &n); err != nil {
			return mlmsoft.VolumeCounts{}, fmt.Errorf("sqlstore: count volumes: %w", err)
		}
		out.ByState[mlmsoft.VolumeState(state)] = n
	}
	if err := rows.Err(); err != nil {
		return mlmsoft.VolumeCounts{}, fmt.Errorf("sqlstore: count volumes: %w", err)
	}
	err = s.db.QueryRowContext(ctx, s.q.oldestPending, string(mlmsoft.VolumePending), string(mlmsoft.VolumeSending)).
		Scan(s.t(&out.OldestPending))
	if err != nil {
		return mlmsoft.VolumeCounts{}, fmt.Errorf("sqlstore: count volumes: %w", err)
	}
	return out, nil
}
