package mlmsoft

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// NewUser is a host user who has just signed up.
type NewUser struct {
	// UserID is the host's id for the user. Required, at most 191 bytes.
	UserID string
	// Email becomes the MLM Soft login. Required. See NormalizeEmail.
	Email string
	// Password becomes the MLM Soft password. Optional: without one, a
	// random password is sent and the user sets their own through MLM
	// Soft's password reset. It is kept only sealed with
	// Config.PasswordKey, and erased once user/create is accepted.
	Password string

	FirstName, LastName, Phone, CountryID string

	// SponsorUserID is the host user id of the sponsor, who must have been
	// registered (or linked) before. The plugin sends the sponsor's MLM
	// Soft account id, waiting while the sponsor's own link is pending.
	SponsorUserID string
	// SponsorAccountID is the sponsor's MLM Soft account id, when the host
	// knows it directly (a referral link carrying it, say). At most one of
	// SponsorUserID and SponsorAccountID may be set; with neither,
	// Config.DefaultSponsorAccountID is used.
	SponsorAccountID int64
}

const maxUserIDLen = 191 // fits a MySQL utf8mb4 index

// validate checks u and returns it normalised.
func (u NewUser) validate() (NewUser, error) {
	bad := func(field, why string) (NewUser, error) {
		return NewUser{}, fmt.Errorf("%w: NewUser.%s %s", ErrInvalidInput, field, why)
	}
	if err := checkUserID(u.UserID); err != nil {
		return NewUser{}, err
	}
	email, err := normalizeEmail(u.Email)
	if err != nil {
		return NewUser{}, fmt.Errorf("%w: NewUser.Email %v", ErrInvalidInput, err)
	}
	u.Email = email
	if u.SponsorUserID != "" && u.SponsorAccountID != 0 {
		return bad("SponsorUserID", "and SponsorAccountID are both set; give one")
	}
	if u.SponsorAccountID < 0 {
		return bad("SponsorAccountID", "must not be negative")
	}
	if u.SponsorUserID == u.UserID {
		return bad("SponsorUserID", "is the user itself")
	}
	if len(u.Password) > maxPasswordLen {
		return bad("Password", fmt.Sprintf("is longer than %d bytes", maxPasswordLen))
	}
	for _, f := range []struct{ name, v string }{{"FirstName", u.FirstName}, {"LastName", u.LastName}, {"Phone", u.Phone}, {"CountryID", u.CountryID}} {
		if !utf8.ValidString(f.v) || len(f.v) > 255 {
			return bad(f.name, "is not valid UTF-8 of at most 255 bytes")
		}
	}
	return u, nil
}

func checkUserID(id string) error {
	if strings.TrimSpace(id) == "" {
		return fmt.Errorf("%w: user id is empty", ErrInvalidInput)
	}
	if len(id) > maxUserIDLen || !utf8.ValidString(id) {
		return fmt.Errorf("%w: user id is not valid UTF-8 of at most %d bytes", ErrInvalidInput, maxUserIDLen)
	}
	return nil
}

// NormalizeEmail returns the MLM Soft login the plugin uses for an e-mail
// address, the same at sign-up, in check-auth and in webhooks: surrounding
// spaces trimmed and the ASCII letters A-Z lower-cased. Every other
// character is kept exactly as given, so that distinct addresses never fold
// into one (strings.ToLower would turn U+212A KELVIN SIGN into "k", making
// "\u212Aarl@example.com" the same login as "karl@example.com"). Logins are
// compared byte for byte afterwards. It accepts a bare address of at most
// 254 bytes with a dotted domain (no display name, no comments) and returns
// an error wrapping ErrInvalidInput otherwise.
func NormalizeEmail(s string) (string, error) {
	n, err := normalizeEmail(s)
	if err != nil {
		return "", fmt.Errorf("%w: the email %v", ErrInvalidInput, err)
	}
	return n, nil
}

// normalizeEmail is NormalizeEmail with a bare reason ("is empty") for an
// error, to be put after the name of the field it came from.
func normalizeEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("is empty")
	}
	if len(s) > 254 {
		return "", errors.New("is longer than 254 bytes")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		return "", fmt.Errorf("%q is not a valid email address", s)
	}
	return lowerASCII(s), nil
}

