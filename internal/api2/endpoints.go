package api2

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
)

// The endpoints the plugin uses, relative to the base URL.
const (
	// EndpointUserCreate creates a user (POST): money-relevant.
	EndpointUserCreate = "user/create"
	// EndpointDocumentGet reads a queued request's document (GET).
	EndpointDocumentGet = "document/get"
	// EndpointCheckAuth checks a login and password (GET).
	EndpointCheckAuth = "user/check-auth"
	// EndpointUserExists looks a login up (GET).
	EndpointUserExists = "user/exists"
	// EndpointVolumeChange adds volume to an account (POST): money-relevant.
	EndpointVolumeChange = "account/volume-change"
)

// authPayload is the "auth" object of user answers.
type authPayload struct {
	Login string `json:"login"`
	User  struct {
		ID      ID `json:"id"`
		Account struct {
			ID    ID     `json:"id"`
			Title string `json:"title"`
		} `json:"account"`
	} `json:"user"`
}

// Profile is the profile sent with user/create.
type Profile struct {
	FirstName, LastName, Email, Phone, CountryID string
}

// CreateUser holds user/create's parameters.
type CreateUser struct {
	Login           string // the email
	Password        string
	SponsorID       int64 // the sponsor's account id
	ConfirmationURL string
	Profile         Profile
}

// Created is user/create's answer: queued with a document, or done at once.
type Created struct {
	Queued     bool
	DocumentID int64
	UserID     int64
	AccountID  int64
}

// CreateUser sends user/create.
func (c *Client) CreateUser(ctx context.Context, u CreateUser) (Created, error) {
	params := phpquery.Map{
		{Key: "login", Value: u.Login},
		{Key: "type", Value: c.userType},
		{Key: "password", Value: u.Password},
		{Key: "sponsorId", Value: u.SponsorID},
	}
	if u.ConfirmationURL != "" {
		params = append(params, phpquery.Pair{Key: "confirmationUrl", Value: u.ConfirmationURL})
	}
	var profile phpquery.Map
	for _, f := range []struct{ k, v string }{
		{"firstname", u.Profile.FirstName}, {"lastname", u.Profile.LastName}, {"email", u.Profile.Email},
		{"phone", u.Profile.Phone}, {"countryId", u.Profile.CountryID},
	} {
		if f.v != "" {
			profile = append(profile, phpquery.Pair{Key: f.k, Value: f.v})
		}
	}
	if len(profile) > 0 {
		params = append(params, phpquery.Pair{Key: "profile", Value: profile})
	}
	env, err := c.Call(ctx, http.MethodPost, EndpointUserCreate, params)
	if err != nil {
		return Created{}, err
	}
	var p struct {
		QueueRequest bool        `json:"queueRequest"`
		DocumentID   ID          `json:"documentId"`
		Auth         authPayload `json:"auth"`
	}
	if err := decodePayload(env, &p); err != nil {
		return Created{}, c.unreadable(EndpointUserCreate, err)
	}
	out := Created{Queued: p.QueueRequest, DocumentID: int64(p.DocumentID), UserID: int64(p.Auth.User.ID), AccountID: int64(p.Auth.User.Account.ID)}
	if out.DocumentID == 0 && out.AccountID == 0 {
		return Created{}, c.unreadable(EndpointUserCreate, fmt.Errorf("answer has neither documentId nor auth.user.account.id"))
	}
	return out, nil
}

// unreadable reports a success envelope whose payload is not what the API
// documents. The request was processed, so this is not retryable: the
// caller decides (a create is then checked with user/exists).
func (c *Client) unreadable(endpoint string, err error) error {
	return &Error{Kind: Ambiguous, Endpoint: endpoint, Status: http.StatusOK, Err: fmt.Errorf("unexpected payload: %w", err)}
}

func decodePayload(env *Envelope, v any) error {
	p := bytes.TrimSpace(env.Primary.Payload)
	if len(p) == 0 || string(p) == "null" || string(p) == "[]" {
		return nil
	}
	return json.Unmarshal(p, v)
}

// Document is document/get's answer.
type Document struct {
	ID        int64
	Processed bool   // the document has a result
	Success   bool   // the result succeeded (only when Processed)
	Message   string // the result's reason, when it failed
	UserID    int64  // auth.user.id of the result, if any
	AccountID int64  // auth.user.account.id of the result, if any
}

// GetDocument sends document/get.
func (c *Client) GetDocument(ctx context.Context, id int64) (Document, error) {
	env, err := c.Call(ctx, http.MethodGet, EndpointDocumentGet, phpquery.Map{{Key: "id", Value: id}})
	if err != nil {
		return Document{}, err
	}
	var p struct {
		Document struct {
			ID     ID              `json:"id"`
			Result json.RawMessage `json:"result"`
		} `json:"document"`
	}
	if err := decodePayload(env, &p); err != nil {
		return Document{}, &Error{Kind: Retryable, Endpoint: EndpointDocumentGet, Status: http.StatusOK, Err: fmt.Errorf("unexpected payload: %w", err)}
	}
	d := Document{ID: int64(p.Document.ID)}
	if d.ID == 0 {
		d.ID = id
	}
	r := bytes.TrimSpace(p.Document.Result)
	switch string(r) {
	case "", "null", "[]", "{}", `""`, "false":
		return d, nil // not processed yet
	}
	d.Processed = true
	var res Envelope
	if err := json.Unmarshal(r, &res); err != nil {
		return Document{}, &Error{Kind: Retryable, Endpoint: EndpointDocumentGet, Status: http.StatusOK, Err: fmt.Errorf("unexpected document result: %w", err)}
	}
	if !res.OK() {
		d.Message = res.Reason()
		return d, nil
	}
	d.Success = true
	var rp struct {
		Auth authPayload `json:"auth"`
	}
	if err := decodePayload(&res, &rp); err == nil {
		d.UserID, d.AccountID = int64(rp.Auth.User.ID), int64(rp.Auth.User.Account.ID)
	}
	return d, nil
}

