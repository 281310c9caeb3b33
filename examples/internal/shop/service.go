package shop

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/mlmsoft-go/mlmsoft"
)

// The volume properties a purchase changes in MLM Soft, in this order.
const (
	AliasStatus = "Status"
	AliasPV     = "PV"
)

// FormError is a mistake in what a visitor entered, or something they must
// do first: its message is for them, and the page is shown again.
type FormError struct{ Msg string }

// Error returns the message for the visitor.
func (e *FormError) Error() string { return e.Msg }

func formError(format string, args ...any) error {
	return &FormError{Msg: fmt.Sprintf(format, args...)}
}

// inTx runs fn in a transaction on the shop's database (the plugin's too),
// committing when it returns nil.
func (a *App) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := a.DB.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("shop: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("shop: commit: %w", err)
	}
	return nil
}

// SignUpForm is what the sign-up form posts.
type SignUpForm struct {
	Email    string
	Password string
	Name     string
	// Ref is the referrer (the sponsor): a shop user's id, as in the
	// ?ref= links of the account page, or their e-mail address.
	Ref string
	// HaveAccount: the visitor is an MLM Soft member already and will link
	// that account on the account page (check-auth), so no MLM Soft
	// account is created for them.
	HaveAccount bool
}

const (
	minPassword = 8
	maxPassword = 72 // bcrypt's limit
	maxName     = 100
)

// SignUp adds a shop user and, in the same transaction, registers them with
// the plugin (OnUserRegisteredTx), which creates and links their MLM Soft
// account in the background once the transaction has committed: the shop
// never has a user the plugin does not know of, nor the plugin a link
// without its user. Mistakes in the form are *FormError.
func (a *App) SignUp(ctx context.Context, f SignUpForm) (User, error) {
	email, err := mlmsoft.NormalizeEmail(f.Email)
	if err != nil {
		return User{}, formError("Enter a valid e-mail address.")
	}
	name := strings.TrimSpace(f.Name)
	if name == "" || utf8.RuneCountInString(name) > maxName || !utf8.ValidString(name) {
		return User{}, formError("Enter your name (at most %d characters).", maxName)
	}
	if len(f.Password) < minPassword || len(f.Password) > maxPassword {
		return User{}, formError("Choose a password of %d to %d characters.", minPassword, maxPassword)
	}
	var sponsor User
	if ref := strings.TrimSpace(f.Ref); ref != "" {
		if sponsor, err = a.Referrer(ctx, ref); errors.Is(err, ErrNotFound) {
			return User{}, formError("We know no shop user %q to be your referrer: leave the field empty, or use the link your referrer shared.", ref)
		} else if err != nil {
			return User{}, err
		}
		if !f.HaveAccount {
			// The plugin sends the sponsor's MLM Soft account: the
			// sponsor must be known to it (registered, or linked).
			if _, err := a.Plugin.Link(ctx, sponsor.ID); errors.Is(err, mlmsoft.ErrNotFound) {
				return User{}, formError("Your referrer %s has not linked an MLM Soft account yet, so they cannot sponsor you in MLM Soft: ask them to, or sign up without a referrer.", sponsor.Name)
			} else if err != nil {
				return User{}, err
			}
		}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(f.Password), bcrypt.DefaultCost)
	if err != nil {
		return User{}, err
	}
	u := User{ID: NewID("u-"), Email: email, Name: name, SponsorID: sponsor.ID, CreatedAt: time.Now().UTC()}
	err = a.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := a.DB.user(ctx, tx, "email", email); err == nil {
			return formError("There is a shop account with this e-mail already: sign in instead.")
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := a.DB.InsertUser(ctx, tx, u, string(hash)); err != nil {
			return err
		}
		if f.HaveAccount {
			return nil
		}
		first, last, _ := strings.Cut(name, " ")
		err := a.Plugin.OnUserRegisteredTx(ctx, tx, mlmsoft.NewUser{
			UserID: u.ID, Email: email, Password: f.Password,
			FirstName: first, LastName: strings.TrimSpace(last),
			SponsorUserID: sponsor.ID,
		})
		switch {
		case errors.Is(err, mlmsoft.ErrDuplicate):
			return formError("This e-mail is linked to MLM Soft through another shop account already.")
		case errors.Is(err, mlmsoft.ErrInvalidInput):
			return formError("MLM Soft cannot take this sign-up: %v", err)
		}
		return err
	})
	if err != nil {
		return User{}, err
	}
	a.Log.Info("user signed up", "user", u.ID, "sponsor", u.SponsorID, "existingMLMSoftAccount", f.HaveAccount)
	return u, nil
}

