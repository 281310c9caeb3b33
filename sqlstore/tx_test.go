package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// beginHost begins a host transaction at READ COMMITTED (SQLite: the DSN
// makes it IMMEDIATE).
func beginHost(t *testing.T, p *sql.DB) *sql.Tx {
	t.Helper()
	tx, err := p.BeginTx(testCtx(t), &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	return tx
}

// usable checks that tx still runs statements.
func usable(t *testing.T, tx *sql.Tx) {
	t.Helper()
	var one int
	if err := tx.QueryRowContext(testCtx(t), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("host transaction unusable: %v", err)
	}
}

func TestTxStoreLinks(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		var ts mlmsoft.TxStore = s
		mustCreate(t, s, mlmsoft.Link{UserID: "taken", Email: "taken@x", State: mlmsoft.LinkPending})

		tx := beginHost(t, s.DB())
		in := fullLink("u1")
		got, err := ts.CreateLinkTx(ctx, tx, in, mlmsoft.Event{ID: "e1", NextAttemptAt: t0})
		if err != nil {
			t.Fatal(err)
		}
		checkLink(t, "CreateLinkTx", got, wantLink(in, 1, mlmsoft.Lease{}))
		if got, err := ts.GetLinkTx(ctx, tx, "u1"); err != nil || got.UserID != "u1" {
			t.Fatalf("GetLinkTx in tx = %+v, %v", got, err)
		}
		if _, err := ts.GetLinkTx(ctx, tx, "nobody"); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Fatalf("GetLinkTx(missing) = %v, want ErrNotFound", err)
		}
		// A duplicate leaves the host's transaction usable, with what it
		// did before.
		for _, dup := range []mlmsoft.Link{{UserID: "u1"}, {UserID: "u2", Email: "taken@x"}} {
			if _, err := ts.CreateLinkTx(ctx, tx, dup, mlmsoft.Event{ID: "never"}); !errors.Is(err, mlmsoft.ErrDuplicate) {
				t.Fatalf("CreateLinkTx(%+v) = %v, want ErrDuplicate", dup, err)
			}
			usable(t, tx)
		}
		if _, err := ts.CreateLinkTx(ctx, tx, mlmsoft.Link{UserID: "u3", State: mlmsoft.LinkPending}); err != nil {
			t.Fatal(err)
		}
		if _, err := ts.CreateLinkTx(ctx, nil, mlmsoft.Link{UserID: "u4"}); !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Fatalf("CreateLinkTx(nil tx) = %v, want ErrInvalidInput", err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"u1", "u3"} {
			if _, err := s.GetLink(ctx, id); err != nil {
				t.Fatalf("link %s after commit: %v", id, err)
			}
		}
		if evs := claimAllEvents(t, s); len(evs) != 1 || evs[0].ID != "e1" {
			t.Fatalf("events after commit = %v, want [e1]", ids(evs))
		}

		// A rolled back transaction leaves nothing, counters included.
		tx = beginHost(t, s.DB())
		if _, err := ts.CreateLinkTx(ctx, tx, mlmsoft.Link{UserID: "gone", State: mlmsoft.LinkPending}, mlmsoft.Event{ID: "e2"}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetLink(ctx, "gone"); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Fatalf("link after rollback: %v", err)
		}
		checkCounts(t, s)
	})
}

func TestTxStoreEnqueue(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		stored := mustEnqueue(t, s, due(change("u", "k0", "1")))

		tx := beginHost(t, s.DB())
		got, err := s.EnqueueVolumesTx(ctx, tx, []mlmsoft.VolumeChange{due(change("u", "k0", "1")), due(change("v", "k1", "2"))})
		if err != nil {
			t.Fatal(err)
		}
		if got[0] != stored[0] || got[1].Seq != 1 || got[1].ID == 0 {
			t.Fatalf("EnqueueVolumesTx = %+v", got)
		}
		// Nothing is claimable before the commit (SQLite: a claim, a write,
		// would wait for the host's transaction)...
		if _, ok := db.b.dialect.(SQLite); !ok {
			if got := claimVolumes(t, s, "w", t0, 10); len(got) != 1 || got[0].UserID != "u" {
				t.Fatalf("claim while the host transaction is open = %v", heads(got))
			}
		}
		// ...a conflict leaves the transaction usable...
		if _, err := s.EnqueueVolumesTx(ctx, tx, []mlmsoft.VolumeChange{change("v", "k2", "1"), change("v", "k1", "3")}); !errors.Is(err, mlmsoft.ErrIdempotencyConflict) {
			t.Fatalf("conflicting EnqueueVolumesTx = %v", err)
		}
		usable(t, tx)
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		// ...and the commit publishes the rest.
		if got := claimVolumes(t, s, "w2", t0, 10); len(got) == 0 || got[len(got)-1].UserID != "v" {
			t.Fatalf("claim after the commit = %v, want v#1 last", heads(got))
		}
		checkHeads(t, s)
		checkCounts(t, s)

		tx = beginHost(t, s.DB())
		if _, err := s.EnqueueVolumesTx(ctx, tx, []mlmsoft.VolumeChange{due(change("x", "k3", "1"))}); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if got := mustEnqueue(t, s, due(change("x", "k3", "1"))); got[0].Seq != 1 {
			t.Fatalf("after a rolled back enqueue, seq %d, want 1", got[0].Seq)
		}
		checkHeads(t, s)
		checkCounts(t, s)
	})
}

