package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// enqueueBacklog enqueues size changes for size/perUser users (from user
// base), perUser changes per ApplyVolumes call, on callers goroutines, with
// the plugin not started: nothing is delivered meanwhile.
func enqueueBacklog(ctx context.Context, p *mlmsoft.Plugin, base, users, perUser, callers int, tag string) error {
	changes := make([]mlmsoft.Change, perUser)
	return parallel(callers, func(g int) error {
		cs := slices.Clone(changes)
		for u := g; u < users; u += callers {
			for i := range cs {
				cs[i] = mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount(amount), OrderID: fmt.Sprintf("%s-%d", tag, i)}
			}
			if _, err := p.ApplyVolumes(ctx, userID(base+u), cs...); err != nil {
				return err
			}
		}
		return nil
	})
}

func drain(ctx context.Context, b *bench) (*table, error) {
	c := b.cfg
	f, err := newFake()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	maxUsers := 0
	for _, s := range c.drainSizes {
		maxUsers = max(maxUsers, usersFor(s, c.drainPerUser))
	}
	accounts := f.accounts(maxUsers)
	stores := b.stores(false)
	rates := map[string][]float64{}
	enq := map[string][]float64{}
	key := func(s string, size int) string { return fmt.Sprintf("%s/%d", s, size) }
	for r := range c.drainRounds {
		for _, s := range stores {
			for _, size := range c.drainSizes {
				users := usersFor(size, c.drainPerUser)
				n := users * c.drainPerUser
				f.reset()
				h, err := b.env.open(ctx, s)
				if err != nil {
					return nil, err
				}
				if err := link(ctx, h.store, accounts, 0, users); err != nil {
					h.close()
					return nil, err
				}
				p, err := newPlugin(h.store, f.URL, c.concurrency, 0)
				if err != nil {
					h.close()
					return nil, err
				}
				t0 := time.Now()
				if err := enqueueBacklog(ctx, p, 0, users, c.drainPerUser, c.callers, fmt.Sprintf("d%d", r)); err != nil {
					h.close()
					return nil, fmt.Errorf("enqueue %d into %s: %w", n, s, err)
				}
				enqRate := float64(n) / time.Since(t0).Seconds()
				var d time.Duration
				err = b.profiled("drain/"+key(s, size), func() error {
					var err error
					d, err = timed(f, n, c.timeout, "drain "+key(s, size), func() error { return p.Start(ctx) })
					return err
				})
				shutdown(p)
				h.close()
				if err != nil {
					return nil, err
				}
				rate := float64(n) / d.Seconds()
				rates[key(s, size)] = append(rates[key(s, size)], rate)
				enq[key(s, size)] = append(enq[key(s, size)], enqRate)
				logf("   round %d %-8s %7d queued: drained at %s (enqueued at %s)", r+1, s, n, fmtRate(rate), fmtRate(enqRate))
			}
		}
	}
	t := &table{key: "drain", title: "3. Drain rate with a backlog (changes/s)",
		columns: [2]string{"median drain rate", "reference: the smallest backlog, median"}}
	t.method = fmt.Sprintf("For each store and backlog size, in interleaved rounds (sizes %v one after the other for each store, %d round(s)): "+
		"a fresh store (new tables or file), %d changes per user (users = size / %d), enqueued by %d callers with ApplyVolumes "+
		"of a user's %d changes at once while the plugin is not started; then Start, timed until the fake had acknowledged the "+
		"last change. Plugin as in section 1 (Volumes.Concurrency %d, defaults otherwise).",
		c.drainSizes, c.drainRounds, c.drainPerUser, c.drainPerUser, c.callers, c.drainPerUser, c.concurrency)
	small := c.drainSizes[0]
	big := c.drainSizes[len(c.drainSizes)-1]
	var per []string
	for _, s := range stores {
		refRate := median(rates[key(s, small)])
		for _, size := range c.drainSizes {
			m := median(rates[key(s, size)])
			rw := row{what: fmt.Sprintf("%s, %s queued", storeTitles[s], commas(int64(usersFor(size, c.drainPerUser)*c.drainPerUser))),
				value: fmtRate(m), ref: fmt.Sprintf("%s queued: %s", commas(int64(usersFor(small, c.drainPerUser)*c.drainPerUser)), fmtRate(refRate))}
			if size != small {
				rw.ratio = m / refRate
			}
			if size == big && size != small && size >= 100000 && isSQL(s) { // the target is for the SQL stores
				rw.target, rw.met = "≥ 0.8×", atLeast(rw.ratio, 0.8)
			}
			t.add(rw)
			per = append(per, fmt.Sprintf("%s %d: drain %s, enqueue %s", s, size, rounds(rates[key(s, size)], fmtRate), rounds(enq[key(s, size)], fmtRate)))
		}
	}
	t.extra = append(t.extra, "Each round's drain rate, and the rate at which the backlog was enqueued: "+joinSemi(per)+".")
	return t, nil
}

func usersFor(size, perUser int) int { return max(1, size/perUser) }
