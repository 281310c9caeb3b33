package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// sample runs n calls of call on callers goroutines (call(g, i) for
// goroutine g's i-th call) and returns each call's duration.
func sample(callers, n int, call func(g, i int) error) ([]time.Duration, error) {
	var mu sync.Mutex
	all := make([]time.Duration, 0, n)
	err := parallel(callers, func(g int) error {
		k := n / callers
		if g < n%callers {
			k++
		}
		mine := make([]time.Duration, 0, k)
		for i := range k {
			t0 := time.Now()
			if err := call(g, i); err != nil {
				return err
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		all = append(all, mine...)
		mu.Unlock()
		return nil
	})
	return all, err
}

type pcts struct{ p50, p99 []time.Duration }

func (p *pcts) add(ds []time.Duration) {
	p.p50 = append(p.p50, pct(ds, 50))
	p.p99 = append(p.p99, pct(ds, 99))
}

func (p *pcts) String() string {
	return fmt.Sprintf("p50 %s, p99 %s", fmtDur(medianDur(p.p50)), fmtDur(medianDur(p.p99)))
}

// enqueue measures ApplyVolumes of one change with 1 and 8 callers against
// River's Insert in the same rounds, nothing delivering meanwhile.
func enqueue(ctx context.Context, b *bench) (*table, error) {
	c := b.cfg
	f, err := newFake()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const users = 100
	accounts := f.accounts(users)
	stores := b.stores(false)
	plugins := map[string]*mlmsoft.Plugin{}
	for _, s := range stores {
		p, release, err := b.env.linkedPlugin(ctx, s, f.URL, accounts, c.concurrency, false)
		if err != nil {
			return nil, err
		}
		defer release()
		plugins[s] = p // never started: nothing is delivered
	}
	variants := append([]string(nil), stores...)
	var rv *riverSide
	if b.env.pgDSN != "" {
		rv, err = startRiver(ctx, b.env.pgDSN, f.URL, 0, poolSize(c.concurrency, c.callers), c.riverCooldown)
		if err != nil {
			return nil, err
		}
		defer rv.stop()
		variants = append(variants, "river")
	}
	callerSets := []int{1, c.callers}
	res := map[string]*pcts{}
	for r := range c.rounds {
		for _, v := range variants {
			for _, n := range callerSets {
				k := fmt.Sprintf("%s/%d", v, n)
				if res[k] == nil {
					res[k] = &pcts{}
				}
				var ds []time.Duration
				err := b.profiled("enqueue/"+k, func() error {
					var err error
					ds, err = sample(n, c.enqueueSamples, func(g, i int) error {
						u := (g + i*n) % users
						order := fmt.Sprintf("e%d-%d-%d-%d", r, n, g, i)
						if v == "river" {
							return rv.insert(ctx, postArgs{AccountID: accounts[u], Amount: amount, OrderID: order, Alias: "PV"})
						}
						_, err := plugins[v].ApplyVolumes(ctx, userID(u), mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount(amount), OrderID: order})
						return err
					})
					return err
				})
				if err != nil {
					return nil, fmt.Errorf("enqueue %s: %w", k, err)
				}
				res[k].add(ds)
				logf("   round %d %-8s %d caller(s): p50 %s p99 %s", r+1, v, n, fmtDur(pct(ds, 50)), fmtDur(pct(ds, 99)))
			}
		}
	}
	t := &table{key: "enqueue", title: "4. Enqueue latency: ApplyVolumes of one change vs River's Insert",
		columns: [2]string{"median p50 / p99", "River Insert, median p50 / p99"}}
	t.method = fmt.Sprintf("%d calls per round for each caller count (1 and %d concurrent callers), %d interleaved rounds "+
		"(each store, then River, each with 1 then %d callers); p50 and p99 of each round, median over rounds. ApplyVolumes of one "+
		"change for one of %d linked users, the plugin not started (nothing is delivered meanwhile, so the outbox grows by every "+
		"call); River: Client.Insert of one job into a client that runs no workers, on a pgx pool of %d connections. Stores as in "+
		"section 1. The target compares p99 with %d callers.",
		c.enqueueSamples, c.callers, c.rounds, c.callers, users, poolSize(c.concurrency, c.callers), c.callers)
	for _, s := range stores {
		for _, n := range callerSets {
			mine := res[fmt.Sprintf("%s/%d", s, n)]
			rw := row{what: fmt.Sprintf("%s, %d caller(s)", storeTitles[s], n), value: mine.String(), ref: "n/a"}
			if rv != nil {
				theirs := res[fmt.Sprintf("river/%d", n)]
				rw.ref = theirs.String()
				rw.ratio = float64(medianDur(mine.p99)) / float64(medianDur(theirs.p99))
				if n == c.callers {
					rw.target, rw.met = "p99 ≤ 1.0×", atMost(rw.ratio, 1.0)
				}
			}
			t.add(rw)
		}
	}
	var per []string
	for _, v := range variants {
		for _, n := range callerSets {
			p := res[fmt.Sprintf("%s/%d", v, n)]
			per = append(per, fmt.Sprintf("%s %d: p99 %s", variantTitle(v), n, roundsDur(p.p99)))
		}
	}
	t.extra = append(t.extra, "Ratios are of the p99s. Each round's p99: "+joinSemi(per)+".")
	return t, nil
}

func roundsDur(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmtDur(d)
	}
	return strings.Join(parts, ", ")
}

