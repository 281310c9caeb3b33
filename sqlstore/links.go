package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"github.com/mlmsoft-go/mlmsoft"
)

// linkCols are the columns of a link, in the order scanLink reads them and
// linkValues writes them.
var linkCols = []string{
	"user_id", "email", "first_name", "last_name", "phone", "country_id",
	"sponsor_user_id", "sponsor_account_id", "state", "account_id",
	"mlm_user_id", "linked_via", "document_id", "sealed_password",
	"create_sent_at", "accepted_at", "attempts", "next_attempt_at",
	"last_error", "lease_owner", "lease_until", "created_at", "updated_at",
	"linked_at", "version",
}

// linkValues returns l's values for linkCols (version last).
func (s *Store) linkValues(l mlmsoft.Link) ([]any, error) {
	return s.args(
		l.UserID, nullString(l.Email), l.FirstName, l.LastName, l.Phone, l.CountryID,
		l.SponsorUserID, l.SponsorAccountID, string(l.State), l.AccountID,
		l.MLMUserID, string(l.LinkedVia), l.DocumentID, nullBytes(l.SealedPassword),
		l.CreateSentAt, l.AcceptedAt, l.Attempts, l.NextAttemptAt,
		l.LastError, l.LeaseOwner, l.LeaseUntil, l.CreatedAt, l.UpdatedAt,
		l.LinkedAt, l.Version,
	)
}

type scanner interface{ Scan(dest ...any) error }

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
		&l.LastError, &l.LeaseOwner, s.t(&l.LeaseUntil), s.t(&l.CreatedAt), s.t(&l.UpdatedAt),
		s.t(&l.LinkedAt), &l.Version,
	)
	l.Email, l.State, l.LinkedVia = email.String, mlmsoft.LinkState(state), mlmsoft.LinkedVia(via)
	return l, err
}

