package mlmsoft

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Defaults applied to zero Config fields.
const (
	AppIDDefault                 = "1"
	UserTypeDefault              = "member"
	RequestTimeoutDefault        = 30 * time.Second
	ExpectContinueTimeoutDefault = time.Second
	LeaseDefault                 = 2 * time.Minute
	IdleRecheckDefault           = time.Second
	RetryInitialDefault          = time.Second
	RetryMaxDefault              = 5 * time.Minute
	JitterDefault                = 0.5
	LinkConcurrencyDefault       = 4
	PollInitialDefault           = time.Second
	PollMaxDefault               = time.Minute
	LinkDeadlineDefault          = time.Hour
	SponsorWaitDefault           = 2 * time.Second
	CreateRecoveryDefault        = 2 * time.Minute
	VolumeConcurrencyDefault     = 8
	LinkRecheckDefault           = time.Minute
	BreakerFailuresDefault       = 5
	BreakerOpenDefault           = 30 * time.Second
	BreakerHalfOpenDefault       = 1
	HookConcurrencyDefault       = 2
	RetentionDefault             = 90 * 24 * time.Hour
	ProbeMaxDefault              = time.Minute
)

// Config configures a Plugin. BaseURL and APIToken are required; every other
// zero field takes the matching XxxDefault. New copies it: changing the
// caller's struct afterwards has no effect.
type Config struct {
	// BaseURL is the API2 gateway, e.g.
	// "https://acme.mlmsoft.com/api2/online-office/". Required.
	BaseURL string
	// APIToken signs every request. Required. Never logged.
	APIToken string
	// AppID is sent as the App-Id header. Zero: AppIDDefault.
	AppID string
	// UserType is the "type" parameter of user calls. Zero: UserTypeDefault.
	UserType string
	// HTTPClient sends the requests. Zero: a client of the plugin's own. A
	// client given here is copied, and its *http.Transport cloned, never
	// changed.
	HTTPClient *http.Client
	// RequestTimeout bounds each request. Zero: RequestTimeoutDefault.
	RequestTimeout time.Duration
	// ExpectContinueTimeout is how long a POST waits for the server's
	// "100 Continue" before sending its body anyway. Waiting lets the
	// plugin tell an answer given before MLM Soft read the request (safe to
	// retry) from one given after (it may have been applied). Zero:
	// ExpectContinueTimeoutDefault (1 s, as curl), or half RequestTimeout
	// when that is shorter; it must be shorter than RequestTimeout.
	// Negative: POSTs do not ask for "100 Continue" at all, which saves a
	// round trip per request (see BENCHMARKS.md) but makes every failure
	// after the request left ambiguous.
	ExpectContinueTimeout time.Duration
	// MisconfigMessages are case-insensitive fragments of MLM Soft refusal
	// messages that mean the integration's credentials are refused (a
	// wrong token or App-Id) rather than the one request: MLM Soft does not
	// document those texts. Zero: a built-in list covering "security key",
	// "app-id", "api token" and the like. HTTP 401, 403 and 404 answers are
	// configuration errors whatever their text.
	MisconfigMessages []string
	// ProbeMax caps the backoff between probes of MLM Soft while it refuses
	// the configuration (see Health). Zero: ProbeMaxDefault.
	ProbeMax time.Duration

	// PasswordKey is the AES key (16, 24 or 32 bytes) that seals sign-up
	// passwords until user/create is accepted. Required when NewUser
	// carries a password. Never logged.
	PasswordKey []byte
	// DefaultSponsorAccountID is the MLM Soft account id used as sponsor for
	// users registered with no sponsor. Zero: such users are refused.
	DefaultSponsorAccountID int64
	// ConfirmationURL, when set, is sent with user/create.
	ConfirmationURL string

	// Linking tunes the create-and-link flow.
	Linking LinkingConfig
	// Volumes tunes volume delivery.
	Volumes VolumeConfig
	// Breaker tunes the circuit breaker in front of MLM Soft.
	Breaker BreakerConfig
	// Webhook configures the Type III webhook handler.
	Webhook WebhookConfig
	// CheckAuth configures the Type II check-auth handler.
	CheckAuth CheckAuthConfig

	// Hooks are the host's callbacks.
	Hooks Hooks

	// Retention is how long delivered, rejected and skipped volume changes
	// (with their operator audit) are kept after they became final;
	// idempotency keys are honoured for at least as long. A worker purges
	// older ones in batches. Zero: RetentionDefault (90 days). Negative:
	// kept forever.
	Retention time.Duration

	// Lease is how long a worker holds claimed work before another may take
	// it over; it must outlast RequestTimeout. Zero: LeaseDefault.
	Lease time.Duration
	// IdleRecheck is how often idle workers look for due work in the store
	// (work enqueued in this process, or notified by a WorkListener store,
	// wakes them at once). Zero: IdleRecheckDefault.
	IdleRecheck time.Duration
	// WorkerID names this process in leases. Zero: host name, pid and a
	// random suffix.
	WorkerID string
	// Logger receives structured logs. Zero: slog.Default().
	Logger *slog.Logger
	// Clock is the source of time. Zero: the real clock.
	Clock Clock
}

