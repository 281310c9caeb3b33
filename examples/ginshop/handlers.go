package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/mlmsoft-go/mlmsoft/examples/internal/shop"
)

func (s *server) products(c *gin.Context) {
	data, err := s.app.Offers(c.Request.Context())
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, s.app.NewPage(shop.PageProducts, "Products", data))
}

func (s *server) signUpForm(c *gin.Context) {
	if err := s.ensureSession(c); err != nil {
		s.fail(c, err)
		return
	}
	data := s.app.SignUpPage(c.Request.Context(), c.Query("ref"))
	s.render(c, http.StatusOK, s.app.NewPage(shop.PageSignUp, "Sign up", data))
}

// signUpRequest is the sign-up form, bound by Gin.
type signUpRequest struct {
	Email       string `form:"email"`
	Password    string `form:"password"`
	Name        string `form:"name"`
	Ref         string `form:"ref"`
	HaveAccount bool   `form:"have_account"`
}

func (s *server) signUp(c *gin.Context) {
	var req signUpRequest
	if err := c.ShouldBind(&req); err != nil {
		s.refuse(c, "The form could not be read: go back, reload the page and try again.")
		return
	}
	f := shop.SignUpForm{Email: req.Email, Password: req.Password, Name: req.Name, Ref: req.Ref, HaveAccount: req.HaveAccount}
	u, err := s.app.SignUp(c.Request.Context(), f)
	if fe, ok := errors.AsType[*shop.FormError](err); ok {
		data := s.app.SignUpPage(c.Request.Context(), f.Ref)
		data.Email, data.Name, data.HaveAccount, data.Error = f.Email, f.Name, f.HaveAccount, fe.Msg
		s.render(c, http.StatusUnprocessableEntity, s.app.NewPage(shop.PageSignUp, "Sign up", data))
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if err := s.startSession(c, u); err != nil {
		s.fail(c, err)
		return
	}
	msg := "Welcome, " + u.Name + "! We are creating your MLM Soft account: it is linked in a moment."
	if f.HaveAccount {
		msg = "Welcome, " + u.Name + "! Link your MLM Soft account below."
	}
	s.redirect(c, "/account", "ok", msg)
}

func (s *server) signInForm(c *gin.Context) {
	if err := s.ensureSession(c); err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, s.app.NewPage(shop.PageSignIn, "Sign in", shop.SignInData{}))
}

func (s *server) signIn(c *gin.Context) {
	email := c.PostForm("email")
	u, err := s.app.SignIn(c.Request.Context(), email, c.PostForm("password"))
	if fe, ok := errors.AsType[*shop.FormError](err); ok {
		s.render(c, http.StatusUnauthorized, s.app.NewPage(shop.PageSignIn, "Sign in", shop.SignInData{Email: email, Error: fe.Msg}))
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	if err := s.startSession(c, u); err != nil {
		s.fail(c, err)
		return
	}
	s.redirect(c, "/account", "ok", "Welcome back, "+u.Name+".")
}

func (s *server) signOut(c *gin.Context) {
	if err := s.app.Sessions.Delete(c.Request.Context(), visitOf(c).sess.Token); err != nil {
		s.fail(c, err)
		return
	}
	c.SetSameSite(http.SameSiteLaxMode)
	c.SetCookie(shop.SessionCookie, "", -1, "/", "", c.Request.TLS != nil, true)
	c.Redirect(http.StatusSeeOther, "/")
}

func (s *server) buy(c *gin.Context) {
	user := visitOf(c).user
	o, again, err := s.app.Buy(c.Request.Context(), user.ID, c.PostForm("product"), c.PostForm("order"))
	if fe, ok := errors.AsType[*shop.FormError](err); ok {
		s.redirect(c, "/", "error", fe.Msg)
		return
	}
	if err != nil {
		s.fail(c, err)
		return
	}
	msg := fmt.Sprintf("Thank you! Order %s (%s) is placed: its Status and PV are on their way to MLM Soft.", o.ID, o.ProductName)
	if again {
		msg = fmt.Sprintf("Order %s was placed already (the form was sent twice): nothing more was ordered.", o.ID)
	}
	s.redirect(c, "/account#"+o.ID, "ok", msg)
}

func (s *server) account(c *gin.Context) {
	v, err := s.app.Account(c.Request.Context(), visitOf(c).user.ID)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.render(c, http.StatusOK, s.app.NewPage(shop.PageAccount, "My account", v))
}

// linkExisting links the signed-in user to the MLM Soft account they name,
// through the plugin's check-auth handler (see shop.App.LinkExisting for why
// the form posts here rather than to the handler itself). c.Request went
// through ginadapter.Bridge, so the handler finds userKey.
func (s *server) linkExisting(c *gin.Context) {
	linked, msg := s.app.LinkExisting(c.Request, c.PostForm("login"), c.PostForm("password"))
	kind := "error"
	if linked {
		kind = "ok"
	}
	s.redirect(c, "/account", kind, msg)
}
