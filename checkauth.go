package mlmsoft

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
)

// Defaults applied to zero CheckAuthConfig fields.
const (
	// CheckAuthUserLimitDefault is how many check-auth attempts one host
	// user may make per window.
	CheckAuthUserLimitDefault = 5
	// CheckAuthClientLimitDefault is how many check-auth attempts one
	// client address may make per window.
	CheckAuthClientLimitDefault = 20
	// CheckAuthLoginLimitDefault is how many check-auth attempts may name
	// one MLM Soft login per window, from all host users and addresses
	// together.
	CheckAuthLoginLimitDefault = 5
	// CheckAuthWindowDefault is the rate-limit window.
	CheckAuthWindowDefault = 15 * time.Minute
	// CheckAuthReadTimeoutDefault bounds how long a check-auth request may
	// take to send its body.
	CheckAuthReadTimeoutDefault = 5 * time.Second
	// CheckAuthMaxBodyDefault is the largest check-auth body accepted, in
	// bytes.
	CheckAuthMaxBodyDefault int64 = 16 << 10
)

// maxPasswordLen bounds the password a check-auth request may carry.
const maxPasswordLen = 1024

// CheckAuthConfig configures the Type II check-auth handler
// (Plugin.CheckAuthHandler): a signed-in host user posts their MLM Soft
// login and password, the plugin asks MLM Soft's user/check-auth and links
// that host user to the account it answers with. This also links host users
// who never went through OnUserRegistered (people who were in MLM Soft
// before the host app). The password is sent once to MLM Soft and is never
// logged or stored.
type CheckAuthConfig struct {
	// Enabled turns the handler on. Zero: CheckAuthHandler answers 404 to
	// every request. When Enabled, CurrentUser is required, else New fails
	// with ErrInvalidConfig.
	Enabled bool

	// CurrentUser returns the id of the host user signed in on r (from the
	// host's session, typically set by its auth middleware), and false when
	// nobody is signed in (the handler then answers 401). It is called on
	// the request's goroutine. ginadapter.CurrentUser builds one for Gin.
	CurrentUser func(r *http.Request) (userID string, ok bool)

	// AllowRelink lets a host user already linked to one MLM Soft account
	// link to another by check-auth. Zero: such a request is refused with
	// 409 and the link is kept.
	AllowRelink bool

	// UserLimit is how many attempts (requests that reach MLM Soft, right
	// or wrong) one host user may make per Window; ClientLimit is the same
	// per client address, and LoginLimit per MLM Soft login named (so that
	// many accounts and addresses together cannot guess one member's
	// password). Past any of them, requests are answered 429 with
	// Retry-After until the window that started with the first attempt
	// ends. Negative: no limit. Zero: CheckAuthUserLimitDefault,
	// CheckAuthClientLimitDefault, CheckAuthLoginLimitDefault. The counters
	// live in this process's memory (github.com/patrickmn/go-cache) and
	// run on Config.Clock: with several replicas each counts its own.
	UserLimit, ClientLimit, LoginLimit int
	// Window is the rate-limit window. Zero: CheckAuthWindowDefault.
	Window time.Duration

	// ClientIP returns the client address requests are counted under. Zero:
	// the host part of r.RemoteAddr. A host behind a reverse proxy or load
	// balancer must supply its own (reading the header its proxy sets, and
	// only that proxy's), or every user shares the proxy's address.
	ClientIP func(r *http.Request) string

	// MaxBody is the largest body accepted; a larger one is refused with
	// 413. Zero: CheckAuthMaxBodyDefault.
	MaxBody int64
	// ReadTimeout bounds how long the client may take to send the body.
	// Zero: CheckAuthReadTimeoutDefault.
	ReadTimeout time.Duration

	// Cross-origin protection: a browser request from another origin is
	// refused with 403 (http.CrossOriginProtection, which reads
	// Sec-Fetch-Site and Origin; requests from non-browser clients pass),
	// so that another site cannot make a signed-in user link their account
	// to an attacker's. TrustedOrigins ("https://app.example.com") are
	// allowed anyway. AllowCrossOrigin turns the check off, for hosts whose
	// own CSRF protection covers the route.
	TrustedOrigins   []string
	AllowCrossOrigin bool
}

