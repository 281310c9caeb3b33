package storetest_test

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"modernc.org/sqlite"
)

// This file makes a TxStore to run storetest.RunTx against: memstore for
// the data, and a real SQLite database for the host's side of each
// transaction. A wrapping driver tells the store when a transaction the
// store wrote in commits or rolls back; the store keeps a log of the
// writes committed, and on a rollback rebuilds its memstore from the log.
// RunTx calls nothing outside a transaction while one is open, so the log
// never has to interleave.

const hookDriverName = "storetest-hooked-sqlite"

// hookQuery, executed in a transaction with a token as its one argument,
// registers the token's hook to run when the transaction ends.
const hookQuery = "-- storetest hook"

var (
	registerOnce sync.Once
	hooksMu      sync.Mutex
	hooks        = map[string]func(committed bool){}
	hookSeq      atomic.Int64
)

func registerHookDriver() {
	registerOnce.Do(func() { sql.Register(hookDriverName, hookDriver{&sqlite.Driver{}}) })
}

type hookDriver struct{ inner driver.Driver }

func (d hookDriver) Open(name string) (driver.Conn, error) {
	c, err := d.inner.Open(name)
	if err != nil {
		return nil, err
	}
	return &hookConn{inner: c}, nil
}

type hookConn struct {
	inner driver.Conn
	tx    *hookTx
}

func (c *hookConn) Prepare(q string) (driver.Stmt, error) { return c.inner.Prepare(q) }
func (c *hookConn) Close() error                          { return c.inner.Close() }
func (c *hookConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *hookConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	tx, err := c.inner.(driver.ConnBeginTx).BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	c.tx = &hookTx{inner: tx, conn: c}
	return c.tx, nil
}

func (c *hookConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	return c.inner.(driver.ConnPrepareContext).PrepareContext(ctx, q)
}

func (c *hookConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	if q == hookQuery {
		if c.tx == nil || len(args) != 1 {
			return nil, errors.New("hook outside a transaction")
		}
		hooksMu.Lock()
		h := hooks[args[0].Value.(string)]
		hooksMu.Unlock()
		c.tx.hooks = append(c.tx.hooks, h)
		return driver.RowsAffected(0), nil
	}
	return c.inner.(driver.ExecerContext).ExecContext(ctx, q, args)
}

func (c *hookConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	return c.inner.(driver.QueryerContext).QueryContext(ctx, q, args)
}

