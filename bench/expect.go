package main

import (
	"context"
	"fmt"
	"time"

	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// expect measures what "Expect: 100-continue" costs across a link with
// latency: a proxy of our own holds every chunk, each way, for the one-way
// latency.
func expect(ctx context.Context, b *bench) (*table, error) {
	c := b.cfg
	f, err := newFake()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	accounts := f.accounts(c.expectUsers)
	t := &table{key: "expect", title: "8. The cost of Expect: 100-continue at WAN latency",
		columns: [2]string{"with Expect (default, 1 s wait)", "without (ExpectContinueTimeout < 0)"}}
	t.method = fmt.Sprintf("A TCP proxy in front of the fake delays every chunk, in each direction, by the one-way latency (and a "+
		"new connection by one round trip). Per POST: %d sequential account/volume-change calls per round through the API client "+
		"configured as the plugin configures it, with the default ExpectContinueTimeout (1 s) and with a negative one (no Expect), "+
		"connection already open, interleaved, %d rounds; p50 and p99 per round, median over rounds. Delivery: section 1's plugin "+
		"on memstore, %d users × %d changes, through the proxy, with each setting, interleaved; changes/s, median over rounds.",
		c.expectSamples, c.rounds, c.expectUsers, c.expectPerUser)
	total := c.expectUsers * c.expectPerUser
	settings := []struct {
		name string
		wait time.Duration
	}{{"expect", 0}, {"no-expect", -1}}
	for _, lat := range c.latencies {
		px, err := newDelayProxy(f.Addr, lat)
		if err != nil {
			return nil, err
		}
		base := "http://" + px.Addr() + mlmsofttest.BasePath
		post := map[string]*pcts{}
		rates := map[string][]float64{}
		for r := range c.rounds {
			f.reset()
			for _, st := range settings {
				api, err := newAPIClient(base, st.wait, c.concurrency)
				if err != nil {
					px.Close()
					return nil, err
				}
				// Open the connection first.
				if err := apiPost(ctx, api, accounts[0], amount, "warm", "PV"); err != nil {
					px.Close()
					return nil, err
				}
				ds, err := sample(1, c.expectSamples, func(_, i int) error {
					return apiPost(ctx, api, accounts[i%len(accounts)], amount, fmt.Sprintf("x%d-%d", r, i), "PV")
				})
				if err != nil {
					px.Close()
					return nil, err
				}
				if post[st.name] == nil {
					post[st.name] = &pcts{}
				}
				post[st.name].add(ds)

				h, err := b.env.open(ctx, stMem)
				if err != nil {
					px.Close()
					return nil, err
				}
				if err := link(ctx, h.store, accounts, 0, c.expectUsers); err != nil {
					px.Close()
					return nil, err
				}
				p, err := newPlugin(h.store, base, c.concurrency, st.wait)
				if err != nil {
					px.Close()
					return nil, err
				}
				if err := p.Start(ctx); err != nil {
					px.Close()
					return nil, err
				}
				var d time.Duration
				err = b.profiled(fmt.Sprintf("expect/%s/%s", lat, st.name), func() error {
					var err error
					d, err = timed(f, total, c.timeout, "expect delivery", func() error {
						return applyAll(ctx, p, 0, c.expectUsers, c.expectPerUser, c.callers, fmt.Sprintf("xd%d-%s", r, st.name))
					})
					return err
				})
				shutdown(p)
				h.close()
				if err != nil {
					px.Close()
					return nil, err
				}
				rates[st.name] = append(rates[st.name], float64(total)/d.Seconds())
				logf("   %s one-way, round %d, %-9s POST p50 %s, delivery %s", lat, r+1, st.name, fmtDur(pct(ds, 50)), fmtRate(float64(total)/d.Seconds()))
			}
		}
		px.Close()
		rtt := 2 * lat
		t.add(row{what: fmt.Sprintf("POST latency, RTT %s", rtt), value: post["expect"].String(), ref: post["no-expect"].String(),
			ratio: float64(medianDur(post["expect"].p50)) / float64(medianDur(post["no-expect"].p50))})
		t.add(row{what: fmt.Sprintf("delivery throughput, RTT %s", rtt), value: fmtRate(median(rates["expect"])), ref: fmtRate(median(rates["no-expect"])),
			ratio: median(rates["expect"]) / median(rates["no-expect"])})
	}
	t.extra = append(t.extra, "Latency ratios are of the p50s. What each setting buys is in Config.ExpectContinueTimeout's doc: "+
		"with Expect, an answer that came before MLM Soft asked for the body proves the request was not processed, so a 5xx, 429, "+
		"reset or timeout before that is retried safely; without it, every failure after the request left is ambiguous and the "+
		"change becomes uncertain, holding its user's queue until an operator resolves it.")
	return t, nil
}