// Auth is user/check-auth's answer.
type Auth struct {
	Login     string
	UserID    int64
	AccountID int64
	Title     string
}

// CheckAuth sends user/check-auth. Wrong credentials are a Business error.
func (c *Client) CheckAuth(ctx context.Context, login, password string) (Auth, error) {
	env, err := c.Call(ctx, http.MethodGet, EndpointCheckAuth, phpquery.Map{
		{Key: "login", Value: login}, {Key: "type", Value: c.userType}, {Key: "password", Value: password},
	})
	if err != nil {
		return Auth{}, err
	}
	var p struct {
		Auth authPayload `json:"auth"`
	}
	if err := decodePayload(env, &p); err != nil {
		return Auth{}, &Error{Kind: Retryable, Endpoint: EndpointCheckAuth, Status: http.StatusOK, Err: fmt.Errorf("unexpected payload: %w", err)}
	}
	// MLM Soft's own integration takes "not success, or an empty
	// auth.login" for wrong credentials.
	if p.Auth.Login == "" || p.Auth.User.Account.ID == 0 {
		return Auth{}, &Error{Kind: Business, Endpoint: EndpointCheckAuth, Status: http.StatusOK, Message: "credentials not accepted"}
	}
	return Auth{Login: p.Auth.Login, UserID: int64(p.Auth.User.ID), AccountID: int64(p.Auth.User.Account.ID), Title: p.Auth.User.Account.Title}, nil
}

// Exists is user/exists's answer.
type Exists struct {
	Exists    bool
	UserID    int64
	AccountID int64 // assumed: present when MLM Soft includes the account; 0 otherwise
}

// UserExists sends user/exists.
func (c *Client) UserExists(ctx context.Context, login string) (Exists, error) {
	env, err := c.Call(ctx, http.MethodGet, EndpointUserExists, phpquery.Map{
		{Key: "login", Value: login}, {Key: "type", Value: c.userType},
	})
	if err != nil {
		return Exists{}, err
	}
	var p struct {
		Exist bool        `json:"exist"`
		Auth  authPayload `json:"auth"`
	}
	if err := decodePayload(env, &p); err != nil {
		return Exists{}, &Error{Kind: Retryable, Endpoint: EndpointUserExists, Status: http.StatusOK, Err: fmt.Errorf("unexpected payload: %w", err)}
	}
	return Exists{Exists: p.Exist, UserID: int64(p.Auth.User.ID), AccountID: int64(p.Auth.User.Account.ID)}, nil
}

// VolumeChange holds account/volume-change's parameters.
type VolumeChange struct {
	AccountID int64
	Amount    json.Number // exact decimal literal
	OrderID   string
	Alias     string
}

// VolumeResult is account/volume-change's answer.
type VolumeResult struct {
	Queued     bool
	DocumentID int64
}

// ChangeVolume sends account/volume-change.
func (c *Client) ChangeVolume(ctx context.Context, v VolumeChange) (VolumeResult, error) {
	env, err := c.Call(ctx, http.MethodPost, EndpointVolumeChange, phpquery.Map{
		{Key: "accountId", Value: v.AccountID},
		{Key: "pointsAmount", Value: v.Amount},
		{Key: "orderId", Value: v.OrderID},
		{Key: "volumePropertyAlias", Value: v.Alias},
	})
	if err != nil {
		return VolumeResult{}, err
	}
	var p struct {
		QueueRequest bool `json:"queueRequest"`
		DocumentID   ID   `json:"documentId"`
	}
	if err := decodePayload(env, &p); err != nil {
		// Applied (the envelope says success) but the payload is odd: treat
		// it as delivered without a document.
		return VolumeResult{}, nil
	}
	return VolumeResult{Queued: p.QueueRequest && p.DocumentID != 0, DocumentID: int64(p.DocumentID)}, nil
}

// probeLogin is the login Probe asks about: an address that cannot exist.
const probeLogin = "mlmsoft-probe@example.invalid"

// Probe sends a harmless signed request (GET user/exists for the login
// "mlmsoft-probe@example.invalid" and the configured user type) to prove
// that the base URL, the App-Id and the token work. It returns nil when
// MLM Soft answers with a success envelope, whether or not the login
// exists, and otherwise the classified *Error: Misconfigured when the
// configuration is wrong, Retryable when MLM Soft could not be reached.
func (c *Client) Probe(ctx context.Context) error {
	_, err := c.Call(ctx, http.MethodGet, EndpointUserExists, phpquery.Map{
		{Key: "login", Value: probeLogin}, {Key: "type", Value: c.userType},
	})
	return err
}