// wire measures enqueue-to-wire latency: ApplyVolumes returns → the fake
// applies the request, for changes enqueued one at a time, paced, against
// the API client's own call → fake latency.
func wire(ctx context.Context, b *bench) (*table, error) {
	c := b.cfg
	f, err := newFake()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	const users = 100
	accounts := f.accounts(users)
	api, err := newAPIClient(f.URL, 0, c.concurrency)
	if err != nil {
		return nil, err
	}
	stores := b.stores(false)
	plugins := map[string]*mlmsoft.Plugin{}
	for _, s := range stores {
		p, release, err := b.env.linkedPlugin(ctx, s, f.URL, accounts, c.concurrency, true)
		if err != nil {
			return nil, err
		}
		defer release()
		plugins[s] = p
	}
	variants := append([]string{"client"}, stores...)
	res := map[string]*pcts{}
	for r := range c.rounds {
		f.reset()
		for _, v := range variants {
			sent := make(map[string]time.Time, c.wireSamples)
			prefix := fmt.Sprintf("w%d-%s-", r, v)
			done := f.expect(c.wireSamples)
			err := b.profiled("wire/"+v, func() error {
				for i := range c.wireSamples {
					order := fmt.Sprintf("%s%d", prefix, i)
					u := i % users
					if v == "client" {
						sent[order] = time.Now()
						if err := apiPost(ctx, api, accounts[u], amount, order, "PV"); err != nil {
							return err
						}
					} else {
						if _, err := plugins[v].ApplyVolumes(ctx, userID(u), mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount(amount), OrderID: order}); err != nil {
							return err
						}
						sent[order] = time.Now()
					}
					time.Sleep(c.wireInterval)
				}
				return f.wait(done, c.timeout, "wire "+v)
			})
			if err != nil {
				return nil, err
			}
			var ds []time.Duration
			for _, e := range f.AllLedger() {
				if t0, ok := sent[e.OrderID]; ok {
					ds = append(ds, e.At.Sub(t0))
				}
			}
			if len(ds) != c.wireSamples {
				return nil, fmt.Errorf("wire %s: found %d of %d changes in the ledger", v, len(ds), c.wireSamples)
			}
			if res[v] == nil {
				res[v] = &pcts{}
			}
			res[v].add(ds)
			logf("   round %d %-8s p50 %s p99 %s", r+1, v, fmtDur(pct(ds, 50)), fmtDur(pct(ds, 99)))
		}
	}
	t := &table{key: "wire", title: "5. Enqueue-to-wire latency",
		columns: [2]string{"median p50 / p99", "client → fake, median p50 / p99"}}
	t.method = fmt.Sprintf("One caller enqueues one change at a time (ApplyVolumes, %d users in turn) every %s, %d per round, into a "+
		"started plugin (section 1's configuration) with nothing else queued; latency is from ApplyVolumes' return to the moment "+
		"the fake applied the request (its ledger's timestamp, taken after it read and checked the request). Reference, in the same "+
		"rounds: the API client's ChangeVolume called directly, from the call to the same timestamp. %d rounds; p50 and p99 per round, "+
		"median over rounds. No target: this says what a change waits before it leaves.", users, c.wireInterval, c.wireSamples, c.rounds)
	for _, s := range stores {
		ratio := float64(medianDur(res[s].p50)) / float64(medianDur(res["client"].p50))
		t.add(row{what: storeTitles[s], value: res[s].String(), ref: res["client"].String(), ratio: ratio})
	}
	t.extra = append(t.extra, "Ratios are of the p50s.")
	return t, nil
}
