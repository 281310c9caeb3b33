package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// volumeCols are the columns of a volume change, in the order scanVolume
// reads them and volumeData writes them (id first).
var volumeCols = []string{
	"id", "user_id", "seq", "batch_id", "idempotency_key", "alias", "amount",
	"order_id", "state", "attempts", "next_attempt_at", "last_error",
	"document_id", "account_id", "created_at", "updated_at", "sent_at",
	"delivered_at", "resolved_by", "resolved_note", "resolved_at",
}

// volumeUpdateSet writes the fields of a VolumeUpdate, in the order of
// updateArgs.
const volumeUpdateSet = `state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, document_id = ?,
	account_id = ?, sent_at = ?, delivered_at = ?, resolved_by = ?, resolved_note = ?, resolved_at = ?, updated_at = ?`

// volumeData returns v's values for volumeCols without id.
func (s *Store) volumeData(v mlmsoft.VolumeChange) ([]any, error) {
	return s.args(
		v.UserID, v.Seq, v.BatchID, nullString(v.IdempotencyKey), v.Alias, v.Amount.String(),
		v.OrderID, string(v.State), v.Attempts, v.NextAttemptAt, v.LastError,
		v.DocumentID, v.AccountID, v.CreatedAt, v.UpdatedAt, v.SentAt,
		v.DeliveredAt, v.ResolvedBy, v.ResolvedNote, v.ResolvedAt,
	)
}

// storedVolume is v as the database gives it back.
func storedVolume(v mlmsoft.VolumeChange) mlmsoft.VolumeChange {
	for _, p := range []*time.Time{&v.NextAttemptAt, &v.CreatedAt, &v.UpdatedAt, &v.SentAt, &v.DeliveredAt, &v.ResolvedAt} {
		*p = storedTime(*p)
	}
	return v
}

// updateArgs returns u's values for volumeUpdateSet.
func (s *Store) updateArgs(u mlmsoft.VolumeUpdate) ([]any, error) {
	return s.args(string(u.State), u.Attempts, u.NextAttemptAt, u.LastError, u.DocumentID,
		u.AccountID, u.SentAt, u.DeliveredAt, u.ResolvedBy, u.ResolvedNote, u.ResolvedAt, u.UpdatedAt)
}