// setDefaults fills zero fields of c and validates it.
func (c *CheckAuthConfig) setDefaults() error {
	bad := func(field, why string) error {
		return fmt.Errorf("%w: CheckAuth.%s %s", ErrInvalidConfig, field, why)
	}
	if c.Enabled && c.CurrentUser == nil {
		return bad("CurrentUser", "is required when CheckAuth.Enabled is set (the handler must know who is signed in)")
	}
	if c.Window < 0 {
		return bad("Window", "must not be negative")
	}
	if c.MaxBody < 0 || c.ReadTimeout < 0 {
		return bad("MaxBody", "and CheckAuth.ReadTimeout must not be negative")
	}
	c.UserLimit = cmp.Or(c.UserLimit, CheckAuthUserLimitDefault)
	c.ClientLimit = cmp.Or(c.ClientLimit, CheckAuthClientLimitDefault)
	c.LoginLimit = cmp.Or(c.LoginLimit, CheckAuthLoginLimitDefault)
	c.Window = cmp.Or(c.Window, CheckAuthWindowDefault)
	c.MaxBody = cmp.Or(c.MaxBody, CheckAuthMaxBodyDefault)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, CheckAuthReadTimeoutDefault)
	if c.ClientIP == nil {
		c.ClientIP = remoteHost
	}
	c.TrustedOrigins = append([]string(nil), c.TrustedOrigins...)
	cop := http.NewCrossOriginProtection()
	for i, o := range c.TrustedOrigins {
		if err := cop.AddTrustedOrigin(o); err != nil {
			return bad(fmt.Sprintf("TrustedOrigins[%d]", i), "must be scheme://host[:port] with nothing else")
		}
	}
	return nil
}

// remoteHost is the default CheckAuthConfig.ClientIP.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// CheckAuthHandler returns the Type II check-auth handler, a plain
// http.Handler to mount at POST {prefix}/check-auth (the adapters in
// ginadapter and nethttpadapter do this). It is safe for concurrent use.
//
// The request body is JSON {"login": ..., "password": ...} or the same as a
// form ("email" is accepted for "login"). The login is normalised as at
// sign-up (NormalizeEmail) before it is sent. Answers, all JSON:
//   - 200 {"linked":true,"accountId":...,"userId":...}: the signed-in host
//     user is linked to that MLM Soft account (userId is MLM Soft's user
//     id), now or before;
//   - 401 {"code":"not_signed_in"}: CurrentUser found nobody;
//     401 {"code":"bad_credentials"}: MLM Soft refused the login and
//     password; nothing changed;
//   - 409 {"code":"already_linked"}: the user is linked to another account
//     and AllowRelink is off; 409 {"code":"login_taken"}: that MLM Soft
//     login is another host user's link;
//   - 429 {"code":"rate_limited"} with Retry-After (seconds);
//   - 400 malformed body or login, 403 cross-origin browser request, 404
//     not enabled, 405 not POST, 408 body not sent within ReadTimeout, 413
//     body over MaxBody, 415 neither JSON nor a form;
//   - 502 {"code":"upstream_error"}: MLM Soft could not be reached or
//     answered nonsense; 503 {"code":"upstream_unavailable"} with
//     Retry-After: the circuit breaker is open; 503
//     {"code":"integration_down"} with Retry-After: MLM Soft refuses the
//     integration's own configuration (see Health): the user's password
//     was not checked, and is not said to be wrong;
//   - 500: the store or CurrentUser failed.
func (p *Plugin) CheckAuthHandler() http.Handler { return p.checker }

// checkAuthHandler is the check-auth handler of one Plugin.
type checkAuthHandler struct {
	p     *Plugin
	cfg   CheckAuthConfig
	guard guard
	cop   *http.CrossOriginProtection // nil: no check
	// limits counts attempts per host user, client address and MLM Soft
	// login; keys are prefixed with the kind.
	limits *clockCache
}

func newCheckAuthHandler(p *Plugin) *checkAuthHandler {
	cfg := p.cfg.CheckAuth
	c := &checkAuthHandler{
		p: p, cfg: cfg, limits: newClockCache(),
		guard: guard{feature: "check-auth", enabled: cfg.Enabled, readTimeout: cfg.ReadTimeout, maxBody: cfg.MaxBody},
	}
	if cfg.Enabled && !cfg.AllowCrossOrigin {
		c.cop = http.NewCrossOriginProtection()
		for _, o := range cfg.TrustedOrigins {
			_ = c.cop.AddTrustedOrigin(o) // validated by setDefaults
		}
	}
	return c
}

