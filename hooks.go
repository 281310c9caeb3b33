package mlmsoft

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// Hooks are the host's callbacks. Each is optional. They run on the plugin's
// background goroutines, after the new state is stored: keep them quick (hand
// slow work to a queue of your own). A panic in a hook is recovered and
// logged.
type Hooks struct {
	// OnLinked is called once a user's link completes, with the stored
	// link (AccountID and MLMUserID set). It may be called again for the
	// same user after a relink through check-auth.
	OnLinked func(ctx context.Context, l Link)
	// OnLinkFailed is called when the flow gives up on a link;
	// l.LastError says why.
	OnLinkFailed func(ctx context.Context, l Link)
	// OnVolume is called when a volume change reaches a state a person may
	// care about: delivered, parked, uncertain, rejected or skipped.
	OnVolume func(ctx context.Context, e VolumeEvent)
}

// VolumeEvent tells the OnVolume hook what happened to a change.
type VolumeEvent struct {
	Kind   VolumeState  // the state reached
	Change VolumeChange // the change as stored
}

// NewUser is a host user who has just signed up.
type NewUser struct {
	// UserID is the host's id for the user. Required, at most 191 bytes.
	UserID string
	// Email becomes the MLM Soft login. Required.
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
	if len(u.Password) > 1024 {
		return bad("Password", "is longer than 1024 bytes")
	}
	for name, v := range map[string]string{"FirstName": u.FirstName, "LastName": u.LastName, "Phone": u.Phone, "CountryID": u.CountryID} {
		if !utf8.ValidString(v) || len(v) > 255 {
			return bad(name, "is not valid UTF-8 of at most 255 bytes")
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

// normalizeEmail accepts a bare address (no display name) and lower-cases
// it.
func normalizeEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("is empty")
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		return "", fmt.Errorf("%q is not a valid email address", s)
	}
	if len(s) > 254 {
		return "", errors.New("is longer than 254 bytes")
	}
	return strings.ToLower(s), nil
}

// OnUserRegistered records a new host user for the create-and-link flow and
// returns without waiting for MLM Soft: the link is stored as pending and the
// background worker creates the MLM Soft user (after the sponsor's own link,
// if that is still pending). Errors wrap ErrInvalidInput (bad or missing
// field, unknown sponsor, no sponsor and no default), ErrDuplicate (the user,
// or another user with that email, was registered before) or the store's
// error.
func (p *Plugin) OnUserRegistered(ctx context.Context, u NewUser) error {
	u, err := u.validate()
	if err != nil {
		return err
	}
	if u.SponsorUserID != "" {
		if _, err := p.store.GetLink(ctx, u.SponsorUserID); errors.Is(err, ErrNotFound) {
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
	_, err = p.store.CreateLink(ctx, Link{
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
	p.wakeLinks()
	return nil
}

// Link returns the host user's link, or an error wrapping ErrNotFound.
func (p *Plugin) Link(ctx context.Context, userID string) (Link, error) {
	l, err := p.store.GetLink(ctx, userID)
	if err != nil {
		return Link{}, fmt.Errorf("mlmsoft: link of %q: %w", userID, err)
	}
	l.SealedPassword = nil
	return l, nil
}

// runHook calls a host hook, recovering a panic.
func (p *Plugin) runHook(name string, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("host hook panicked", "hook", name, "panic", fmt.Sprint(r))
		}
	}()
	fn()
}
