package main

import (
	"errors"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/mlmsoft-go/mlmsoft/examples/internal/shop"
	"github.com/mlmsoft-go/mlmsoft/ginadapter"
)

// Keys of what the session middleware stores in the *gin.Context.
const (
	userKey  = "userID" // the signed-in user's id (read by the plugin's check-auth)
	visitKey = "visit"  // the *visit
)

// server is the shop's HTTP layer on Gin.
type server struct {
	app *shop.App
	cop *http.CrossOriginProtection
}

func newServer(app *shop.App) *server {
	return &server{app: app, cop: http.NewCrossOriginProtection()}
}

// router returns the shop's Gin engine: its pages and forms, the plugin's
// handlers, the metrics and the console, behind the session middleware.
func (s *server) router() *gin.Engine {
	r := gin.New()
	_ = r.SetTrustedProxies(nil) // the client is who connects: no proxy headers believed
	r.Use(gin.Recovery(), s.logRequests, s.sessions)
	r.SetHTMLTemplate(s.app.Templates)

	pages := r.Group("", securePage)
	pages.GET("/", s.products)
	pages.GET("/signup", s.signUpForm)
	pages.GET("/signin", s.signInForm)
	pages.GET("/account", s.signedIn, s.account)

	forms := pages.Group("", s.protect)
	forms.POST("/signup", s.signUp)
	forms.POST("/signin", s.signIn)
	forms.POST("/signout", s.signOut)
	forms.POST("/buy", s.signedIn, s.buy)
	// Bridge lets the plugin's check-auth handler, called from linkExisting,
	// find userKey in this *gin.Context.
	forms.POST("/account/link", s.signedIn, ginadapter.Bridge(), s.linkExisting)

	r.StaticFS("/static", http.FS(shop.StaticFS()))

	// The plugin's webhook and check-auth routes, under /mlmsoft.
	ginadapter.Mount(r, s.app.Plugin, shop.PluginPrefix)

	// Operations: Prometheus metrics, and the console behind basic auth
	// (gin.BasicAuth keeps the user under gin.AuthUserKey, which the
	// console records as who acts).
	r.GET(shop.MetricsPath, gin.WrapH(s.app.Metrics()))
	operator := ginadapter.CurrentUser(gin.AuthUserKey)
	console := s.app.Console(func(r *http.Request) string { user, _ := operator(r); return user })
	ops := r.Group("", gin.BasicAuthForRealm(gin.Accounts{s.app.AdminUser: s.app.AdminPassword}, "mlmsoft operations console"))
	ginadapter.MountAdmin(ops, shop.AdminPrefix, console)

	r.NoRoute(securePage, func(c *gin.Context) {
		s.render(c, http.StatusNotFound, s.app.NewPage(shop.PageError, "Not found",
			shop.ErrorData{Status: http.StatusNotFound, Message: "There is no such page."}))
	})
	return r
}

// visit is what the session middleware found: the session (if the visitor
// has one) and the signed-in user.
type visit struct {
	sess    shop.Session
	hasSess bool
	user    *shop.User
}

func visitOf(c *gin.Context) *visit {
	if v, ok := c.Get(visitKey); ok {
		return v.(*visit)
	}
	return &visit{}
}

// logRequests logs each request at debug level.
func (s *server) logRequests(c *gin.Context) {
	start := time.Now()
	c.Next()
	s.app.Log.Debug("request", "method", c.Request.Method, "path", c.Request.URL.Path,
		"status", c.Writer.Status(), "took", time.Since(start))
}

// sessions reads the session cookie, if any, and stores the session and
// its user in the context (the user's id under userKey).
func (s *server) sessions(c *gin.Context) {
	v := &visit{}
	c.Set(visitKey, v)
	token, err := c.Cookie(shop.SessionCookie)
	if err != nil {
		c.Next()
		return
	}
	sess, ok, err := s.app.Sessions.Get(c.Request.Context(), token)
	if err != nil {
		s.fail(c, err)
		return
	}
	if ok {
		v.sess, v.hasSess = sess, true
		if sess.UserID != "" {
			u, err := s.app.DB.User(c.Request.Context(), sess.UserID)
			switch {
			case err == nil:
				v.user = &u
				c.Set(userKey, u.ID)
			case !errors.Is(err, shop.ErrNotFound):
				s.fail(c, err)
				return
			}
		}
	}
	c.Next()
}