// LinkingConfig tunes the create-and-link flow. Zero fields take defaults.
type LinkingConfig struct {
	// DisablePolling turns Type I document polling off: links then complete
	// by webhook or check-auth (user/exists is still asked at Deadline).
	DisablePolling bool
	// PollInitial and PollMax bound the capped exponential backoff between
	// document/get (or user/exists) polls. Zero: PollInitialDefault,
	// PollMaxDefault.
	PollInitial, PollMax time.Duration
	// Deadline is how long after user/create was accepted a link may stay
	// unfinished before it fails, if user/exists then says MLM Soft has no
	// such account. Zero: LinkDeadlineDefault.
	Deadline time.Duration
	// RetryInitial and RetryMax bound retries after transport failures.
	// Zero: RetryInitialDefault, RetryMaxDefault.
	RetryInitial, RetryMax time.Duration
	// SponsorWait is how long a user waits before checking again whether
	// its sponsor is linked. Zero: SponsorWaitDefault.
	SponsorWait time.Duration
	// CreateRecovery is how long after an unacknowledged user/create the
	// plugin keeps asking user/exists before it sends user/create again.
	// Zero: CreateRecoveryDefault.
	CreateRecovery time.Duration
	// Concurrency is how many links are worked on at once per process.
	// Zero: LinkConcurrencyDefault.
	Concurrency int
}

// BreakerConfig tunes the circuit breaker (github.com/sony/gobreaker) that
// guards every call to MLM Soft. Only failures that say MLM Soft is unwell
// (not processed, or no usable answer) count against it; MLM Soft's
// refusals, configuration errors and the caller's cancellations do not.
type BreakerConfig struct {
	// ConsecutiveFailures trips the breaker. Zero: BreakerFailuresDefault.
	ConsecutiveFailures int
	// OpenTimeout is how long it stays open before probing. Zero:
	// BreakerOpenDefault.
	OpenTimeout time.Duration
	// HalfOpenRequests is how many probes it admits while half-open. Zero:
	// BreakerHalfOpenDefault.
	HalfOpenRequests int
}

