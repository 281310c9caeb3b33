package sqlstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

func TestListenForWorkUnsupported(t *testing.T) {
	t.Parallel()
	for _, d := range []Dialect{SQLite{}, MySQL{}} {
		s, err := New(&sqlDBStub, d, Config{})
		if err != nil {
			t.Fatal(err)
		}
		err = s.ListenForWork(testCtx(t), func() { t.Error("woken") })
		if !errors.Is(err, errors.ErrUnsupported) {
			t.Errorf("%s: ListenForWork = %v, want errors.ErrUnsupported", d.Name(), err)
		}
	}
}

// listener runs s.ListenForWork until the test ends and returns its wakes
// (after the first, which says it listens) and its end.
func listener(t *testing.T, s *Store) (wakes <-chan struct{}, done <-chan error, cancel func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(testCtx(t))
	w := make(chan struct{}, 100)
	d := make(chan error, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		d <- s.ListenForWork(ctx, func() { w <- struct{}{} })
	}()
	t.Cleanup(func() {
		cancel()
		<-ended
	})
	select {
	case <-w:
	case <-ended:
		t.Fatalf("ListenForWork = %v before listening", <-d)
	case <-time.After(10 * time.Second):
		t.Fatal("ListenForWork did not wake once it listened")
	}
	return w, d, cancel
}

// drain empties wakes, waiting a little for stragglers.
func drain(wakes <-chan struct{}) {
	for {
		select {
		case <-wakes:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

func expectWake(t *testing.T, wakes <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-wakes:
	case <-time.After(time.Second):
		t.Fatalf("no wake within a second of %s", what)
	}
	drain(wakes)
}

func expectNoWake(t *testing.T, wakes <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-wakes:
		t.Fatalf("woken by %s", what)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestListenForWork(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, backends[1])
	a, b := db.store(), db.store()
	ctx := testCtx(t)
	var _ mlmsoft.WorkListener = a
	wakes, done, cancel := listener(t, a)

	// Another Store enqueues: A wakes.
	mustEnqueue(t, b, due(change("u", "k1", "1")))
	expectWake(t, wakes, "an enqueue")

	// A host transaction wakes A when it commits, not before.
	tx := beginHost(t, b.DB())
	if _, err := b.EnqueueVolumesTx(ctx, tx, []mlmsoft.VolumeChange{due(change("u", "k2", "1"))}); err != nil {
		t.Fatal(err)
	}
	expectNoWake(t, wakes, "an enqueue not committed")
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	expectWake(t, wakes, "a host transaction's commit")

	// Nor after a rollback.
	tx = beginHost(t, b.DB())
	if _, err := b.EnqueueVolumesTx(ctx, tx, []mlmsoft.VolumeChange{due(change("u", "k3", "1"))}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateLinkTx(ctx, tx, mlmsoft.Link{UserID: "l0", NextAttemptAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	expectNoWake(t, wakes, "a rolled back transaction")

	// A due link, a wake of a user's changes, an operator's retry.
	l := mustCreate(t, b, mlmsoft.Link{UserID: "l1", NextAttemptAt: t0})
	expectWake(t, wakes, "a due link")
	l.UpdatedAt = t0
	if _, err := b.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: l, WakeVolumes: true}); err != nil {
		t.Fatal(err)
	}
	expectWake(t, wakes, "a wake of volume changes")
	vs := mustEnqueue(t, b, change("p", "k4", "1"))
	drain(wakes)
	mustUpdate(t, b, operator(vs[0].ID, []mlmsoft.VolumeState{mlmsoft.VolumePending}, mlmsoft.VolumePending, t0))
	expectWake(t, wakes, "an operator's retry")

	// A worker's own writes wake no one; nor do other prefixes.
	h := claimVolumes(t, b, "w", t0, 1)[0]
	mustUpdate(t, b, delivered(h, "w"))
	expectNoWake(t, wakes, "a worker's update")
	mustEnqueue(t, newTestDB(t, backends[1]).store(), due(change("u", "k1", "1")))
	expectNoWake(t, wakes, "another prefix's enqueue")

	// It ends with its context.
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ListenForWork after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ListenForWork did not return after cancel")
	}
	// The pool is fine afterwards.
	mustEnqueue(t, a, due(change("u", "k5", "1")))
}

// TestListenForWorkNotPgx: a pool whose driver gives no pgx connection is
// refused at once, with an error that is not ErrUnsupported.
func TestListenForWorkNotPgx(t *testing.T) {
	t.Parallel()
	db := newTestDB(t, backends[1])
	s, err := New(db.countingPool(&stmtCounter{}), Postgres{}, Config{TablePrefix: db.prefix})
	if err != nil {
		t.Fatal(err)
	}
	err = s.ListenForWork(testCtx(t), func() { t.Error("woken") })
	if err == nil || errors.Is(err, errors.ErrUnsupported) || errors.Is(err, context.Canceled) {
		t.Fatalf("ListenForWork on a wrapped driver = %v", err)
	}
	t.Log(err)
}
