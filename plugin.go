package mlmsoft

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
	"github.com/mlmsoft-go/mlmsoft/internal/backoff"
	"github.com/mlmsoft-go/mlmsoft/internal/breaker"
)

// Defaults applied to zero Config fields.
const (
	AppIDDefault             = "1"
	UserTypeDefault          = "member"
	RequestTimeoutDefault    = 30 * time.Second
	LeaseDefault             = 2 * time.Minute
	IdleRecheckDefault       = time.Second
	RetryInitialDefault      = time.Second
	RetryMaxDefault          = 5 * time.Minute
	JitterDefault            = 0.5
	LinkConcurrencyDefault   = 4
	PollInitialDefault       = time.Second
	PollMaxDefault           = time.Minute
	LinkDeadlineDefault      = time.Hour
	SponsorWaitDefault       = 2 * time.Second
	CreateRecoveryDefault    = 2 * time.Minute
	VolumeConcurrencyDefault = 8
	LinkRecheckDefault       = time.Minute
	BreakerFailuresDefault   = 5
	BreakerOpenDefault       = 30 * time.Second
	BreakerHalfOpenDefault   = 1
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

	// Lease is how long a worker holds claimed work before another may take
	// it over; it must outlast RequestTimeout. Zero: LeaseDefault.
	Lease time.Duration
	// IdleRecheck is how often idle workers look for due work in the store
	// (work enqueued in this process wakes them at once). Zero:
	// IdleRecheckDefault.
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
	// only by webhook or check-auth (or fail at Deadline).
	DisablePolling bool
	// PollInitial and PollMax bound the capped exponential backoff between
	// document/get polls. Zero: PollInitialDefault, PollMaxDefault.
	PollInitial, PollMax time.Duration
	// Deadline is how long after user/create was accepted a link may stay
	// unfinished before it fails. Zero: LinkDeadlineDefault.
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
// guards every call to MLM Soft. Only transport failures count against it;
// MLM Soft's refusals and the caller's cancellations do not.
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

// withDefaults returns c with every zero field set, and validates it.
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
	c.PasswordKey = append([]byte(nil), c.PasswordKey...)
	if c.DefaultSponsorAccountID < 0 {
		return bad("DefaultSponsorAccountID", "must not be negative")
	}
	c.AppID = cmp.Or(c.AppID, AppIDDefault)
	c.UserType = cmp.Or(c.UserType, UserTypeDefault)
	c.RequestTimeout = cmp.Or(c.RequestTimeout, RequestTimeoutDefault)
	c.Lease = cmp.Or(c.Lease, LeaseDefault)
	c.IdleRecheck = cmp.Or(c.IdleRecheck, IdleRecheckDefault)
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
	l.PollInitial = cmp.Or(l.PollInitial, PollInitialDefault)
	l.PollMax = cmp.Or(l.PollMax, PollMaxDefault)
	l.Deadline = cmp.Or(l.Deadline, LinkDeadlineDefault)
	l.RetryInitial = cmp.Or(l.RetryInitial, RetryInitialDefault)
	l.RetryMax = cmp.Or(l.RetryMax, RetryMaxDefault)
	l.SponsorWait = cmp.Or(l.SponsorWait, SponsorWaitDefault)
	l.CreateRecovery = cmp.Or(l.CreateRecovery, CreateRecoveryDefault)
	l.Concurrency = cmp.Or(l.Concurrency, LinkConcurrencyDefault)
	if l.PollMax < l.PollInitial {
		return bad("Linking.PollMax", "must not be less than Linking.PollInitial")
	}
	if l.RetryMax < l.RetryInitial {
		return bad("Linking.RetryMax", "must not be less than Linking.RetryInitial")
	}
	if l.Concurrency < 0 {
		return bad("Linking.Concurrency", "must not be negative")
	}

	if err := c.Volumes.setDefaults(); err != nil {
		return Config{}, err
	}

	b := &c.Breaker
	b.ConsecutiveFailures = cmp.Or(b.ConsecutiveFailures, BreakerFailuresDefault)
	b.OpenTimeout = cmp.Or(b.OpenTimeout, BreakerOpenDefault)
	b.HalfOpenRequests = cmp.Or(b.HalfOpenRequests, BreakerHalfOpenDefault)
	if b.ConsecutiveFailures < 0 || b.HalfOpenRequests < 0 || b.OpenTimeout < 0 {
		return bad("Breaker", "fields must not be negative")
	}

	if err := c.Webhook.setDefaults(); err != nil {
		return Config{}, err
	}
	if err := c.CheckAuth.setDefaults(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Plugin is the MLM Soft integration embedded in a host app. Create it with
// New, call Start once, and Shutdown when the app stops. Its methods are safe
// for concurrent use.
type Plugin struct {
	store  Store
	cfg    Config
	client *api2.Client
	brk    *breaker.Breaker
	log    *slog.Logger
	clock  Clock

	linkRetry, linkPoll, volRetry, volPoll *backoff.Policy

	linkWake chan struct{} // a link is due now
	volWake  chan struct{} // a change is due now

	// changed is closed and replaced whenever a volume change of this
	// process reaches a new state; batch waiters watch it.
	changedMu sync.Mutex
	changed   chan struct{}

	busy busyUsers // users whose volume heads this process is delivering

	webhook *webhookState
	checker *checkAuthState

	mu       sync.Mutex
	running  bool
	stopped  bool
	stop     chan struct{}      // closed by Shutdown: finish and exit
	abort    context.CancelFunc // cancels in-flight work when Shutdown's ctx ends
	workCtx  context.Context
	workers  sync.WaitGroup
	inflight sync.WaitGroup
}

// New returns a Plugin that keeps its state in store. It validates cfg and
// returns an error wrapping ErrInvalidConfig that names the bad field. The
// plugin does no background work until Start.
func New(store Store, cfg Config) (*Plugin, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: store is nil", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	client, err := api2.New(api2.Config{
		BaseURL: cfg.BaseURL, Token: cfg.APIToken, AppID: cfg.AppID, HTTPClient: cfg.HTTPClient,
		Timeout: cfg.RequestTimeout, UserType: cfg.UserType,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	p := &Plugin{
		store:    store,
		cfg:      cfg,
		client:   client,
		log:      cfg.Logger.With("component", "mlmsoft"),
		clock:    cfg.Clock,
		linkWake: make(chan struct{}, 1),
		volWake:  make(chan struct{}, 1),
		changed:  make(chan struct{}),
		stop:     make(chan struct{}),
	}
	seed := uint64(cfg.Clock.Now().UnixNano())
	p.linkRetry = backoff.New(cfg.Linking.RetryInitial, cfg.Linking.RetryMax, JitterDefault, seed)
	p.linkPoll = backoff.New(cfg.Linking.PollInitial, cfg.Linking.PollMax, JitterDefault, seed+1)
	p.volRetry = backoff.New(cfg.Volumes.RetryInitial, cfg.Volumes.RetryMax, JitterDefault, seed+2)
	p.volPoll = backoff.New(cfg.Volumes.DocumentPollInitial, cfg.Volumes.DocumentPollMax, JitterDefault, seed+3)
	p.brk = breaker.New(breaker.Settings{
		Name:                "mlmsoft",
		ConsecutiveFailures: uint32(cfg.Breaker.ConsecutiveFailures),
		OpenTimeout:         cfg.Breaker.OpenTimeout,
		HalfOpenRequests:    uint32(cfg.Breaker.HalfOpenRequests),
		Now:                 cfg.Clock.Now,
		IsFailure:           countsAgainstUpstream,
		OnStateChange: func(from, to string) {
			p.log.Warn("circuit breaker state changed", "from", from, "to", to)
			if to != "open" {
				p.wakeAll()
			}
		},
	})
	p.workCtx, p.abort = context.WithCancel(context.Background())
	p.webhook = newWebhookState(p)
	p.checker = newCheckAuthState(p)
	return p, nil
}

// countsAgainstUpstream reports whether err says MLM Soft is unwell.
// Refusals (MLM Soft answered) and cancellations (ours) do not.
func countsAgainstUpstream(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	k := api2.KindOf(err)
	return k == api2.Retryable || k == api2.Ambiguous
}

// call runs one MLM Soft request through the circuit breaker. While the
// breaker is open it returns an error wrapping ErrUpstreamUnavailable
// without sending anything.
func (p *Plugin) call(ctx context.Context, fn func(ctx context.Context) error) error {
	done, err := p.brk.Allow()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUpstreamUnavailable, err)
	}
	err = fn(ctx)
	if ctx.Err() != nil && err != nil && !errors.Is(err, context.Canceled) && api2.KindOf(err) != api2.Business {
		// Our own cancellation or shutdown: not MLM Soft's fault.
		err = errors.Join(err, context.Canceled)
	}
	done(err)
	return err
}

