package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/mlmsoft-go/mlmsoft"
)

// RunTx runs the conformance suite of mlmsoft.TxStore against the stores
// newStore returns, each with the *sql.DB it writes to (a fresh, empty
// store each call, as for Run; the database may be shared). It checks that
// the Tx methods write in the host's transaction: what they write is seen
// inside it, commits and rolls back with it, and a Tx method that fails
// leaves the transaction usable for the host's own statements.
//
// For the host's side, each subtest creates a table of its own in db, named
// storetest_host_ and a random suffix, with one VARCHAR(64) column; it
// writes and reads it with plain SQL (no placeholders) and drops it at
// cleanup. While a subtest's transaction is open it calls the store only
// through that transaction, so a store whose pool has a single connection
// (SQLite) does not deadlock.
//
// RunTx does not run Run: a TxStore must pass both.
func RunTx(t *testing.T, newStore func(t *testing.T) (mlmsoft.TxStore, *sql.DB)) {
	t.Helper()
	s := txSuite{newStore: newStore}
	t.Run("Tx", func(t *testing.T) {
		s.test(t, "Commit", testTxCommit)
		s.test(t, "Rollback", testTxRollback)
		s.test(t, "GetLinkTx", testTxGetLink)
		s.test(t, "Idempotency", testTxIdempotency)
		s.test(t, "ConflictLeavesTxUsable", testTxConflictLeavesTxUsable)
		s.test(t, "DuplicateLeavesTxUsable", testTxDuplicateLeavesTxUsable)
		s.test(t, "Events", testTxEvents)
	})
}

type txSuite struct {
	newStore func(t *testing.T) (mlmsoft.TxStore, *sql.DB)
}

// txEnv is what a subtest of RunTx works with.
type txEnv struct {
	t    *testing.T
	st   mlmsoft.TxStore
	db   *sql.DB
	host string // the host's table
}

func (s txSuite) test(t *testing.T, name string, f func(e *txEnv)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		st, db := s.newStore(t)
		if st == nil || db == nil {
			t.Fatal("newStore returned a nil store or database")
		}
		e := &txEnv{t: t, st: st, db: db, host: fmt.Sprintf("storetest_host_%016x", rand.Uint64())}
		if _, err := db.ExecContext(t.Context(), "CREATE TABLE "+e.host+" (id VARCHAR(64) NOT NULL PRIMARY KEY)"); err != nil {
			t.Fatalf("creating the host's table: %v", err)
		}
		t.Cleanup(func() {
			if _, err := db.ExecContext(context.Background(), "DROP TABLE "+e.host); err != nil {
				t.Errorf("dropping the host's table: %v", err)
			}
		})
		f(e)
	})
}

// begin starts the host's transaction; it is rolled back at the end of
// the test unless committed.
func (e *txEnv) begin() *sql.Tx {
	e.t.Helper()
	tx, err := e.db.BeginTx(e.t.Context(), nil)
	mustOK(e.t, "BeginTx", err)
	e.t.Cleanup(func() { _ = tx.Rollback() })
	return tx
}

// hostInsert is the host's own write in tx: id must be plain ASCII.
func (e *txEnv) hostInsert(tx *sql.Tx, id string) {
	e.t.Helper()
	_, err := tx.ExecContext(e.t.Context(), "INSERT INTO "+e.host+" (id) VALUES ('"+id+"')")
	mustOK(e.t, "the host's INSERT of "+id, err)
}

// hostRows returns the host's committed rows, in order.
func (e *txEnv) hostRows() []string {
	e.t.Helper()
	rows, err := e.db.QueryContext(e.t.Context(), "SELECT id FROM "+e.host+" ORDER BY id")
	mustOK(e.t, "reading the host's table", err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		mustOK(e.t, "scanning the host's table", rows.Scan(&id))
		out = append(out, id)
	}
	mustOK(e.t, "reading the host's table", rows.Err())
	return out
}

func (e *txEnv) commit(tx *sql.Tx) {
	e.t.Helper()
	mustOK(e.t, "Commit", tx.Commit())
}

func (e *txEnv) rollback(tx *sql.Tx) {
	e.t.Helper()
	mustOK(e.t, "Rollback", tx.Rollback())
}

func (e *txEnv) createLinkTx(tx *sql.Tx, l mlmsoft.Link, evs ...mlmsoft.Event) mlmsoft.Link {
	e.t.Helper()
	got, err := e.st.CreateLinkTx(e.t.Context(), tx, l, evs...)
	mustOK(e.t, "CreateLinkTx "+l.UserID, err)
	return got
}

func (e *txEnv) enqueueTx(tx *sql.Tx, cs ...mlmsoft.VolumeChange) []mlmsoft.VolumeChange {
	e.t.Helper()
	got, err := e.st.EnqueueVolumesTx(e.t.Context(), tx, cs)
	mustOK(e.t, "EnqueueVolumesTx", err)
	if len(got) != len(cs) {
		e.t.Fatalf("EnqueueVolumesTx of %d changes returned %d", len(cs), len(got))
	}
	return got
}

