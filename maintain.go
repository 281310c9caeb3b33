package mlmsoft

import "time"

// How often the maintenance loop expires the handlers' caches and purges
// volume changes older than Config.Retention.
const (
	janitorEvery = time.Minute
	purgeEvery   = 10 * time.Minute
	purgeBatch   = 1000
)

// maintain is the maintenance loop: it probes MLM Soft while it refuses the
// configuration, expires the handlers' rate-limit and replay caches, and
// purges old final volume changes. Everything is timed on the plugin's
// clock.
func (p *Plugin) maintain() {
	defer p.workers.Done()
	now := p.clock.Now()
	nextJanitor := now.Add(janitorEvery)
	nextPurge := now // purge what an earlier run left at once
	for {
		now = p.clock.Now()
		if due, on := p.health.probeDue(); on && !now.Before(due) {
			p.health.runProbe(p.workCtx)
		}
		if !now.Before(nextJanitor) {
			p.webhook.expire(now)
			p.checker.expire(now)
			nextJanitor = now.Add(janitorEvery)
		}
		if p.cfg.Retention > 0 && !now.Before(nextPurge) {
			p.purge(now)
			nextPurge = now.Add(purgeEvery)
		}
		next := nextJanitor
		if p.cfg.Retention > 0 && nextPurge.Before(next) {
			next = nextPurge
		}
		if due, on := p.health.probeDue(); on && due.Before(next) {
			next = due
		}
		select {
		case <-p.stop:
			return
		case <-p.health.wake:
		case <-p.clock.After(max(next.Sub(p.clock.Now()), 0)):
		}
	}
}

// purge deletes volume changes that became final more than Retention ago,
// a batch at a time.
func (p *Plugin) purge(now time.Time) {
	before := now.Add(-p.cfg.Retention)
	total := 0
	for !p.stopping() {
		n, err := p.store.PurgeVolumes(p.workCtx, before, purgeBatch)
		if err != nil {
			if p.workCtx.Err() == nil {
				p.log.Error("purging old volume changes failed", "err", err)
			}
			break
		}
		total += n
		if n < purgeBatch {
			break
		}
	}
	if total > 0 {
		p.log.Info("purged old volume changes", "count", total, "finalBefore", before)
	}
}
