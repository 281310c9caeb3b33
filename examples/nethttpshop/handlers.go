package main

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/mlmsoft-go/mlmsoft/examples/internal/shop"
)

func (s *server) products(w http.ResponseWriter, r *http.Request) {
	data, err := s.app.Offers(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, s.app.NewPage(shop.PageProducts, "Products", data))
}

func (s *server) signUpForm(w http.ResponseWriter, r *http.Request) {
	if err := s.ensureSession(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	data := s.app.SignUpPage(r.Context(), r.URL.Query().Get("ref"))
	s.render(w, r, http.StatusOK, s.app.NewPage(shop.PageSignUp, "Sign up", data))
}

func (s *server) signUp(w http.ResponseWriter, r *http.Request) {
	f := shop.SignUpForm{
		Email: r.PostFormValue("email"), Password: r.PostFormValue("password"), Name: r.PostFormValue("name"),
		Ref: r.PostFormValue("ref"), HaveAccount: r.PostFormValue("have_account") != "",
	}
	u, err := s.app.SignUp(r.Context(), f)
	if fe, ok := errors.AsType[*shop.FormError](err); ok {
		data := s.app.SignUpPage(r.Context(), f.Ref)
		data.Email, data.Name, data.HaveAccount, data.Error = f.Email, f.Name, f.HaveAccount, fe.Msg
		s.render(w, r, http.StatusUnprocessableEntity, s.app.NewPage(shop.PageSignUp, "Sign up", data))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.startSession(w, r, u); err != nil {
		s.fail(w, r, err)
		return
	}
	msg := "Welcome, " + u.Name + "! We are creating your MLM Soft account: it is linked in a moment."
	if f.HaveAccount {
		msg = "Welcome, " + u.Name + "! Link your MLM Soft account below."
	}
	s.redirect(w, r, "/account", "ok", msg)
}

func (s *server) signInForm(w http.ResponseWriter, r *http.Request) {
	if err := s.ensureSession(w, r); err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, s.app.NewPage(shop.PageSignIn, "Sign in", shop.SignInData{}))
}

func (s *server) signIn(w http.ResponseWriter, r *http.Request) {
	email := r.PostFormValue("email")
	u, err := s.app.SignIn(r.Context(), email, r.PostFormValue("password"))
	if fe, ok := errors.AsType[*shop.FormError](err); ok {
		s.render(w, r, http.StatusUnauthorized, s.app.NewPage(shop.PageSignIn, "Sign in", shop.SignInData{Email: email, Error: fe.Msg}))
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.startSession(w, r, u); err != nil {
		s.fail(w, r, err)
		return
	}
	s.redirect(w, r, "/account", "ok", "Welcome back, "+u.Name+".")
}

func (s *server) signOut(w http.ResponseWriter, r *http.Request) {
	if err := s.app.Sessions.Delete(r.Context(), visitOf(r).sess.Token); err != nil {
		s.fail(w, r, err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: shop.SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *server) buy(w http.ResponseWriter, r *http.Request) {
	user := visitOf(r).user
	o, again, err := s.app.Buy(r.Context(), user.ID, r.PostFormValue("product"), r.PostFormValue("order"))
	if fe, ok := errors.AsType[*shop.FormError](err); ok {
		s.redirect(w, r, "/", "error", fe.Msg)
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	msg := fmt.Sprintf("Thank you! Order %s (%s) is placed: its Status and PV are on their way to MLM Soft.", o.ID, o.ProductName)
	if again {
		msg = fmt.Sprintf("Order %s was placed already (the form was sent twice): nothing more was ordered.", o.ID)
	}
	s.redirect(w, r, "/account#"+o.ID, "ok", msg)
}

func (s *server) account(w http.ResponseWriter, r *http.Request) {
	v, err := s.app.Account(r.Context(), visitOf(r).user.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, s.app.NewPage(shop.PageAccount, "My account", v))
}

// linkExisting links the signed-in user to the MLM Soft account they name,
// through the plugin's check-auth handler (see shop.App.LinkExisting for why
// the form posts here rather than to the handler itself).
func (s *server) linkExisting(w http.ResponseWriter, r *http.Request) {
	linked, msg := s.app.LinkExisting(r, r.PostFormValue("login"), r.PostFormValue("password"))
	kind := "error"
	if linked {
		kind = "ok"
	}
	s.redirect(w, r, "/account", kind, msg)
}

func (s *server) notFound(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusNotFound, s.app.NewPage(shop.PageError, "Not found",
		shop.ErrorData{Status: http.StatusNotFound, Message: "There is no such page."}))
}
