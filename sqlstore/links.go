package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mlmsoft-go/mlmsoft"
)

// linkCols are the columns of a link, in the order scanLink reads them: the
// plugin's fields (linkDataCols of them, as linkData gives them), then those
// the store keeps.
var linkCols = []string{
	"user_id", "email", "first_name", "last_name", "phone", "country_id",
	"sponsor_user_id", "sponsor_account_id", "state", "account_id",
	"mlm_user_id", "linked_via", "document_id", "sealed_password",
	"create_sent_at", "accepted_at", "attempts", "next_attempt_at",
	"last_error", "created_at", "updated_at", "linked_at",
	"create_attempts", "resolved_by", "resolved_note", "resolved_at",
	"version", "lease_owner", "lease_until",
}

const linkDataCols = 26

// linkData returns l's values for the first linkDataCols of linkCols.
func (s *Store) linkData(l mlmsoft.Link) ([]any, error) {
	return s.args(
		l.UserID, nullString(l.Email), l.FirstName, l.LastName, l.Phone, l.CountryID,
		l.SponsorUserID, l.SponsorAccountID, string(l.State), l.AccountID,
		l.MLMUserID, string(l.LinkedVia), l.DocumentID, nullBytes(l.SealedPassword),
		l.CreateSentAt, l.AcceptedAt, l.Attempts, l.NextAttemptAt,
		l.LastError, l.CreatedAt, l.UpdatedAt, l.LinkedAt,
		l.CreateAttempts, l.ResolvedBy, l.ResolvedNote, l.ResolvedAt,
	)
}

// storedLink is l as the database gives back the fields linkData writes.
func storedLink(l mlmsoft.Link) mlmsoft.Link {
	l.SealedPassword = storedBytes(l.SealedPassword)
	for _, p := range []*time.Time{&l.CreateSentAt, &l.AcceptedAt, &l.NextAttemptAt, &l.CreatedAt, &l.UpdatedAt, &l.LinkedAt, &l.ResolvedAt} {
		*p = storedTime(*p)
	}
	return l
}

func (s *Store) scanLink(sc scanner) (mlmsoft.Link, error) {
	var (
		l     mlmsoft.Link
		email sql.NullString
		state string
		via   string
	)
	err := sc.Scan(
		&l.UserID, &email, &l.FirstName, &l.LastName, &l.Phone, &l.CountryID,
		&l.SponsorUserID, &l.SponsorAccountID, &state, &l.AccountID,
		&l.MLMUserID, &via, &l.DocumentID, bytesCol{&l.SealedPassword},
		s.t(&l.CreateSentAt), s.t(&l.AcceptedAt), &l.Attempts, s.t(&l.NextAttemptAt),
		&l.LastError, s.t(&l.CreatedAt), s.t(&l.UpdatedAt), s.t(&l.LinkedAt),
		&l.CreateAttempts, &l.ResolvedBy, &l.ResolvedNote, s.t(&l.ResolvedAt),
		&l.Version, &l.Lease.Owner, s.t(&l.Lease.Until),
	)
	l.Email, l.State, l.LinkedVia = email.String, mlmsoft.LinkState(state), mlmsoft.LinkedVia(via)
	return l, err
}

// getLink reads one link or returns sql.ErrNoRows.
func (s *Store) getLink(ctx context.Context, q querier, userID string) (mlmsoft.Link, error) {
	return s.scanLink(q.QueryRowContext(ctx, s.q.getLink, s.key(userID)...))
}

// CreateLink stores a new link with Version 1, no lease, and the events,
// atomically, and returns the link as stored. It returns an error wrapping
// mlmsoft.ErrDuplicate, and stores nothing, when a link with the same
// UserID, or the same non-empty Email, exists, and one wrapping
// mlmsoft.ErrInvalidInput when UserID is empty. An empty Email is stored as
// NULL, so any number of links may have none.
func (s *Store) CreateLink(ctx context.Context, l mlmsoft.Link, events ...mlmsoft.Event) (mlmsoft.Link, error) {
	return s.createLink(ctx, nil, l, events)
}

