package mlmsoft

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
)

// WebhookHandler returns the Type III webhook handler, a plain http.Handler
// to mount at POST {prefix}/webhook (or {prefix}/webhook/{token} with path
// tokens; the adapters in ginadapter and nethttpadapter do this). It is safe
// for concurrent use, and answers at once: hooks it causes run later, on the
// plugin's own goroutines.
//
// It answers 404 while Config.Webhook.Enabled is false; 405 to anything but
// POST; 401 when authentication fails (wrong or missing token, missing,
// malformed or forged signature, timestamp outside the replay window); 413
// when the body is larger than MaxBody; 408 when it is not sent within
// ReadTimeout; 415 for a body neither JSON nor a form; 400 when the body
// cannot be read as a webhook (malformed JSON, no valid email, no valid id,
// fields that disagree); 503 when MLM Soft must be asked and cannot be
// reached or refuses the integration's configuration (the sender should
// retry); 500 when the store fails. Every other outcome is 200 {"ok":true}:
// the link was made, was made before, or there is no link with that email
// (logged, never told).
func (p *Plugin) WebhookHandler() http.Handler { return p.webhook }

// WebhookUsesPathToken reports whether the webhook expects a secret token as
// its last path segment, i.e. whether it must be mounted at
// {prefix}/webhook/{token} rather than {prefix}/webhook.
func (p *Plugin) WebhookUsesPathToken() bool { return len(p.cfg.Webhook.PathTokens) > 0 }

// webhookHandler is the webhook handler of one Plugin.
type webhookHandler struct {
	p     *Plugin
	cfg   WebhookConfig
	guard guard
	auth  webhookAuth
	seen  *clockCache // replay digests of settled requests, when signed
}

func newWebhookHandler(p *Plugin) *webhookHandler {
	cfg := p.cfg.Webhook
	return &webhookHandler{
		p: p, cfg: cfg, auth: newWebhookAuth(cfg), seen: newClockCache(),
		guard: guard{feature: "the webhook", enabled: cfg.Enabled, readTimeout: cfg.ReadTimeout, maxBody: cfg.MaxBody},
	}
}

// expire forgets replay digests older than their window.
func (w *webhookHandler) expire(now time.Time) { w.seen.expire(now) }

// ServeHTTP handles one webhook request; see Plugin.WebhookHandler.
func (w *webhookHandler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if !w.guard.admit(rw, r) {
		return
	}
	log := w.p.log.With("handler", "webhook")
	if err := w.auth.checkToken(r.PathValue(WebhookTokenParam)); err != nil {
		log.Warn("webhook refused", "reason", err.Error(), "remote", r.RemoteAddr)
		writeError(rw, http.StatusUnauthorized, "unauthorized", "authentication failed")
		return
	}
	body, status, ok := w.guard.body(rw, r)
	if !ok {
		log.Warn("webhook refused", "reason", http.StatusText(status), "remote", r.RemoteAddr)
		return
	}
	now := w.p.clock.Now()
	if err := w.auth.checkSignature(r.Header, body, now); err != nil {
		log.Warn("webhook refused", "reason", err.Error(), "remote", r.RemoteAddr)
		writeError(rw, http.StatusUnauthorized, "unauthorized", "authentication failed")
		return
	}
	var replayKey string
	if len(w.cfg.Secrets) > 0 {
		sum := sha256.Sum256(append([]byte(strings.TrimSpace(r.Header.Get(w.cfg.TimestampHeader))+"."), body...))
		replayKey = hex.EncodeToString(sum[:])
		if _, dup := w.seen.get(replayKey, now); dup {
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
			// Remembered past the window on both sides; afterwards the
			// timestamp check refuses the request anyway.
			w.seen.add(replayKey, now, 2*w.cfg.ReplayWindow+time.Minute)
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
func (w *webhookHandler) apply(ctx context.Context, log *slog.Logger, ev webhookEvent) webhookResult {
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
		if kind := api2.KindOf(err); kind == api2.Business {
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
