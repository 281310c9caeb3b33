package admin

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"unicode/utf8"
)

// The console's cookies and the CSRF token's field and header.
const (
	csrfCookie  = "mlmsoft_console_csrf"
	flashCookie = "mlmsoft_console_flash"
	csrfField   = "csrf_token"
	csrfHeader  = "X-CSRF-Token"
	tokenLen    = 43 // 32 random bytes, base64url without padding
)

// newToken returns a fresh random CSRF token.
func newToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics rather)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validToken reports whether s has the shape of a token newToken makes.
func validToken(s string) bool {
	if len(s) != tokenLen {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// secure reports whether the browser reached the console over HTTPS, so
// that cookies are marked Secure.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// csrfToken returns the token of the request's cookie, or sets a new one in
// a cookie, and sends it in the X-CSRF-Token header (for scripts).
func csrfToken(w http.ResponseWriter, r *http.Request) string {
	if ck, err := r.Cookie(csrfCookie); err == nil && validToken(ck.Value) {
		w.Header().Set(csrfHeader, ck.Value)
		return ck.Value
	}
	tok := newToken()
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: tok, Path: mountPath(r),
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
	})
	w.Header().Set(csrfHeader, tok)
	return tok
}

// checkCSRF verifies a state-changing request: not a browser's cross-origin
// request (net/http's CrossOriginProtection), and carrying, in the form
// field or the header, the token of its cookie. r's form must be parsed.
// It returns a reason for the person when the request is refused.
func (c *console) checkCSRF(r *http.Request, sent string) (string, bool) {
	if err := c.cop.Check(r); err != nil {
		return "This request came from another site and was refused (cross-origin protection).", false
	}
	ck, err := r.Cookie(csrfCookie)
	if err != nil || !validToken(ck.Value) {
		return "The console's security cookie is missing: reload the page and try again (cookies must be enabled).", false
	}
	if sent == "" {
		sent = r.Header.Get(csrfHeader)
	}
	if subtle.ConstantTimeCompare([]byte(sent), []byte(ck.Value)) != 1 {
		return "The security token does not match (the page is stale or the request forged): reload the page and try again.", false
	}
	return "", true
}

// flash is a short message shown once, on the page an action returns to.
type flash struct {
	Kind    string // "ok" or "error"
	Message string
}

// setFlash stores f in a short-lived cookie for the next page.
func setFlash(w http.ResponseWriter, r *http.Request, f flash) {
	msg := f.Message
	if len(msg) > 600 {
		msg = msg[:600]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
		msg += "…"
	}
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: base64.RawURLEncoding.EncodeToString([]byte(f.Kind + ":" + msg)),
		Path: mountPath(r), MaxAge: 60, HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
	})
}

// takeFlash returns the flash message of r's cookie, if any, and clears
// the cookie. Only a cookie the console set is read; its text is escaped
// when shown like everything else.
func takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	ck, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	http.SetCookie(w, &http.Cookie{
		Name: flashCookie, Value: "", Path: mountPath(r), MaxAge: -1,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
	})
	b, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || !utf8.Valid(b) {
		return nil
	}
	kind, msg, ok := strings.Cut(string(b), ":")
	if !ok || (kind != "ok" && kind != "error") || msg == "" {
		return nil
	}
	return &flash{Kind: kind, Message: msg}
}