// ensureSession gives a visitor without a session one (so that the form
// about to be shown carries a CSRF token).
func (s *server) ensureSession(c *gin.Context) error {
	v := visitOf(c)
	if v.hasSess {
		return nil
	}
	sess, err := s.app.Sessions.New(c.Request.Context(), "")
	if err != nil {
		return err
	}
	v.sess, v.hasSess = sess, true
	setSessionCookie(c, sess)
	return nil
}

// startSession replaces the visitor's session with a new one for user (a
// new id at sign-in, so that an id planted before cannot be used after).
func (s *server) startSession(c *gin.Context, user shop.User) error {
	v := visitOf(c)
	if v.hasSess {
		if err := s.app.Sessions.Delete(c.Request.Context(), v.sess.Token); err != nil {
			return err
		}
	}
	sess, err := s.app.Sessions.New(c.Request.Context(), user.ID)
	if err != nil {
		return err
	}
	v.sess, v.hasSess, v.user = sess, true, &user
	c.Set(userKey, user.ID)
	setSessionCookie(c, sess)
	return nil
}

func setSessionCookie(c *gin.Context, sess shop.Session) {
	c.SetSameSite(http.SameSiteLaxMode)
	c.SetCookie(shop.SessionCookie, sess.Token, int(time.Until(sess.ExpiresAt).Seconds()), "/", "", c.Request.TLS != nil, true)
}

// protect guards the shop's own POST forms against cross-site request
// forgery: http.CrossOriginProtection refuses a browser's cross-origin
// request, and the form must carry the session's CSRF token.
func (s *server) protect(c *gin.Context) {
	if err := s.cop.Check(c.Request); err != nil {
		s.refuse(c, "This form was sent from another site, so it was refused.")
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10)
	v := visitOf(c)
	if !v.hasSess || !v.sess.CheckCSRF(c.PostForm("csrf")) {
		s.refuse(c, "Your session has expired or the form is out of date: go back, reload the page and try again.")
		return
	}
	c.Next()
}

func (s *server) refuse(c *gin.Context, msg string) {
	s.render(c, http.StatusForbidden, s.app.NewPage(shop.PageError, "Refused", shop.ErrorData{Status: http.StatusForbidden, Message: msg}))
	c.Abort()
}

// signedIn sends visitors to the sign-in page.
func (s *server) signedIn(c *gin.Context) {
	if visitOf(c).user == nil {
		c.Redirect(http.StatusSeeOther, "/signin")
		c.Abort()
		return
	}
	c.Next()
}

// securePage sets the headers every shop page gets: no scripts, no
// framing, no caching of personal pages.
func securePage(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", shop.ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.Next()
}

// render shows page with the session's user, CSRF token and flash message.
func (s *server) render(c *gin.Context, status int, page shop.Page) {
	v := visitOf(c)
	page.User = v.user
	if v.hasSess {
		page.CSRF = v.sess.CSRF
		kind, msg, err := s.app.Sessions.TakeFlash(c.Request.Context(), &v.sess)
		if err != nil {
			s.app.Log.Error("flash", "err", err)
		}
		page.FlashKind, page.Flash = kind, msg
	}
	c.HTML(status, page.Name, page)
}

// redirect sends the browser to path with a message for the next page.
func (s *server) redirect(c *gin.Context, path, kind, msg string) {
	if v := visitOf(c); v.hasSess && msg != "" {
		if err := s.app.Sessions.SetFlash(c.Request.Context(), v.sess.Token, kind, msg); err != nil {
			s.app.Log.Error("flash", "err", err)
		}
	}
	c.Redirect(http.StatusSeeOther, path)
}

// fail answers an unexpected error: logged, and a page that says nothing of
// it.
func (s *server) fail(c *gin.Context, err error) {
	s.app.Log.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
	_ = c.Error(err)
	s.render(c, http.StatusInternalServerError, s.app.NewPage(shop.PageError, "Error",
		shop.ErrorData{Status: http.StatusInternalServerError, Message: "Something went wrong on our side. Please try again."}))
	c.Abort()
}