// withDefaults returns c with every zero field set, and validates it. Slices
// are copied so that the caller's Config stays its own.
func (c Config) withDefaults() (Config, error) {
	bad := func(field, why string) (Config, error) {
		return Config{}, fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, why)
	}
	if c.BaseURL == "" {
		return bad("BaseURL", "is required")
	}
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return bad("BaseURL", "must be an absolute http(s) URL")
	}
	if c.APIToken == "" {
		return bad("APIToken", "is required")
	}
	if n := len(c.PasswordKey); n != 0 && n != 16 && n != 24 && n != 32 {
		return bad("PasswordKey", fmt.Sprintf("must be 16, 24 or 32 bytes, not %d", n))
	}
	c.PasswordKey = slices.Clone(c.PasswordKey)
	if c.DefaultSponsorAccountID < 0 {
		return bad("DefaultSponsorAccountID", "must not be negative")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"RequestTimeout", c.RequestTimeout}, {"Lease", c.Lease}, {"IdleRecheck", c.IdleRecheck}, {"ProbeMax", c.ProbeMax}} {
		if d.v < 0 {
			return bad(d.name, "must not be negative")
		}
	}
	c.MisconfigMessages = slices.Clone(c.MisconfigMessages)
	for i, m := range c.MisconfigMessages {
		if strings.TrimSpace(m) == "" {
			return bad(fmt.Sprintf("MisconfigMessages[%d]", i), "is empty")
		}
	}
	c.AppID = cmp.Or(c.AppID, AppIDDefault)
	c.UserType = cmp.Or(c.UserType, UserTypeDefault)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, RequestTimeoutDefault)
	switch {
	case c.ExpectContinueTimeout == 0:
		// Never wait so long that the body cannot leave in time.
		c.ExpectContinueTimeout = min(ExpectContinueTimeoutDefault, c.RequestTimeout/2)
	case c.ExpectContinueTimeout >= c.RequestTimeout:
		return bad("ExpectContinueTimeout", fmt.Sprintf("(%s) must be shorter than RequestTimeout (%s), or negative to send no Expect", c.ExpectContinueTimeout, c.RequestTimeout))
	}
	c.Lease = cmp.Or(c.Lease, LeaseDefault)
	c.IdleRecheck = cmp.Or(c.IdleRecheck, IdleRecheckDefault)
	c.ProbeMax = cmp.Or(c.ProbeMax, ProbeMaxDefault)
	c.Retention = cmp.Or(c.Retention, RetentionDefault)
	if c.Lease <= c.RequestTimeout {
		return bad("Lease", fmt.Sprintf("(%s) must be longer than RequestTimeout (%s)", c.Lease, c.RequestTimeout))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.WorkerID == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.WorkerID = fmt.Sprintf("%s-%d-%s", cmp.Or(host, "host"), os.Getpid(), hex.EncodeToString(b[:]))
	}

	l := &c.Linking
	if l.PollInitial < 0 || l.PollMax < 0 || l.Deadline < 0 || l.RetryInitial < 0 || l.RetryMax < 0 || l.SponsorWait < 0 || l.CreateRecovery < 0 {
		return bad("Linking", "durations must not be negative")
	}
	l.PollInitial = cmp.Or(l.PollInitial, PollInitialDefault)
	l.PollMax = cmp.Or(l.PollMax, PollMaxDefault)
	l.Deadline = cmp.Or(l.Deadline, LinkDeadlineDefault)
	l.RetryInitial = cmp.Or(l.RetryInitial, RetryInitialDefault)
	l.RetryMax = cmp.Or(l.RetryMax, RetryMaxDefault)
	l.SponsorWait = cmp.Or(l.SponsorWait, SponsorWaitDefault)
	l.CreateRecovery = cmp.Or(l.CreateRecovery, CreateRecoveryDefault)
	if l.Concurrency < 0 {
		return bad("Linking.Concurrency", "must not be negative")
	}
	l.Concurrency = cmp.Or(l.Concurrency, LinkConcurrencyDefault)
	if l.PollMax < l.PollInitial {
		return bad("Linking.PollMax", "must not be less than Linking.PollInitial")
	}
	if l.RetryMax < l.RetryInitial {
		return bad("Linking.RetryMax", "must not be less than Linking.RetryInitial")
	}

	if err := c.Volumes.setDefaults(); err != nil {
		return Config{}, err
	}

	b := &c.Breaker
	if b.ConsecutiveFailures < 0 || b.HalfOpenRequests < 0 || b.OpenTimeout < 0 {
		return bad("Breaker", "fields must not be negative")
	}
	b.ConsecutiveFailures = cmp.Or(b.ConsecutiveFailures, BreakerFailuresDefault)
	b.OpenTimeout = cmp.Or(b.OpenTimeout, BreakerOpenDefault)
	b.HalfOpenRequests = cmp.Or(b.HalfOpenRequests, BreakerHalfOpenDefault)

	if c.Hooks.Timeout == 0 {
		c.Hooks.Timeout = min(HookTimeoutDefault, c.Lease/2)
	}
	if err := c.Hooks.setDefaults(); err != nil {
		return Config{}, err
	}
	if c.Hooks.Timeout >= c.Lease {
		return bad("Hooks.Timeout", fmt.Sprintf("(%s) must be shorter than Lease (%s)", c.Hooks.Timeout, c.Lease))
	}
	if err := c.Webhook.setDefaults(); err != nil {
		return Config{}, err
	}
	if err := c.CheckAuth.setDefaults(); err != nil {
		return Config{}, err
	}
	return c, nil
}
