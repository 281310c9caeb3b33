package mlmsoft

import (
	"cmp"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
)

// Defaults applied to zero WebhookConfig fields.
const (
	// WebhookReplayWindowDefault is how far a signed webhook's timestamp may
	// be from now, in the past or the future.
	WebhookReplayWindowDefault = 5 * time.Minute
	// WebhookMaxBodyDefault is the largest webhook body accepted, in bytes.
	WebhookMaxBodyDefault int64 = 64 << 10
	// WebhookReadTimeoutDefault bounds how long a webhook request may take
	// to send its body.
	WebhookReadTimeoutDefault = 5 * time.Second
	// WebhookTimestampHeaderDefault carries the signed Unix timestamp (in
	// seconds).
	WebhookTimestampHeaderDefault = "X-Mlmsoft-Timestamp"
	// WebhookSignatureHeaderDefault carries "sha256=<hex>", the HMAC-SHA256
	// of "<timestamp>.<raw body>" under a webhook secret (see
	// WebhookSignature); several comma-separated values may be sent while a
	// secret is being rotated.
	WebhookSignatureHeaderDefault = "X-Mlmsoft-Signature"
)

// Routes of the plugin's handlers, relative to the prefix an adapter mounts
// them under.
const (
	// WebhookPath is the webhook route: POST {prefix}/webhook, or
	// POST {prefix}/webhook/{token} when path tokens are configured (see
	// Plugin.WebhookUsesPathToken).
	WebhookPath = "/webhook"
	// WebhookTokenParam is the name of the path wildcard holding the secret
	// token; WebhookHandler reads it with r.PathValue(WebhookTokenParam).
	WebhookTokenParam = "token"
	// CheckAuthPath is the check-auth route: POST {prefix}/check-auth.
	CheckAuthPath = "/check-auth"
)

// webhookSecretMinLen is the shortest secret or path token accepted.
const webhookSecretMinLen = 16

// Field names the webhook is read with by default, tried in order; a dot
// walks into a nested JSON object (and matches "a[b]" in a form). MLM Soft
// does not document its webhook: these are our assumption, and
// WebhookConfig replaces them.
var (
	webhookEmailFieldsDefault     = []string{"email", "login", "user.email", "user.login"}
	webhookUserIDFieldsDefault    = []string{"userId", "user_id", "user.id", "id"}
	webhookAccountIDFieldsDefault = []string{"accountId", "account_id", "user.account.id", "account.id"}
)

// WebhookConfig configures the Type III webhook handler (Plugin.WebhookHandler).
// MLM Soft documents only that it POSTs "the email and the MLM Soft user id"
// once a user/create is processed; everything else here is configurable for
// that reason.
//
// The handler authenticates every request before reading anything from it:
// with an HMAC signature over the raw body (Secrets), a secret token in the
// path (PathTokens), or both (then both must pass). It then links the link
// whose email the webhook names, and answers 2xx whether or not such a link
// exists, so that it never tells whether an email is known.
type WebhookConfig struct {
	// Enabled turns the handler on. Zero: WebhookHandler answers 404 to
	// every request. When Enabled, at least one of Secrets and PathTokens
	// is required, else New fails with ErrInvalidConfig.
	Enabled bool

	// Secrets are the HMAC-SHA256 keys a signature may be made with. Any
	// one of them is accepted, so a secret is rotated by adding the new one,
	// switching MLM Soft over, then removing the old one. Each must be at
	// least 16 bytes. Never logged. Zero: requests are not signed (then
	// PathTokens is required).
	Secrets []string
	// PathTokens are secret tokens one of which must be the last path
	// segment: POST {prefix}/webhook/{token}. Several are accepted at once
	// for rotation. Each must be at least 16 bytes and contain no "/".
	// Compared in constant time; never logged by the plugin (but a URL may
	// be logged by proxies: prefer Secrets). Zero: no token in the path.
	PathTokens []string

	// TimestampHeader and SignatureHeader name the signature headers. Zero:
	// WebhookTimestampHeaderDefault, WebhookSignatureHeaderDefault.
	TimestampHeader, SignatureHeader string
	// ReplayWindow is how far a signed timestamp may be from now in either
	// direction; a request outside it is refused with 401. Within it, the
	// same request seen again is answered 200 without being processed
	// twice. Zero: WebhookReplayWindowDefault.
	ReplayWindow time.Duration
	// MaxBody is the largest body accepted; a larger one is refused with
	// 413. Zero: WebhookMaxBodyDefault.
	MaxBody int64
	// ReadTimeout bounds how long the sender may take to send the body
	// (the connection's read deadline is set when the handler starts), so
	// that a client trickling bytes cannot hold a handler. Zero:
	// WebhookReadTimeoutDefault. The host's http.Server should set
	// ReadHeaderTimeout too (see the README).
	ReadTimeout time.Duration

	// EmailFields, UserIDFields and AccountIDFields name the body fields
	// holding the MLM Soft login (an email), the MLM Soft user id and the
	// MLM Soft account id, tried in order. Names match keys
	// case-insensitively; a dot walks into nested JSON objects ("user.id"),
	// and in a form body also matches PHP-style keys ("user[id]"). When
	// several names are present their values must agree (else 400). Zero:
	// email, login, user.email, user.login; userId, user_id, user.id, id;
	// accountId, account_id, user.account.id, account.id.
	EmailFields, UserIDFields, AccountIDFields []string

	// Confirm makes the plugin check the webhook with MLM Soft before
	// linking: user/exists must know the login, with the same user id (and
	// account id, when both sides give one). Without Confirm, the API is
	// asked only when the webhook carries no account id.
	Confirm bool
}

