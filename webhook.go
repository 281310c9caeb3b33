package mlmsoft

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/patrickmn/go-cache"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
	"github.com/mlmsoft-go/mlmsoft/internal/whsig"
)

// Defaults applied to zero WebhookConfig fields.
const (
	// WebhookReplayWindowDefault is how far a signed webhook's timestamp may
	// be from now, in the past or the future.
	WebhookReplayWindowDefault = 5 * time.Minute
	// WebhookMaxBodyDefault is the largest webhook body accepted, in bytes.
	WebhookMaxBodyDefault int64 = 64 << 10
	// WebhookTimestampHeaderDefault carries the signed Unix timestamp.
	WebhookTimestampHeaderDefault = whsig.TimestampHeader
	// WebhookSignatureHeaderDefault carries "sha256=<hex>", the HMAC-SHA256
	// of "<timestamp>.<raw body>"; several comma-separated values may be
	// sent while a secret is being rotated.
	WebhookSignatureHeaderDefault = whsig.SignatureHeader
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
// does not document its webhook (MLMSOFT-API.md, "Webhook"): these are our
// assumption, and WebhookConfig replaces them.
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

// setDefaults fills zero fields of w and validates it. Slices are copied so
// that the caller's Config stays its own.
func (w *WebhookConfig) setDefaults() error {
	bad := func(field, why string) error {
		return fmt.Errorf("%w: Webhook.%s %s", ErrInvalidConfig, field, why)
	}
	w.Secrets = append([]string(nil), w.Secrets...)
	w.PathTokens = append([]string(nil), w.PathTokens...)
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
	w.ReplayWindow = cmp.Or(w.ReplayWindow, WebhookReplayWindowDefault)
	if w.MaxBody == 0 {
		w.MaxBody = WebhookMaxBodyDefault
	}
	w.TimestampHeader = strings.TrimSpace(w.TimestampHeader)
	w.SignatureHeader = strings.TrimSpace(w.SignatureHeader)
	if w.TimestampHeader == "" {
		w.TimestampHeader = WebhookTimestampHeaderDefault
	}
	if w.SignatureHeader == "" {
		w.SignatureHeader = WebhookSignatureHeaderDefault
	}
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
			*f.v = append([]string(nil), f.def...)
			continue
		}
		*f.v = append([]string(nil), *f.v...)
		for i, name := range *f.v {
			if name == "" || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
				return bad(fmt.Sprintf("%s[%d]", f.name, i), "must be a field name or a dotted path")
			}
		}
	}
	return nil
}

// WebhookHandler returns the Type III webhook handler, a plain http.Handler
// to mount at POST {prefix}/webhook (or {prefix}/webhook/{token} with path
// tokens; the adapters in ginadapter and nethttpadapter do this). It is safe
// for concurrent use.
//
// It answers 404 while Config.Webhook.Enabled is false; 405 to anything but
// POST; 401 when authentication fails (wrong or missing token, missing,
// malformed or forged signature, timestamp outside the replay window); 413
// when the body is larger than MaxBody; 415 for a body neither JSON nor a
// form; 400 when the body cannot be read as a webhook (malformed JSON, no
// valid email, no valid id, fields that disagree); 503 when MLM Soft must be
// asked and cannot be reached (the sender should retry); 500 when the store
// fails. Every other outcome is 200 {"ok":true}: the link was made, was
// made before, or there is no link with that email (logged, never told).
func (p *Plugin) WebhookHandler() http.Handler { return p.webhook }

// WebhookUsesPathToken reports whether the webhook expects a secret token as
// its last path segment, i.e. whether it must be mounted at
// {prefix}/webhook/{token} rather than {prefix}/webhook.
func (p *Plugin) WebhookUsesPathToken() bool { return len(p.cfg.Webhook.PathTokens) > 0 }

// webhookState is the webhook handler of one Plugin.
type webhookState struct {
	p    *Plugin
	cfg  WebhookConfig
	auth webhookAuth
	seen *cache.Cache // replay digests of settled requests, when signed
}

func newWebhookState(p *Plugin) *webhookState {
	cfg := p.cfg.Webhook
	w := &webhookState{p: p, cfg: cfg, auth: newWebhookAuth(cfg)}
	if cfg.Enabled && len(cfg.Secrets) > 0 {
		// Entries outlive the window on both sides; afterwards the
		// timestamp check refuses the request anyway.
		w.seen = cache.New(2*cfg.ReplayWindow+time.Minute, cfg.ReplayWindow)
	}
	return w
}