// expire forgets rate-limit windows that have ended.
func (c *checkAuthHandler) expire(now time.Time) { c.limits.expire(now) }

// checkAuthAnswer is the 200 answer.
type checkAuthAnswer struct {
	Linked    bool  `json:"linked"`
	AccountID int64 `json:"accountId"`
	UserID    int64 `json:"userId"`
}

// ServeHTTP handles one check-auth request; see Plugin.CheckAuthHandler.
func (c *checkAuthHandler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if !c.guard.admit(rw, r) {
		return
	}
	log := c.p.log.With("handler", "check-auth")
	if c.cop != nil {
		if err := c.cop.Check(r); err != nil {
			log.Warn("check-auth refused: cross-origin request", "remote", r.RemoteAddr)
			writeError(rw, http.StatusForbidden, "cross_origin", "cross-origin request refused")
			return
		}
	}
	userID, ok := c.cfg.CurrentUser(r)
	if !ok || userID == "" {
		writeError(rw, http.StatusUnauthorized, "not_signed_in", "sign in first")
		return
	}
	if err := checkUserID(userID); err != nil {
		log.Error("check-auth: CheckAuth.CurrentUser returned an unusable user id", "err", err)
		writeError(rw, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	client := c.cfg.ClientIP(r)
	log = log.With("user", userID, "client", client)
	now := c.p.clock.Now()
	keys := []limitKey{{"user:" + userID, c.cfg.UserLimit}, {"client:" + client, c.cfg.ClientLimit}}
	if wait, over := c.exceeded(keys, now); over {
		c.tooMany(rw, log, wait)
		return
	}
	body, _, ok := c.guard.body(rw, r)
	if !ok {
		return
	}
	login, password, err := parseCredentials(r.Header.Get("Content-Type"), body)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errUnsupportedMedia) {
			status = http.StatusUnsupportedMediaType
		}
		writeError(rw, status, codeFor(status), err.Error())
		return
	}
	keys = append(keys, limitKey{"login:" + login, c.cfg.LoginLimit})
	if wait, over := c.exceeded(keys, now); over {
		c.tooMany(rw, log, wait)
		return
	}
	p := c.p
	if p.health.isMisconfigured() {
		c.integrationDown(rw, log)
		return
	}
	if wait, over := c.hit(keys, now); over {
		c.tooMany(rw, log, wait)
		return
	}

	var auth api2.Auth
	err = p.call(r.Context(), func(ctx context.Context) (err error) {
		auth, err = p.client.CheckAuth(ctx, login, password)
		return err
	})
	switch kind := api2.KindOf(err); {
	case err == nil:
	case kind == api2.Business:
		log.Info("check-auth refused: MLM Soft did not accept the credentials")
		writeError(rw, http.StatusUnauthorized, "bad_credentials", "wrong login or password")
		return
	case kind == api2.Misconfigured:
		c.integrationDown(rw, log)
		return
	case errors.Is(err, ErrUpstreamUnavailable):
		log.Warn("check-auth: circuit breaker open", "err", err)
		rw.Header().Set("Retry-After", strconv.Itoa(retrySeconds(p.cfg.Breaker.OpenTimeout)))
		writeError(rw, http.StatusServiceUnavailable, "upstream_unavailable", "MLM Soft is unavailable; try again later")
		return
	default:
		log.Warn("check-auth: MLM Soft request failed", "err", err)
		writeError(rw, http.StatusBadGateway, "upstream_error", "MLM Soft could not be reached; try again later")
		return
	}

	email, err := NormalizeEmail(auth.Login)
	if err != nil {
		email = login // MLM Soft answered with an odd login: keep the one it accepted
	}
	l, changed, err := p.linkTo(r.Context(), linkRequest{
		UserID: userID, Email: email, AccountID: auth.AccountID, MLMUserID: auth.UserID,
		Via: LinkedViaCheckAuth, CreateIfMissing: true, AllowRelink: c.cfg.AllowRelink,
	})
	switch {
	case errors.Is(err, ErrAlreadyLinked):
		log.Info("check-auth refused: user linked to another account", "account", auth.AccountID, "linkedAccount", l.AccountID)
		writeError(rw, http.StatusConflict, "already_linked", "your account is already linked to another MLM Soft account")
		return
	case errors.Is(err, ErrDuplicate):
		log.Warn("check-auth refused: the MLM Soft login is another host user's link", "account", auth.AccountID)
		writeError(rw, http.StatusConflict, "login_taken", "this MLM Soft account is linked to another user")
		return
	case err != nil:
		log.Error("check-auth: store link", "err", err)
		writeError(rw, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	if changed {
		log.Info("linked by check-auth", "account", l.AccountID, "mlmUser", l.MLMUserID)
	}
	writeJSON(rw, http.StatusOK, checkAuthAnswer{Linked: true, AccountID: l.AccountID, UserID: l.MLMUserID})
}

// integrationDown answers 503: MLM Soft refuses the integration itself, so
// the user's credentials could not be checked.
func (c *checkAuthHandler) integrationDown(rw http.ResponseWriter, log *slog.Logger) {
	log.Warn("check-auth: MLM Soft refuses the integration's configuration; credentials not checked", "reason", c.p.Health().Reason)
	rw.Header().Set("Retry-After", strconv.Itoa(retrySeconds(c.p.cfg.ProbeMax)))
	writeError(rw, http.StatusServiceUnavailable, "integration_down",
		"the MLM Soft integration is not working right now; your password was not checked; try again later")
}

// limitKey is one counter a check-auth attempt is counted under.
type limitKey struct {
	key   string
	limit int // < 0: unlimited
}

// exceeded reports whether any of keys has used up its attempts at now,
// without counting one, and how long until all windows allow one.
func (c *checkAuthHandler) exceeded(keys []limitKey, now time.Time) (time.Duration, bool) {
	var wait time.Duration
	over := false
	for _, k := range keys {
		if k.limit < 0 {
			continue
		}
		if e, ok := c.limits.get(k.key, now); ok && e.n >= k.limit {
			over, wait = true, max(wait, e.until.Sub(now))
		}
	}
	return wait, over
}

// hit counts one attempt under each of keys and reports whether any went
// over its limit, and how long until its window ends.
func (c *checkAuthHandler) hit(keys []limitKey, now time.Time) (time.Duration, bool) {
	var wait time.Duration
	over := false
	for _, k := range keys {
		if k.limit < 0 {
			continue
		}
		if e := c.limits.add(k.key, now, c.cfg.Window); e.n > k.limit {
			over, wait = true, max(wait, e.until.Sub(now))
		}
	}
	return wait, over
}

func (c *checkAuthHandler) tooMany(rw http.ResponseWriter, log *slog.Logger, wait time.Duration) {
	log.Warn("check-auth rate-limited", "retryAfter", wait)
	rw.Header().Set("Retry-After", strconv.Itoa(retrySeconds(wait)))
	writeError(rw, http.StatusTooManyRequests, "rate_limited", "too many attempts; try again later")
}

// parseCredentials reads the login (normalised) and the password of a
// check-auth body. Its errors never contain the password.
func parseCredentials(contentType string, body []byte) (login, password string, err error) {
	pl, err := parsePayload(contentType, body)
	if err != nil {
		return "", "", err
	}
	for _, v := range pl.lookup([]string{"login", "email"}) {
		s, ok := v.(string)
		if !ok {
			return "", "", errors.New("the login is not a string")
		}
		n, err := NormalizeEmail(s)
		if err != nil {
			return "", "", errors.New("the login must be the email address of your MLM Soft account")
		}
		if login != "" && login != n {
			return "", "", errors.New("login and email disagree")
		}
		login = n
	}
	if login == "" {
		return "", "", errors.New("the login must be the email address of your MLM Soft account")
	}
	pw := pl.lookup([]string{"password"})
	if len(pw) != 1 {
		return "", "", errors.New("exactly one password is required")
	}
	password, ok := pw[0].(string)
	if !ok || password == "" {
		return "", "", errors.New("the password must be a non-empty string")
	}
	if len(password) > maxPasswordLen {
		return "", "", fmt.Errorf("the password is longer than %d bytes", maxPasswordLen)
	}
	return login, password, nil
}