// TestTxStoreConcurrentKey: host transaction B enqueues a key that host
// transaction A stored but has not committed; once A commits, B finds A's
// change (after a unique violation rolled back to its savepoint) rather
// than storing it twice, and B's transaction stays usable. On MySQL B runs
// at REPEATABLE READ too.
func TestTxStoreConcurrentKey(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		if _, ok := db.b.dialect.(SQLite); ok {
			t.Skip("SQLite: the host transaction holds the only write lock; B cannot begin before A ends")
		}
		levels := []sql.IsolationLevel{sql.LevelReadCommitted}
		if _, ok := db.b.dialect.(MySQL); ok {
			levels = append(levels, sql.LevelRepeatableRead)
		}
		s, ctx := db.store(), testCtx(t)
		p := db.pool()
		for i, level := range levels {
			key := []string{"k-rc", "k-rr"}[i]
			a := beginHost(t, s.DB())
			want, err := s.EnqueueVolumesTx(ctx, a, []mlmsoft.VolumeChange{change("u", key, "1")})
			if err != nil {
				t.Fatal(err)
			}
			var (
				got  []mlmsoft.VolumeChange
				berr error
				wg   sync.WaitGroup
			)
			b, err := p.BeginTx(ctx, &sql.TxOptions{Isolation: level})
			if err != nil {
				t.Fatal(err)
			}
			usable(t, b) // takes its snapshot now under REPEATABLE READ
			wg.Go(func() {
				got, berr = s.EnqueueVolumesTx(ctx, b, []mlmsoft.VolumeChange{change("u", key, "1"), change("w", key+"-w", "1")})
			})
			time.Sleep(200 * time.Millisecond) // let B block on A's rows
			if err := a.Commit(); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			if berr != nil {
				t.Fatalf("%v: B's enqueue: %v", level, berr)
			}
			if got[0] != want[0] {
				t.Fatalf("%v: B got %+v, want A's %+v", level, got[0], want[0])
			}
			usable(t, b)
			if err := b.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.ListVolumes(ctx, mlmsoft.VolumeFilter{UserID: "u"})
		if err != nil || len(all) != len(levels) {
			t.Fatalf("%d changes of u, want %d: %v", len(all), len(levels), err)
		}
		checkHeads(t, s)
		checkCounts(t, s)
	})
}

// TestOpenSQLiteTxImmediate: a transaction begun on an OpenSQLite store's
// database holds the write lock from the start, as the TxStore methods
// need.
func TestOpenSQLiteTxImmediate(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	path := filepath.Join(t.TempDir(), "tx.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	other, err := sql.Open("sqlite", path) // no busy_timeout: fails at once
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.ExecContext(ctx, "BEGIN IMMEDIATE"); err == nil || !s.d.retryable(err) {
		t.Fatalf("a second writer while the host transaction is open: %v, want SQLITE_BUSY", err)
	}
	if _, err := s.EnqueueVolumesTx(ctx, tx, []mlmsoft.VolumeChange{due(change("u", "k", "1"))}); err != nil {
		t.Fatal(err)
	}
	// The Store's own writes wait for the host's transaction.
	done := make(chan error, 1)
	go func() {
		_, err := s.EnqueueVolumes(context.WithoutCancel(ctx), []mlmsoft.VolumeChange{due(change("u", "k2", "1"))})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := claimVolumes(t, s, "w", t0, 5); len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("claim = %v, want u#1", heads(got))
	}
}