// createLink is CreateLink, in the host's transaction tx when it is not nil.
func (s *Store) createLink(ctx context.Context, tx *sql.Tx, l mlmsoft.Link, events []mlmsoft.Event) (mlmsoft.Link, error) {
	if l.UserID == "" {
		return mlmsoft.Link{}, fmt.Errorf("%w: sqlstore: create link: empty UserID", mlmsoft.ErrInvalidInput)
	}
	w, err := s.createLinkWrites(l, events)
	if err != nil {
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: create link %q: %w", l.UserID, err)
	}
	write := func(q querier) error { return s.run(ctx, q, w) }
	switch {
	case tx != nil:
		err = s.inSavepoint(ctx, tx, nil, write)
	case s.d.writableCTE():
		err = s.inStatement(ctx, write) // one statement
	default:
		err = s.inTx(ctx, write)
	}
	switch {
	case err == nil:
		out := storedLink(l)
		out.Version, out.Lease = 1, mlmsoft.Lease{}
		return out, nil
	case s.d.uniqueViolation(err):
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: create link %q: %w", l.UserID, mlmsoft.ErrDuplicate)
	default:
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: create link %q: %w", l.UserID, err)
	}
}

func (s *Store) createLinkWrites(l mlmsoft.Link, events []mlmsoft.Event) (*writes, error) {
	vals, err := s.linkData(l)
	if err != nil {
		return nil, err
	}
	w := &writes{notify: !l.NextAttemptAt.IsZero()}
	w.add("INSERT INTO {p}links ("+strings.Join(linkCols, ", ")+") VALUES ("+marks(linkDataCols)+", 1, '', NULL)", vals...)
	w.counts.add(countLinks, string(l.State), l.UserID, 1)
	if err := s.addEvents(w, events); err != nil {
		return nil, err
	}
	return w, nil
}

// GetLink returns the link of a host user, or an error wrapping
// mlmsoft.ErrNotFound.
func (s *Store) GetLink(ctx context.Context, userID string) (mlmsoft.Link, error) {
	return s.getLinkFrom(ctx, s.db, userID)
}

func (s *Store) getLinkFrom(ctx context.Context, q querier, userID string) (mlmsoft.Link, error) {
	l, err := s.getLink(ctx, q, userID)
	switch {
	case err == nil:
		return l, nil
	case errNoRows(err):
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: get link %q: %w", userID, mlmsoft.ErrNotFound)
	default:
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: get link %q: %w", userID, err)
	}
}

// GetLinkByEmail returns the link whose Email equals email (compared byte
// by byte), or an error wrapping mlmsoft.ErrNotFound. An empty email finds
// nothing: links without an email are not looked up by it.
func (s *Store) GetLinkByEmail(ctx context.Context, email string) (mlmsoft.Link, error) {
	if email == "" {
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: get link by email: empty email: %w", mlmsoft.ErrNotFound)
	}
	l, err := s.scanLink(s.db.QueryRowContext(ctx, s.q.getLinkByEmail, s.key(email)...))
	switch {
	case err == nil:
		return l, nil
	case errNoRows(err):
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: get link by email: %w", mlmsoft.ErrNotFound)
	default:
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: get link by email: %w", err)
	}
}

