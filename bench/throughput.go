package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

const amount = "1.5"

// newPlugin is the plugin as the README wires it, with Config defaults but
// Volumes.Concurrency (and the ExpectContinueTimeout given; 0 is the
// default) and a logger that discards.
func newPlugin(s mlmsoft.Store, base string, concurrency int, expect time.Duration) (*mlmsoft.Plugin, error) {
	return mlmsoft.New(s, mlmsoft.Config{
		BaseURL: base, APIToken: mlmsofttest.DefaultToken,
		ExpectContinueTimeout: expect,
		Logger:                slog.New(slog.DiscardHandler),
		Volumes:               mlmsoft.VolumeConfig{Concurrency: concurrency},
		Webhook:               mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{webhookSecret}},
	})
}

func shutdown(p *mlmsoft.Plugin) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = p.Shutdown(ctx)
}

// parallel runs fn(g) on n goroutines and returns the first error.
func parallel(n int, fn func(g int) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for g := range n {
		wg.Go(func() {
			if err := fn(g); err != nil {
				mu.Lock()
				first = cmpErr(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// forShare calls fn for every change of the workload that goroutine g of
// n owns: the users u with u % n == g, perUser changes each, in order per
// user, users interleaved.
func forShare(g, n, users, perUser int, fn func(u, i int) error) error {
	for i := range perUser {
		for u := g; u < users; u += n {
			if err := fn(u, i); err != nil {
				return err
			}
		}
	}
	return nil
}

// applyAll has callers goroutines call ApplyVolumes once per change.
func applyAll(ctx context.Context, p *mlmsoft.Plugin, base, users, perUser, callers int, tag string) error {
	return parallel(callers, func(g int) error {
		return forShare(g, callers, users, perUser, func(u, i int) error {
			_, err := p.ApplyVolumes(ctx, userID(base+u), mlmsoft.Change{
				Alias: "PV", Amount: mlmsoft.MustAmount(amount), OrderID: fmt.Sprintf("%s-%d", tag, i),
			})
			return err
		})
	})
}

// timed returns how long it took from start until the fake acknowledged
// n more changes, start being the call of run.
func timed(f *fake, n int, timeout time.Duration, what string, run func() error) (time.Duration, error) {
	done := f.expect(n)
	start := time.Now()
	if err := run(); err != nil {
		return 0, err
	}
	if err := f.wait(done, timeout, what); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func throughput(ctx context.Context, b *bench) (*table, error) {
	c := b.cfg
	f, err := newFake()
	if err != nil {
		return nil, err
	}
	defer f.Close()
	accounts := f.accounts(c.users)
	if err := checkSigning(f, accounts[0]); err != nil {
		return nil, err
	}
	total := c.users * c.perUser
	api, err := newAPIClient(f.URL, 0, c.concurrency)
	if err != nil {
		return nil, err
	}
	minimal := minimalClient(c.concurrency)

	stores := b.stores(false)
	handles := map[string]*storeHandle{}
	for _, name := range stores {
		h, err := b.env.open(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", name, err)
		}
		defer h.close()
		if err := link(ctx, h.store, accounts, 0, c.users); err != nil {
			return nil, fmt.Errorf("link users in %s: %w", name, err)
		}
		handles[name] = h
	}
	var rv *riverSide
	if b.env.pgDSN != "" {
		rv, err = startRiver(ctx, b.env.pgDSN, f.URL, c.concurrency, poolSize(c.concurrency, c.callers), c.riverCooldown)
		if err != nil {
			return nil, fmt.Errorf("start River: %w", err)
		}
		defer rv.stop()
	} else {
		logf("   River skipped: MLMSOFT_TEST_POSTGRES_DSN is not set")
	}

	apiNoExpect, err := newAPIClient(f.URL, -1, c.concurrency)
	if err != nil {
		return nil, err
	}
	variants := []string{"client", "client-noexpect", "minimal"}
	for _, s := range stores {
		variants = append(variants, s)
		if s == stPostgres && rv != nil {
			variants = append(variants, "river")
		}
	}
	if rv != nil && !contains(variants, "river") {
		variants = append(variants, "river")
	}
	rates := map[string][]float64{}
	diags := map[string][]string{}
	// A warm-up round (a fifth of the changes, not recorded) opens the
	// connections and fills the caches each variant will use.
	warm := max(1, c.perUser/5)
	for r := -1; r < c.rounds; r++ {
		perUser, total := c.perUser, total
		if r < 0 {
			perUser, total = warm, c.users*warm
		}
		f.reset()
		for _, v := range variants {
			tag := fmt.Sprintf("t%d-%s", r, v)
			id := "throughput/" + v
			if r < 0 {
				id = "warm-up"
			}
			var d time.Duration
			var diag string
			err := b.profiled(id, func() error {
				var err error
				switch v {
				case "client":
					d, err = timed(f, total, c.timeout, v, func() error {
						return parallel(c.concurrency, func(g int) error {
							return forShare(g, c.concurrency, c.users, perUser, func(u, i int) error {
								return apiPost(ctx, api, accounts[u], amount, fmt.Sprintf("%s-%d", tag, i), "PV")
							})
						})
					})
				case "client-noexpect":
					d, err = timed(f, total, c.timeout, v, func() error {
						return parallel(c.concurrency, func(g int) error {
							return forShare(g, c.concurrency, c.users, perUser, func(u, i int) error {
								return apiPost(ctx, apiNoExpect, accounts[u], amount, fmt.Sprintf("%s-%d", tag, i), "PV")
							})
						})
					})
				case "minimal":
					d, err = timed(f, total, c.timeout, v, func() error {
						return parallel(c.concurrency, func(g int) error {
							return forShare(g, c.concurrency, c.users, perUser, func(u, i int) error {
								return minimalPost(ctx, minimal, f.URL, accounts[u], amount, fmt.Sprintf("%s-%d", tag, i), "PV")
							})
						})
					})
				case "river":
					diag, err = b.around(ctx, stPostgres, total, func() error {
						var err error
						d, err = timed(f, total, c.timeout, v, func() error {
							return parallel(c.callers, func(g int) error {
								return forShare(g, c.callers, c.users, perUser, func(u, i int) error {
									return rv.insert(ctx, postArgs{AccountID: accounts[u], Amount: amount, OrderID: fmt.Sprintf("%s-%d", tag, i), Alias: "PV"})
								})
							})
						})
						return err
					})
				default:
					p, err := newPlugin(handles[v].store, f.URL, c.concurrency, 0)
					if err != nil {
						return err
					}
					if err := p.Start(ctx); err != nil {
						return err
					}
					diag, err = b.around(ctx, v, total, func() error {
						var err error
						d, err = timed(f, total, c.timeout, v, func() error {
							return applyAll(ctx, p, 0, c.users, perUser, c.callers, tag)
						})
						return err
					})
					shutdown(p)
					return err
				}
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", r+1, v, err)
			}
			rate := float64(total) / d.Seconds()
			if r < 0 {
				logf("   warm-up  %-8s %s", v, fmtRate(rate))
				continue
			}
			rates[v] = append(rates[v], rate)
			if diag != "" {
				diags[v] = append(diags[v], diag)
			}
			logf("   round %d %-8s %s", r+1, v, fmtRate(rate))
		}
	}

	t := &table{key: "throughput", title: "1–2. Delivery throughput (changes/s)",
		columns: [2]string{"median changes/s", "reference, median changes/s"}}
	t.method = fmt.Sprintf("%d users × %d changes = %d changes per round, after a warm-up round of a fifth of that (not recorded); %d callers each calling ApplyVolumes once per change "+
		"(user u by caller u %% %d, in order), the plugin started beforehand with Volumes.Concurrency %d and every other Config field at its "+
		"default (ExpectContinueTimeout 1 s, IdleRecheck 1 s, Lease 2 min) and a discarding logger; timed from the first ApplyVolumes until "+
		"the fake had acknowledged (HTTP 200) the last change. A new Plugin is started on the same store each round (the outbox keeps the "+
		"delivered rows of earlier rounds). The references run in the same rounds, in this order: %s. "+
		"**client → fake**: the library's own internal/api2 client (importable from this module, whose path is under the library's), "+
		"configured as the plugin configures it (Expect: 100-continue with 1 s wait, %d idle connections per host), %d goroutines, each "+
		"owning users u %% %d and posting their changes in order, no store. **minimal**: %d goroutines posting the same signed requests "+
		"(signature computed by hand, checked against internal/phpquery and the fake) with one plain http.Client "+
		"(MaxIdleConnsPerHost %d, no Expect). **client → fake without Expect**: the same API client with a negative "+
		"ExpectContinueTimeout, to tell the Expect round trip from the rest of the client's cost. **River**: one job per change inserted by %d inserters with Client.Insert (one transaction "+
		"each), worked by %d workers, each job one signed POST through the same API client; FetchCooldown %s.",
		c.users, c.perUser, total, c.callers, c.callers, c.concurrency, stringsJoin(variants), c.concurrency+8, c.concurrency, c.concurrency,
		c.concurrency, 2*c.concurrency, c.callers, c.concurrency, c.riverCooldown)
	m := func(v string) float64 { return median(rates[v]) }
	ref := func(v string) string {
		return fmt.Sprintf("%s: %s", variantTitle(v), fmtRate(m(v)))
	}
	t.add(row{what: "client → fake (no store)", value: fmtRate(m("client")), ref: ref("minimal"),
		ratio: m("client") / m("minimal"), target: "≥ 0.8×", met: atLeast(m("client")/m("minimal"), 0.8)})
	t.add(row{what: "client → fake, ExpectContinueTimeout < 0 (no Expect)", value: fmtRate(m("client-noexpect")), ref: ref("minimal"),
		ratio: m("client-noexpect") / m("minimal")})
	targets := map[string]struct {
		ref  string
		want float64
	}{stMem: {"client", 0.9}, stSQLite: {"client", 0.2}, stPostgres: {"river", 1.0}, stMySQL: {"river", 0.7}}
	for _, s := range stores {
		tg := targets[s]
		if tg.ref == "river" && rv == nil {
			tg.ref = "client"
			tg.want = 0
		}
		r := m(s) / m(tg.ref)
		rw := row{what: storeTitles[s], value: fmtRate(m(s)), ref: ref(tg.ref), ratio: r}
		if tg.want > 0 {
			rw.target, rw.met = fmt.Sprintf("≥ %.1f×", tg.want), atLeast(r, tg.want)
		}
		t.add(rw)
		if tg.ref == "river" {
			t.add(row{what: storeTitles[s], value: fmtRate(m(s)), ref: ref("client"), ratio: m(s) / m("client")})
		}
	}
	if rv != nil {
		t.add(row{what: "River (PostgreSQL, pgxpool)", value: fmtRate(m("river")), ref: ref("client"), ratio: m("river") / m("client")})
	}
	var per []string
	for _, v := range variants {
		per = append(per, fmt.Sprintf("%s: %s", variantTitle(v), rounds(rates[v], fmtRate)))
	}
	t.extra = append(t.extra, "Each round's figures: "+joinSemi(per)+".")
	if len(diags) > 0 {
		var lines []string
		for _, v := range variants {
			for i, d := range diags[v] {
				lines = append(lines, fmt.Sprintf("- %s, round %d: %s", variantTitle(v), i+1, d))
			}
		}
		t.extra = append(t.extra, "Database server counters per delivered change (PostgreSQL: pg_stat_database and pg_stat_wal, "+
			"read 1.2 s after the measurement so that the backends have published theirs; MariaDB: SHOW GLOBAL STATUS; both "+
			"include whatever else ran on the server meanwhile, such as the idle River client's polling):\n\n"+joinLines(lines))
	}
	return t, nil
}

func variantTitle(v string) string {
	switch v {
	case "client":
		return "client → fake"
	case "client-noexpect":
		return "client → fake without Expect"
	case "minimal":
		return "minimal signed-POST loop"
	case "river":
		return "River"
	}
	if t, ok := storeTitles[v]; ok {
		return t
	}
	return v
}

func contains(xs []string, x string) bool {
	for _, s := range xs {
		if s == x {
			return true
		}
	}
	return false
}

func stringsJoin(vs []string) string {
	out := ""
	for i, v := range vs {
		if i > 0 {
			out += ", "
		}
		out += variantTitle(v)
	}
	return out
}

func joinSemi(xs []string) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	return out
}

func joinLines(xs []string) string {
	out := ""
	for _, x := range xs {
		out += x + "\n"
	}
	return out
}