func (c *hookConn) ResetSession(ctx context.Context) error {
	if r, ok := c.inner.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

type hookTx struct {
	inner driver.Tx
	conn  *hookConn
	hooks []func(bool)
}

func (t *hookTx) Commit() error {
	err := t.inner.Commit()
	t.end(err == nil)
	return err
}

func (t *hookTx) Rollback() error {
	err := t.inner.Rollback()
	t.end(false)
	return err
}

func (t *hookTx) end(committed bool) {
	t.conn.tx = nil
	for _, h := range t.hooks {
		h(committed)
	}
}

// txFlaws are the ways a fakeTxStore may break the TxStore contract.
type txFlaws struct {
	ignoresTx        bool // writes commit at once, whatever becomes of the transaction
	poisonsOnError   bool // a failed Tx method rolls the whole transaction back
	undoesAllOnError bool // a failed Tx method undoes the store's earlier writes in the transaction too
	getLinkCommitted bool // GetLinkTx sees committed links only
}

// op is one store write, to run again when the store is rebuilt.
type op func(ctx context.Context, s *memstore.Store) error

// fakeTxStore is a mlmsoft.TxStore made of a memstore and a log of the
// writes committed to it.
type fakeTxStore struct {
	mu      sync.Mutex
	ms      *memstore.Store // replaced on rollback
	log     []op
	pending map[*sql.Tx]*pendingTx
	flaws   txFlaws
}

type pendingTx struct {
	ops     []op
	created []string // user ids of links created
}

var _ mlmsoft.TxStore = (*fakeTxStore)(nil)

func newFakeTxStore(t *testing.T, flaws txFlaws) (mlmsoft.TxStore, *sql.DB) {
	registerHookDriver()
	db, err := sql.Open(hookDriverName, filepath.Join(t.TempDir(), "host.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return &fakeTxStore{ms: memstore.New(), pending: map[*sql.Tx]*pendingTx{}, flaws: flaws}, db
}

// store returns the current memstore.
func (f *fakeTxStore) store() *memstore.Store {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ms
}

// write runs a write outside any transaction and logs it.
func (f *fakeTxStore) write(ctx context.Context, o op) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := o(ctx, f.ms)
	if err == nil {
		f.log = append(f.log, o)
	}
	return err
}

// writeTx runs a write in tx, to be logged if tx commits.
func (f *fakeTxStore) writeTx(ctx context.Context, tx *sql.Tx, o op) error {
	f.mu.Lock()
	p := f.pending[tx]
	if p == nil {
		p = &pendingTx{}
		f.pending[tx] = p
		token := fmt.Sprint(hookSeq.Add(1))
		hooksMu.Lock()
		hooks[token] = func(committed bool) { f.end(tx, committed) }
		hooksMu.Unlock()
		f.mu.Unlock()
		if _, err := tx.ExecContext(ctx, hookQuery, token); err != nil {
			return err
		}
		f.mu.Lock()
	}
	err := o(ctx, f.ms)
	poison := false
	switch {
	case err == nil && f.flaws.ignoresTx:
		f.log = append(f.log, o)
	case err == nil:
		p.ops = append(p.ops, o)
	case f.flaws.poisonsOnError:
		poison = true
	case f.flaws.undoesAllOnError:
		p.ops = nil
		f.rebuild()
	}
	f.mu.Unlock()
	if poison {
		_ = tx.Rollback() // not under mu: the hook takes it
	}
	return err
}

// end applies the outcome of tx.
func (f *fakeTxStore) end(tx *sql.Tx, committed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pending[tx]
	delete(f.pending, tx)
	if p == nil {
		return
	}
	if committed {
		f.log = append(f.log, p.ops...)
		return
	}
	if !f.flaws.ignoresTx {
		f.rebuild()
	}
}

// rebuild makes the memstore anew from the log; f.mu is held.
func (f *fakeTxStore) rebuild() {
	s := memstore.New()
	for _, o := range f.log {
		_ = o(context.Background(), s)
	}
	f.ms = s
}

func (f *fakeTxStore) GetLinkTx(ctx context.Context, tx *sql.Tx, userID string) (mlmsoft.Link, error) {
	f.mu.Lock()
	p := f.pending[tx]
	hide := f.flaws.getLinkCommitted && p != nil && slices.Contains(p.created, userID)
	f.mu.Unlock()
	if hide {
		return mlmsoft.Link{}, fmt.Errorf("fake: %w", mlmsoft.ErrNotFound)
	}
	return f.store().GetLink(ctx, userID)
}

func (f *fakeTxStore) CreateLinkTx(ctx context.Context, tx *sql.Tx, l mlmsoft.Link, events ...mlmsoft.Event) (mlmsoft.Link, error) {
	l, events = cloneLink(l), cloneEvents(events)
	var out mlmsoft.Link
	first := true
	err := f.writeTx(ctx, tx, func(ctx context.Context, s *memstore.Store) error {
		got, err := s.CreateLink(ctx, l, events...)
		if first {
			out, first = got, false
		}
		return err
	})
	if err == nil {
		f.mu.Lock()
		if p := f.pending[tx]; p != nil {
			p.created = append(p.created, l.UserID)
		}
		f.mu.Unlock()
	}
	return out, err
}

func (f *fakeTxStore) EnqueueVolumesTx(ctx context.Context, tx *sql.Tx, changes []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	changes = slices.Clone(changes)
	var out []mlmsoft.VolumeChange
	first := true
	err := f.writeTx(ctx, tx, func(ctx context.Context, s *memstore.Store) error {
		got, err := s.EnqueueVolumes(ctx, changes)
		if first {
			out, first = got, false
		}
		return err
	})
	return out, err
}

// The Store methods, each run on the current memstore and logged when it
// writes. Results are taken only from the first run of each write.

func (f *fakeTxStore) CreateLink(ctx context.Context, l mlmsoft.Link, events ...mlmsoft.Event) (mlmsoft.Link, error) {
	l, events = cloneLink(l), cloneEvents(events)
	var out mlmsoft.Link
	first := true
	err := f.write(ctx, func(ctx context.Context, s *memstore.Store) error {
		got, err := s.CreateLink(ctx, l, events...)
		if first {
			out, first = got, false
		}
		return err
	})
	return out, err
}

func (f *fakeTxStore) GetLink(ctx context.Context, userID string) (mlmsoft.Link, error) {
	return f.store().GetLink(ctx, userID)
}

func (f *fakeTxStore) GetLinkByEmail(ctx context.Context, email string) (mlmsoft.Link, error) {
	return f.store().GetLinkByEmail(ctx, email)
}

func (f *fakeTxStore) UpdateLink(ctx context.Context, u mlmsoft.LinkUpdate) (mlmsoft.Link, error) {
	u.Link, u.Events = cloneLink(u.Link), cloneEvents(u.Events)
	var out mlmsoft.Link
	first := true
	err := f.write(ctx, func(ctx context.Context, s *memstore.Store) error {
		got, err := s.UpdateLink(ctx, u)
		if first {
			out, first = got, false
		}
		return err
	})
	return out, err
}

func (f *fakeTxStore) ClaimLinks(ctx context.Context, c mlmsoft.LinkClaim) ([]mlmsoft.Link, error) {
	var out []mlmsoft.Link
	first := true
	err := f.write(ctx, func(ctx context.Context, s *memstore.Store) error {
		got, err := s.ClaimLinks(ctx, c)
		if first {
			out, first = got, false
		}
		return err
	})
	return out, err
}

func (f *fakeTxStore) ListLinks(ctx context.Context, lf mlmsoft.LinkFilter) ([]mlmsoft.Link, error) {
	return f.store().ListLinks(ctx, lf)
}

func (f *fakeTxStore) EnqueueVolumes(ctx context.Context, changes []mlmsoft.VolumeChange) ([]mlmsoft.VolumeChange, error) {
	changes = slices.Clone(changes)
	var out []mlmsoft.VolumeChange
	first := true
	err := f.write(ctx, func(ctx context.Context, s *memstore.Store) error {
		got, err := s.EnqueueVolumes(ctx, changes)
		if first {
			out, first = got, false
		}
		return err
	})
	return out, err
}

func (f *fakeTxStore) GetVolumes(ctx context.Context, ids []int64) ([]mlmsoft.VolumeChange, error) {
	return f.store().GetVolumes(ctx, ids)
}

func (f *fakeTxStore) ClaimVolumes(ctx context.Context, c mlmsoft.VolumeClaim) ([]mlmsoft.ClaimedVolume, error) {
	var out []mlmsoft.ClaimedVolume
	first := true
	err := f.write(ctx, func(ctx context.Context, s *memstore.Store) error {
		got, err := s.ClaimVolumes(ctx, c)
		if first {
			out, first = got, false
		}
		return err
	})
	return out, err
}

func (f *fakeTxStore) UpdateVolume(ctx context.Context, u mlmsoft.VolumeUpdate) (mlmsoft.VolumeUpdated, error) {
	u.From, u.Events = slices.Clone(u.From), cloneEvents(u.Events)
	if u.Send != nil {
		send := *u.Send
		u.Send = &send
	}
	var out mlmsoft.VolumeUpdated
	first := true
	err := f.write(ctx, func(ctx context.Context, s *memstore.Store) error {
		got, err := s.UpdateVolume(ctx, u)
		if first {
			out, first = got, false
		}
		return err
	})
	return out, err
}

func (f *fakeTxStore) ListVolumes(ctx context.Context, vf mlmsoft.VolumeFilter) ([]mlmsoft.VolumeChange, error) {
	return f.store().ListVolumes(ctx, vf)
}

func (f *fakeTxStore) PurgeVolumes(ctx context.Context, before time.Time, limit int) (int, error) {
	var out int
	first := true
	err := f.write(ctx, func(ctx context.Context, s *memstore.Store) error {
		got, err := s.PurgeVolumes(ctx, before, limit)
		if first {
			out, first = got, false
		}
		return err
	})
	return out, err
}

func (f *fakeTxStore) ClaimEvents(ctx context.Context, c mlmsoft.EventClaim) ([]mlmsoft.Event, error) {
	var out []mlmsoft.Event
	first := true
	err := f.write(ctx, func(ctx context.Context, s *memstore.Store) error {
		got, err := s.ClaimEvents(ctx, c)
		if first {
			out, first = got, false
		}
		return err
	})
	return out, err
}

func (f *fakeTxStore) UpdateEvent(ctx context.Context, u mlmsoft.EventUpdate) error {
	return f.write(ctx, func(ctx context.Context, s *memstore.Store) error { return s.UpdateEvent(ctx, u) })
}

func (f *fakeTxStore) Counts(ctx context.Context) (mlmsoft.Counts, error) {
	return f.store().Counts(ctx)
}

func cloneLink(l mlmsoft.Link) mlmsoft.Link {
	l.SealedPassword = bytes.Clone(l.SealedPassword)
	return l
}

func cloneEvents(evs []mlmsoft.Event) []mlmsoft.Event {
	evs = slices.Clone(evs)
	for i := range evs {
		evs[i].Payload = bytes.Clone(evs[i].Payload)
	}
	return evs
}
