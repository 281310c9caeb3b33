package shop

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// ContentSecurityPolicy is sent with every shop page: its own style sheet,
// no scripts, forms posting to the shop only, no framing.
const ContentSecurityPolicy = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

// Page is what every template gets.
type Page struct {
	Name  string // the template's name (PageAccount...), also body's data-page
	Title string
	Shop  string // the command's name
	User  *User  // nil for a visitor
	CSRF  string // the session's CSRF token, for forms
	// FlashKind ("ok" or "error") and Flash: a message from the action
	// that redirected here.
	FlashKind, Flash string
	// FakeViewsURL links the fake MLM Soft's views; "" with a real one.
	FakeViewsURL string
	// Data is the page's own: ProductsData, SignUpData, SignInData,
	// *AccountView or ErrorData.
	Data any
}

// NewPage returns the Page of template name with data; the caller adds the
// session's user, CSRF token and flash message.
func (a *App) NewPage(name, title string, data any) Page {
	return Page{Name: name, Title: title, Shop: a.Name, FakeViewsURL: a.FakeViewsURL, Data: data}
}

// ProductsData is the products page's.
type ProductsData struct {
	Products []ProductOffer
}

// ProductOffer is a product with a fresh order id for its buy form.
type ProductOffer struct {
	Product
	OrderID string
}

// Offers returns the catalogue, each product with a new order id for its
// form (see Buy).
func (a *App) Offers(ctx context.Context) (ProductsData, error) {
	ps, err := a.DB.Products(ctx)
	if err != nil {
		return ProductsData{}, err
	}
	d := ProductsData{}
	for _, p := range ps {
		d.Products = append(d.Products, ProductOffer{Product: p, OrderID: NewID("o-")})
	}
	return d, nil
}

// SignUpData is the sign-up page's: the form as posted (without the
// password) and what was wrong with it.
type SignUpData struct {
	Email, Name, Ref string
	HaveAccount      bool
	Error            string
	// Referrer is the name of the user Ref names, when known.
	Referrer string
}

// SignUpPage returns the sign-up page's data for a visit with ?ref=ref.
func (a *App) SignUpPage(ctx context.Context, ref string) SignUpData {
	d := SignUpData{Ref: ref}
	if ref != "" {
		if u, err := a.Referrer(ctx, ref); err == nil {
			d.Referrer = u.Name
		}
	}
	return d
}

// SignInData is the sign-in page's.
type SignInData struct {
	Email string
	Error string
}

// ErrorData is an error page's.
type ErrorData struct {
	Status  int
	Message string
}

// AccountView is the account page's: the user, their MLM Soft link, their
// referral link and referrals, and their orders with each volume change's
// state.
type AccountView struct {
	User        User
	Sponsor     string // the referrer's name, "" for none
	Link        LinkView
	ReferralURL string
	Referrals   []Referral
	Orders      []OrderView
	// MemberLogin and MemberPassword are the fake MLM Soft's demo member,
	// shown as a hint next to the link form; "" with a real MLM Soft.
	MemberLogin, MemberPassword string
}

// LinkView is a user's MLM Soft link in plain words.
type LinkView struct {
	// State is the link's state, or "none" when the user has no link.
	State     string
	Headline  string // what it means, in plain words
	AccountID int64
	MLMUserID int64
	LinkedVia string // how it was linked, in plain words
	LinkedAt  time.Time
	// Problem is the last error in plain words, and Detail the plugin's
	// own text of it.
	Problem, Detail string
	// CanLink: offer to link an existing MLM Soft account (check-auth).
	CanLink bool
}

// Referral is a user someone referred, with their link state.
type Referral struct {
	Name  string
	State string
}

// OrderView is an order with its volume changes.
type OrderView struct {
	Order
	Changes []ChangeView
}

// ChangeView is one volume change of an order.
type ChangeView struct {
	ID     int64
	Alias  string
	Amount string
	// State is delivered, pending, parked, uncertain, rejected or
	// skipped (sending shows as pending).
	State       string
	Words       string // what the state means for the customer
	Detail      string // the last error, if any
	DeliveredAt time.Time
}

// maxOrdersShown bounds the orders on the account page.
const maxOrdersShown = 50

// Account returns the account page of userID.
func (a *App) Account(ctx context.Context, userID string) (*AccountView, error) {
	u, err := a.DB.User(ctx, userID)
	if err != nil {
		return nil, err
	}
	v := &AccountView{User: u, ReferralURL: a.URL + "/signup?ref=" + url.QueryEscape(u.ID)}
	if a.Fake != nil {
		v.MemberLogin, v.MemberPassword = MemberLogin, MemberPassword
	}
	if u.SponsorID != "" {
		if s, err := a.DB.User(ctx, u.SponsorID); err == nil {
			v.Sponsor = s.Name
		}
	}
	l, err := a.Plugin.Link(ctx, userID)
	switch {
	case errors.Is(err, mlmsoft.ErrNotFound):
		v.Link = LinkView{State: "none", CanLink: true,
			Headline: "Not linked to MLM Soft yet. Link your MLM Soft account below: your purchases' points wait for it."}
	case err != nil:
		return nil, err
	default:
		v.Link = linkView(l)
	}
	refs, err := a.DB.Referrals(ctx, userID)
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		state := "none"
		if l, err := a.Plugin.Link(ctx, r.ID); err == nil {
			state = string(l.State)
		}
		v.Referrals = append(v.Referrals, Referral{Name: r.Name, State: state})
	}
	orders, err := a.DB.Orders(ctx, userID, maxOrdersShown)
	if err != nil {
		return nil, err
	}
	if len(orders) == 0 {
		return v, nil
	}
	// The user's changes, grouped by order. (A shop with many orders per
	// user would keep the change ids with its orders; the plugin lists
	// changes by user and state only.)
	changes, err := a.Plugin.ListVolumes(ctx, mlmsoft.VolumeFilter{UserID: userID})
	if err != nil {
		return nil, err
	}
	byOrder := map[string][]ChangeView{}
	held := false // an earlier change of the user's queue waits for a person
	for _, c := range changes {
		v := changeView(c)
		switch {
		case c.State == mlmsoft.VolumeParked || c.State == mlmsoft.VolumeUncertain:
			held = true
		case held && v.State == "pending":
			v.Words = "Waits until our team has settled an earlier change."
		}
		byOrder[c.OrderID] = append(byOrder[c.OrderID], v)
	}
	for _, o := range orders {
		v.Orders = append(v.Orders, OrderView{Order: o, Changes: byOrder[o.ID]})
	}
	return v, nil
}