// applyUpdate returns v with u written, as stored.
func applyUpdate(v mlmsoft.VolumeChange, u mlmsoft.VolumeUpdate) mlmsoft.VolumeChange {
	v.State, v.Attempts, v.NextAttemptAt, v.LastError, v.DocumentID = u.State, u.Attempts, u.NextAttemptAt, u.LastError, u.DocumentID
	v.AccountID, v.SentAt, v.DeliveredAt, v.ResolvedBy, v.ResolvedNote = u.AccountID, u.SentAt, u.DeliveredAt, u.ResolvedBy, u.ResolvedNote
	v.ResolvedAt, v.UpdatedAt = u.ResolvedAt, u.UpdatedAt
	return storedVolume(v)
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

// volumesWhereIn returns the changes whose column col is one of vals, in
// no particular order.
func volumesWhereIn[T any](ctx context.Context, s *Store, q querier, col string, vals []T, suffix string) ([]mlmsoft.VolumeChange, error) {
	var out []mlmsoft.VolumeChange
	for chunk := range slices.Chunk(vals, inChunk) {
		got, err := collect(ctx, q, s.scanVolume, s.sql(fmt.Sprintf("SELECT %s FROM {p}volume_changes WHERE %s IN (%s)%s",
			strings.Join(volumeCols, ", "), col, marks(len(chunk)), suffix)), anys(chunk)...)
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
// the volume_users table (taken in user order, so batches cannot deadlock),
// so Seq order is commit order. A user whose queue was empty gets its
// first new open change as head, in the same transaction.
//
// A change whose IdempotencyKey is stored already (or appears earlier in the
// same call) is not stored again: the stored change is returned in its
// place, or, if it differs in UserID, Alias, Amount or OrderID, the call
// fails with an error wrapping mlmsoft.ErrIdempotencyConflict and stores
// nothing. An empty IdempotencyKey is never deduplicated. An empty UserID is
// an error wrapping mlmsoft.ErrInvalidInput. On PostgreSQL the transaction
// notifies ListenForWork.
func (s *Store) EnqueueVolumes(ctx context.Context, changes []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	return s.enqueueVolumes(ctx, nil, changes)
}

// enqueueVolumes is EnqueueVolumes, in the host's transaction tx when it is
// not nil.
func (s *Store) enqueueVolumes(ctx context.Context, tx *sql.Tx, changes []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	for i, c := range changes {
		if c.UserID == "" {
			return nil, fmt.Errorf("%w: sqlstore: enqueue volumes: change %d: empty UserID", mlmsoft.ErrInvalidInput, i)
		}
	}
	if len(changes) == 0 {
		return []mlmsoft.VolumeChange{}, nil
	}
	var (
		out     []mlmsoft.VolumeChange
		attempt int
	)
	try := func(q querier) error {
		attempt++
		var err error
		out, err = s.enqueue(ctx, q, changes, tx != nil && attempt > 1)
		return err
	}
	// A unique violation means a concurrent call committed one of our
	// idempotency keys after we looked: start over to find it.
	again := func(err error) bool { return s.d.uniqueViolation(err) }
	var err error
	if tx != nil {
		err = s.inSavepoint(ctx, tx, again, try)
	} else {
		for {
			err = s.inTx(ctx, try)
			if err == nil || !again(err) || attempt >= maxEnqueueAttempts || ctx.Err() != nil {
				break
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: enqueue volumes: %w", err)
	}
	return out, nil
}

func sameContent(a, b mlmsoft.VolumeChange) bool {
	return a.UserID == b.UserID && a.Alias == b.Alias && a.Amount == b.Amount && a.OrderID == b.OrderID
}

// queueUser is a volume user's row as an enqueue finds it.
type queueUser struct {
	id      string
	lastSeq int64
	headID  int64
}

func scanQueueUser(sc scanner) (queueUser, error) {
	var u queueUser
	err := sc.Scan(&u.id, &u.lastSeq, nullInt64{&u.headID})
	return u, err
}

// enqueue stores changes on q. locking (a retry in a host transaction)
// reads the idempotency keys with a locking read, which sees rows
// committed after the transaction's snapshot (MySQL's REPEATABLE READ).
func (s *Store) enqueue(ctx context.Context, q querier, changes []mlmsoft.VolumeChange, locking bool) ([]mlmsoft.VolumeChange, error) {
	var keys []string
	for _, c := range changes {
		if c.IdempotencyKey != "" {
			keys = append(keys, c.IdempotencyKey)
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	suffix := ""
	if locking && s.d.forUpdate() != "" {
		suffix = s.d.forUpdate()
	}
	stored, err := volumesWhereIn(ctx, s, q, "idempotency_key", keys, suffix)
	if err != nil {
		return nil, err
	}
	byKey := make(map[string]mlmsoft.VolumeChange, len(stored))
	for _, v := range stored {
		byKey[v.IdempotencyKey] = v
	}

	// Sort the changes into stored ones, repeats within the call, and new.
	out := make([]mlmsoft.VolumeChange, len(changes))
	var (
		isNew    = make([]bool, len(changes))
		repeatOf = make(map[int]int) // index of a repeat → index of the first with the key
		firstNew = make(map[string]int)
		perUser  = make(map[string]int64) // new changes per user
	)
	for i, c := range changes {
		if k := c.IdempotencyKey; k != "" {
			if v, ok := byKey[k]; ok {
				if !sameContent(v, c) {
					return nil, fmt.Errorf("change %d, idempotency key %q: %w", i, k, mlmsoft.ErrIdempotencyConflict)
				}
				out[i] = v
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
		isNew[i] = true
		perUser[c.UserID]++
	}
	if len(perUser) == 0 {
		return out, nil
	}

	// Take the next positions of each user's queue, locking the users'
	// rows in user order so that concurrent batches cannot deadlock.
	users := sortedKeys(perUser)
	queue := make(map[string]queueUser, len(users))
	for chunk := range slices.Chunk(users, inChunk) {
		args := make([]any, 0, 2*len(chunk))
		for _, u := range chunk {
			args = append(args, u, perUser[u])
		}
		var got []queueUser
		if s.d.returning() {
			got, err = collect(ctx, q, scanQueueUser, s.sql(s.d.upsertUsers(len(chunk))), args...)
		} else {
			if _, err = q.ExecContext(ctx, s.sql(s.d.upsertUsers(len(chunk))), args...); err == nil {
				got, err = collect(ctx, q, scanQueueUser, s.sql("SELECT user_id, last_seq, head_id FROM {p}volume_users WHERE user_id IN ("+
					marks(len(chunk))+")"), anys(chunk)...)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("assign seq: %w", err)
		}
		for _, u := range got {
			queue[u.id] = u
		}
	}
	nextSeq := make(map[string]int64, len(users))
	for _, u := range users {
		qu, ok := queue[u]
		if !ok {
			return nil, fmt.Errorf("assign seq: user %q not found", u)
		}
		nextSeq[u] = qu.lastSeq - perUser[u] + 1
	}

	// The new rows, and the new heads of empty queues: each user's first
	// new change not in a final state.
	w := &writes{notify: true}
	type headAt struct {
		user string
		seq  int64
	}
	var newHeads []mlmsoft.VolumeChange
	for i, c := range changes {
		if !isNew[i] {
			continue
		}
		c.Seq = nextSeq[c.UserID]
		nextSeq[c.UserID]++
		c.ID = 0
		out[i] = storedVolume(c)
		w.counts.add(countVolumes, string(c.State), c.UserID, 1)
		if unstamped(c.State, c.UpdatedAt) {
			w.counts.add(countUnstamped, "", c.UserID, 1)
		}
		if qu := queue[c.UserID]; qu.headID == 0 && !c.State.Final() {
			qu.headID = -1 // taken
			queue[c.UserID] = qu
			newHeads = append(newHeads, out[i])
		}
	}
	// The rows to insert.
	ids := make(map[headAt]int64)
	var rows [][]any
	for i := range changes {
		if isNew[i] {
			vals, err := s.volumeData(out[i])
			if err != nil {
				return nil, fmt.Errorf("change %d: %w", i, err)
			}
			rows = append(rows, vals)
		}
	}
	// On PostgreSQL one statement inserts them, sets the heads, counts and
	// notifies, its writes seeing the inserted rows as ins.
	combine := s.d.writableCTE() && len(rows) <= volumeInsertChunk
	headTable := "{p}volume_changes"
	if combine {
		headTable = "ins"
	}
	for _, h := range newHeads {
		args, err := s.args(h.UserID, h.Seq, h.Seq, h.NextAttemptAt, h.CreatedAt, h.UserID)
		if err != nil {
			return nil, err
		}
		w.add(`UPDATE {p}volume_users SET head_id = (SELECT id FROM `+headTable+` WHERE user_id = ? AND seq = ?),
	head_seq = ?, head_due = ?, head_created_at = ? WHERE user_id = ?`, args...)
	}

	// Insert, learn the ids, and make the other writes.
	chunks := slices.Collect(slices.Chunk(rows, volumeInsertChunk))
	for _, chunk := range chunks {
		insert := "INSERT INTO {p}volume_changes (" + strings.Join(volumeCols[1:], ", ") + ") VALUES " +
			valuesRows(len(chunk), marks(len(volumeCols)-1))
		args := slices.Concat(chunk...)
		switch {
		case combine:
			// One statement: insert, set heads, count, notify.
			err = s.insertWithWrites(ctx, q, insert, args, w, func(id int64, user string, seq int64) {
				ids[headAt{user, seq}] = id
			})
		case s.d.returning():
			err = s.insertReturning(ctx, q, insert, args, func(id int64, user string, seq int64) {
				ids[headAt{user, seq}] = id
			})
		default:
			var res sql.Result
			if res, err = q.ExecContext(ctx, s.sql(insert), args...); err == nil && len(chunk) == 1 {
				var id int64
				if id, err = res.LastInsertId(); err == nil {
					ids[headAt{chunk[0][0].(string), chunk[0][1].(int64)}] = id
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("insert changes: %w", err)
		}
	}
	if !s.d.returning() && len(rows) > 1 {
		// Read the ids back: this transaction holds the users' rows, so
		// their changes from the first new Seq on are ours.
		first := make(map[string]int64)
		for _, v := range out {
			if v.ID == 0 && v.Seq > 0 {
				if f, ok := first[v.UserID]; !ok || v.Seq < f {
					first[v.UserID] = v.Seq
				}
			}
		}
		for chunk := range slices.Chunk(sortedKeys(first), inChunk) {
			var where []string
			var args []any
			for _, u := range chunk {
				where = append(where, "(user_id = ? AND seq >= ?)")
				args = append(args, u, first[u])
			}
			rows, err := q.QueryContext(ctx, s.sql("SELECT id, user_id, seq FROM {p}volume_changes WHERE "+strings.Join(where, " OR ")), args...)
			if err != nil {
				return nil, fmt.Errorf("read ids: %w", err)
			}
			err = scanIDs(rows, func(id int64, user string, seq int64) { ids[headAt{user, seq}] = id })
			if err != nil {
				return nil, fmt.Errorf("read ids: %w", err)
			}
		}
	}
	if !combine {
		if err := s.run(ctx, q, w); err != nil {
			return nil, err
		}
	}
	for i := range changes {
		if isNew[i] {
			id, ok := ids[headAt{out[i].UserID, out[i].Seq}]
			if !ok {
				return nil, fmt.Errorf("change %d: no id assigned", i)
			}
			out[i].ID = id
		}
	}
	for i, j := range repeatOf {
		out[i] = out[j]
	}
	return out, nil
}

// volumeInsertChunk bounds the rows of one INSERT into volume_changes.
const volumeInsertChunk = 200

// scanIDs reads (id, user_id, seq) rows.
func scanIDs(rows *sql.Rows, f func(id int64, user string, seq int64)) error {
	defer rows.Close()
	for rows.Next() {
		var (
			id, seq int64
			user    string
		)
		if err := rows.Scan(&id, &user, &seq); err != nil {
			return err
		}
		f(id, user, seq)
	}
	return rows.Err()
}

// insertReturning runs an INSERT into volume_changes and reports the ids
// it assigned.
func (s *Store) insertReturning(ctx context.Context, q querier, insert string, args []any, f func(id int64, user string, seq int64)) error {
	rows, err := q.QueryContext(ctx, s.sql(insert+" RETURNING id, user_id, seq"), args...)
	if err != nil {
		return err
	}
	return scanIDs(rows, f)
}

// insertWithWrites runs an INSERT into volume_changes together with w, as
// one statement whose writes see the inserted rows as ins, and reports the
// ids it assigned.
func (s *Store) insertWithWrites(ctx context.Context, q querier, insert string, args []any, w *writes, f func(id int64, user string, seq int64)) error {
	all := w.stmts
	if c, ok := s.countsStmt(w.counts); ok {
		all = append(all[:len(all):len(all)], c)
	}
	var b strings.Builder
	b.WriteString("WITH ins AS (" + insert + " RETURNING id, user_id, seq)")
	for i, st := range all {
		fmt.Fprintf(&b, ", w%d AS (%s)", i, st.sql)
		args = append(args, st.args...)
	}
	b.WriteString(" SELECT id, user_id, seq FROM ins")
	if w.notify && s.d.notify() != "" {
		b.WriteString(", (" + s.d.notify() + ") n")
		args = append(args, s.channel)
	}
	rows, err := q.QueryContext(ctx, s.sql(b.String()), args...)
	if err != nil {
		return err
	}
	return scanIDs(rows, f)
}

// getVolumes returns the changes with the given ids in the order asked, or
// an error wrapping mlmsoft.ErrNotFound.
func (s *Store) getVolumes(ctx context.Context, q querier, ids []int64) ([]mlmsoft.VolumeChange, error) {
	distinct := slices.Compact(slices.Sorted(slices.Values(ids)))
	got, err := volumesWhereIn(ctx, s, q, "id", distinct, "")
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

// ClaimVolumes finds users whose head (the lowest-Seq change whose State is
// not Final) is due (NextAttemptAt not zero and not after c.Now) and whose
// lease is free or lapsed at c.Now; leases up to c.Limit of them to c.Owner
// until c.Now + c.Lease and returns their heads, earliest NextAttemptAt
// first, then by ID.
//
// It reads only the volume_users table, through an index on the heads' due
// times that every write moving a head keeps up to date, and then the heads
// by primary key: its cost does not depend on how many changes are stored.
// Users are locked with FOR UPDATE SKIP LOCKED (SQLite: under the write
// lock), so concurrent claims from any process neither wait for each other
// nor lease one user twice, and a user being written to (its row is locked)
// is skipped; it may return fewer than c.Limit heads while other claims
// run. With c.Send, the lease, the read of the heads and their marks
// (mlmsoft.VolumeClaim.Send) commit in one transaction. It returns an error
// wrapping mlmsoft.ErrInvalidInput when c.Owner is empty or c.Limit is not
// positive.
func (s *Store) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.ClaimedVolume, error) {
	if c.Owner == "" || c.Limit <= 0 {
		return nil, fmt.Errorf("%w: sqlstore: claim volumes: Owner must be set and Limit positive", mlmsoft.ErrInvalidInput)
	}
	args, err := s.args(c.Owner, c.Now.Add(c.Lease), c.Now, c.Now, c.Limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim volumes: %w", err)
	}
	var (
		heads []int64
		out   []mlmsoft.ClaimedVolume
	)
	switch {
	case c.Send:
		// The claim, the read of the heads and their marks in one
		// transaction: a head comes back marked only if its mark is
		// committed with its lease.
		err = s.inTx(ctx, func(q querier) error {
			out = nil // nothing of an attempt that rolled back
			heads, err = s.leaseHeads(ctx, q, args)
			if err != nil || len(heads) == 0 {
				return err
			}
			vs, err := s.getVolumes(ctx, q, heads)
			if err != nil {
				return fmt.Errorf("read heads: %w", err)
			}
			out, err = s.markClaimed(ctx, q, vs, c.Now)
			return err
		})
	case s.d.returning():
		err = s.inStatement(ctx, func(q querier) error {
			heads, err = s.leaseHeads(ctx, q, args)
			return err
		})
	default:
		err = s.inTx(ctx, func(q querier) error {
			heads, err = s.leaseHeads(ctx, q, args)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim volumes: %w", err)
	}
	if !c.Send && len(heads) > 0 {
		// The leases are ours now: the heads can be read outside the claim.
		vs, err := s.getVolumes(ctx, s.db, heads)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: claim volumes: read heads: %w", err)
		}
		out = make([]mlmsoft.ClaimedVolume, len(vs))
		for i, v := range vs {
			out[i] = mlmsoft.ClaimedVolume{Change: v}
		}
	}
	slices.SortFunc(out, func(a, b mlmsoft.ClaimedVolume) int {
		return cmp.Or(a.Change.NextAttemptAt.Compare(b.Change.NextAttemptAt), cmp.Compare(a.Change.ID, b.Change.ID))
	})
	return out, nil
}

// leaseHeads leases the due users with free or lapsed leases (args as
// ClaimVolumes builds them) and returns their head ids.
func (s *Store) leaseHeads(ctx context.Context, q querier, args []any) ([]int64, error) {
	if s.d.returning() {
		return collect(ctx, q, scanInt64, s.q.claimUsers, args...)
	}
	rows, err := q.QueryContext(ctx, s.q.pickUsers, args[2:]...)
	if err != nil {
		return nil, err
	}
	var (
		users []any
		heads []int64
	)
	err = scanPairs(rows, func(user string, head int64) {
		users = append(users, user)
		heads = append(heads, head)
	})
	if err != nil || len(users) == 0 {
		return nil, err
	}
	_, err = q.ExecContext(ctx, s.sql("UPDATE {p}volume_users SET lease_owner = ?, lease_until = ? WHERE user_id IN ("+
		marks(len(users))+")"), append(args[:2:2], users...)...)
	return heads, err
}

// markClaimed marks sending, at now, each of the just claimed heads that
// VolumeClaim.Send may mark: pending, without a document, of a user
// whose link is linked to an account. It runs in the claim's transaction.
func (s *Store) markClaimed(ctx context.Context, q querier, heads []mlmsoft.VolumeChange, now time.Time) ([]mlmsoft.ClaimedVolume, error) {
	out := make([]mlmsoft.ClaimedVolume, len(heads))
	var users []any
	for i, h := range heads {
		out[i].Change = h
		if h.State == mlmsoft.VolumePending && h.DocumentID == 0 {
			users = append(users, h.UserID)
		}
	}
	if len(users) == 0 {
		return out, nil
	}
	accounts := make(map[string]int64, len(users))
	rows, err := q.QueryContext(ctx, s.sql("SELECT user_id, account_id FROM {p}links WHERE state = ? AND account_id <> 0 AND user_id IN ("+
		marks(len(users))+")"), append([]any{string(mlmsoft.LinkLinked)}, users...)...)
	if err != nil {
		return nil, fmt.Errorf("read links: %w", err)
	}
	err = scanPairs(rows, func(user string, account int64) { accounts[user] = account })
	if err != nil {
		return nil, fmt.Errorf("read links: %w", err)
	}
	w := &writes{}
	for i, h := range heads {
		account := accounts[h.UserID]
		if account == 0 || h.State != mlmsoft.VolumePending || h.DocumentID != 0 {
			continue
		}
		send := &mlmsoft.VolumeSend{At: now, AccountID: account}
		if err := s.addMarkSent(w, h.ID, send); err != nil {
			return nil, err
		}
		w.counts.move(countVolumes, string(mlmsoft.VolumePending), string(mlmsoft.VolumeSending), h.UserID)
		out[i] = mlmsoft.ClaimedVolume{Change: markSent(h, send), Sending: true}
	}
	if err := s.run(ctx, q, w); err != nil {
		return nil, fmt.Errorf("mark heads sending: %w", err)
	}
	return out, nil
}

func scanInt64(sc scanner) (int64, error) {
	var n int64
	err := sc.Scan(&n)
	return n, err
}

// scanPairs reads (user_id, head_id) rows.
func scanPairs(rows *sql.Rows, f func(user string, head int64)) error {
	defer rows.Close()
	for rows.Next() {
		var (
			user string
			head int64
		)
		if err := rows.Scan(&user, nullInt64{&head}); err != nil {
			return err
		}
		f(user, head)
	}
	return rows.Err()
}

// UpdateVolume applies u atomically, in one transaction that locks the
// change's user first (as every writer of a user's changes does), writes
// the change if its state is in u.From, moves the user's head when the
// write can have moved it, marks the next change sending for u.Send, and
// writes the head and the lease together. Errors wrap mlmsoft.ErrNotFound
// (no such id), mlmsoft.ErrLeaseLost (u.Owner is set and does not hold the
// lease on the change's user) or mlmsoft.ErrConflict (the change's state is
// not in u.From; an empty From matches no state), checked in that order;
// nothing is written on error. u.Send without u.Owner is an error wrapping
// mlmsoft.ErrInvalidInput.
//
// With u.Owner the lease ends, unless u.Send marked a change sending or
// u.KeepLease asks to keep it: then it now ends at u.LeaseUntil.
//
// On PostgreSQL a worker's update that takes its user's head to a final
// state (a delivery), the common case, is first tried as one statement
// without a transaction of its own, which writes nothing unless it can do
// the whole update safely (see the package doc, Round trips).
func (s *Store) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	if u.Send != nil && u.Owner == "" {
		return mlmsoft.VolumeUpdated{}, fmt.Errorf("%w: sqlstore: update volume %d: Send without Owner", mlmsoft.ErrInvalidInput, u.ID)
	}
	set, err := s.updateArgs(u)
	if err != nil {
		return mlmsoft.VolumeUpdated{}, fmt.Errorf("sqlstore: update volume %d: %w", u.ID, err)
	}
	var out mlmsoft.VolumeUpdated
	if s.d.writableCTE() && u.Owner != "" && len(u.From) == 1 && !u.From[0].Final() {
		// A worker's write of its head, the common case: one statement.
		var done bool
		err = s.inStatement(ctx, func(q querier) error {
			var err error
			out, done, err = s.deliverInOne(ctx, q, u, set)
			return err
		})
		if err != nil {
			return mlmsoft.VolumeUpdated{}, fmt.Errorf("sqlstore: update volume %d: %w", u.ID, err)
		}
		if done {
			return out, nil
		}
		s.declined.Add(1)
	}
	err = s.inTx(ctx, func(q querier) error {
		var err error
		out, err = s.updateVolume(ctx, q, u, set)
		return err
	})
	if err != nil {
		return mlmsoft.VolumeUpdated{}, fmt.Errorf("sqlstore: update volume %d: %w", u.ID, err)
	}
	return out, nil
}

// sendable reports whether VolumeUpdate.Send marks h: another change than
// the one updated, pending, without a document, due at at.
func sendable(h mlmsoft.VolumeChange, updated int64, at time.Time) bool {
	return h.ID != updated && h.State == mlmsoft.VolumePending && h.DocumentID == 0 &&
		!h.NextAttemptAt.IsZero() && !h.NextAttemptAt.After(at)
}

// markSent returns h as VolumeUpdate.Send leaves it.
func markSent(h mlmsoft.VolumeChange, send *mlmsoft.VolumeSend) mlmsoft.VolumeChange {
	h.State, h.Attempts = mlmsoft.VolumeSending, h.Attempts+1
	h.SentAt, h.UpdatedAt, h.AccountID = storedTime(send.At), storedTime(send.At), send.AccountID
	return h
}

func (s *Store) updateVolume(ctx context.Context, q querier, u mlmsoft.VolumeUpdate, set []any) (mlmsoft.VolumeUpdated, error) {
	var none mlmsoft.VolumeUpdated
	// Lock the user: from here on, no one else writes its changes.
	var (
		userID          string
		lease           mlmsoft.Lease
		headID, headSeq int64
	)
	err := q.QueryRowContext(ctx, s.q.lockChangeUser, u.ID).Scan(&userID, &lease.Owner, s.t(&lease.Until), nullInt64{&headID}, nullInt64{&headSeq})
	switch {
	case errNoRows(err):
		return none, mlmsoft.ErrNotFound
	case err != nil:
		return none, fmt.Errorf("lock user: %w", err)
	case u.Owner != "" && lease.Owner != u.Owner:
		return none, fmt.Errorf("%w (user %q held by another claim)", mlmsoft.ErrLeaseLost, userID)
	}

	// The state the change is in (and, when it is final, its UpdatedAt).
	var (
		from        mlmsoft.VolumeState
		fromUpdated time.Time
		cur         mlmsoft.VolumeChange // without RETURNING: the change as it is
		next        mlmsoft.VolumeChange
		nextFound   bool
		isHead      = headID == u.ID
		recompute   = isHead && u.State.Final()
	)
	switch {
	case !s.d.returning() && recompute:
		// The head is not final, so PurgeVolumes cannot delete it under
		// us: read it and the next change in one query, without locks.
		cur, next, nextFound, err = s.headAndNext(ctx, q, u.ID, userID, headSeq)
		if err != nil {
			return none, err
		}
		from, fromUpdated = cur.State, cur.UpdatedAt
	case !s.d.returning():
		cur, err = s.scanVolume(q.QueryRowContext(ctx, s.q.lockChange, u.ID))
		if errNoRows(err) {
			return none, mlmsoft.ErrNotFound
		} else if err != nil {
			return none, err
		}
		from, fromUpdated = cur.State, cur.UpdatedAt
	case len(u.From) == 1 && !u.From[0].Final():
		from = u.From[0]
	default:
		var state string
		if err := q.QueryRowContext(ctx, s.q.changeState, u.ID).Scan(&state, s.t(&fromUpdated)); errNoRows(err) {
			return none, mlmsoft.ErrNotFound
		} else if err != nil {
			return none, err
		}
		from = mlmsoft.VolumeState(state)
	}
	if !slices.Contains(u.From, from) {
		return none, fmt.Errorf("%w (state is %s)", mlmsoft.ErrConflict, from)
	}

	// Write the change and, when it was the head and is now final, find
	// the next head (and mark it sending for Send).
	var (
		changed mlmsoft.VolumeChange
		marked  bool
		w       = &writes{}
	)
	switch {
	case recompute && s.d.writableCTE():
		changed, next, nextFound, marked, err = s.updateAndNext(ctx, q, u, set, from, userID, headSeq)
		if err != nil {
			return none, err
		}
	case s.d.returning():
		changed, err = s.scanVolume(q.QueryRowContext(ctx, s.q.updateChange, append(set, u.ID, string(from))...))
		if errNoRows(err) {
			return none, s.missingOrConflict(ctx, q, u.ID)
		} else if err != nil {
			return none, err
		}
	case recompute && nextFound && u.Send != nil && sendable(next, u.ID, u.Send.At):
		// One UPDATE writes the change and marks the next one sending.
		if err := s.updateAndMark(ctx, q, u, set, next.ID); err != nil {
			return none, err
		}
		changed = applyUpdate(cur, u)
		next, marked = markSent(next, u.Send), true
	default:
		if _, err := q.ExecContext(ctx, s.q.updateChange, append(set, u.ID, string(from))...); err != nil {
			return none, err
		}
		changed = applyUpdate(cur, u)
	}
	if recompute && s.d.returning() && !s.d.writableCTE() {
		next, err = s.scanVolume(q.QueryRowContext(ctx, s.q.nextHead,
			append([]any{userID, changed.Seq}, strs(mlmsoft.FinalVolumeStates)...)...))
		if err != nil && !errNoRows(err) {
			return none, fmt.Errorf("next head: %w", err)
		}
		nextFound = err == nil
		if nextFound && u.Send != nil && sendable(next, u.ID, u.Send.At) {
			if err := s.addMarkSent(w, next.ID, u.Send); err != nil {
				return none, err
			}
			next, marked = markSent(next, u.Send), true
		}
	}

	// The head after the write.
	var (
		head      mlmsoft.VolumeChange // ID 0: none
		headMoved bool
	)
	switch {
	case recompute:
		headMoved = true
		if nextFound {
			head = next
		}
	case isHead:
		head, headMoved = changed, true // its due time may have changed
	case !u.State.Final() && (headID == 0 || changed.Seq < headSeq):
		// A final change opened again before the head (or in an empty
		// queue) is the head now.
		head, headMoved = changed, true
	case u.Send != nil && headID != 0:
		// The head is another change, untouched: Send may mark it.
		h, err := s.scanVolume(q.QueryRowContext(ctx, s.q.headChange, headID))
		if err != nil {
			return none, fmt.Errorf("read head: %w", err)
		}
		if sendable(h, u.ID, u.Send.At) {
			if err := s.addMarkSent(w, h.ID, u.Send); err != nil {
				return none, err
			}
			next, marked = markSent(h, u.Send), true
		}
	}

	// Write the head and the lease in one statement.
	if u.Owner != "" {
		lease = mlmsoft.Lease{}
		if marked || u.KeepLease {
			lease = mlmsoft.Lease{Owner: u.Owner, Until: storedTime(u.LeaseUntil)}
		}
	}
	switch {
	case headMoved:
		vals, err := s.args(nullID(head.ID), nullID(head.Seq), head.NextAttemptAt, head.CreatedAt)
		if err != nil {
			return none, err
		}
		query := "UPDATE {p}volume_users SET head_id = ?, head_seq = ?, head_due = ?, head_created_at = ?"
		if u.Owner != "" {
			until, err := s.timeArg(lease.Until)
			if err != nil {
				return none, err
			}
			query += ", lease_owner = ?, lease_until = ?"
			vals = append(vals, lease.Owner, until)
		}
		w.add(query+" WHERE user_id = ?", append(vals, userID)...)
	case u.Owner != "":
		until, err := s.timeArg(lease.Until)
		if err != nil {
			return none, err
		}
		w.add("UPDATE {p}volume_users SET lease_owner = ?, lease_until = ? WHERE user_id = ?", lease.Owner, until, userID)
	case s.d.writableCTE():
		// Every writer of a user's changes writes (not only locks) the
		// user's row, so that deliverInOne can tell its snapshot is
		// current.
		w.add("UPDATE {p}volume_users SET last_seq = last_seq WHERE user_id = ?", userID)
	}
	w.counts.move(countVolumes, string(from), string(changed.State), userID)
	if was, is := unstamped(from, fromUpdated), unstamped(changed.State, changed.UpdatedAt); was != is {
		w.counts.add(countUnstamped, "", userID, map[bool]int64{true: 1, false: -1}[is])
	}
	if marked {
		w.counts.move(countVolumes, string(mlmsoft.VolumePending), string(mlmsoft.VolumeSending), userID)
	}
	if err := s.addEvents(w, u.Events); err != nil {
		return none, err
	}
	// An operator making a head due: another replica's worker may take it.
	w.notify = u.Owner == "" && headMoved && !head.NextAttemptAt.IsZero()
	if err := s.run(ctx, q, w); err != nil {
		return none, err
	}
	out := mlmsoft.VolumeUpdated{Change: changed}
	if marked {
		out.Next = next
	}
	return out, nil
}

// headAndNext reads the head change id of user and the change after it
// (seq > headSeq, not final), without locks, in one query.
func (s *Store) headAndNext(ctx context.Context, q querier, id int64, user string, headSeq int64) (head, next mlmsoft.VolumeChange, found bool, err error) {
	cols := strings.Join(volumeCols, ", ")
	rows, err := q.QueryContext(ctx, s.sql("SELECT 0, "+cols+" FROM {p}volume_changes WHERE id = ? UNION ALL (SELECT 1, "+cols+
		" FROM {p}volume_changes WHERE user_id = ? AND seq > ? AND "+notFinal+" ORDER BY seq LIMIT 1)"),
		slices.Concat([]any{id, user, headSeq}, strs(mlmsoft.FinalVolumeStates))...)
	if err != nil {
		return head, next, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var kind int
		v, err := s.scanVolume(prefixed{rows, &kind})
		if err != nil {
			return head, next, false, err
		}
		if kind == 0 {
			head = v
		} else {
			next, found = v, true
		}
	}
	if err := rows.Err(); err != nil {
		return head, next, false, err
	}
	if head.ID == 0 {
		return head, next, false, mlmsoft.ErrNotFound
	}
	return head, next, found, nil
}

// updateAndMark writes u to its change and marks change next sending for
// u.Send in one UPDATE (for dialects without RETURNING, whose caller read
// both rows first).
func (s *Store) updateAndMark(ctx context.Context, q querier, u mlmsoft.VolumeUpdate, set []any, next int64) error {
	mark, err := s.args(string(mlmsoft.VolumeSending), u.Send.AccountID, u.Send.At, u.Send.At)
	if err != nil {
		return err
	}
	// What Send writes to the next change, column by column of
	// volumeUpdateSet; "" keeps the column.
	sent := map[string]any{"state": mark[0], "account_id": mark[1], "sent_at": mark[2], "updated_at": mark[3]}
	var (
		cols  []string
		args  []any
		names = []string{"state", "attempts", "next_attempt_at", "last_error", "document_id", "account_id",
			"sent_at", "delivered_at", "resolved_by", "resolved_note", "resolved_at", "updated_at"}
	)
	for i, c := range names {
		other := c
		switch v, ok := sent[c]; {
		case ok:
			other = "?"
			args = append(args, u.ID, set[i], v)
		case c == "attempts":
			other = "attempts + 1"
			args = append(args, u.ID, set[i])
		default:
			args = append(args, u.ID, set[i])
		}
		cols = append(cols, c+" = CASE WHEN id = ? THEN ? ELSE "+other+" END")
	}
	_, err = q.ExecContext(ctx, s.sql("UPDATE {p}volume_changes SET "+strings.Join(cols, ", ")+" WHERE id IN (?, ?)"),
		append(args, u.ID, next)...)
	return err
}

// addMarkSent adds to w the write VolumeUpdate.Send makes to change id.
func (s *Store) addMarkSent(w *writes, id int64, send *mlmsoft.VolumeSend) error {
	args, err := s.args(string(mlmsoft.VolumeSending), send.At, send.At, send.AccountID, id)
	if err != nil {
		return err
	}
	w.add("UPDATE {p}volume_changes SET state = ?, attempts = attempts + 1, sent_at = ?, updated_at = ?, account_id = ? WHERE id = ?", args...)
	return nil
}

// missingOrConflict tells why a guarded update of change id wrote nothing.
func (s *Store) missingOrConflict(ctx context.Context, q querier, id int64) error {
	var (
		state   string
		updated time.Time
	)
	if err := q.QueryRowContext(ctx, s.q.changeState, id).Scan(&state, s.t(&updated)); errNoRows(err) {
		return mlmsoft.ErrNotFound
	} else if err != nil {
		return err
	}
	return fmt.Errorf("%w (state is %s)", mlmsoft.ErrConflict, state)
}

// updateAndNext writes the head change of user and reads the next head,
// marking it sending for u.Send, in one statement (data-modifying WITH).
// The statement runs after the user's lock was taken, so its snapshot holds
// every committed write of the user's changes.
func (s *Store) updateAndNext(ctx context.Context, q querier, u mlmsoft.VolumeUpdate, set []any, from mlmsoft.VolumeState, user string, seq int64) (changed, next mlmsoft.VolumeChange, found, marked bool, err error) {
	cols := strings.Join(volumeCols, ", ")
	query := `WITH upd AS (UPDATE {p}volume_changes SET ` + volumeUpdateSet + ` WHERE id = ? AND state = ? RETURNING ` + cols + `),
nxt AS (SELECT ` + cols + ` FROM {p}volume_changes WHERE user_id = ? AND seq > ? AND ` + notFinal + ` ORDER BY seq LIMIT 1)`
	args := slices.Concat(set, []any{u.ID, string(from), user, seq}, strs(mlmsoft.FinalVolumeStates))
	tag := "1"
	if u.Send != nil {
		send, err := s.args(string(mlmsoft.VolumeSending), u.Send.At, u.Send.At, u.Send.AccountID, string(mlmsoft.VolumePending), u.Send.At)
		if err != nil {
			return changed, next, false, false, err
		}
		query += `,
snd AS (UPDATE {p}volume_changes c SET state = ?, attempts = c.attempts + 1, sent_at = ?, updated_at = ?, account_id = ?
	FROM nxt WHERE c.id = nxt.id AND nxt.state = ? AND nxt.document_id = 0 AND nxt.next_attempt_at <= ? RETURNING c.id)`
		args = append(args, send...)
		tag = "CASE WHEN EXISTS (SELECT 1 FROM snd) THEN 2 ELSE 1 END"
	}
	query += "\nSELECT 0, " + cols + " FROM upd UNION ALL SELECT " + tag + ", " + cols + " FROM nxt"
	rows, err := q.QueryContext(ctx, s.sql(query), args...)
	if err != nil {
		return changed, next, false, false, err
	}
	defer rows.Close()
	updated := false
	for rows.Next() {
		var (
			kind int
			v    mlmsoft.VolumeChange
		)
		v, err = s.scanVolume(prefixed{rows, &kind})
		if err != nil {
			return changed, next, false, false, err
		}
		switch kind {
		case 0:
			changed, updated = v, true
		default:
			next, found, marked = v, true, kind == 2
		}
	}
	if err := rows.Err(); err != nil {
		return changed, next, false, false, err
	}
	if !updated {
		return changed, next, false, false, s.missingOrConflict(ctx, q, u.ID)
	}
	if marked {
		next = markSent(next, u.Send)
	}
	return changed, next, found, marked, nil
}

// prefixed scans one leading column into *first, then the rest as the
// wrapped scanner's caller asks.
type prefixed struct {
	sc    scanner
	first any
}

// Scan implements scanner.
func (p prefixed) Scan(dest ...any) error { return p.sc.Scan(append([]any{p.first}, dest...)...) }

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
		args = append(args, strs(f.States)...)
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
	out, err := collect(ctx, s.db, s.scanVolume, s.sql(query), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list volumes: %w", err)
	}
	return out, nil
}