// Referrer finds the shop user a referral names: by id, or by e-mail.
func (a *App) Referrer(ctx context.Context, ref string) (User, error) {
	ref = strings.TrimSpace(ref)
	if strings.Contains(ref, "@") {
		email, err := mlmsoft.NormalizeEmail(ref)
		if err != nil {
			return User{}, ErrNotFound
		}
		return a.DB.UserByEmail(ctx, email)
	}
	if !ValidID("u-", ref) {
		return User{}, ErrNotFound
	}
	return a.DB.User(ctx, ref)
}

// dummyHash is compared against when the e-mail is unknown, so that signing
// in takes as long whether or not it is.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("no such user's password"), bcrypt.DefaultCost)
	return h
})

// SignIn checks an e-mail and password. A wrong pair is a *FormError that
// does not say which was wrong.
func (a *App) SignIn(ctx context.Context, email, password string) (User, error) {
	wrong := formError("Wrong e-mail or password.")
	n, err := mlmsoft.NormalizeEmail(email)
	if err != nil {
		return User{}, wrong
	}
	u, hash, err := a.DB.PasswordHash(ctx, n)
	if errors.Is(err, ErrNotFound) {
		_ = bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return User{}, wrong
	}
	if err != nil {
		return User{}, err
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil {
		return User{}, wrong
	}
	return u, nil
}

// Buy places an order of productID for userID and, in the same
// transaction, hands its volume changes to the plugin (ApplyVolumesTx): the
// product's Status, then its PV, with idempotency keys derived from the
// order id. So an order is never without its changes nor a change without
// its order, and the changes reach MLM Soft in that order, once.
//
// orderID comes from the product form (a fresh id each time the page is
// shown), so that a form posted twice (a double click, a reload) places one
// order: the second post finds it and returns it with again true. An
// invalid or missing one is replaced with a new id.
func (a *App) Buy(ctx context.Context, userID, productID, orderID string) (o Order, again bool, err error) {
	p, err := a.DB.Product(ctx, productID)
	if errors.Is(err, ErrNotFound) {
		return Order{}, false, formError("There is no such product.")
	} else if err != nil {
		return Order{}, false, err
	}
	status, err := mlmsoft.ParseAmount(p.Status)
	if err != nil {
		return Order{}, false, fmt.Errorf("product %s: Status: %w", p.ID, err)
	}
	pv, err := mlmsoft.ParseAmount(p.PV)
	if err != nil {
		return Order{}, false, fmt.Errorf("product %s: PV: %w", p.ID, err)
	}
	if !ValidID("o-", orderID) {
		orderID = NewID("o-")
	}
	if _, err := a.Plugin.Link(ctx, userID); errors.Is(err, mlmsoft.ErrNotFound) {
		return Order{}, false, formError("Link your MLM Soft account first, on your account page: a purchase's points go to it.")
	} else if err != nil {
		return Order{}, false, err
	}
	err = a.inTx(ctx, func(tx *sql.Tx) error {
		prev, err := a.DB.OrderTx(ctx, tx, orderID)
		if err == nil {
			if prev.UserID != userID {
				return formError("This order form cannot be used: reload the page and buy again.")
			}
			o, again = prev, true
			return nil
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		o = Order{ID: orderID, UserID: userID, ProductID: p.ID, ProductName: p.Name,
			Price: p.Price, Status: p.Status, PV: p.PV, CreatedAt: time.Now().UTC()}
		if err := a.DB.InsertOrder(ctx, tx, o); err != nil {
			return err
		}
		_, err = a.Plugin.ApplyVolumesTx(ctx, tx, userID,
			mlmsoft.Change{Alias: AliasStatus, Amount: status, OrderID: o.ID, IdempotencyKey: o.ID + "/status"},
			mlmsoft.Change{Alias: AliasPV, Amount: pv, OrderID: o.ID, IdempotencyKey: o.ID + "/pv"},
		)
		return err
	})
	if err != nil {
		return Order{}, false, err
	}
	if !again {
		a.Log.Info("order placed", "user", userID, "order", o.ID, "product", p.ID)
	}
	return o, again, nil
}