// writeAll makes, in tx, the writes of a host's sign-up and order: a link
// with an event, two changes and the host's row.
func (e *txEnv) writeAll(tx *sql.Tx) (mlmsoft.Link, mlmsoft.Event, []mlmsoft.VolumeChange) {
	e.t.Helper()
	l := fullLink(e.t, "u01", 1)
	ev := fullEvent(e.t, "e1", 1, 0)
	want := l
	want.Version, want.Lease = 1, mlmsoft.Lease{}
	got := e.createLinkTx(tx, l, ev)
	same(e.t, "CreateLinkTx result", want, got)
	in := []mlmsoft.VolumeChange{fullChange(e.t, "u01", "k1", 1), fullChange(e.t, "u01", "k2", 2)}
	cs := e.enqueueTx(tx, in...)
	for i, c := range cs {
		w := in[i]
		w.ID, w.Seq = c.ID, int64(i+1)
		same(e.t, fmt.Sprintf("EnqueueVolumesTx result %d", i), w, c)
	}
	e.hostInsert(tx, "h1")
	return got, ev, cs
}

func testTxCommit(e *txEnv) {
	t, st := e.t, e.st
	tx := e.begin()
	l, ev, cs := e.writeAll(tx)
	e.commit(tx)

	same(t, "GetLink after commit", l, getLink(t, st, "u01"))
	for _, c := range cs {
		same(t, fmt.Sprintf("GetVolumes(%d) after commit", c.ID), c, getVolume(t, st, c.ID))
	}
	now := at(1000 * hour)
	got := claimEvents(t, st, "w", now, minute, 10)
	wantIDs(t, "events after commit", eventIDs(got), []string{"e1"})
	if len(got) == 1 {
		same(t, "event after commit", leasedEvent(ev, "w", now, minute), got[0])
	}
	wantIDs(t, "the host's rows after commit", e.hostRows(), []string{"h1"})
	c := counts(t, st)
	if !countsEqual(map[mlmsoft.LinkState]int{l.State: 1}, c.Links) || !countsEqual(map[mlmsoft.VolumeState]int{mlmsoft.VolumePending: 2}, c.Volumes) || c.Events != 1 {
		t.Errorf("Counts after commit = %+v, want the link, two pending changes and the event", c)
	}
	wantHeads(t, "claim after commit", claimAt(t, st, "w", now), "u01#1")
}

func testTxRollback(e *txEnv) {
	t, st := e.t, e.st
	ctx := t.Context()
	tx := e.begin()
	l, _, cs := e.writeAll(tx)
	e.rollback(tx)

	_, err := st.GetLink(ctx, "u01")
	wantErr(t, "GetLink after rollback", err, mlmsoft.ErrNotFound)
	_, err = st.GetLinkByEmail(ctx, l.Email)
	wantErr(t, "GetLinkByEmail after rollback", err, mlmsoft.ErrNotFound)
	for _, c := range cs {
		_, err = st.GetVolumes(ctx, []int64{c.ID})
		wantErr(t, fmt.Sprintf("GetVolumes(%d) after rollback", c.ID), err, mlmsoft.ErrNotFound)
	}
	if all := listVolumes(t, st, mlmsoft.VolumeFilter{}); len(all) != 0 {
		t.Errorf("ListVolumes after rollback = %v, want none", heads(all))
	}
	noEvents(t, st, "after rollback")
	wantIDs(t, "the host's rows after rollback", e.hostRows(), nil)
	c := counts(t, st)
	if !countsEqual(nil, c.Links) || !countsEqual(nil, c.Volumes) || c.Events != 0 || !c.OldestOpen.IsZero() {
		t.Errorf("Counts after rollback = %+v, want nothing counted", c)
	}

	// Nothing of it is left: not the keys, not the places in the queue,
	// not the link's user id or email.
	got := enqueue(t, st, change("u01", "k2"), change("u01", "k1"))
	wantHeads(t, "enqueue after rollback", got, "u01#1", "u01#2")
	createLink(t, st, mlmsoft.Link{UserID: "u01", Email: l.Email})
}

func testTxGetLink(e *txEnv) {
	t, st := e.t, e.st
	ctx := t.Context()
	committed := createLink(t, st, fullLink(t, "u01", 1))
	tx := e.begin()
	got, err := st.GetLinkTx(ctx, tx, "u01")
	mustOK(t, "GetLinkTx of a committed link", err)
	same(t, "GetLinkTx of a committed link", committed, got)
	_, err = st.GetLinkTx(ctx, tx, "u02")
	wantErr(t, "GetLinkTx of a missing link", err, mlmsoft.ErrNotFound)
	created := e.createLinkTx(tx, fullLink(t, "u02", 2))
	got, err = st.GetLinkTx(ctx, tx, "u02")
	mustOK(t, "GetLinkTx of a link created in the transaction", err)
	same(t, "GetLinkTx of a link created in the transaction", created, got)
	e.commit(tx)
	same(t, "GetLink after commit", created, getLink(t, st, "u02"))
}