// webhookAuth verifies webhook requests. It holds no state beyond its
// configuration.
type webhookAuth struct {
	secrets           [][]byte
	tokens            [][sha256.Size]byte // hashed: equal lengths for constant-time compares
	tsHeader, sigHead string
	window            time.Duration
}

func newWebhookAuth(cfg WebhookConfig) webhookAuth {
	a := webhookAuth{tsHeader: cfg.TimestampHeader, sigHead: cfg.SignatureHeader, window: cfg.ReplayWindow}
	for _, s := range cfg.Secrets {
		a.secrets = append(a.secrets, []byte(s))
	}
	for _, t := range cfg.PathTokens {
		a.tokens = append(a.tokens, sha256.Sum256([]byte(t)))
	}
	return a
}

var errWebhookToken = errors.New("webhook path token missing or wrong")

// checkToken verifies the path token, if tokens are configured. Every
// configured token is compared, in constant time.
func (a *webhookAuth) checkToken(token string) error {
	if len(a.tokens) == 0 {
		return nil
	}
	got := sha256.Sum256([]byte(token))
	ok := 0
	for _, t := range a.tokens {
		ok |= subtle.ConstantTimeCompare(t[:], got[:])
	}
	if ok != 1 || token == "" {
		return errWebhookToken
	}
	return nil
}

// checkSignature verifies the HMAC signature of body, if secrets are
// configured. It returns a whsig error.
func (a *webhookAuth) checkSignature(h http.Header, body []byte, now time.Time) error {
	if len(a.secrets) == 0 {
		return nil
	}
	return whsig.Verify(a.secrets, h.Get(a.tsHeader), h.Get(a.sigHead), body, now, a.window)
}

// ServeHTTP handles one webhook request; see Plugin.WebhookHandler.
func (w *webhookState) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if !w.cfg.Enabled {
		writeError(rw, http.StatusNotFound, "not_found", "the webhook is not enabled")
		return
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		writeError(rw, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	log := w.p.log.With("handler", "webhook")
	if err := w.auth.checkToken(r.PathValue(WebhookTokenParam)); err != nil {
		log.Warn("webhook refused", "reason", err.Error(), "remote", r.RemoteAddr)
		writeError(rw, http.StatusUnauthorized, "unauthorized", "authentication failed")
		return
	}
	body, status := readBody(rw, r, w.cfg.MaxBody)
	if status != 0 {
		log.Warn("webhook refused", "reason", http.StatusText(status), "remote", r.RemoteAddr)
		writeBodyError(rw, status, w.cfg.MaxBody)
		return
	}
	if err := w.auth.checkSignature(r.Header, body, w.p.clock.Now()); err != nil {
		log.Warn("webhook refused", "reason", err.Error(), "remote", r.RemoteAddr)
		writeError(rw, http.StatusUnauthorized, "unauthorized", "authentication failed")
		return
	}
	var replayKey string
	if w.seen != nil {
		sum := sha256.Sum256(append([]byte(strings.TrimSpace(r.Header.Get(w.cfg.TimestampHeader))+"."), body...))
		replayKey = hex.EncodeToString(sum[:])
		if _, dup := w.seen.Get(replayKey); dup {
			log.Debug("webhook seen before; nothing to do")
			writeJSON(rw, http.StatusOK, okAnswer)
			return
		}
	}
	ev, err := parseWebhook(r.Header.Get("Content-Type"), body, w.cfg)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errUnsupportedMedia) {
			status = http.StatusUnsupportedMediaType
		}
		log.Warn("webhook refused", "reason", err.Error())
		writeError(rw, status, codeFor(status), err.Error())
		return
	}
	res := w.apply(r.Context(), log, ev)
	switch {
	case res.status == http.StatusServiceUnavailable:
		rw.Header().Set("Retry-After", strconv.Itoa(retrySeconds(res.retryAfter)))
		writeError(rw, res.status, "upstream_unavailable", "MLM Soft could not be reached; retry later")
	case res.status != http.StatusOK:
		writeError(rw, res.status, "internal", "the webhook could not be stored; retry later")
	default:
		if res.settled && replayKey != "" {
			w.seen.SetDefault(replayKey, true)
		}
		writeJSON(rw, http.StatusOK, okAnswer)
	}
}

var okAnswer = map[string]bool{"ok": true}