// queryLinks runs a query selecting linkCols and collects the links.
func (s *Store) queryLinks(ctx context.Context, q querier, query string, args ...any) ([]mlmsoft.Link, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []mlmsoft.Link
	for rows.Next() {
		l, err := s.scanLink(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, rows.Err()
}

// getLink reads one link or returns sql.ErrNoRows.
func (s *Store) getLink(ctx context.Context, q querier, userID string) (mlmsoft.Link, error) {
	return s.scanLink(q.QueryRowContext(ctx, s.q.getLink, userID))
}

// CreateLink stores a new link with Version 1 and returns it as stored. It
// returns an error wrapping mlmsoft.ErrDuplicate when a link with the same
// UserID, or the same non-empty Email, exists, and one wrapping
// mlmsoft.ErrInvalidInput when UserID is empty. An empty Email is stored as
// NULL, so any number of links may have none.
func (s *Store) CreateLink(ctx context.Context, l mlmsoft.Link) (mlmsoft.Link, error) {
	if l.UserID == "" {
		return mlmsoft.Link{}, fmt.Errorf("%w: sqlstore: create link: empty UserID", mlmsoft.ErrInvalidInput)
	}
	l.Version = 1
	vals, err := s.linkValues(l)
	if err != nil {
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: create link: %w", err)
	}
	var out mlmsoft.Link
	err = s.inTx(ctx, func(q querier) error {
		if _, err := q.ExecContext(ctx, s.q.insertLink, vals...); err != nil {
			return err
		}
		var err error
		out, err = s.getLink(ctx, q, l.UserID)
		return err
	})
	switch {
	case err == nil:
		return out, nil
	case s.d.uniqueViolation(err):
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: create link %q: %w", l.UserID, mlmsoft.ErrDuplicate)
	default:
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: create link %q: %w", l.UserID, err)
	}
}

// GetLink returns the link of a host user, or an error wrapping
// mlmsoft.ErrNotFound.
func (s *Store) GetLink(ctx context.Context, userID string) (mlmsoft.Link, error) {
	l, err := s.getLink(ctx, s.db, userID)
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
	l, err := s.scanLink(s.db.QueryRowContext(ctx, s.q.getLinkByEmail, email))
	switch {
	case err == nil:
		return l, nil
	case errNoRows(err):
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: get link by email: %w", mlmsoft.ErrNotFound)
	default:
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: get link by email: %w", err)
	}
}

// UpdateLink replaces every field of the stored link with l's if the stored
// Version equals l.Version, stores Version+1 and returns the link as stored.
// It returns an error wrapping mlmsoft.ErrNotFound when there is no such
// link, mlmsoft.ErrConflict when the version differs, and
// mlmsoft.ErrDuplicate when the new Email belongs to another link.
func (s *Store) UpdateLink(ctx context.Context, l mlmsoft.Link) (mlmsoft.Link, error) {
	vals, err := s.linkValues(l)
	if err != nil {
		return mlmsoft.Link{}, fmt.Errorf("sqlstore: update link: %w", err)
	}
	// SET every column but user_id and version; WHERE user_id, version.
	args := slices.Concat(vals[1:len(vals)-1], []any{l.UserID, l.Version})
	var out mlmsoft.Link
	err = s.inTx(ctx, func(q querier) error {
		res, err := q.ExecContext(ctx, s.q.updateLink, args...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			// Tell a missing link from a changed one.
			var v int64
			switch err := q.QueryRowContext(ctx, s.q.linkVersion, l.UserID).Scan(&v); {
			case errNoRows(err):
				return mlmsoft.ErrNotFound
			case err != nil:
				return err
			default:
				return fmt.Errorf("%w (stored version %d, given %d)", mlmsoft.ErrConflict, v, l.Version)
			}
		}
		out, err = s.getLink(ctx, q, l.UserID)
		return err
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

// ClaimLinks leases up to c.Limit due links (pending or created,
// NextAttemptAt not after c.Now, lease free or expired) to c.Owner until
// c.Now + c.Lease, increments their Version and returns them as stored,
// earliest NextAttemptAt first (then by UserID). A lease is free when
// LeaseOwner is empty or LeaseUntil is zero or not after c.Now. Concurrent
// claims, from any process, never return the same link while its lease
// holds: rows are locked with FOR UPDATE SKIP LOCKED (SQLite: under the
// write lock). It returns an error wrapping mlmsoft.ErrInvalidInput when
// c.Owner is empty or c.Limit is not positive.
func (s *Store) ClaimLinks(ctx context.Context, c mlmsoft.LinkClaim) ([]mlmsoft.Link, error) {
	if c.Owner == "" || c.Limit <= 0 {
		return nil, fmt.Errorf("%w: sqlstore: claim links: Owner must be set and Limit positive", mlmsoft.ErrInvalidInput)
	}
	pick, err := s.args(string(mlmsoft.LinkPending), string(mlmsoft.LinkCreated), c.Now, c.Now, c.Limit)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim links: %w", err)
	}
	lease, err := s.args(c.Owner, c.Now.Add(c.Lease), "", c.Now)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim links: %w", err)
	}
	var out []mlmsoft.Link
	err = s.inTx(ctx, func(q querier) error {
		out = nil
		ids, err := queryStrings(ctx, q, s.q.pickLinks, pick...)
		if err != nil || len(ids) == 0 {
			return err
		}
		var claimed []string
		for _, id := range ids {
			// The lock is held; the WHERE re-checks the lease in case the
			// row changed between the pick's snapshot and its lock.
			res, err := q.ExecContext(ctx, s.q.leaseLink, slices.Concat(lease, []any{id})...)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 1 {
				claimed = append(claimed, id)
			}
		}
		if len(claimed) == 0 {
			return nil
		}
		out, err = s.queryLinks(ctx, q, s.sql(fmt.Sprintf("SELECT %s FROM {p}links WHERE user_id IN (%s)",
			strings.Join(linkCols, ", "), marks(len(claimed)))), anys(claimed)...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlstore: claim links: %w", err)
	}
	slices.SortFunc(out, func(a, b mlmsoft.Link) int {
		if c := a.NextAttemptAt.Compare(b.NextAttemptAt); c != 0 {
			return c
		}
		return strings.Compare(a.UserID, b.UserID)
	})
	return out, nil
}

// ListLinks returns links matching f ordered by UserID (byte order).
func (s *Store) ListLinks(ctx context.Context, f mlmsoft.LinkFilter) ([]mlmsoft.Link, error) {
	var (
		where []string
		args  []any
	)
	if len(f.States) > 0 {
		where = append(where, "state IN ("+marks(len(f.States))+")")
		args = append(args, anys(f.States)...)
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
	if f.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, f.Limit)
	}
	out, err := s.queryLinks(ctx, s.db, s.sql(query), args...)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: list links: %w", err)
	}
	return out, nil
}

// CountLinks returns how many links are in each state; states with none are
// absent.
func (s *Store) CountLinks(ctx context.Context) (map[mlmsoft.LinkState]int, error) {
	rows, err := s.db.QueryContext(ctx, s.q.countLinks)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: count links: %w", err)
	}
	defer rows.Close()
	out := make(map[mlmsoft.LinkState]int)
	for rows.Next() {
		var (
			state string
			n     int
		)
		if err := rows.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("sqlstore: count links: %w", err)
		}
		out[mlmsoft.LinkState(state)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: count links: %w", err)
	}
	return out, nil
}

// queryStrings runs a query selecting one string column.
func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
