package mlmsoft

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
	"github.com/mlmsoft-go/mlmsoft/internal/backoff"
	"github.com/mlmsoft-go/mlmsoft/internal/breaker"
)

// Plugin is the MLM Soft integration embedded in a host app. Create it with
// New, call Start once, and Shutdown when the app stops. Its methods are safe
// for concurrent use.
type Plugin struct {
	store  Store
	txs    TxStore      // store, when it can write in a host's transaction
	listen WorkListener // store, when it can tell of work done elsewhere
	cfg    Config
	client *api2.Client
	brk    *breaker.Breaker
	log    *slog.Logger
	clock  Clock
	health *healthState
	totals totals

	linkRetry, linkPoll, volRetry, volPoll, hookRetry *backoff.Policy

	linkWake chan struct{} // a link is due now
	volWake  chan struct{} // a change is due now
	hookWake chan struct{} // a hook event is due now

	// changed is closed and replaced whenever a volume change of this
	// process reaches a new state; batch waiters watch it.
	changedMu sync.Mutex
	changed   chan struct{}

	claims atomic.Uint64 // numbers the claims' owner tokens

	// known holds users ApplyVolumes found a link of (committed ones
	// only: a link read inside a host transaction may yet roll back).
	known      sync.Map
	knownCount atomic.Int64

	webhook *webhookHandler
	checker *checkAuthHandler

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
// plugin starts no goroutine and does no background work until Start.
func New(store Store, cfg Config) (*Plugin, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: store is nil", ErrInvalidConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	expect := cfg.ExpectContinueTimeout
	client, err := api2.New(api2.Config{
		BaseURL: cfg.BaseURL, Token: cfg.APIToken, AppID: cfg.AppID, HTTPClient: cfg.HTTPClient,
		Timeout: cfg.RequestTimeout, UserType: cfg.UserType, ExpectContinueTimeout: expect,
		MisconfigMessages:   cfg.MisconfigMessages,
		MaxIdleConnsPerHost: cfg.Volumes.Concurrency + cfg.Linking.Concurrency + 4,
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
		hookWake: make(chan struct{}, 1),
		changed:  make(chan struct{}),
		stop:     make(chan struct{}),
	}
	p.txs, _ = store.(TxStore)
	p.listen, _ = store.(WorkListener)
	p.health = newHealthState(p)
	seed := uint64(cfg.Clock.Now().UnixNano())
	p.linkRetry = backoff.New(cfg.Linking.RetryInitial, cfg.Linking.RetryMax, JitterDefault, seed)
	p.linkPoll = backoff.New(cfg.Linking.PollInitial, cfg.Linking.PollMax, JitterDefault, seed+1)
	p.volRetry = backoff.New(cfg.Volumes.RetryInitial, cfg.Volumes.RetryMax, JitterDefault, seed+2)
	p.volPoll = backoff.New(cfg.Volumes.DocumentPollInitial, cfg.Volumes.DocumentPollMax, JitterDefault, seed+3)
	p.hookRetry = backoff.New(cfg.Hooks.RetryInitial, cfg.Hooks.RetryMax, JitterDefault, seed+4)
	p.brk = breaker.New(breaker.Settings{
		Name:                "mlmsoft",
		ConsecutiveFailures: uint32(cfg.Breaker.ConsecutiveFailures),
		OpenTimeout:         cfg.Breaker.OpenTimeout,
		HalfOpenRequests:    uint32(cfg.Breaker.HalfOpenRequests),
		Now:                 cfg.Clock.Now,
		IsFailure:           countsAgainstUpstream,
		OnStateChange: func(from, to string) {
			p.log.Warn("circuit breaker state changed", "from", from, "to", to, "lastFailure", p.health.lastFailure())
			if to != "open" {
				p.wakeAll()
			}
		},
	})
	p.workCtx, p.abort = context.WithCancel(context.Background())
	p.webhook = newWebhookHandler(p)
	p.checker = newCheckAuthHandler(p)
	return p, nil
}

// countsAgainstUpstream reports whether err says MLM Soft is unwell: the
// request was not processed, or no usable answer came. Refusals and
// configuration errors (MLM Soft answered) and cancellations (ours) do not.
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
	done, err := p.allow()
	if err != nil {
		return err
	}
	err = fn(ctx)
	p.settle(ctx, done, err)
	return err
}

// allow asks the breaker to send one request; its error wraps
// ErrUpstreamUnavailable and tells the last failure that tripped it.
func (p *Plugin) allow() (func(error), error) {
	done, err := p.brk.Allow()
	if err != nil {
		if last := p.health.lastFailure(); last != "" {
			return nil, fmt.Errorf("%w: %w (last failure: %s)", ErrUpstreamUnavailable, err, last)
		}
		return nil, fmt.Errorf("%w: %w", ErrUpstreamUnavailable, err)
	}
	return done, nil
}

// settle reports a request's outcome to the breaker and to the health
// state. A failure that came from our own cancellation (shutdown) is not
// MLM Soft's fault and counts for nothing.
func (p *Plugin) settle(ctx context.Context, done func(error), err error) {
	kind := api2.KindOf(err)
	if ctx.Err() != nil && err != nil && kind != api2.Business && kind != api2.Misconfigured {
		done(errors.Join(err, context.Canceled))
		return
	}
	done(err)
	switch {
	case err == nil:
		p.health.answered()
	case kind == api2.Business:
		p.totals.refused.Add(1)
		p.health.answered()
	case kind == api2.Misconfigured:
		p.totals.misconfigured.Add(1)
		p.health.refused(err)
	case kind == api2.Ambiguous:
		p.totals.ambiguous.Add(1)
		p.health.failed(err)
	default:
		p.totals.notProcessed.Add(1)
		p.health.failed(err)
	}
}

// Start starts the background workers: the link worker, the volume
// dispatcher, the hook runner and the maintenance loop (probes while MLM
// Soft refuses the configuration, cache expiry, retention), which first take
// up whatever work the store holds (from an earlier run, or from other
// replicas). ctx is only checked, not kept: the workers run until Shutdown.
// It returns an error if the plugin was started or shut down before.
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
	p.workers.Add(4)
	go p.loop("links", p.linkWake, p.cfg.Linking.Concurrency, true, p.claimLinks)
	go p.loop("volumes", p.volWake, p.cfg.Volumes.Concurrency, true, p.claimVolumes)
	go p.loop("hooks", p.hookWake, p.cfg.Hooks.Concurrency, false, p.claimEvents)
	go p.maintain()
	if p.listen != nil {
		p.workers.Add(1)
		go p.listenForWork()
	}
	p.log.Info("started", "worker", p.cfg.WorkerID)
	return nil
}