// webhookEvent is what a webhook says: a login and MLM Soft's ids.
type webhookEvent struct {
	Email     string // normalised (lower-cased)
	UserID    int64  // 0 if absent
	AccountID int64  // 0 if absent
}

// webhookResult is the outcome of applying a webhook.
type webhookResult struct {
	status     int           // 200, 500 or 503
	retryAfter time.Duration // with 503
	settled    bool          // the link is linked as the webhook says
}

// apply links the link with ev.Email. It never tells the caller whether
// such a link exists: only a failure to do its work changes the status.
func (w *webhookState) apply(ctx context.Context, log *slog.Logger, ev webhookEvent) webhookResult {
	p := w.p
	ok := webhookResult{status: http.StatusOK}
	l, err := p.store.GetLinkByEmail(ctx, ev.Email)
	switch {
	case errors.Is(err, ErrNotFound):
		log.Info("webhook for a login no host user has; ignored", "mlmUser", ev.UserID, "account", ev.AccountID)
		return ok
	case err != nil:
		log.Error("webhook: read link", "err", err)
		return webhookResult{status: http.StatusInternalServerError}
	}
	disagree := func(what string) webhookResult {
		log.Warn("webhook ids disagree with what is known; ignored", "user", l.UserID, "with", what,
			"mlmUser", ev.UserID, "account", ev.AccountID, "linkedAccount", l.AccountID, "linkedMLMUser", l.MLMUserID)
		return ok
	}
	if l.MLMUserID != 0 && ev.UserID != 0 && l.MLMUserID != ev.UserID {
		return disagree("the link")
	}
	if l.State == LinkLinked {
		if ev.AccountID == 0 || ev.AccountID == l.AccountID {
			return webhookResult{status: http.StatusOK, settled: true} // linked before: nothing to do
		}
		return disagree("the link")
	}

	accountID, mlmUserID := ev.AccountID, ev.UserID
	upstream := func(step string, err error) webhookResult {
		if api2.KindOf(err) == api2.Business {
			log.Warn("webhook: MLM Soft refused the check; not linked", "user", l.UserID, "step", step, "err", err)
			return ok
		}
		log.Warn("webhook: MLM Soft unreachable; asking the sender to retry", "user", l.UserID, "step", step, "err", err)
		res := webhookResult{status: http.StatusServiceUnavailable, retryAfter: time.Minute}
		var ae *api2.Error
		switch {
		case errors.Is(err, ErrUpstreamUnavailable):
			res.retryAfter = p.cfg.Breaker.OpenTimeout
		case errors.As(err, &ae) && ae.RetryAfter > 0:
			res.retryAfter = ae.RetryAfter
		}
		return res
	}
	if w.cfg.Confirm || accountID == 0 {
		ex, err := p.userExists(ctx, l.Email)
		if err != nil {
			return upstream("user/exists", err)
		}
		switch {
		case ex.Exists && ex.UserID != 0 && mlmUserID != 0 && ex.UserID != mlmUserID:
			return disagree("user/exists")
		case ex.Exists && ex.AccountID != 0 && accountID != 0 && ex.AccountID != accountID:
			return disagree("user/exists")
		case w.cfg.Confirm && (!ex.Exists || (ex.UserID == 0 && ex.AccountID == 0)):
			log.Warn("webhook not confirmed by user/exists; not linked", "user", l.UserID, "mlmUser", ev.UserID)
			return ok
		case w.cfg.Confirm && mlmUserID == 0 && (ex.AccountID == 0 || accountID == 0):
			// Only an account id came and user/exists gives none to compare.
			log.Warn("webhook not confirmed: user/exists cannot vouch for its account id; not linked", "user", l.UserID)
			return ok
		}
		if ex.Exists {
			mlmUserID = cmp.Or(mlmUserID, ex.UserID)
			accountID = cmp.Or(accountID, ex.AccountID)
		}
	}
	if accountID == 0 && l.DocumentID != 0 {
		doc, err := p.getDocument(ctx, l.DocumentID)
		if err != nil {
			return upstream("document/get", err)
		}
		if doc.Processed && doc.Success && doc.AccountID != 0 {
			if mlmUserID != 0 && doc.UserID != 0 && doc.UserID != mlmUserID {
				return disagree("document/get")
			}
			accountID, mlmUserID = doc.AccountID, cmp.Or(mlmUserID, doc.UserID)
		}
	}
	if accountID == 0 {
		log.Warn("webhook gave no account id and MLM Soft has none yet; left to the worker", "user", l.UserID, "mlmUser", mlmUserID)
		return ok
	}
	linked, changed, err := p.linkTo(ctx, linkRequest{UserID: l.UserID, AccountID: accountID, MLMUserID: mlmUserID, Via: LinkedViaWebhook})
	switch {
	case errors.Is(err, ErrAlreadyLinked):
		log.Warn("webhook for a user linked to another account; ignored", "user", l.UserID, "account", accountID, "linkedAccount", linked.AccountID)
		return ok
	case errors.Is(err, ErrNotFound):
		log.Info("webhook: the link was removed meanwhile; ignored", "user", l.UserID)
		return ok
	case err != nil:
		log.Error("webhook: store link", "user", l.UserID, "err", err)
		return webhookResult{status: http.StatusInternalServerError}
	}
	if changed {
		log.Info("linked by webhook", "user", l.UserID, "account", accountID, "mlmUser", mlmUserID)
	}
	return webhookResult{status: http.StatusOK, settled: true}
}