// UpdateLink applies u atomically and returns the link as stored: every
// field of u.Link but UserID, Version and Lease is written, Version grows
// by one, and with u.Owner the lease ends (or, with KeepLease, now ends at
// LeaseUntil). Errors wrap mlmsoft.ErrNotFound (no such link),
// mlmsoft.ErrLeaseLost (u.Owner does not hold the lease), mlmsoft.ErrConflict
// (the stored Version differs from u.Link.Version) or mlmsoft.ErrDuplicate
// (the new Email belongs to another link), checked in that order; nothing is
// written on error.
//
// With u.WakeVolumes, the user's open volume changes due later than
// u.Link.UpdatedAt become due then, in the same transaction; the user's
// queue is locked first, as every writer of a user's changes does.
func (s *Store) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	l := u.Link
	vals, err := s.linkData(l)
	if err != nil {
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: update link %q: %w", l.UserID, err)
	}
	at, err := s.timeArg(l.UpdatedAt)
	if err != nil {
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: update link %q: %w", l.UserID, err)
	}
	var out mlmsoft.Link
	err = s.inTx(ctx, func(q querier) error {
		var (
			version  int64
			oldState string
			lease    mlmsoft.Lease
		)
		err := q.QueryRowContext(ctx, s.q.lockLink, s.key(l.UserID)...).Scan(&version, &oldState, &lease.Owner, s.t(&lease.Until))
		switch {
		case errNoRows(err):
			return mlmsoft.ErrNotFound
		case err != nil:
			return err
		case u.Owner != "" && lease.Owner != u.Owner:
			return fmt.Errorf("%w (held by another claim)", mlmsoft.ErrLeaseLost)
		case version != l.Version:
			return fmt.Errorf("%w (stored version %d, given %d)", mlmsoft.ErrConflict, version, l.Version)
		}

		set := make([]string, 0, linkDataCols+2)
		for _, c := range linkCols[1:linkDataCols] {
			set = append(set, c+" = ?")
		}
		set = append(set, "version = ?")
		args := slices.Concat(vals[1:], []any{version + 1})
		if u.Owner != "" {
			lease = mlmsoft.Lease{}
			if u.KeepLease {
				lease = mlmsoft.Lease{Owner: u.Owner, Until: storedTime(u.LeaseUntil)}
			}
			until, err := s.timeArg(lease.Until)
			if err != nil {
				return err
			}
			set = append(set, "lease_owner = ?", "lease_until = ?")
			args = append(args, lease.Owner, until)
		}
		w := &writes{}
		w.add("UPDATE {p}links SET "+strings.Join(set, ", ")+" WHERE "+s.d.keyEq("user_id"), append(args, s.key(l.UserID)...)...)
		w.counts.move(countLinks, oldState, string(l.State), l.UserID)
		// An operator or a webhook making the link due: another replica's
		// worker may take it.
		w.notify = u.Owner == "" && !l.NextAttemptAt.IsZero()
		if u.WakeVolumes {
			if err := s.wakeVolumes(ctx, q, w, l.UserID, at); err != nil {
				return fmt.Errorf("wake volumes: %w", err)
			}
		}
		if err := s.addEvents(w, u.Events); err != nil {
			return err
		}
		if err := s.run(ctx, q, w); err != nil {
			return err
		}
		out = storedLink(l)
		out.Version, out.Lease = version+1, lease
		return nil
	})
	switch {
	case err == nil:
		return out, nil
	case s.d.uniqueViolation(err):
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: update link %q: email taken: %w", l.UserID, mlmsoft.ErrDuplicate)
	default:
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: update link %q: %w", l.UserID, err)
	}
}

// wakeVolumes adds to w the writes that make the user's open changes due
// later than at due at at (and the head with them), after locking the
// user's queue.
func (s *Store) wakeVolumes(ctx context.Context, q querier, w *writes, userID string, at any) error {
	var headSeq sql.NullInt64
	err := q.QueryRowContext(ctx, s.q.lockUser, userID).Scan(&headSeq)
	if errNoRows(err) || err == nil && !headSeq.Valid {
		return nil // no change, or none open
	}
	if err != nil {
		return err
	}
	finals := strs(mlmsoft.FinalVolumeStates)
	if at == nil {
		// Due at the zero time: never.
		w.add("UPDATE {p}volume_changes SET next_attempt_at = NULL WHERE user_id = ? AND seq >= ? AND next_attempt_at IS NOT NULL AND "+notFinal,
			slices.Concat([]any{userID, headSeq.Int64}, finals)...)
		w.add("UPDATE {p}volume_users SET head_due = NULL WHERE user_id = ?", userID)
		return nil
	}
	w.add("UPDATE {p}volume_changes SET next_attempt_at = ? WHERE user_id = ? AND seq >= ? AND next_attempt_at > ? AND "+notFinal,
		slices.Concat([]any{at, userID, headSeq.Int64, at}, finals)...)
	// Written even when the head keeps its time: every writer of a user's
	// changes writes the user's row (see deliverInOne).
	w.add("UPDATE {p}volume_users SET head_due = CASE WHEN head_due > ? THEN ? ELSE head_due END WHERE user_id = ?", at, at, userID)
	w.notify = true
	return nil
}