func linkView(l mlmsoft.LinkInfo) LinkView {
	v := LinkView{State: string(l.State), AccountID: l.AccountID, MLMUserID: l.MLMUserID, LinkedAt: l.LinkedAt, Detail: l.LastError}
	switch l.State {
	case mlmsoft.LinkPending:
		v.Headline = "We are creating your MLM Soft account."
		if l.LastError != "" {
			v.Problem = "It is taking a little longer than usual; we keep trying by ourselves."
		}
	case mlmsoft.LinkCreated:
		v.Headline = "MLM Soft has accepted your new account and is setting it up: it will be linked in a moment."
		if l.LastError != "" {
			v.Problem = "We are waiting for MLM Soft to finish."
		}
	case mlmsoft.LinkLinked:
		v.Headline = fmt.Sprintf("Linked to MLM Soft account %d: your purchases' points go there.", l.AccountID)
		v.Detail = ""
	case mlmsoft.LinkFailed:
		v.Headline = "We could not link you to MLM Soft. Your purchases' points wait until this is fixed."
		v.Problem = "Our team has been told. If you have an MLM Soft account already, link it below."
		v.CanLink = true
	}
	switch l.LinkedVia {
	case mlmsoft.LinkedViaCreate:
		v.LinkedVia = "MLM Soft's answer to your sign-up"
	case mlmsoft.LinkedViaDocument:
		v.LinkedVia = "MLM Soft's processed sign-up (polled)"
	case mlmsoft.LinkedViaWebhook:
		v.LinkedVia = "MLM Soft's notification (webhook)"
	case mlmsoft.LinkedViaCheckAuth:
		v.LinkedVia = "your MLM Soft e-mail and password"
	case mlmsoft.LinkedViaExists:
		v.LinkedVia = "MLM Soft's confirmation that your account exists"
	}
	return v
}

func changeView(c mlmsoft.VolumeChange) ChangeView {
	v := ChangeView{ID: c.ID, Alias: c.Alias, Amount: c.Amount.String(), State: string(c.State), Detail: c.LastError, DeliveredAt: c.DeliveredAt}
	switch c.State {
	case mlmsoft.VolumeDelivered:
		v.Words, v.Detail = "MLM Soft has it.", ""
	case mlmsoft.VolumePending, mlmsoft.VolumeSending:
		v.State, v.Words = "pending", "On its way to MLM Soft."
	case mlmsoft.VolumeParked:
		v.Words = "MLM Soft refused it: our team will look at it. Later changes wait for it."
	case mlmsoft.VolumeUncertain:
		v.Words = "MLM Soft's answer got lost: our team is checking whether it arrived. Later changes wait for it."
	case mlmsoft.VolumeRejected:
		v.Words = "MLM Soft refused it for good."
	case mlmsoft.VolumeSkipped:
		v.Words = "Our team took it off the queue."
	}
	return v
}

// LinkAnswer turns an answer of the plugin's check-auth handler (its HTTP
// status and JSON body; see mlmsoft.Plugin.CheckAuthHandler) into a message
// for the user, and whether it linked them.
func LinkAnswer(status int, header http.Header, body []byte) (linked bool, msg string) {
	var ans struct {
		Linked    bool   `json:"linked"`
		AccountID int64  `json:"accountId"`
		Code      string `json:"code"`
		Error     string `json:"error"`
	}
	_ = json.Unmarshal(body, &ans)
	switch {
	case status == http.StatusOK && ans.Linked:
		return true, fmt.Sprintf("Linked to your MLM Soft account %d: your purchases' points go there now.", ans.AccountID)
	case ans.Code == "bad_credentials":
		return false, "MLM Soft did not accept that e-mail and password. Nothing was changed."
	case ans.Code == "not_signed_in":
		return false, "Sign in first."
	case ans.Code == "already_linked":
		return false, "Your shop account is linked to another MLM Soft account already."
	case ans.Code == "login_taken":
		return false, "That MLM Soft account is linked to another shop account."
	case status == http.StatusTooManyRequests:
		wait := "a while"
		if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && s > 0 {
			wait = (time.Duration(s) * time.Second).Round(time.Minute).String()
			if s < 90 {
				wait = strconv.Itoa(s) + " seconds"
			}
		}
		return false, "Too many attempts: try again in " + wait + "."
	case ans.Code == "integration_down":
		return false, "The connection to MLM Soft is not working right now; your password was not checked. Try again later."
	case status == http.StatusBadGateway || status == http.StatusServiceUnavailable:
		return false, "MLM Soft could not be reached. Try again later."
	case status == http.StatusBadRequest && ans.Error != "":
		return false, "Please check what you entered: " + ans.Error + "."
	}
	return false, fmt.Sprintf("Linking failed (HTTP %d). Try again later.", status)
}