// errUnsupportedMedia is wrapped by parse errors for a content type that is
// neither JSON nor a form.
var errUnsupportedMedia = errors.New("unsupported content type: send application/json or application/x-www-form-urlencoded")

// parseWebhook reads a verified webhook body strictly: a JSON object (no
// duplicate keys, no trailing data) or a URL-encoded form; a valid email;
// at least one id, each a positive integer (a JSON integer or a string of
// digits); fields named differently must agree.
func parseWebhook(contentType string, body []byte, cfg WebhookConfig) (webhookEvent, error) {
	pl, err := parsePayload(contentType, body)
	if err != nil {
		return webhookEvent{}, err
	}
	var ev webhookEvent
	emails := pl.lookup(cfg.EmailFields)
	if len(emails) == 0 {
		return webhookEvent{}, errors.New("no email field")
	}
	for _, v := range emails {
		s, ok := v.(string)
		if !ok {
			return webhookEvent{}, errors.New("the email is not a string")
		}
		e, err := normalizeEmail(s)
		if err != nil {
			return webhookEvent{}, errors.New("the email is not a valid address")
		}
		if ev.Email != "" && ev.Email != e {
			return webhookEvent{}, errors.New("email fields disagree")
		}
		ev.Email = e
	}
	if ev.UserID, err = oneID(pl.lookup(cfg.UserIDFields), "user id"); err != nil {
		return webhookEvent{}, err
	}
	if ev.AccountID, err = oneID(pl.lookup(cfg.AccountIDFields), "account id"); err != nil {
		return webhookEvent{}, err
	}
	if ev.UserID == 0 && ev.AccountID == 0 {
		return webhookEvent{}, errors.New("no user id or account id field")
	}
	return ev, nil
}

// oneID reads the values found for an id: all must be the same positive
// integer. None found: 0.
func oneID(vals []any, what string) (int64, error) {
	var id int64
	for _, v := range vals {
		var s string
		switch v := v.(type) {
		case json.Number:
			s = string(v)
		case string:
			s = strings.TrimSpace(v)
		default:
			return 0, fmt.Errorf("the %s is not a number", what)
		}
		n, ok := parsePositiveID(s)
		if !ok {
			return 0, fmt.Errorf("the %s is not a positive integer", what)
		}
		if id != 0 && id != n {
			return 0, fmt.Errorf("%s fields disagree", what)
		}
		id = n
	}
	return id, nil
}

