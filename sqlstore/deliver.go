package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/mlmsoft-go/mlmsoft"
)

// deliverInOne applies the common updates of a worker to its user's head
// as one statement without a transaction of its own, on dialects with
// data-modifying WITH clauses (PostgreSQL): a delivery (the head leaves the
// queue in a final state, the next change is found and, with u.Send,
// marked sending), or a write that keeps the head (marking it sending,
// scheduling a retry); with head, lease, counters and events. It reports
// false, having written nothing, when the update is not one of those (the
// change is not its user's head, u.Owner does not hold the lease, the state
// is not u.From) or when the statement's snapshot may miss a write to the
// user's changes; UpdateVolume then does it the general way, in a
// transaction that locks the user first.
//
// The statement locks the user's row before it writes anything, as every
// writer does. Its other parts read the statement's snapshot, taken before
// the lock: a transaction that wrote the user's changes and committed in
// between would be missed. Every such writer writes (not only locks) the
// user's row, so the row version the lock returns is then newer than the
// one the snapshot sees, which the statement checks (xmin) before it
// writes.
func (s *Store) deliverInOne(ctx context.Context, q querier, u mlmsoft.VolumeUpdate, set []any) (mlmsoft.VolumeUpdated, bool, error) {
	var none mlmsoft.VolumeUpdated
	final := u.State.Final()
	cols := strings.Join(volumeCols, ", ")
	ccols := "c." + strings.Join(volumeCols, ", c.")
	finals := strs(mlmsoft.FinalVolumeStates)
	from := string(u.From[0])
	until, err := s.timeArg(u.LeaseUntil)
	if err != nil {
		return none, false, err
	}
	var (
		b    strings.Builder
		args []any
	)
	add := func(text string, a ...any) {
		b.WriteString(text)
		args = append(args, a...)
	}
	add(`WITH lk AS (
	SELECT user_id, lease_owner, head_id, head_seq, xmin::text AS v FROM {p}volume_users
	WHERE user_id = (SELECT user_id FROM {p}volume_changes WHERE id = ?) FOR NO KEY UPDATE
), ok AS (
	SELECT lk.user_id, lk.head_seq FROM lk
	WHERE lk.lease_owner = ? AND lk.head_id = ?
		AND lk.v = (SELECT f.xmin::text FROM {p}volume_users f WHERE f.user_id = lk.user_id)
), upd AS (
	UPDATE {p}volume_changes c SET `+volumeUpdateSet+` FROM ok WHERE c.id = ? AND c.state = ? RETURNING `+ccols+`
)`, slices.Concat([]any{u.ID, u.Owner, u.ID}, set, []any{u.ID, from})...)
	if final {
		add(`, nxt AS (
	SELECT `+ccols+` FROM {p}volume_changes c, ok
	WHERE c.user_id = ok.user_id AND c.seq > ok.head_seq AND c.`+notFinal+` ORDER BY c.seq LIMIT 1
)`, finals...)
	}
	sent := "false"
	if final && u.Send != nil {
		send, err := s.args(string(mlmsoft.VolumeSending), u.Send.At, u.Send.At, u.Send.AccountID, string(mlmsoft.VolumePending), u.Send.At)
		if err != nil {
			return none, false, err
		}
		add(`, snd AS (
	UPDATE {p}volume_changes c SET state = ?, attempts = c.attempts + 1, sent_at = ?, updated_at = ?, account_id = ?
	FROM nxt, upd WHERE c.id = nxt.id AND nxt.state = ? AND nxt.document_id = 0 AND nxt.next_attempt_at <= ? RETURNING c.id
)`, send...)
		sent = "EXISTS (SELECT 1 FROM snd)"
	}
	keep := fmt.Sprintf("(%s OR CAST(? AS BOOLEAN))", sent)
	lease := `lease_owner = CASE WHEN ` + keep + ` THEN ? ELSE '' END,
		lease_until = CASE WHEN ` + keep + ` THEN CAST(? AS TIMESTAMPTZ) END`
	if final {
		add(`, usr AS (
	UPDATE {p}volume_users u SET head_id = nxt.id, head_seq = nxt.seq, head_due = nxt.next_attempt_at,
		head_created_at = nxt.created_at, `+lease+`
	FROM upd LEFT JOIN nxt ON true WHERE u.user_id = upd.user_id
)`, u.KeepLease, u.Owner, u.KeepLease, until)
	} else {
		// The head stays; its due time may move.
		add(`, usr AS (
	UPDATE {p}volume_users u SET head_due = upd.next_attempt_at, `+lease+`
	FROM upd WHERE u.user_id = upd.user_id
)`, u.KeepLease, u.Owner, u.KeepLease, until)
	}
	// The counters: any shard will do (they are summed); the change's id
	// spreads concurrent workers over them.
	shard := fmt.Sprintf("upd.id %% %d", countShards)
	// The head was not final: from is not.
	move := func(from string, n int) string {
		return fmt.Sprintf("SELECT CAST(? AS TEXT) AS kind, CAST(? AS TEXT) AS state, %s AS shard, %d AS n FROM %s", shard, n, from)
	}
	moves := []string{move("upd", -1), move("upd", 1)}
	margs := []any{countVolumes, from, countVolumes, string(u.State)}
	if final && u.Send != nil {
		moves = append(moves, move("upd, snd", -1), move("upd, snd", 1))
		margs = append(margs, countVolumes, string(mlmsoft.VolumePending), countVolumes, string(mlmsoft.VolumeSending))
	}
	if unstamped(u.State, u.UpdatedAt) {
		moves = append(moves, move("upd", 1))
		margs = append(margs, countUnstamped, "")
	}
	add(`, cnt AS (
	INSERT INTO {p}counts AS k (kind, state, shard, n)
	SELECT d.kind, d.state, d.shard, SUM(d.n) FROM (
		`+strings.Join(moves, "\n\t\tUNION ALL ")+`
	) d GROUP BY d.kind, d.state, d.shard HAVING SUM(d.n) <> 0 ORDER BY d.kind, d.state, d.shard
	ON CONFLICT (kind, state, shard) DO UPDATE SET n = k.n + EXCLUDED.n
)`, margs...)
	for chunk := range slices.Chunk(u.Events, eventChunk) {
		var rows []string
		for _, e := range chunk {
			if e.ID == "" {
				return none, false, fmt.Errorf("%w: event with an empty ID", mlmsoft.ErrInvalidInput)
			}
			vals, err := s.args(e.ID, string(e.Kind), e.UserID, nullBytes(e.Payload), e.Attempts, e.NextAttemptAt, e.LastError, e.CreatedAt)
			if err != nil {
				return none, false, fmt.Errorf("event %q: %w", e.ID, err)
			}
			rows = append(rows, "(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BYTEA), CAST(? AS INTEGER), "+
				"CAST(? AS TIMESTAMPTZ), CAST(? AS TEXT), CAST(? AS TIMESTAMPTZ))")
			args = append(args, vals...)
		}
		fmt.Fprintf(&b, `, ev%d AS (
	INSERT INTO {p}events (id, kind, user_id, payload, attempts, next_attempt_at, last_error, created_at, lease_owner, lease_until)
	SELECT v.*, '', NULL FROM (VALUES %s) v WHERE EXISTS (SELECT 1 FROM upd)`+s.d.ignoreDuplicate()+`
)`, len(args), strings.Join(rows, ", "))
	}
	add("\nSELECT 0, " + cols + " FROM upd")
	if final {
		add(" UNION ALL SELECT CASE WHEN " + sent + " THEN 2 ELSE 1 END, " + cols + " FROM nxt WHERE EXISTS (SELECT 1 FROM upd)")
	}

	rows, err := q.QueryContext(ctx, s.sql(b.String()), args...)
	if err != nil {
		return none, false, err
	}
	defer rows.Close()
	var (
		out     mlmsoft.VolumeUpdated
		written bool
	)
	for rows.Next() {
		var kind int
		v, err := s.scanVolume(prefixed{rows, &kind})
		if err != nil {
			return none, false, err
		}
		switch kind {
		case 0:
			out.Change, written = v, true
		case 2:
			out.Next = markSent(v, u.Send)
		}
	}
	if err := rows.Err(); err != nil {
		return none, false, err
	}
	return out, written, nil
}
