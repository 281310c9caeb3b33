package sqlstore

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// maxPerDelivery bounds the statements (BEGIN and COMMIT apart) and the
// transactions of a worker's UpdateVolume that delivers a change and marks
// the next one sending, per dialect. PostgreSQL sends one statement
// without a transaction of its own (deliverInOne).
var maxPerDelivery = map[string]struct{ stmts, txs int64 }{
	"postgres": {1, 0},
	"sqlite":   {6, 1},
	"mysql":    {5, 1},
}

// TestStatementCounts counts, through a wrapped driver, the statements and
// transactions each method sends, and checks the delivery path: one
// transaction, and few statements, per delivered change under Send
// continuation. Run with -v to see the table.
func TestStatementCounts(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		c := &stmtCounter{}
		s, err := New(db.countingPool(c), db.b.dialect, Config{TablePrefix: db.prefix})
		if err != nil {
			t.Fatal(err)
		}
		ctx := testCtx(t)
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		var report []string
		measure := func(name string, f func()) (stmts, txs int64) {
			t.Helper()
			c.reset()
			f()
			stmts, txs = c.snapshot()
			if c.rollbacks.Load() != 0 {
				t.Errorf("%s rolled back", name)
			}
			report = append(report, fmt.Sprintf("%-42s %3d statements %2d transactions", name, stmts, txs))
			return stmts, txs
		}

		// The delivery path: a queue of n due changes, claimed once, then
		// delivered one by one, each update marking the next sending.
		const n = 50
		var batch []mlmsoft.VolumeChange
		for i := range n {
			batch = append(batch, due(change("runner", fmt.Sprint("r", i), "1")))
		}
		mustEnqueue(t, s, batch...)
		h := claimVolumes(t, s, "w", t0, 1)[0]
		u := delivered(h, "w")
		u.Send, u.LeaseUntil = &mlmsoft.VolumeSend{At: t0, AccountID: 1}, t0.Add(time.Minute)
		stmts, txs := measure(fmt.Sprintf("UpdateVolume+Send x%d (delivery path)", n-1), func() {
			for range n - 1 {
				got, err := s.UpdateVolume(ctx, u)
				if err != nil {
					t.Fatal(err)
				}
				if got.Next.ID == 0 {
					t.Fatal("Send marked nothing")
				}
				u = delivered(got.Next, "w")
				u.Send, u.LeaseUntil = &mlmsoft.VolumeSend{At: t0, AccountID: 1}, t0.Add(time.Minute)
			}
		})
		per, perTx := float64(stmts)/float64(n-1), float64(txs)/float64(n-1)
		report = append(report, fmt.Sprintf("  per delivered change: %.2f statements + BEGIN/COMMIT, %.2f transactions", per, perTx))
		if max := maxPerDelivery[db.b.name]; txs > max.txs*(n-1) || stmts > max.stmts*(n-1) {
			t.Errorf("delivery path: %.2f statements and %.2f transactions per change, want at most %d and %d",
				per, perTx, max.stmts, max.txs)
		}
		checkHeads(t, s)

		measure("UpdateVolume (last change, lease ends)", func() { mustUpdateNoCheck(t, s, u) })
		measure("EnqueueVolumes 1 change, new user", func() { mustEnqueue(t, s, due(change("e1", "e1", "1"))) })
		measure("EnqueueVolumes 1 change, queued user", func() { mustEnqueue(t, s, due(change("e1", "e2", "1"))) })
		measure("EnqueueVolumes 1 change, stored key", func() { mustEnqueue(t, s, due(change("e1", "e2", "1"))) })
		var ten []mlmsoft.VolumeChange
		for i := range 10 {
			ten = append(ten, due(change(fmt.Sprint("m", i%3), fmt.Sprint("m", i), "1")))
		}
		measure("EnqueueVolumes 10 changes, 3 users", func() { mustEnqueue(t, s, ten...) })
		var claimed []mlmsoft.VolumeChange
		measure("ClaimVolumes (4 users)", func() { claimed = claimVolumes(t, s, "w2", t0, 10) })
		if len(claimed) != 4 {
			t.Fatalf("claimed %v", heads(claimed))
		}
		measure("UpdateVolume, worker retry (head stays)", func() {
			r := delivered(claimed[0], "w2")
			r.State, r.NextAttemptAt = mlmsoft.VolumePending, t0.Add(time.Hour)
			mustUpdateNoCheck(t, s, r)
		})
		measure("UpdateVolume, worker delivery, no Send", func() { mustUpdateNoCheck(t, s, delivered(claimed[1], "w2")) })
		measure("UpdateVolume, operator, two From states", func() {
			mustUpdateNoCheck(t, s, operator(claimed[2].ID, []mlmsoft.VolumeState{mlmsoft.VolumeParked, mlmsoft.VolumePending},
				mlmsoft.VolumeSkipped, time.Time{}))
		})
		measure("GetVolumes (3 ids)", func() {
			if _, err := s.GetVolumes(ctx, []int64{claimed[0].ID, claimed[1].ID, claimed[2].ID}); err != nil {
				t.Fatal(err)
			}
		})
		measure("ListVolumes (user, limit)", func() {
			if _, err := s.ListVolumes(ctx, mlmsoft.VolumeFilter{UserID: "runner", Limit: 10}); err != nil {
				t.Fatal(err)
			}
		})
		measure("PurgeVolumes (20 to purge)", func() {
			if n, err := s.PurgeVolumes(ctx, t0.Add(time.Second), 20); err != nil || n != 20 {
				t.Fatalf("purged %d, %v", n, err)
			}
		})
		measure("PurgeVolumes (nothing left)", func() {
			if n, err := s.PurgeVolumes(ctx, t0.Add(-time.Hour), 20); err != nil || n != 0 {
				t.Fatalf("purged %d, %v", n, err)
			}
		})

		ev := mlmsoft.Event{ID: "ev1", Kind: mlmsoft.EventLinked, NextAttemptAt: t0}
		var l mlmsoft.Link
		measure("CreateLink (with an event)", func() {
			l = mustCreate(t, s, mlmsoft.Link{UserID: "l1", Email: "l1@x", State: mlmsoft.LinkPending, NextAttemptAt: t0}, ev)
		})
		measure("GetLink", func() {
			if _, err := s.GetLink(ctx, "l1"); err != nil {
				t.Fatal(err)
			}
		})
		measure("ClaimLinks", func() {
			if got, err := s.ClaimLinks(ctx, mlmsoft.LinkClaim{Owner: "lw", Now: t0, Lease: time.Minute, Limit: 5}); err != nil || len(got) != 1 {
				t.Fatalf("claim links = %v, %v", got, err)
			}
		})
		measure("UpdateLink (worker, state change)", func() {
			l.State = mlmsoft.LinkCreated
			var err error
			if l, err = s.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l, Owner: "lw"}); err != nil {
				t.Fatal(err)
			}
		})
		mustEnqueue(t, s, change("l1", "l1-1", "1"))
		measure("UpdateLink (WakeVolumes, an event)", func() {
			l.State, l.UpdatedAt = mlmsoft.LinkLinked, t0
			if _, err := s.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l, WakeVolumes: true, Events: []mlmsoft.Event{{ID: "ev2", NextAttemptAt: t0}}}); err != nil {
				t.Fatal(err)
			}
		})
		measure("ClaimEvents", func() {
			if got := claimEvents(t, s, "hw", t0, 5); len(got) != 2 {
				t.Fatalf("claimed %v", ids(got))
			}
		})
		measure("UpdateEvent (done)", func() {
			if err := s.UpdateEvent(ctx, mlmsoft.EventUpdate{ID: "ev1", Owner: "hw", Done: true}); err != nil {
				t.Fatal(err)
			}
		})
		measure("Counts", func() {
			if _, err := s.Counts(ctx); err != nil {
				t.Fatal(err)
			}
		})
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		measure("EnqueueVolumesTx 1 change (in host tx)", func() {
			if _, err := s.EnqueueVolumesTx(ctx, tx, []mlmsoft.VolumeChange{due(change("t1", "t1", "1"))}); err != nil {
				t.Fatal(err)
			}
		})
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		checkHeads(t, s)
		checkCounts(t, s)
		t.Logf("%s (statements exclude BEGIN/COMMIT/ROLLBACK):\n%s", db.b.name, strings.Join(report, "\n"))
	})
}

// mustUpdateNoCheck is mustUpdate without checking heads (which would be
// counted).
func mustUpdateNoCheck(t *testing.T, s *Store, u mlmsoft.VolumeUpdate) mlmsoft.VolumeUpdated {
	t.Helper()
	got, err := s.UpdateVolume(testCtx(t), u)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