func parsePositiveID(s string) (int64, bool) {
	if s == "" || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

// payload is a parsed request body: a JSON object or a form.
type payload struct {
	obj  map[string]any // JSON: string, json.Number, bool, nil, []any, map[string]any
	form url.Values
}

// parsePayload parses body according to contentType; an empty content type
// is sniffed (a body starting with '{' is JSON, anything else a form).
func parsePayload(contentType string, body []byte) (payload, error) {
	isJSON := false
	if strings.TrimSpace(contentType) == "" {
		isJSON = bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{"))
	} else {
		mt, _, err := mime.ParseMediaType(contentType)
		switch {
		case err != nil:
			return payload{}, fmt.Errorf("%w (the Content-Type is malformed)", errUnsupportedMedia)
		case mt == "application/json" || strings.HasSuffix(mt, "+json"):
			isJSON = true
		case mt == "application/x-www-form-urlencoded":
		default:
			return payload{}, errUnsupportedMedia
		}
	}
	if isJSON {
		obj, err := decodeJSONObject(body)
		if err != nil {
			return payload{}, fmt.Errorf("malformed JSON: %w", err)
		}
		return payload{obj: obj}, nil
	}
	if !utf8.Valid(body) {
		return payload{}, errors.New("malformed form: not UTF-8")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return payload{}, errors.New("malformed form")
	}
	return payload{form: form}, nil
}

// lookup returns every non-null value found under any of names.
func (pl payload) lookup(names []string) []any {
	var out []any
	for _, name := range names {
		if pl.form != nil {
			alt := phpStyleKey(name)
			for k, vs := range pl.form {
				if !strings.EqualFold(k, name) && !strings.EqualFold(k, alt) {
					continue
				}
				for _, v := range vs {
					if v != "" {
						out = append(out, v)
					}
				}
			}
			continue
		}
		cur := []any{pl.obj}
		for _, seg := range strings.Split(name, ".") {
			var next []any
			for _, c := range cur {
				m, ok := c.(map[string]any)
				if !ok {
					continue
				}
				for k, v := range m {
					if strings.EqualFold(k, seg) {
						next = append(next, v)
					}
				}
			}
			cur = next
		}
		for _, v := range cur {
			if v != nil {
				out = append(out, v)
			}
		}
	}
	return out
}

// phpStyleKey turns "a.b.c" into "a[b][c]".
func phpStyleKey(name string) string {
	segs := strings.Split(name, ".")
	if len(segs) == 1 {
		return name
	}
	return segs[0] + "[" + strings.Join(segs[1:], "][") + "]"
}

// maxJSONDepth bounds the nesting of webhook and check-auth bodies.
const maxJSONDepth = 16

// decodeJSONObject decodes a JSON object strictly: valid JSON, an object at
// the top, no duplicate keys at any depth, nothing after it.
func decodeJSONObject(body []byte) (map[string]any, error) {
	if !json.Valid(body) {
		return nil, errors.New("invalid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not a JSON object")
	}
	obj, err := decodeObjectRest(dec, 1)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return obj, nil
}

func decodeObjectRest(dec *json.Decoder, depth int) (map[string]any, error) {
	if depth > maxJSONDepth {
		return nil, errors.New("nested too deeply")
	}
	obj := map[string]any{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, errors.New("object key is not a string")
		}
		if _, dup := obj[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", truncate(key, 40))
		}
		v, err := decodeValue(dec, depth)
		if err != nil {
			return nil, err
		}
		obj[key] = v
	}
	if _, err := dec.Token(); err != nil { // '}'
		return nil, err
	}
	return obj, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return tok, nil
	}
	switch d {
	case '{':
		return decodeObjectRest(dec, depth+1)
	case '[':
		if depth+1 > maxJSONDepth {
			return nil, errors.New("nested too deeply")
		}
		var arr []any
		for dec.More() {
			v, err := decodeValue(dec, depth+1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		if _, err := dec.Token(); err != nil { // ']'
			return nil, err
		}
		return arr, nil
	}
	return nil, fmt.Errorf("unexpected %q", d)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// readBody reads the whole body up to max bytes. It returns a non-zero HTTP
// status when it cannot: 413 (too large) or 400 (unreadable).
func readBody(rw http.ResponseWriter, r *http.Request, max int64) ([]byte, int) {
	if r.ContentLength > max {
		return nil, http.StatusRequestEntityTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, max))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, http.StatusRequestEntityTooLarge
	case err != nil:
		return nil, http.StatusBadRequest
	}
	return body, 0
}

func writeBodyError(rw http.ResponseWriter, status int, max int64) {
	if status == http.StatusRequestEntityTooLarge {
		writeError(rw, status, "too_large", fmt.Sprintf("the body is larger than %d bytes", max))
		return
	}
	writeError(rw, status, "malformed", "the body could not be read")
}

// retrySeconds turns a delay into a Retry-After value: whole seconds,
// rounded up, at least 1.
func retrySeconds(d time.Duration) int {
	return max(int((d+time.Second-1)/time.Second), 1)
}

// codeFor is the JSON error code of a status the handlers answer.
func codeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "malformed"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	}
	return "error"
}

// writeError answers {"error": message, "code": code}.
func writeError(rw http.ResponseWriter, status int, code, message string) {
	writeJSON(rw, status, map[string]string{"error": message, "code": code})
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	h := rw.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}