// WebhookSignature returns the value of the signature header
// (WebhookSignatureHeaderDefault) for a webhook body sent at timestamp
// (Unix seconds, sent in WebhookTimestampHeaderDefault) and signed with
// secret: "sha256=" and the hex HMAC-SHA256 of "<timestamp>.<body>". For a
// sender, or a host's own tests.
func WebhookSignature(secret []byte, timestamp int64, body []byte) string {
	return whsig.Sign(secret, timestamp, body)
}

// setDefaults fills zero fields of w and validates it. Slices are copied so
// that the caller's Config stays its own.
func (w *WebhookConfig) setDefaults() error {
	bad := func(field, why string) error {
		return fmt.Errorf("%w: Webhook.%s %s", ErrInvalidConfig, field, why)
	}
	w.Secrets = slices.Clone(w.Secrets)
	w.PathTokens = slices.Clone(w.PathTokens)
	for i, s := range w.Secrets {
		if len(s) < webhookSecretMinLen {
			return bad(fmt.Sprintf("Secrets[%d]", i), fmt.Sprintf("must be at least %d bytes", webhookSecretMinLen))
		}
	}
	for i, t := range w.PathTokens {
		if len(t) < webhookSecretMinLen || strings.ContainsAny(t, "/?#") {
			return bad(fmt.Sprintf("PathTokens[%d]", i), fmt.Sprintf("must be at least %d bytes with no '/', '?' or '#'", webhookSecretMinLen))
		}
	}
	if w.Enabled && len(w.Secrets) == 0 && len(w.PathTokens) == 0 {
		return bad("Secrets", "or Webhook.PathTokens is required when the webhook is enabled (it must be authenticated)")
	}
	if w.ReplayWindow < 0 {
		return bad("ReplayWindow", "must not be negative")
	}
	if w.MaxBody < 0 {
		return bad("MaxBody", "must not be negative")
	}
	if w.ReadTimeout < 0 {
		return bad("ReadTimeout", "must not be negative")
	}
	w.ReplayWindow = cmp.Or(w.ReplayWindow, WebhookReplayWindowDefault)
	w.MaxBody = cmp.Or(w.MaxBody, WebhookMaxBodyDefault)
	w.ReadTimeout = cmp.Or(w.ReadTimeout, WebhookReadTimeoutDefault)
	w.TimestampHeader = cmp.Or(strings.TrimSpace(w.TimestampHeader), WebhookTimestampHeaderDefault)
	w.SignatureHeader = cmp.Or(strings.TrimSpace(w.SignatureHeader), WebhookSignatureHeaderDefault)
	if http.CanonicalHeaderKey(w.TimestampHeader) == http.CanonicalHeaderKey(w.SignatureHeader) {
		return bad("TimestampHeader", "and Webhook.SignatureHeader must differ")
	}
	for _, f := range []struct {
		name string
		v    *[]string
		def  []string
	}{
		{"EmailFields", &w.EmailFields, webhookEmailFieldsDefault},
		{"UserIDFields", &w.UserIDFields, webhookUserIDFieldsDefault},
		{"AccountIDFields", &w.AccountIDFields, webhookAccountIDFieldsDefault},
	} {
		if len(*f.v) == 0 {
			*f.v = slices.Clone(f.def)
			continue
		}
		*f.v = slices.Clone(*f.v)
		for i, name := range *f.v {
			if name == "" || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
				return bad(fmt.Sprintf("%s[%d]", f.name, i), "must be a field name or a dotted path")
			}
		}
	}
	return nil
}
