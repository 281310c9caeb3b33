package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"time"

	"github.com/mlmsoft-go/mlmsoft/examples/internal/shop"
	"github.com/mlmsoft-go/mlmsoft/nethttpadapter"
)

// server is the shop's HTTP layer on net/http.
type server struct {
	app *shop.App
	cop *http.CrossOriginProtection
}

func newServer(app *shop.App) *server {
	return &server{app: app, cop: http.NewCrossOriginProtection()}
}

// routes returns the shop's handler: its pages and forms, the plugin's
// handlers, the metrics and the console, behind the session middleware.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	page := func(h http.HandlerFunc) http.Handler { return securePage(h) }
	form := func(h http.HandlerFunc) http.Handler { return securePage(s.protect(h)) }
	member := func(h http.HandlerFunc) http.HandlerFunc { return s.signedIn(h) }

	mux.Handle("GET /{$}", page(s.products))
	mux.Handle("GET /signup", page(s.signUpForm))
	mux.Handle("POST /signup", form(s.signUp))
	mux.Handle("GET /signin", page(s.signInForm))
	mux.Handle("POST /signin", form(s.signIn))
	mux.Handle("POST /signout", form(s.signOut))
	mux.Handle("POST /buy", form(member(s.buy)))
	mux.Handle("GET /account", page(member(s.account)))
	mux.Handle("POST /account/link", form(member(s.linkExisting)))
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(shop.StaticFS())))

	// The plugin's webhook and check-auth routes, under /mlmsoft.
	nethttpadapter.Mount(mux, s.app.Plugin, shop.PluginPrefix)

	// Operations: Prometheus metrics, and the console behind basic auth.
	mux.Handle("GET "+shop.MetricsPath, s.app.Metrics())
	console := s.app.Console(func(r *http.Request) string { user, _, _ := r.BasicAuth(); return user })
	nethttpadapter.MountAdmin(mux, shop.AdminPrefix, basicAuth(s.app.AdminUser, s.app.AdminPassword, console))

	mux.Handle("/", page(s.notFound))
	return s.sessions(mux)
}

// visit is what the session middleware found: the session (if the visitor
// has one) and the signed-in user.
type visit struct {
	sess    shop.Session
	hasSess bool
	user    *shop.User
}

type visitKey struct{}

func visitOf(r *http.Request) *visit {
	v, _ := r.Context().Value(visitKey{}).(*visit)
	if v == nil {
		return &visit{}
	}
	return v
}

// currentUser is the plugin's CheckAuthConfig.CurrentUser: the user the
// session middleware found.
func currentUser(r *http.Request) (string, bool) {
	if u := visitOf(r).user; u != nil {
		return u.ID, true
	}
	return "", false
}

// sessions reads the session cookie, if any, and puts the session and its
// user in the request's context.
func (s *server) sessions(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := &visit{}
		if c, err := r.Cookie(shop.SessionCookie); err == nil {
			sess, ok, err := s.app.Sessions.Get(r.Context(), c.Value)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			if ok {
				v.sess, v.hasSess = sess, true
				if sess.UserID != "" {
					u, err := s.app.DB.User(r.Context(), sess.UserID)
					if err != nil && !errors.Is(err, shop.ErrNotFound) {
						s.fail(w, r, err)
						return
					}
					if err == nil {
						v.user = &u
					}
				}
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), visitKey{}, v)))
	})
}

// ensureSession gives a visitor without a session one (so that the form
// about to be shown carries a CSRF token).
func (s *server) ensureSession(w http.ResponseWriter, r *http.Request) error {
	v := visitOf(r)
	if v.hasSess {
		return nil
	}
	sess, err := s.app.Sessions.New(r.Context(), "")
	if err != nil {
		return err
	}
	v.sess, v.hasSess = sess, true
	setSessionCookie(w, r, sess)
	return nil
}

// startSession replaces the visitor's session with a new one for user (a
// new id at sign-in, so that an id planted before cannot be used after).
func (s *server) startSession(w http.ResponseWriter, r *http.Request, user shop.User) error {
	v := visitOf(r)
	if v.hasSess {
		if err := s.app.Sessions.Delete(r.Context(), v.sess.Token); err != nil {
			return err
		}
	}
	sess, err := s.app.Sessions.New(r.Context(), user.ID)
	if err != nil {
		return err
	}
	v.sess, v.hasSess, v.user = sess, true, &user
	setSessionCookie(w, r, sess)
	return nil
}

func setSessionCookie(w http.ResponseWriter, r *http.Request, sess shop.Session) {
	http.SetCookie(w, &http.Cookie{
		Name: shop.SessionCookie, Value: sess.Token, Path: "/",
		MaxAge:   int(time.Until(sess.ExpiresAt).Seconds()),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil,
	})
}

// protect guards the shop's own POST forms against cross-site request
// forgery: http.CrossOriginProtection refuses a browser's cross-origin
// request, and the form must carry the session's CSRF token.
func (s *server) protect(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := s.cop.Check(r); err != nil {
			s.render(w, r, http.StatusForbidden, s.app.NewPage(shop.PageError, "Refused",
				shop.ErrorData{Status: http.StatusForbidden, Message: "This form was sent from another site, so it was refused."}))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		v := visitOf(r)
		if !v.hasSess || !v.sess.CheckCSRF(r.PostFormValue("csrf")) {
			s.render(w, r, http.StatusForbidden, s.app.NewPage(shop.PageError, "Refused",
				shop.ErrorData{Status: http.StatusForbidden, Message: "Your session has expired or the form is out of date: go back, reload the page and try again."}))
			return
		}
		next(w, r)
	}
}

// signedIn sends visitors to the sign-in page.
func (s *server) signedIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if visitOf(r).user == nil {
			http.Redirect(w, r, "/signin", http.StatusSeeOther)
			return
		}
		next(w, r)
	}
}

// securePage sets the headers every shop page gets: no scripts, no
// framing, no caching of personal pages.
func securePage(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", shop.ContentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// basicAuth guards the console with the demo's user and password.
func basicAuth(user, password string, next http.Handler) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotUser[:], wantUser[:])&subtle.ConstantTimeCompare(gotPass[:], wantPass[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="mlmsoft operations console", charset="UTF-8"`)
			http.Error(w, "sign in with the console's user and password", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// render shows page with the session's user, CSRF token and flash message.
func (s *server) render(w http.ResponseWriter, r *http.Request, status int, page shop.Page) {
	v := visitOf(r)
	page.User = v.user
	if v.hasSess {
		page.CSRF = v.sess.CSRF
		kind, msg, err := s.app.Sessions.TakeFlash(r.Context(), &v.sess)
		if err != nil {
			s.app.Log.Error("flash", "err", err)
		}
		page.FlashKind, page.Flash = kind, msg
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.app.Templates.ExecuteTemplate(w, page.Name, page); err != nil {
		s.app.Log.Error("render", "page", page.Name, "err", err)
	}
}

// redirect sends the browser to path with a message for the next page.
func (s *server) redirect(w http.ResponseWriter, r *http.Request, path, kind, msg string) {
	if v := visitOf(r); v.hasSess && msg != "" {
		if err := s.app.Sessions.SetFlash(r.Context(), v.sess.Token, kind, msg); err != nil {
			s.app.Log.Error("flash", "err", err)
		}
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
}

// fail answers an unexpected error: logged, and a page that says nothing of
// it.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.app.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	s.render(w, r, http.StatusInternalServerError, s.app.NewPage(shop.PageError, "Error",
		shop.ErrorData{Status: http.StatusInternalServerError, Message: "Something went wrong on our side. Please try again."}))
}
