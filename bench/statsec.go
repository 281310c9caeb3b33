package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// numbers is a query of the integers 0..10^k-1 as column n, for the
// smallest k (at most 6) that reaches count, in any of the three SQL
// dialects (as sqlstore/bulk_test.go builds it).
func numbers(count int) string {
	digit := "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 " +
		"UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	var from, sum []string
	mul := 1
	for i, name := range []string{"a", "b", "c", "e", "f", "h"} {
		if i > 0 && mul >= count {
			break
		}
		from = append(from, digit+" "+name)
		sum = append(sum, fmt.Sprintf("%d * %s.d", mul, name))
		mul *= 10
	}
	return "SELECT " + strings.Join(sum, " + ") + " AS n FROM " + strings.Join(from, " CROSS JOIN ")
}

// dollars numbers the ? placeholders of q as $1, $2, ... (PostgreSQL).
func dollars(q string) string {
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// bulkLoad fills h's tables, bypassing the Store as sqlstore/bulk_test.go
// does (one INSERT ... SELECT per table): users queues of perUser changes,
// the first done delivered and the rest pending, due at t0, with the
// queue heads and counters to match.
func bulkLoad(ctx context.Context, h *storeHandle, users, perUser, done int) error {
	n := users * perUser
	if n > 1000000 {
		return fmt.Errorf("bulk load: at most a million changes")
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ts any = t0.Format("2006-01-02 15:04:05.000000")
	concat := func(prefix, expr string) string { return "('" + prefix + "' || " + expr + ")" }
	div, tsExpr := "/", "?"
	switch h.name {
	case stMySQL:
		concat = func(prefix, expr string) string { return "CONCAT('" + prefix + "', " + expr + ")" }
		div = "DIV"
	case stPostgres:
		ts, tsExpr = t0, "CAST(? AS TIMESTAMPTZ)"
	}
	exec := func(q string, args ...any) error {
		q = strings.ReplaceAll(q, "{p}", h.prefix)
		if h.name == stPostgres {
			q = dollars(q)
		}
		if _, err := h.db.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("bulk load: %w\n%s", err, q)
		}
		return nil
	}
	seq := fmt.Sprintf("(n %s %d)", div, users)
	user := concat("u", fmt.Sprintf("(n %% %d)", users))
	cols := "user_id, seq, batch_id, idempotency_key, alias, amount, order_id, state, attempts, next_attempt_at, last_error, " +
		"document_id, account_id, created_at, updated_at, sent_at, delivered_at, resolved_by, resolved_note, resolved_at"
	steps := []func() error{
		func() error {
			return exec(fmt.Sprintf("INSERT INTO {p}volume_users (user_id, last_seq, lease_owner) SELECT %s, %d, '' FROM (%s) g WHERE n < %d",
				concat("u", "n"), perUser, numbers(users), users))
		},
		func() error {
			return exec(fmt.Sprintf(`INSERT INTO {p}volume_changes (`+cols+`)
SELECT %s, %s + 1, 'bulk', %s, 'PV', '1.5', 'o', CASE WHEN %s < %d THEN 'delivered' ELSE 'pending' END, 0,
	CASE WHEN %s < %d THEN NULL ELSE %s END, '', 0, 0, ?, ?, NULL, NULL, '', '', NULL
FROM (%s) g WHERE n < %d ORDER BY n`, user, seq, concat("k", "n"), seq, done, seq, done, tsExpr, numbers(n), n), ts, ts, ts)
		},
		func() error {
			if done >= perUser {
				return nil
			}
			return exec(`UPDATE {p}volume_users SET head_seq = ?,
	head_id = (SELECT c.id FROM {p}volume_changes c WHERE c.user_id = {p}volume_users.user_id AND c.seq = ?),
	head_due = ?, head_created_at = ?`, done+1, done+1, ts, ts)
		},
		func() error {
			return exec("INSERT INTO {p}counts (kind, state, shard, n) VALUES (?, ?, 0, ?), (?, ?, 0, ?)",
				"volume", string(mlmsoft.VolumeDelivered), users*done, "volume", string(mlmsoft.VolumePending), users*(perUser-done))
		},
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	switch h.name {
	case stPostgres:
		if err := exec("ANALYZE {p}volume_changes"); err != nil {
			return err
		}
		return exec("ANALYZE {p}volume_users")
	case stMySQL:
		// Let InnoDB purge the load's undo log first, as bulk_test.go does.
		for range 120 {
			var v int64
			err := h.db.QueryRowContext(ctx, "SELECT `COUNT` FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'").Scan(&v)
			if err != nil || v < 1000 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return nil
}

// statsSection times Plugin.Stats with c.statsRows changes in the outbox,
// on each SQL store.
func statsSection(ctx context.Context, b *bench) (*table, error) {
	c := b.cfg
	const perUser, done = 10, 9
	users := max(1, c.statsRows/perUser)
	n := users * perUser
	stores := b.stores(true)
	plugins := map[string]*mlmsoft.Plugin{}
	for _, s := range stores {
		h, err := b.env.open(ctx, s)
		if err != nil {
			return nil, err
		}
		defer h.close()
		t0 := time.Now()
		if err := bulkLoad(ctx, h, users, perUser, done); err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
		logf("   %-8s loaded %s changes in %s", s, commas(int64(n)), time.Since(t0).Round(100*time.Millisecond))
		p, err := newPlugin(h.store, "http://127.0.0.1:1/api2/online-office/", c.concurrency, 0)
		if err != nil {
			return nil, err
		}
		st, err := p.Stats(ctx)
		if err != nil {
			return nil, err
		}
		if st.Volumes[mlmsoft.VolumeDelivered] != users*done || st.Volumes[mlmsoft.VolumePending] != users*(perUser-done) || st.OldestOpen == 0 {
			return nil, fmt.Errorf("%s: Stats after the load: %v, oldest open %s", s, st.Volumes, st.OldestOpen)
		}
		plugins[s] = p
	}
	res := map[string]*pcts{}
	for r := range c.rounds {
		for _, s := range stores {
			var ds []time.Duration
			err := b.profiled("stats/"+s, func() error {
				var err error
				ds, err = sample(1, c.statsCalls, func(_, _ int) error {
					_, err := plugins[s].Stats(ctx)
					return err
				})
				return err
			})
			if err != nil {
				return nil, err
			}
			if res[s] == nil {
				res[s] = &pcts{}
			}
			res[s].add(ds)
			logf("   round %d %-8s Stats p50 %s p99 %s", r+1, s, fmtDur(pct(ds, 50)), fmtDur(pct(ds, 99)))
		}
	}
	t := &table{key: "stats", title: "9. Stats with a large outbox", columns: [2]string{"median p50 / p99", "limit"}}
	t.method = fmt.Sprintf("Each SQL store bulk-loaded, bypassing the Store as sqlstore/bulk_test.go does, with %s changes "+
		"(%s users × %d, %d of each user's delivered, the rest pending, heads and counters to match; PostgreSQL ANALYZEd, "+
		"MariaDB's purge awaited), then Plugin.Stats called %d times in a row per round, %d rounds interleaved across the stores; "+
		"p50 and p99 per round, median over rounds. The target is judged on the p50.",
		commas(int64(n)), commas(int64(users)), perUser, done, c.statsCalls, c.rounds)
	for _, s := range stores {
		p50 := medianDur(res[s].p50)
		rw := row{what: fmt.Sprintf("%s, %s rows", storeTitles[s], commas(int64(n))), value: res[s].String(), ref: "< 5 ms"}
		if n >= 1000000 {
			rw.target = "p50 < 5 ms"
			rw.met = -1
			if p50 < 5*time.Millisecond {
				rw.met = 1
			}
		}
		t.add(rw)
	}
	return t, nil
}
