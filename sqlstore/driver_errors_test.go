package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// TestRealDriverErrors makes each database raise a unique violation and a
// transient failure (a deadlock; SQLITE_BUSY) and checks the dialect
// classifies the real driver errors.
func TestRealDriverErrors(t *testing.T) {
	t.Parallel()
	eachBackend(t, func(t *testing.T, db *testDB) {
		s, ctx := db.store(), testCtx(t)
		for _, id := range []string{"a", "b"} {
			if _, err := s.CreateLink(ctx, mlmsoft.Link{UserID: id, State: mlmsoft.LinkPending}); err != nil {
				t.Fatal(err)
			}
		}
		w, err := s.createLinkWrites(mlmsoft.Link{UserID: "a"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.DB().ExecContext(ctx, s.sql(w.stmts[0].sql), w.stmts[0].args...)
		if err == nil || !s.d.uniqueViolation(err) || s.d.retryable(err) {
			t.Fatalf("duplicate insert: err %v, unique %v, retryable %v", err, s.d.uniqueViolation(err), s.d.retryable(err))
		}

		var transient error
		if _, ok := db.b.dialect.(SQLite); ok {
			transient = sqliteBusyError(t, db)
		} else {
			transient = deadlock(t, s, db)
		}
		if !s.d.retryable(transient) || s.d.uniqueViolation(transient) {
			t.Fatalf("transient error %v: retryable %v, unique %v", transient, s.d.retryable(transient), s.d.uniqueViolation(transient))
		}
	})
}

// sqliteBusyError returns the error of a second writer on a connection without
// busy_timeout.
func sqliteBusyError(t *testing.T, db *testDB) error {
	ctx := testCtx(t)
	p1 := db.pool()
	c1, err := p1.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if _, err := c1.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	defer c1.ExecContext(ctx, "ROLLBACK")
	p2, err := sql.Open("sqlite", db.path) // no busy_timeout
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	_, err = p2.ExecContext(ctx, "BEGIN IMMEDIATE")
	if err == nil {
		t.Fatal("a second BEGIN IMMEDIATE succeeded")
	}
	return err
}

// deadlock has two transactions lock links a and b in opposite orders and
// returns the error of the one the database picks as the victim.
func deadlock(t *testing.T, s *Store, db *testDB) error {
	ctx, cancel := context.WithTimeout(testCtx(t), 30*time.Second)
	defer cancel()
	lock := s.sql("SELECT user_id FROM {p}links WHERE user_id = ? FOR UPDATE")
	p := db.pool()
	tx1, err := p.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback()
	tx2, err := p.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx2.Rollback()
	var id string
	if err := tx1.QueryRowContext(ctx, lock, "a").Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := tx2.QueryRowContext(ctx, lock, "b").Scan(&id); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	go func() {
		var id string
		err := tx1.QueryRowContext(ctx, lock, "b").Scan(&id)
		if err != nil {
			tx1.Rollback() // let the other one through
		}
		errs <- err
	}()
	var id2 string
	err2 := tx2.QueryRowContext(ctx, lock, "a").Scan(&id2)
	if err2 != nil {
		tx2.Rollback()
	}
	err1 := <-errs
	switch {
	case err1 != nil && err2 != nil:
		t.Fatalf("both transactions failed: %v; %v", err1, err2)
	case err1 == nil && err2 == nil:
		t.Fatal("no deadlock")
	}
	if errors.Is(err1, context.DeadlineExceeded) || errors.Is(err2, context.DeadlineExceeded) {
		t.Fatal("deadlock not detected in time")
	}
	return errors.Join(err1, err2)
}