// ClaimLinks leases to c.Owner, until c.Now + c.Lease, up to c.Limit links
// that are due (NextAttemptAt not zero and not after c.Now) and whose lease
// is free or lapsed at c.Now, and returns them as stored, earliest
// NextAttemptAt first, then by UserID. It reads the due links through an
// index on next_attempt_at, locking them with FOR UPDATE SKIP LOCKED
// (SQLite: under the write lock), so concurrent claims from any process
// neither wait for each other nor lease a link twice; it may return fewer
// than c.Limit links while other claims run. It returns an error wrapping
// mlmsoft.ErrInvalidInput when c.Owner is empty or c.Limit is not positive.
func (s *Store) ClaimLinks(ctx context.Context, c mlmsoft.LinkClaim) ([]mlmsoft.Link, error) {
	if c.Owner == "" || c.Limit <= 0 {
		return nil, fmt.Errorf("%w: sqlstore: claim links: Owner must be set and Limit positive", mlmsoft.ErrInvalidInput)
	}
	until := storedTime(c.Now.Add(c.Lease))
	args, err := s.args(c.Owner, until, c.Now, c.Now, c.Limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim links: %w", err)
	}
	var out []mlmsoft.Link
	if s.d.returning() {
		err = s.inStatement(ctx, func(q querier) error {
			out, err = collect(ctx, q, s.scanLink, s.q.claimLinks, args...)
			return err
		})
	} else {
		err = s.inTx(ctx, func(q querier) error {
			out, err = collect(ctx, q, s.scanLink, s.q.pickLinks, args[2:]...)
			if err != nil || len(out) == 0 {
				return err
			}
			ids := make([]any, len(out))
			for i, l := range out {
				ids[i] = l.UserID
				out[i].Lease = mlmsoft.Lease{Owner: c.Owner, Until: until}
			}
			_, err := q.ExecContext(ctx, s.sql("UPDATE {p}links SET lease_owner = ?, lease_until = ? WHERE user_id IN ("+marks(len(ids))+")"),
				append(args[:2:2], ids...)...)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim links: %w", err)
	}
	slices.SortFunc(out, func(a, b mlmsoft.Link) int {
		return cmp.Or(a.NextAttemptAt.Compare(b.NextAttemptAt), strings.Compare(a.UserID, b.UserID))
	})
	return out, nil
}

// ListLinks returns links matching f ordered by UserID (byte order).
func (s *Store) ListLinks(ctx context.Context, f mlmsoft.LinkFilter) ([]mlmsoft.Link, error) {
	var (
		where []string
		args  []any
		limit = f.Limit
	)
	if len(f.States) > 0 {
		where = append(where, "state IN ("+marks(len(f.States))+")")
		args = append(args, strs(f.States)...)
	}
	// A prefix that is not valid UTF-8 cannot be sent as text to every
	// database: match its valid part in SQL and the rest here.
	exact := f.EmailPrefix
	if p := validPrefix(exact); p != "" {
		where = append(where, "email IS NOT NULL AND "+s.d.prefixOf("email"))
		args = append(args, p, p)
	} else if exact != "" {
		where = append(where, "email IS NOT NULL")
	}
	if p := validPrefix(exact); p != exact {
		limit = 0
	}
	if f.AfterID != "" {
		where = append(where, "user_id > ?")
		args = append(args, f.AfterID)
	}
	query := "SELECT " + strings.Join(linkCols, ", ") + " FROM {p}links"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY user_id"
	if limit > 0 {
		query += " LIMIT ?"
		args = append(args, limit)
	}
	out, err := collect(ctx, s.db, s.scanLink, s.sql(query), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list links: %w", err)
	}
	if p := validPrefix(exact); p != exact {
		out = slices.DeleteFunc(out, func(l mlmsoft.Link) bool { return !strings.HasPrefix(l.Email, exact) })
		if f.Limit > 0 && len(out) > f.Limit {
			out = out[:f.Limit]
		}
	}
	return out, nil
}

// validPrefix returns the longest prefix of s that is valid UTF-8.
func validPrefix(s string) string {
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			return s[:i]
		}
		i += n
	}
	return s
}
