package sqlstore

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// numbers is a query of the integers 0..10^k-1 as column n, for the
// smallest k (at most 6) that reaches count, in any SQL dialect, for bulk
// loads. (Only the digits needed: SQLite builds every row of the cross join
// before filtering, which under the race detector takes minutes for a
// million.)
func numbers(count int) string {
	digit := "(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 " +
		"UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	var from, sum []string
	for i, name := range []string{"a", "b", "c", "e", "f", "h"} {
		if i > 0 && pow10(i) >= count {
			break
		}
		from = append(from, digit+" "+name)
		sum = append(sum, fmt.Sprintf("%d * %s.d", pow10(i), name))
	}
	return "SELECT " + strings.Join(sum, " + ") + " AS n FROM " + strings.Join(from, " CROSS JOIN ")
}

func pow10(i int) int {
	n := 1
	for range i {
		n *= 10
	}
	return n
}

// bulkLoad fills the store, fast, with users queues of perUser changes
// each, the first done of them delivered and the rest pending and due at
// t0 (created in Seq order), with heads and counters to match. It
// bypasses the Store (one INSERT ... SELECT per table).
func bulkLoad(tb testing.TB, s *Store, users, perUser, done int) {
	tb.Helper()
	ctx := testCtx(tb)
	n := users * perUser
	if n > 1000000 {
		tb.Fatal("bulkLoad: at most a million changes")
	}
	concat := func(prefix, expr string) string {
		if _, ok := s.d.(MySQL); ok {
			return "CONCAT('" + prefix + "', " + expr + ")"
		}
		return "('" + prefix + "' || " + expr + ")"
	}
	div, ts := "/", "?"
	if _, ok := s.d.(MySQL); ok {
		div = "DIV"
	}
	if _, ok := s.d.(Postgres); ok {
		ts = "CAST(? AS TIMESTAMPTZ)" // a CASE gives a bare parameter no type
	}
	seq := fmt.Sprintf("(n %s %d)", div, users) // 0-based
	user := concat("u", fmt.Sprintf("(n %% %d)", users))
	exec := func(query string, args ...any) {
		tb.Helper()
		a, err := s.args(args...)
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := s.DB().ExecContext(ctx, s.sql(query), a...); err != nil {
			tb.Fatalf("bulk load: %v\n%s", err, query)
		}
	}
	start := time.Now()
	exec(fmt.Sprintf("INSERT INTO {p}volume_users (user_id, last_seq, lease_owner) SELECT %s, %d, '' FROM (%s) g WHERE n < %d",
		concat("u", "n"), perUser, numbers(users), users))
	exec(fmt.Sprintf(`INSERT INTO {p}volume_changes (`+strings.Join(volumeCols[1:], ", ")+`)
SELECT %s, %s + 1, 'bulk', %s, 'PV', '1.5', 'o', CASE WHEN %s < %d THEN 'delivered' ELSE 'pending' END, 0,
	CASE WHEN %s < %d THEN NULL ELSE %s END, '', 0, 0, ?, ?, NULL, NULL, '', '', NULL
FROM (%s) g WHERE n < %d ORDER BY n`, user, seq, concat("k", "n"), seq, done, seq, done, ts, numbers(n), n),
		t0, t0, t0)
	if done < perUser {
		exec(`UPDATE {p}volume_users SET head_seq = ?,
	head_id = (SELECT c.id FROM {p}volume_changes c WHERE c.user_id = {p}volume_users.user_id AND c.seq = ?),
	head_due = ?, head_created_at = ?`, done+1, done+1, t0, t0)
	}
	exec("INSERT INTO {p}counts (kind, state, shard, n) VALUES (?, ?, 0, ?), (?, ?, 0, ?)",
		countVolumes, string(mlmsoft.VolumeDelivered), users*done, countVolumes, string(mlmsoft.VolumePending), users*(perUser-done))
	switch s.d.(type) {
	case Postgres:
		exec("ANALYZE {p}volume_changes")
		exec("ANALYZE {p}volume_users")
	case MySQL:
		// Let InnoDB purge the load's undo log first, so that a benchmark
		// does not measure that.
		for range 60 {
			var n int64
			err := s.DB().QueryRowContext(ctx, "SELECT `COUNT` FROM information_schema.INNODB_METRICS WHERE NAME = 'trx_rseg_history_len'").Scan(&n)
			if err != nil || n < 1000 {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	tb.Logf("bulk load of %d changes of %d users: %v", n, users, time.Since(start).Round(time.Millisecond))
}

// TestBulkLoad checks bulkLoad's rows keep the store's invariants.
func TestBulkLoad(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s := db.store()
		bulkLoad(t, s, 7, 5, 2)
		checkHeads(t, s)
		checkCounts(t, s)
		if got := claimVolumes(t, s, "w", t0, 100); len(got) != 7 || got[0].Seq != 3 {
			t.Fatalf("claimed %v", heads(got))
		}
	})
}