// Start starts the background workers: the link worker and the volume
// dispatcher, which first take up whatever work the store holds (from an
// earlier run, or from other replicas). ctx is only checked, not kept: the
// workers run until Shutdown. It returns an error if the plugin was started
// or shut down before.
func (p *Plugin) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running || p.stopped {
		return errors.New("mlmsoft: Start called twice or after Shutdown")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.running = true
	p.workers.Add(2)
	go p.loop("links", p.linkWake, p.cfg.Linking.Concurrency, p.claimLinks)
	go p.loop("volumes", p.volWake, p.cfg.Volumes.Concurrency, p.claimVolumes)
	p.log.Info("started", "worker", p.cfg.WorkerID)
	return nil
}

// Shutdown stops taking new work and waits for the work in flight to finish.
// If ctx ends first, in-flight requests are cancelled (their outcome is
// recorded as unknown and resolved after a restart) and ctx's error is
// returned. Shutdown is safe to call more than once.
func (p *Plugin) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if !p.stopped {
		p.stopped = true
		close(p.stop)
	}
	p.mu.Unlock()
	done := make(chan struct{})
	go func() {
		p.workers.Wait()
		p.inflight.Wait()
		close(done)
	}()
	select {
	case <-done:
		p.abort()
		return nil
	case <-ctx.Done():
		p.abort()
		<-done
		return ctx.Err()
	}
}