// Shutdown stops taking new work and waits for the work in flight to finish
// (requests on their way, hooks running). If ctx ends first, in-flight
// requests are cancelled (their outcome is recorded as unknown and settled
// after a restart) and ctx's error is returned. Every goroutine the plugin
// started has ended when Shutdown returns. It is safe to call more than
// once, and before Start.
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

// owner returns a new claim owner token: unique per claim, so that a worker
// whose lease lapsed never passes for the one that took over, even in this
// process.
func (p *Plugin) owner() string {
	return fmt.Sprintf("%s#%d", p.cfg.WorkerID, p.claims.Add(1))
}

// claimFunc claims up to n items of due work and returns a function per
// item that does it.
type claimFunc func(ctx context.Context, n int) ([]func(ctx context.Context), error)

// loop runs one kind of work: it keeps up to slots items in flight, claims
// more whenever a slot frees or wake fires, and otherwise looks again every
// IdleRecheck. Work that calls MLM Soft (upstream) is not claimed while MLM
// Soft refuses the configuration or the circuit breaker is open: nothing is
// touched, no attempt spent, until it may succeed again.
func (p *Plugin) loop(name string, wake chan struct{}, slots int, upstream bool, claim claimFunc) {
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
		if n := slots - inUse; n > 0 && !(upstream && p.paused()) {
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

// paused reports whether work that calls MLM Soft must wait: MLM Soft
// refuses the configuration, or the circuit breaker is open.
func (p *Plugin) paused() bool {
	return p.health.isMisconfigured() || p.brk.State() == string(BreakerOpen)
}

// listenForWork relays the store's notifications of work done elsewhere
// (other replicas, host transactions) to the loops, reconnecting with
// backoff; a store that cannot listen leaves the loops to IdleRecheck.
func (p *Plugin) listenForWork() {
	defer p.workers.Done()
	ctx, cancel := context.WithCancel(p.workCtx)
	defer cancel()
	go func() {
		select {
		case <-p.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	retry := backoff.New(time.Second, time.Minute, JitterDefault, uint64(p.clock.Now().UnixNano()))
	for attempt := 1; ; attempt++ {
		// Other processes add links and volume changes; their hook
		// events are their own to run.
		err := p.listen.ListenForWork(ctx, func() { p.wakeLinks(); p.wakeVolumes() })
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errors.ErrUnsupported) {
			p.log.Info("the store cannot notify of work done elsewhere; polling every IdleRecheck", "idleRecheck", p.cfg.IdleRecheck)
			return
		}
		d := retry.Delay(attempt)
		p.log.Warn("listening for work failed; polling meanwhile", "err", err, "retryIn", d)
		select {
		case <-ctx.Done():
			return
		case <-p.clock.After(d):
		}
	}
}

// wakeLinks, wakeVolumes and wakeHooks tell the loops that work is due now.
func (p *Plugin) wakeLinks()   { signal(p.linkWake) }
func (p *Plugin) wakeVolumes() { signal(p.volWake) }
func (p *Plugin) wakeHooks()   { signal(p.hookWake) }
func (p *Plugin) wakeAll()     { p.wakeLinks(); p.wakeVolumes(); p.wakeHooks() }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// afterCommit wakes the volume and link loops once a host transaction that
// wrote work has committed, found by reading back the record it wrote
// (seen reports whether it is visible): database/sql offers no commit hook.
// It gives up after IdleRecheck, when the idle poll finds committed work
// anyway (and rolled-back work never shows). A store that notifies
// (WorkListener) wakes the loops too; a second wake is harmless, and this
// one does not depend on the listener being connected.
func (p *Plugin) afterCommit(seen func(ctx context.Context) bool) {
	p.mu.Lock()
	if !p.running || p.stopped {
		p.mu.Unlock()
		return
	}
	p.inflight.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.inflight.Done()
		start := time.Now()
		for wait := time.Millisecond; time.Since(start) < p.cfg.IdleRecheck; wait *= 2 {
			t := time.NewTimer(wait)
			select {
			case <-p.stop:
				t.Stop()
				return
			case <-t.C:
			}
			if seen(p.workCtx) {
				p.wakeLinks()
				p.wakeVolumes()
				return
			}
		}
	}()
}