func testTxIdempotency(e *txEnv) {
	t, st := e.t, e.st
	stored := enqueue(t, st, change("u01", "k1"))[0]
	tx := e.begin()
	got := e.enqueueTx(tx, change("u01", "k1"), change("u01", "k2"))
	same(t, "EnqueueVolumesTx of a committed key", stored, got[0])
	if got[1].Seq != 2 || got[1].ID == stored.ID {
		t.Errorf("EnqueueVolumesTx of a new key: ID %d Seq %d, want a new ID and Seq 2", got[1].ID, got[1].Seq)
	}
	// A key stored earlier in the same transaction is found too.
	again := e.enqueueTx(tx, change("u01", "k2"), change("u01", "k3"))
	same(t, "EnqueueVolumesTx of a key of the same transaction", got[1], again[0])
	if again[1].Seq != 3 {
		t.Errorf("EnqueueVolumesTx after it: Seq %d, want 3", again[1].Seq)
	}
	e.commit(tx)
	all := listVolumes(t, st, mlmsoft.VolumeFilter{})
	wantHeads(t, "ListVolumes after commit", all, "u01#1", "u01#2", "u01#3")
}

func testTxConflictLeavesTxUsable(e *txEnv) {
	t, st := e.t, e.st
	ctx := t.Context()
	enqueue(t, st, change("u01", "k1"))
	tx := e.begin()
	e.hostInsert(tx, "h1")
	e.enqueueTx(tx, change("u01", "k2"))
	bad := change("u01", "k1")
	bad.Amount = mlmsoft.MustAmount("99")
	_, err := st.EnqueueVolumesTx(ctx, tx, []mlmsoft.VolumeChange{change("u01", "k3"), change("u02", "k4"), bad})
	wantErr(t, "EnqueueVolumesTx reusing a committed key with another amount", err, mlmsoft.ErrIdempotencyConflict)
	// The transaction goes on: the host's writes and the store's.
	e.hostInsert(tx, "h2")
	got := e.enqueueTx(tx, change("u01", "k5"), change("u02", "k6"))
	wantHeads(t, "EnqueueVolumesTx after the refused call", got, "u01#3", "u02#1")
	e.commit(tx)
	wantIDs(t, "the host's rows after commit", e.hostRows(), []string{"h1", "h2"})
	all := listVolumes(t, st, mlmsoft.VolumeFilter{})
	var keys []string
	for _, c := range all {
		keys = append(keys, c.IdempotencyKey)
	}
	wantIDs(t, "keys stored after commit", keys, []string{"k1", "k2", "k5", "k6"})
}

func testTxDuplicateLeavesTxUsable(e *txEnv) {
	t, st := e.t, e.st
	ctx := t.Context()
	first := createLink(t, st, mlmsoft.Link{UserID: "u01", Email: "a@example.com"})
	tx := e.begin()
	e.hostInsert(tx, "h1")
	for _, l := range []mlmsoft.Link{{UserID: "u01", Email: "b@example.com"}, {UserID: "u02", Email: "a@example.com"}} {
		_, err := st.CreateLinkTx(ctx, tx, l, event("e-"+l.UserID, 0, 0))
		wantErr(t, fmt.Sprintf("CreateLinkTx of %s, %s", l.UserID, l.Email), err, mlmsoft.ErrDuplicate)
	}
	e.hostInsert(tx, "h2")
	created := e.createLinkTx(tx, mlmsoft.Link{UserID: "u03", Email: "c@example.com"}, event("e3", 0, 0))
	e.commit(tx)
	wantIDs(t, "the host's rows after commit", e.hostRows(), []string{"h1", "h2"})
	same(t, "u01 after commit", first, getLink(t, st, "u01"))
	same(t, "u03 after commit", created, getLink(t, st, "u03"))
	_, err := st.GetLink(ctx, "u02")
	wantErr(t, "GetLink of the refused link", err, mlmsoft.ErrNotFound)
	wantIDs(t, "events after commit", eventIDs(claimEvents(t, st, "w", at(hour), minute, 10)), []string{"e3"})
}

func testTxEvents(e *txEnv) {
	t, st := e.t, e.st
	e1, e2 := fullEvent(t, "e1", 1, 0), fullEvent(t, "e2", 2, ms)
	tx := e.begin()
	e.createLinkTx(tx, mlmsoft.Link{UserID: "u01"}, e1, e2)
	e.rollback(tx)
	noEvents(t, st, "after rollback")

	tx = e.begin()
	e.createLinkTx(tx, mlmsoft.Link{UserID: "u01"}, e1, e2)
	e.commit(tx)
	now := at(1000 * hour)
	got := claimEvents(t, st, "w", now, minute, 10)
	wantIDs(t, "events after commit", eventIDs(got), []string{"e1", "e2"})
	for i, ev := range []mlmsoft.Event{e1, e2} {
		if i < len(got) {
			same(t, "event "+ev.ID, leasedEvent(ev, "w", now, minute), got[i])
		}
	}
}