// stopping reports whether Shutdown was called.
func (p *Plugin) stopping() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// claimFunc claims up to n items of due work and returns a function per
// item that does it.
type claimFunc func(ctx context.Context, n int) ([]func(ctx context.Context), error)

// loop runs one kind of work: it keeps up to slots items in flight, claims
// more whenever a slot frees or wake fires, and otherwise looks again every
// IdleRecheck.
func (p *Plugin) loop(name string, wake chan struct{}, slots int, claim claimFunc) {
	defer p.workers.Done()
	free := make(chan struct{}, slots)
	inUse := 0
	for {
		// Reap finished items without blocking.
		for reaped := true; reaped; {
			select {
			case <-free:
				inUse--
			default:
				reaped = false
			}
		}
		if p.stopping() {
			return
		}
		if n := slots - inUse; n > 0 {
			jobs, err := claim(p.workCtx, n)
			if err != nil && p.workCtx.Err() == nil {
				p.log.Error("claim failed", "work", name, "err", err)
			}
			for _, job := range jobs {
				inUse++
				p.inflight.Add(1)
				go func() {
					defer p.inflight.Done()
					defer func() { free <- struct{}{} }()
					job(p.workCtx)
				}()
			}
			if len(jobs) == n && n > 0 {
				continue // maybe more is due: claim again once a slot frees
			}
		}
		select {
		case <-p.stop:
			return
		case <-wake:
		case <-free:
			inUse--
		case <-p.clock.After(p.cfg.IdleRecheck):
		}
	}
}

// wakeLinks and wakeVolumes tell the loops that work is due now.
func (p *Plugin) wakeLinks()   { signal(p.linkWake) }
func (p *Plugin) wakeVolumes() { signal(p.volWake) }
func (p *Plugin) wakeAll()     { p.wakeLinks(); p.wakeVolumes() }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Stats is a snapshot of the plugin's state for dashboards and health
// checks.
type Stats struct {
	Links   map[LinkState]int   // links per state
	Volumes map[VolumeState]int // volume changes per state
	// OldestPending is the age of the oldest volume change not yet
	// delivered (pending or sending); 0 when there is none.
	OldestPending time.Duration
	// Breaker is "closed", "open" or "half-open".
	Breaker string
	// BreakerTrips counts how often the breaker opened since New.
	BreakerTrips int
}

// Stats reads counts from the store and the breaker's state.
func (p *Plugin) Stats(ctx context.Context) (Stats, error) {
	links, err := p.store.CountLinks(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("mlmsoft: stats: count links: %w", err)
	}
	vc, err := p.store.CountVolumes(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("mlmsoft: stats: count volumes: %w", err)
	}
	s := Stats{Links: links, Volumes: vc.ByState, Breaker: p.brk.State(), BreakerTrips: p.brk.Trips()}
	if !vc.OldestPending.IsZero() {
		s.OldestPending = max(p.clock.Now().Sub(vc.OldestPending), 0)
	}
	return s, nil
}
