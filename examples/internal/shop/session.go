package shop

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// SessionCookie is the name of the shop's session cookie. Each shop sets
// it HttpOnly, SameSite=Lax, on path /.
const SessionCookie = "shop_session"

// SessionTTL is how long a session lasts after it was made.
const SessionTTL = 7 * 24 * time.Hour

// Session is a visitor's session, kept server-side in the shop_sessions
// table. Visitors who have not signed in get one too, when they are shown a
// form, so that every form carries a CSRF token.
type Session struct {
	// Token is the random session id, the cookie's value. Only its SHA-256
	// is stored, so that a leaked table opens no session.
	Token string
	// UserID is the signed-in user; "" for a visitor.
	UserID string
	// CSRF is the token every form of the session carries.
	CSRF string
	// FlashKind ("ok" or "error") and Flash are a message for the next page
	// shown (after a redirect).
	FlashKind, Flash string
	ExpiresAt        time.Time
}

// CheckCSRF reports whether token is the session's CSRF token, in constant
// time.
func (s Session) CheckCSRF(token string) bool {
	return s.CSRF != "" && subtle.ConstantTimeCompare([]byte(s.CSRF), []byte(token)) == 1
}

// Sessions is the session store.
type Sessions struct {
	db *DB
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// New starts a session for userID ("" for a visitor) with fresh random
// session and CSRF tokens.
func (s *Sessions) New(ctx context.Context, userID string) (Session, error) {
	now := time.Now()
	sess := Session{Token: randomToken(), UserID: userID, CSRF: randomToken(), ExpiresAt: now.Add(SessionTTL)}
	_, err := s.db.db.ExecContext(ctx, s.db.bind(`INSERT INTO shop_sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`),
		hashToken(sess.Token), sess.UserID, sess.CSRF, micros(now), micros(sess.ExpiresAt))
	if err != nil {
		return Session{}, fmt.Errorf("shop: new session: %w", err)
	}
	return sess, nil
}

// Get returns the session of token, and false when there is none (or it
// expired).
func (s *Sessions) Get(ctx context.Context, token string) (Session, bool, error) {
	if token == "" || len(token) > 100 {
		return Session{}, false, nil
	}
	sess := Session{Token: token}
	var expires int64
	err := s.db.db.QueryRowContext(ctx, s.db.bind(`SELECT user_id, csrf, flash_kind, flash, expires_at FROM shop_sessions WHERE id_hash = ?`), hashToken(token)).
		Scan(&sess.UserID, &sess.CSRF, &sess.FlashKind, &sess.Flash, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, false, nil
	}
	if err != nil {
		return Session{}, false, fmt.Errorf("shop: read session: %w", err)
	}
	sess.ExpiresAt = fromMicros(expires)
	if time.Now().After(sess.ExpiresAt) {
		return Session{}, false, nil
	}
	return sess, true, nil
}

// Delete ends the session of token.
func (s *Sessions) Delete(ctx context.Context, token string) error {
	_, err := s.db.db.ExecContext(ctx, s.db.bind(`DELETE FROM shop_sessions WHERE id_hash = ?`), hashToken(token))
	if err != nil {
		return fmt.Errorf("shop: end session: %w", err)
	}
	return nil
}

// SetFlash keeps a message (kind "ok" or "error") for the next page the
// session is shown.
func (s *Sessions) SetFlash(ctx context.Context, token, kind, msg string) error {
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	_, err := s.db.db.ExecContext(ctx, s.db.bind(`UPDATE shop_sessions SET flash_kind = ?, flash = ? WHERE id_hash = ?`), kind, msg, hashToken(token))
	if err != nil {
		return fmt.Errorf("shop: set flash: %w", err)
	}
	return nil
}

// TakeFlash returns the session's message and forgets it, so that it is
// shown once.
func (s *Sessions) TakeFlash(ctx context.Context, sess *Session) (kind, msg string, err error) {
	if sess.Flash == "" {
		return "", "", nil
	}
	kind, msg = sess.FlashKind, sess.Flash
	sess.FlashKind, sess.Flash = "", ""
	_, err = s.db.db.ExecContext(ctx, s.db.bind(`UPDATE shop_sessions SET flash_kind = '', flash = '' WHERE id_hash = ?`), hashToken(sess.Token))
	if err != nil {
		return "", "", fmt.Errorf("shop: clear flash: %w", err)
	}
	return kind, msg, nil
}

// Purge deletes expired sessions.
func (s *Sessions) Purge(ctx context.Context) error {
	_, err := s.db.db.ExecContext(ctx, s.db.bind(`DELETE FROM shop_sessions WHERE expires_at < ?`), micros(time.Now()))
	if err != nil {
		return fmt.Errorf("shop: purge sessions: %w", err)
	}
	return nil
}