// lowerASCII lower-cases the ASCII letters of s and nothing else.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// OnUserRegistered records a new host user for the create-and-link flow and
// returns without waiting for MLM Soft: the link is stored as pending and the
// background worker creates the MLM Soft user (after the sponsor's own link,
// if that is still pending). Errors wrap ErrInvalidInput (bad or missing
// field, unknown sponsor, no sponsor and no default), ErrDuplicate (the user,
// or another user with that email, was registered before) or the store's
// error.
func (p *Plugin) OnUserRegistered(ctx context.Context, u NewUser) error {
	return p.register(ctx, u, p.store.GetLink, func(ctx context.Context, l Link) (Link, error) {
		return p.store.CreateLink(ctx, l)
	}, p.wakeLinks)
}

// OnUserRegisteredTx is OnUserRegistered inside the host's own database
// transaction, which must be on the store's database: the pending link is
// written in tx, so that it commits or rolls back with the host's new user.
// Nothing is sent before tx commits; after a rollback nothing is left. The
// link worker takes it up as soon as the commit is seen (at once with a
// store that notifies, such as sqlstore on PostgreSQL; otherwise within
// milliseconds in this process, or within Config.IdleRecheck in others).
// The store must implement TxStore (sqlstore does), else the error wraps
// ErrInvalidConfig. On error tx stays usable.
func (p *Plugin) OnUserRegisteredTx(ctx context.Context, tx *sql.Tx, u NewUser) error {
	if p.txs == nil {
		return fmt.Errorf("%w: the store (%T) cannot write in a host transaction (it does not implement mlmsoft.TxStore)", ErrInvalidConfig, p.store)
	}
	if tx == nil {
		return fmt.Errorf("%w: tx is nil", ErrInvalidInput)
	}
	get := func(ctx context.Context, id string) (Link, error) { return p.txs.GetLinkTx(ctx, tx, id) }
	create := func(ctx context.Context, l Link) (Link, error) { return p.txs.CreateLinkTx(ctx, tx, l) }
	return p.register(ctx, u, get, create, func() {
		p.afterCommit(func(ctx context.Context) bool {
			_, err := p.store.GetLink(ctx, u.UserID)
			return err == nil
		})
	})
}

func (p *Plugin) register(ctx context.Context, u NewUser, getLink func(context.Context, string) (Link, error),
	create func(context.Context, Link) (Link, error), wake func()) error {
	u, err := u.validate()
	if err != nil {
		return err
	}
	if u.SponsorUserID != "" {
		if _, err := getLink(ctx, u.SponsorUserID); errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: NewUser.SponsorUserID %q is unknown (register the sponsor first)", ErrInvalidInput, u.SponsorUserID)
		} else if err != nil {
			return fmt.Errorf("mlmsoft: register %q: read sponsor: %w", u.UserID, err)
		}
	} else if u.SponsorAccountID == 0 && p.cfg.DefaultSponsorAccountID == 0 {
		return fmt.Errorf("%w: NewUser has no sponsor and Config.DefaultSponsorAccountID is 0", ErrInvalidInput)
	}
	var sealed []byte
	if u.Password != "" {
		if len(p.cfg.PasswordKey) == 0 {
			return fmt.Errorf("%w: PasswordKey is required to keep sign-up passwords", ErrInvalidConfig)
		}
		if sealed, err = sealPassword(p.cfg.PasswordKey, u.UserID, u.Password); err != nil {
			return fmt.Errorf("mlmsoft: register %q: seal password: %w", u.UserID, err)
		}
	}
	now := p.clock.Now()
	_, err = create(ctx, Link{
		UserID: u.UserID, Email: u.Email,
		FirstName: u.FirstName, LastName: u.LastName, Phone: u.Phone, CountryID: u.CountryID,
		SponsorUserID: u.SponsorUserID, SponsorAccountID: u.SponsorAccountID,
		State: LinkPending, SealedPassword: sealed,
		NextAttemptAt: now, CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		return fmt.Errorf("mlmsoft: register %q: %w", u.UserID, err)
	}
	p.log.Info("user registered", "user", u.UserID)
	wake()
	return nil
}
