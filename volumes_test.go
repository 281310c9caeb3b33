package mlmsoft_test

// Behaviour tests of volume delivery (issue 4): ApplyVolumes validation and
// idempotency, exact amounts, per-user order, users not linked yet, parked,
// rejected and uncertain changes and the operator API, crash recovery,
// queued documents, head-of-line blocking, Stats and Retry-After. The chaos,
// breaker and outage tests live in volumes_chaos_test.go. Helper names start
// with "v" so they do not collide with the other test files of the package.
//
// Every fixture runs on a manual clock shared by the plugin and the fake MLM
// Soft: time only moves when a test advances it, so backoffs, leases and
// document delays are exact and nothing sleeps for them. Conditions that
// depend on the background workers are polled in real time with a bounded
// deadline.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

const (
	vVolumeEP   = "account/volume-change"
	vDocumentEP = "document/get"
	vDeadline   = 30 * time.Second // real-time bound of every wait (a loaded CI machine is slow)
)

// vEvents records what the OnVolume hook receives. Hooks are delivered at
// least once and may arrive out of order (a clock moved past an event's
// lease hands it to another runner; two runners work at once): events are
// kept once per id and read back in the order they happened.
type vEvents struct {
	mu  sync.Mutex
	all []mlmsoft.VolumeEvent
	ids map[string]bool
}

func (e *vEvents) hook(_ context.Context, ev mlmsoft.VolumeEvent) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ids[ev.ID] {
		return nil // delivered again: at least once
	}
	if e.ids == nil {
		e.ids = map[string]bool{}
	}
	e.ids[ev.ID] = true
	e.all = append(e.all, ev)
	// Event ids are UUIDv7: they sort in the order the events were made.
	slices.SortFunc(e.all, func(a, b mlmsoft.VolumeEvent) int {
		return cmp.Or(a.At.Compare(b.At), strings.Compare(a.ID, b.ID))
	})
	return nil
}

// kinds returns the kinds of the events received for change id, in the
// order they happened.
func (e *vEvents) kinds(id int64) []mlmsoft.VolumeState {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []mlmsoft.VolumeState
	for _, ev := range e.all {
		if ev.Change.ID == id {
			out = append(out, ev.Change.State)
			if ev.Kind != ev.Change.State {
				out = append(out, "kind/state mismatch: "+ev.Kind)
			}
		}
	}
	return out
}

// event returns the last event received for change id.
func (e *vEvents) event(id int64) (mlmsoft.VolumeEvent, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.all) - 1; i >= 0; i-- {
		if e.all[i].Change.ID == id {
			return e.all[i], true
		}
	}
	return mlmsoft.VolumeEvent{}, false
}

// vfix is a plugin wired to a fake MLM Soft, a memstore, a manual clock, a
// log buffer and an OnVolume recorder.
type vfix struct {
	t      *testing.T
	p      *mlmsoft.Plugin
	store  *memstore.Store
	fake   *mlmsofttest.Server
	clock  *mlmsofttest.Clock
	logs   *hLogBuffer
	root   mlmsofttest.Account
	events *vEvents
}

// newVFix builds a fixture; the fake gets opts (its Clock set to the
// fixture's), edit changes the plugin's config before New. The plugin is not
// started.
func newVFix(t *testing.T, opts mlmsofttest.Options, edit func(*mlmsoft.Config)) *vfix {
	t.Helper()
	return newVFixWrapped(t, opts, nil, edit)
}

// newVFixWrapped is newVFix with the plugin given wrap(the memstore) as its
// store (wrap nil: the memstore itself).
func newVFixWrapped(t *testing.T, opts mlmsofttest.Options, wrap func(*memstore.Store) mlmsoft.Store, edit func(*mlmsoft.Config)) *vfix {
	t.Helper()
	f := &vfix{t: t, store: memstore.New(), clock: mlmsofttest.NewClock(time.Time{}), logs: &hLogBuffer{}, events: &vEvents{}}
	opts.Clock = f.clock
	f.fake = mlmsofttest.NewServer(opts)
	t.Cleanup(f.fake.Close)
	f.root = f.fake.AddAccount("root@example.com", "root-password-1", 0)
	cfg := mlmsoft.Config{
		BaseURL:                 f.fake.URL,
		APIToken:                mlmsofttest.DefaultToken,
		DefaultSponsorAccountID: f.root.AccountID,
		RequestTimeout:          3 * time.Second,
		Lease:                   time.Minute,
		Clock:                   f.clock,
		Logger:                  hTextLogger(f.logs),
		Linking:                 mlmsoft.LinkingConfig{PollInitial: time.Second, PollMax: 2 * time.Second},
		Volumes:                 mlmsoft.VolumeConfig{RetryInitial: time.Second, RetryMax: 4 * time.Second},
		Hooks:                   mlmsoft.Hooks{OnVolume: f.events.hook},
	}
	if edit != nil {
		edit(&cfg)
	}
	var st mlmsoft.Store = f.store
	if wrap != nil {
		st = wrap(f.store)
	}
	p, err := mlmsoft.New(st, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	f.p = p
	t.Cleanup(func() {
		if strings.Contains(f.logs.String(), mlmsofttest.DefaultToken) {
			t.Errorf("the logs contain the API token")
		}
	})
	return f
}

func (f *vfix) start() { f.t.Helper(); startPlugin(f.t, f.p) }

// register records a sign-up for id (email id@example.com).
func (f *vfix) register(id string) {
	f.t.Helper()
	if err := f.p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: id, Email: id + "@example.com"}); err != nil {
		f.t.Fatalf("OnUserRegistered(%s): %v", id, err)
	}
}

// linkedUser registers id and waits for its link (the fake must be
// Synchronous and the plugin started).
func (f *vfix) linkedUser(id string) mlmsoft.LinkInfo {
	f.t.Helper()
	f.register(id)
	return waitLinked(f.t, f.p, id)
}

// storeLink puts a link straight into the store: linked to a new account of
// the fake, or (linked false) created and not due for a day, so that the
// user stays unlinked for the whole test.
func (f *vfix) storeLink(id string, linked bool) mlmsoft.Link {
	f.t.Helper()
	now := f.clock.Now()
	l := mlmsoft.Link{UserID: id, Email: id + "@example.com", CreatedAt: now, UpdatedAt: now}
	if linked {
		a := f.fake.AddAccount(l.Email, "pw-"+id, f.root.AccountID)
		l.State, l.AccountID, l.MLMUserID, l.LinkedVia, l.LinkedAt = mlmsoft.LinkLinked, a.AccountID, a.UserID, mlmsoft.LinkedViaCheckAuth, now
	} else {
		l.State, l.AcceptedAt, l.NextAttemptAt = mlmsoft.LinkCreated, now, now.Add(24*time.Hour)
	}
	l, err := f.store.CreateLink(context.Background(), l)
	if err != nil {
		f.t.Fatalf("CreateLink(%s): %v", id, err)
	}
	return l
}

func (f *vfix) apply(userID string, changes ...mlmsoft.Change) *mlmsoft.Batch {
	f.t.Helper()
	b, err := f.p.ApplyVolumes(context.Background(), userID, changes...)
	if err != nil {
		f.t.Fatalf("ApplyVolumes(%s): %v", userID, err)
	}
	if len(b.Changes) != len(changes) {
		f.t.Fatalf("ApplyVolumes(%s) returned %d changes for %d", userID, len(b.Changes), len(changes))
	}
	return b
}

func (f *vfix) wait(b *mlmsoft.Batch) ([]mlmsoft.VolumeChange, error) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), vDeadline)
	defer cancel()
	cs, err := b.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		f.t.Fatalf("Batch.Wait did not return within %s: %v\n%s", vDeadline, err, f.dump())
	}
	return cs, err
}

// delivered waits for b and fails the test unless every change was
// delivered.
func (f *vfix) delivered(b *mlmsoft.Batch) []mlmsoft.VolumeChange {
	f.t.Helper()
	cs, err := f.wait(b)
	if err != nil {
		f.t.Fatalf("Batch.Wait: %v\n%s", err, f.dump())
	}
	for _, c := range cs {
		if c.State != mlmsoft.VolumeDelivered || c.DeliveredAt.IsZero() {
			f.t.Errorf("Wait returned nil but change %d is %s (DeliveredAt %v)", c.ID, c.State, c.DeliveredAt)
		}
	}
	return cs
}

// notDelivered waits for b and returns its *BatchError, failing the test if
// Wait returned anything else.
func (f *vfix) notDelivered(b *mlmsoft.Batch) *mlmsoft.BatchError {
	f.t.Helper()
	_, err := f.wait(b)
	if !errors.Is(err, mlmsoft.ErrNotDelivered) {
		f.t.Fatalf("Batch.Wait = %v, want an error wrapping ErrNotDelivered\n%s", err, f.dump())
	}
	var be *mlmsoft.BatchError
	if !errors.As(err, &be) {
		f.t.Fatalf("Batch.Wait error %T is not a *BatchError", err)
	}
	return be
}

// get returns change id as stored.
func (f *vfix) get(id int64) mlmsoft.VolumeChange {
	f.t.Helper()
	cs, err := f.store.GetVolumes(context.Background(), []int64{id})
	if err != nil {
		f.t.Fatalf("GetVolumes(%d): %v", id, err)
	}
	return cs[0]
}

func (f *vfix) list(flt mlmsoft.VolumeFilter) []mlmsoft.VolumeChange {
	f.t.Helper()
	cs, err := f.p.ListVolumes(context.Background(), flt)
	if err != nil {
		f.t.Fatalf("ListVolumes: %v", err)
	}
	return cs
}

// dump describes every stored change, for failure messages.
func (f *vfix) dump() string {
	cs, err := f.store.ListVolumes(context.Background(), mlmsoft.VolumeFilter{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "  change %d user %s seq %d %s %s %s: %s attempts %d next %s err %q\n",
			c.ID, c.UserID, c.Seq, c.Alias, c.Amount, c.OrderID, c.State, c.Attempts, c.NextAttemptAt.Format(time.TimeOnly), c.LastError)
	}
	return b.String()
}

// eventually polls cond in real time until it holds.
func (f *vfix) eventually(what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(vDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s\n%s", what, f.dump())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// advanceUntil moves the manual clock by step until cond holds.
func (f *vfix) advanceUntil(step time.Duration, what string, cond func() bool) {
	f.t.Helper()
	deadline := time.Now().Add(vDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out (clock at %s) waiting for %s\n%s", f.clock.Now().Format(time.TimeOnly), what, f.dump())
		}
		f.clock.Advance(step)
		time.Sleep(5 * time.Millisecond)
	}
}

// inState returns a condition: change id is in state st.
func (f *vfix) inState(id int64, st mlmsoft.VolumeState) func() bool {
	return func() bool { return f.get(id).State == st }
}

// ledger returns the fake's ledger of account as "alias amount order".
func (f *vfix) ledger(account int64) []string {
	var out []string
	for _, e := range f.fake.Ledger(account) {
		out = append(out, e.Alias+" "+e.Amount+" "+e.OrderID)
	}
	return out
}

func (f *vfix) wantLedger(account int64, want ...string) {
	f.t.Helper()
	if got := f.ledger(account); !slices.Equal(got, want) {
		f.t.Errorf("ledger of account %d:\n got  %q\n want %q", account, got, want)
	}
}

func (f *vfix) wantEvents(id int64, want ...mlmsoft.VolumeState) {
	f.t.Helper()
	deadline := time.Now().Add(vDeadline)
	for {
		got := f.events.kinds(id)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			f.t.Errorf("OnVolume events of change %d: %v, want %v", id, got, want)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// vc is a change without an idempotency key.
func vc(alias, amount, order string) mlmsoft.Change {
	return mlmsoft.Change{Alias: alias, Amount: mlmsoft.MustAmount(amount), OrderID: order}
}

// vck is a change with an idempotency key.
func vck(alias, amount, order, key string) mlmsoft.Change {
	c := vc(alias, amount, order)
	c.IdempotencyKey = key
	return c
}

// vNonZero returns m without its zero counts.
func vNonZero[K comparable](m map[K]int) map[K]int {
	out := map[K]int{}
	for k, n := range m {
		if n != 0 {
			out[k] = n
		}
	}
	return out
}

// vLine is how a change shows in vfix.ledger.
func vLine(c mlmsoft.Change) string { return c.Alias + " " + c.Amount.String() + " " + c.OrderID }

func TestVolumeApplyValidation(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, nil)
	f.register("known") // a pending link is enough to accept changes
	ok := vc("PV", "1", "o-ok")
	long := strings.Repeat("x", 192)
	with := func(edit func(*mlmsoft.Change)) []mlmsoft.Change {
		c := vc("PV", "2", "o-2")
		edit(&c)
		return []mlmsoft.Change{ok, c} // the bad one is second: the first must not be stored either
	}
	cases := []struct {
		name    string
		user    string
		changes []mlmsoft.Change
		want    string // in the error message
	}{
		{"no changes", "known", nil, "no changes"},
		{"empty user id", "", []mlmsoft.Change{ok}, "user id"},
		{"unknown user", "ghost", []mlmsoft.Change{ok}, `"ghost"`},
		{"empty alias", "known", with(func(c *mlmsoft.Change) { c.Alias = "" }), "changes[1].Alias"},
		{"blank alias", "known", with(func(c *mlmsoft.Change) { c.Alias = "   " }), "changes[1].Alias"},
		{"empty order id", "known", with(func(c *mlmsoft.Change) { c.OrderID = "" }), "changes[1].OrderID"},
		{"long alias", "known", with(func(c *mlmsoft.Change) { c.Alias = long }), "changes[1].Alias"},
		{"long order id", "known", with(func(c *mlmsoft.Change) { c.OrderID = long }), "changes[1].OrderID"},
		{"long key", "known", with(func(c *mlmsoft.Change) { c.IdempotencyKey = long }), "changes[1].IdempotencyKey"},
		{"newline in alias", "known", with(func(c *mlmsoft.Change) { c.Alias = "P\nV" }), "changes[1].Alias"},
		{"NUL in order id", "known", with(func(c *mlmsoft.Change) { c.OrderID = "o\x00" }), "changes[1].OrderID"},
		{"invalid UTF-8 order id", "known", with(func(c *mlmsoft.Change) { c.OrderID = "o\xff" }), "changes[1].OrderID"},
		{"DEL in key", "known", with(func(c *mlmsoft.Change) { c.IdempotencyKey = "k\x7f" }), "changes[1].IdempotencyKey"},
		{"key repeated in the batch", "known", []mlmsoft.Change{vck("PV", "1", "o1", "dup"), vck("PV", "1", "o1", "dup")}, "changes[1].IdempotencyKey"},
	}
	for _, tc := range cases {
		b, err := f.p.ApplyVolumes(context.Background(), tc.user, tc.changes...)
		if !errors.Is(err, mlmsoft.ErrInvalidInput) {
			t.Errorf("%s: err = %v, want ErrInvalidInput", tc.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not name %q", tc.name, err, tc.want)
		}
		if b != nil {
			t.Errorf("%s: a batch was returned with the error", tc.name)
		}
	}
	if cs := f.list(mlmsoft.VolumeFilter{}); len(cs) != 0 {
		t.Fatalf("invalid batches stored %d changes:\n%s", len(cs), f.dump())
	}
	// The limit is 191 bytes, not less.
	edge := vc(strings.Repeat("a", 191), "1", strings.Repeat("o", 191))
	edge.IdempotencyKey = strings.Repeat("k", 191)
	b := f.apply("known", edge)
	if b.Changes[0].ID == 0 || b.Changes[0].State != mlmsoft.VolumePending {
		t.Errorf("191-byte fields: stored %+v", b.Changes[0])
	}
}

func TestVolumeApplyIdempotency(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, nil)
	f.start()
	u1, u2 := f.linkedUser("idem1"), f.linkedUser("idem2")
	ctx := context.Background()

	first := f.delivered(f.apply("idem1", vck("PV", "10", "o1", "k1"), vck("PV", "11", "o2", "k2")))

	conflicts := map[string][]mlmsoft.Change{
		"other amount":   {vck("PV", "10.5", "o1", "k1")},
		"other order id": {vck("PV", "10", "o9", "k1")},
		"other alias":    {vck("Status", "10", "o1", "k1")},
		"new then clash": {vck("PV", "12", "o3", "k3"), vck("PV", "99", "o1", "k1")},
	}
	for name, cs := range conflicts {
		if _, err := f.p.ApplyVolumes(ctx, "idem1", cs...); !errors.Is(err, mlmsoft.ErrIdempotencyConflict) {
			t.Errorf("%s: err = %v, want ErrIdempotencyConflict", name, err)
		}
	}
	// The same key for another user is a conflict too.
	if _, err := f.p.ApplyVolumes(ctx, "idem2", vck("PV", "10", "o1", "k1")); !errors.Is(err, mlmsoft.ErrIdempotencyConflict) {
		t.Errorf("key of idem1 reused for idem2: err = %v, want ErrIdempotencyConflict", err)
	}
	if n := len(f.list(mlmsoft.VolumeFilter{})); n != 2 {
		t.Fatalf("conflicting calls stored changes: %d stored, want 2\n%s", n, f.dump())
	}

	// Same key, same content (10.00 is 10): the stored change, nothing added.
	again := f.apply("idem1", vck("PV", "10.00", "o1", "k1"))
	if got := again.Changes[0]; got.ID != first[0].ID || got.State != mlmsoft.VolumeDelivered || got.BatchID != first[0].BatchID {
		t.Errorf("repeated key returned %+v, want the stored change %+v", got, first[0])
	}
	f.delivered(again)
	// A batch mixing a stored key and a new one stores only the new one.
	mixed := f.apply("idem1", vck("PV", "11", "o2", "k2"), vck("PV", "12", "o3", "k3"))
	if mixed.Changes[0].ID != first[1].ID || mixed.Changes[1].ID <= first[1].ID {
		t.Errorf("mixed batch: ids %d, %d; want %d then a new one", mixed.Changes[0].ID, mixed.Changes[1].ID, first[1].ID)
	}
	f.delivered(mixed)
	// Without a key, each call is a new change with a generated key.
	n1 := f.delivered(f.apply("idem1", vc("PV", "1", "o4")))[0]
	n2 := f.delivered(f.apply("idem1", vc("PV", "1", "o4")))[0]
	if n1.ID == n2.ID || n1.IdempotencyKey == n2.IdempotencyKey {
		t.Errorf("keyless changes share id %d/%d or key %q/%q", n1.ID, n2.ID, n1.IdempotencyKey, n2.IdempotencyKey)
	}
	for _, k := range []string{n1.IdempotencyKey, n2.IdempotencyKey} {
		if _, err := uuid.Parse(k); err != nil {
			t.Errorf("generated key %q is not a UUID: %v", k, err)
		}
	}

	if n := len(f.list(mlmsoft.VolumeFilter{})); n != 5 {
		t.Errorf("%d changes stored, want 5\n%s", n, f.dump())
	}
	f.wantLedger(u1.AccountID, "PV 10 o1", "PV 11 o2", "PV 12 o3", "PV 1 o4", "PV 1 o4")
	f.wantLedger(u2.AccountID)
	if n := f.fake.Calls(vVolumeEP); n != 5 {
		t.Errorf("%s called %d times, want 5", vVolumeEP, n)
	}
}

func TestVolumeExactDecimalsInOrder(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, nil)
	f.start()
	a, b := f.linkedUser("dec-a"), f.linkedUser("dec-b")
	// Enqueue several batches of both users before waiting for any.
	batches := []*mlmsoft.Batch{
		f.apply("dec-a", vc("Status", "1", "a1"), vc("PV", "0.1", "a2"), vc("PV", "-12.5", "a3")),
		f.apply("dec-b", vc("PV", "0.1", "b1")),
		f.apply("dec-a", vc("PV", "12345678901.234", "a4"), vc("PV", "0.2", "a5")),
		f.apply("dec-b", vc("PV", "-0.01", "b2"), vc("Status", "3", "b3")),
		f.apply("dec-a", vc("PV", "0.000001", "a6")),
	}
	for _, bt := range batches {
		for _, c := range f.delivered(bt) {
			acct := a.AccountID
			if c.UserID == "dec-b" {
				acct = b.AccountID
			}
			if c.AccountID != acct || c.Attempts != 1 || c.SentAt.IsZero() || c.LastError != "" {
				t.Errorf("change %d (%s): account %d attempts %d sent %v err %q", c.ID, c.OrderID, c.AccountID, c.Attempts, c.SentAt, c.LastError)
			}
		}
	}
	f.wantLedger(a.AccountID, "Status 1 a1", "PV 0.1 a2", "PV -12.5 a3", "PV 12345678901.234 a4", "PV 0.2 a5", "PV 0.000001 a6")
	f.wantLedger(b.AccountID, "PV 0.1 b1", "PV -0.01 b2", "Status 3 b3")
	// Seq follows enqueue order across batches.
	for _, u := range []string{"dec-a", "dec-b"} {
		cs := f.list(mlmsoft.VolumeFilter{UserID: u})
		for i, c := range cs {
			if c.Seq != int64(i+1) {
				t.Errorf("%s: change %d (%s) has Seq %d, want %d", u, c.ID, c.OrderID, c.Seq, i+1)
			}
		}
	}
	f.wantEvents(batches[0].Changes[1].ID, mlmsoft.VolumeDelivered)
}

func TestVolumeWaitsForLink(t *testing.T) {
	t.Parallel()
	// user/create is queued and its document processed 10s later (manual
	// clock); the link completes by document/get.
	f := newVFix(t, mlmsofttest.Options{DocumentDelay: 10 * time.Second}, nil)
	f.start()
	f.register("late")
	b1 := f.apply("late", vc("Status", "1", "s1"), vc("PV", "5", "s2"))
	b2 := f.apply("late", vc("PV", "6", "s3"))
	head := b1.Changes[0].ID
	f.eventually("the head to wait for the link", func() bool {
		c := f.get(head)
		return c.State == mlmsoft.VolumePending && strings.Contains(c.LastError, "waiting for the user's link")
	})
	heldUntil := f.get(head).NextAttemptAt
	// Time passes, the document is not processed yet: nothing is sent.
	for range 5 {
		f.clock.Advance(time.Second)
		time.Sleep(3 * time.Millisecond)
	}
	if n := f.fake.Calls(vVolumeEP); n != 0 {
		t.Fatalf("%d volume changes sent before the link", n)
	}
	for _, c := range f.list(mlmsoft.VolumeFilter{UserID: "late"}) {
		if c.State != mlmsoft.VolumePending || c.Attempts != 0 {
			t.Errorf("before the link, change %d is %s with %d attempts", c.ID, c.State, c.Attempts)
		}
	}
	f.clock.Advance(5 * time.Second) // the document is due now
	f.advanceUntil(500*time.Millisecond, "the link", func() bool {
		l, err := f.p.Link(context.Background(), "late")
		return err == nil && l.State == mlmsoft.LinkLinked
	})
	linkedAt := f.clock.Now()
	if !linkedAt.Before(heldUntil) {
		t.Fatalf("test setup: the link (%v) came after the recheck time %v", linkedAt, heldUntil)
	}
	// Delivered right after the link, without waiting for LinkRecheck: the
	// clock does not move any more.
	l := waitLinked(t, f.p, "late")
	f.delivered(b1)
	f.delivered(b2)
	f.wantLedger(l.AccountID, "Status 1 s1", "PV 5 s2", "PV 6 s3")
	for _, c := range f.list(mlmsoft.VolumeFilter{UserID: "late"}) {
		if c.SentAt.Before(l.LinkedAt) || c.Attempts != 1 {
			t.Errorf("change %d sent at %v (link at %v), attempts %d", c.ID, c.SentAt, l.LinkedAt, c.Attempts)
		}
	}
}

// A user whose link failed keeps its changes waiting (not parked): the link
// may still complete (check-auth, the webhook, RetryLink), and then they go.
func TestVolumeLinkFailedHolds(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, func(c *mlmsoft.Config) { c.Volumes.LinkRecheck = time.Second })
	f.start()
	// The fake refuses user/create: it knows no account 987654.
	if err := f.p.OnUserRegistered(context.Background(), mlmsoft.NewUser{UserID: "orphan", Email: "orphan@example.com", SponsorAccountID: 987654}); err != nil {
		t.Fatal(err)
	}
	b := f.apply("orphan", vc("PV", "1", "x1"), vc("PV", "2", "x2"))
	f.advanceUntil(time.Second, "the head to see the failed link", func() bool {
		return strings.Contains(f.get(b.Changes[0].ID).LastError, "link failed")
	})
	head := f.get(b.Changes[0].ID)
	if head.State != mlmsoft.VolumePending || head.Attempts != 0 || !strings.Contains(head.LastError, "Sponsor not found") {
		t.Errorf("head: %s, %d attempts, %q; want pending, waiting, with the link's failure", head.State, head.Attempts, head.LastError)
	}
	if l, _ := f.p.Link(context.Background(), "orphan"); l.State != mlmsoft.LinkFailed {
		t.Errorf("link is %s, want failed", l.State)
	}
	if n := f.fake.Calls(vVolumeEP); n != 0 {
		t.Errorf("%d volume changes sent for a user with no account", n)
	}
	// The operator fixes it in MLM Soft and retries the link: the account
	// exists now, the link completes, and the changes go in order.
	acct := f.fake.AddAccount("orphan@example.com", "pw", f.root.AccountID)
	if _, err := f.p.RetryLink(context.Background(), "orphan", "ops", "created by hand"); err != nil {
		t.Fatal(err)
	}
	f.delivered(b)
	f.wantLedger(acct.AccountID, "PV 1 x1", "PV 2 x2")
}

func TestVolumeParkHaltRetrySkip(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true, Aliases: []string{"PV", "Status"}}, nil)
	f.start()
	a, b := f.linkedUser("halt-a"), f.linkedUser("halt-b")
	ctx := context.Background()
	ba := f.apply("halt-a", vc("Status", "2", "a1"), vc("Bogus", "5", "a2"), vc("PV", "7", "a3"))
	bb := f.apply("halt-b", vc("PV", "3", "b1"), vc("PV", "4", "b2"))
	a1, a2, a3 := ba.Changes[0].ID, ba.Changes[1].ID, ba.Changes[2].ID

	be := f.notDelivered(ba)
	if len(be.Changes) != 1 || be.Changes[0].ID != a2 || be.Changes[0].State != mlmsoft.VolumeParked {
		t.Fatalf("BatchError lists %+v, want a2 parked", be.Changes)
	}
	if msg := f.get(a2).LastError; !strings.Contains(msg, "Volume property not found") {
		t.Errorf("parked reason %q lacks MLM Soft's message", msg)
	}
	f.delivered(bb) // the other user is unaffected
	f.wantLedger(b.AccountID, "PV 3 b1", "PV 4 b2")
	time.Sleep(20 * time.Millisecond) // give a wrongly unblocked queue a chance
	if c := f.get(a3); c.State != mlmsoft.VolumePending || c.Attempts != 0 {
		t.Errorf("a3 after a parked a2: %s, %d attempts; want held", c.State, c.Attempts)
	}
	f.wantLedger(a.AccountID, "Status 2 a1")
	if ps := f.list(mlmsoft.VolumeFilter{States: []mlmsoft.VolumeState{mlmsoft.VolumeParked}}); len(ps) != 1 || ps[0].ID != a2 {
		t.Errorf("ListVolumes(parked) = %+v, want a2", ps)
	}

	// Retry: sent again, refused again, parked again; the audit is kept.
	r, err := f.p.RetryVolume(ctx, a2, "alice@ops", "alias added?")
	if err != nil {
		t.Fatalf("RetryVolume: %v", err)
	}
	if r.State != mlmsoft.VolumePending || r.ResolvedBy != "alice@ops" || r.ResolvedNote != "alias added?" || !r.ResolvedAt.Equal(f.clock.Now()) {
		t.Errorf("RetryVolume returned %+v", r)
	}
	// Moving the clock by IdleRecheck: see TestVolumeOperatorActionWakesDispatcher.
	f.advanceUntil(time.Second, "a2 parked again", func() bool {
		c := f.get(a2)
		return c.State == mlmsoft.VolumeParked && c.Attempts == 2
	})
	if c := f.get(a2); c.ResolvedBy != "alice@ops" || c.ResolvedNote != "alias added?" {
		t.Errorf("audit after the retry: by %q note %q", c.ResolvedBy, c.ResolvedNote)
	}
	if c := f.get(a3); c.State != mlmsoft.VolumePending || c.Attempts != 0 {
		t.Errorf("a3 after the failed retry: %s, %d attempts", c.State, c.Attempts)
	}

	// Skip: the queue moves on, in order.
	s, err := f.p.SkipVolume(ctx, a2, "bob@ops", "no such property")
	if err != nil {
		t.Fatalf("SkipVolume: %v", err)
	}
	if s.State != mlmsoft.VolumeSkipped || s.ResolvedBy != "bob@ops" || s.ResolvedNote != "no such property" {
		t.Errorf("SkipVolume returned %+v", s)
	}
	f.eventually("a3 delivered", f.inState(a3, mlmsoft.VolumeDelivered))
	f.wantLedger(a.AccountID, "Status 2 a1", "PV 7 a3")
	f.wantEvents(a1, mlmsoft.VolumeDelivered)
	f.wantEvents(a2, mlmsoft.VolumeParked, mlmsoft.VolumeParked, mlmsoft.VolumeSkipped)
	f.wantEvents(a3, mlmsoft.VolumeDelivered)
	if ev, _ := f.events.event(a2); ev.Change.ResolvedBy != "bob@ops" {
		t.Errorf("skip event carries ResolvedBy %q", ev.Change.ResolvedBy)
	}
	if !strings.Contains(f.logs.String(), "volume change parked") {
		t.Errorf("no log line for the parked change")
	}
}

func TestVolumeParkContinue(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true, Aliases: []string{"PV", "Status"}}, func(c *mlmsoft.Config) {
		c.Volumes.ParkPolicy = mlmsoft.ParkPolicyContinue
	})
	f.start()
	u := f.linkedUser("cont")
	b := f.apply("cont", vc("Bogus", "1", "c1"), vc("PV", "2", "c2"), vc("Status", "3", "c3"))
	be := f.notDelivered(b)
	if len(be.Changes) != 1 || be.Changes[0].ID != b.Changes[0].ID || be.Changes[0].State != mlmsoft.VolumeRejected {
		t.Fatalf("BatchError lists %+v, want c1 rejected", be.Changes)
	}
	if !strings.Contains(be.Changes[0].LastError, "Volume property not found") {
		t.Errorf("rejected reason %q lacks MLM Soft's message", be.Changes[0].LastError)
	}
	f.eventually("c3 delivered", f.inState(b.Changes[2].ID, mlmsoft.VolumeDelivered))
	f.wantLedger(u.AccountID, "PV 2 c2", "Status 3 c3")
	f.wantEvents(b.Changes[0].ID, mlmsoft.VolumeRejected)
	f.wantEvents(b.Changes[1].ID, mlmsoft.VolumeDelivered)
	if ps := f.list(mlmsoft.VolumeFilter{States: []mlmsoft.VolumeState{mlmsoft.VolumeParked}}); len(ps) != 0 {
		t.Errorf("parked under ParkPolicyContinue: %+v", ps)
	}
	// A rejected change is final: the operator cannot retry it.
	if _, err := f.p.RetryVolume(context.Background(), b.Changes[0].ID, "ops", ""); !errors.Is(err, mlmsoft.ErrWrongState) {
		t.Errorf("RetryVolume(rejected) = %v, want ErrWrongState", err)
	}
}

// vUncertainHead links a user, makes MLM Soft apply its first change and
// drop the answer, then clears the fault. It returns the user's link and
// batch once the head is uncertain.
func (f *vfix) vUncertainHead(user string, changes ...mlmsoft.Change) (mlmsoft.LinkInfo, *mlmsoft.Batch) {
	f.t.Helper()
	l := f.linkedUser(user)
	f.fake.SetFaults(vVolumeEP, mlmsofttest.Faults{ApplyThenDropRate: 1})
	b := f.apply(user, changes...)
	be := f.notDelivered(b)
	f.fake.SetFaults(vVolumeEP, mlmsofttest.Faults{})
	if len(be.Changes) != 1 || be.Changes[0].ID != b.Changes[0].ID || be.Changes[0].State != mlmsoft.VolumeUncertain {
		f.t.Fatalf("BatchError lists %+v, want the head uncertain", be.Changes)
	}
	return l, b
}

func TestVolumeAmbiguousResolveApplied(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, nil)
	f.start()
	ctx := context.Background()
	l, b := f.vUncertainHead("amb", vc("PV", "1", "m1"), vc("PV", "2", "m2"), vc("PV", "3", "m3"))
	m1, m3 := b.Changes[0].ID, b.Changes[2].ID
	time.Sleep(20 * time.Millisecond) // give a wrongly unblocked queue a chance
	f.wantLedger(l.AccountID, "PV 1 m1")
	if n := f.fake.Calls(vVolumeEP); n != 1 {
		t.Errorf("%s called %d times while the head is uncertain, want 1", vVolumeEP, n)
	}
	for _, c := range f.list(mlmsoft.VolumeFilter{UserID: "amb"})[1:] {
		if c.State != mlmsoft.VolumePending || c.Attempts != 0 {
			t.Errorf("change %d behind an uncertain head: %s, %d attempts", c.ID, c.State, c.Attempts)
		}
	}
	if us := f.list(mlmsoft.VolumeFilter{States: []mlmsoft.VolumeState{mlmsoft.VolumeUncertain}}); len(us) != 1 || us[0].ID != m1 {
		t.Errorf("ListVolumes(uncertain) = %+v", us)
	}
	f.wantEvents(m1, mlmsoft.VolumeUncertain)
	// Retry is for parked changes only.
	if _, err := f.p.RetryVolume(ctx, m1, "ops", ""); !errors.Is(err, mlmsoft.ErrWrongState) {
		t.Errorf("RetryVolume(uncertain) = %v, want ErrWrongState", err)
	}

	r, err := f.p.ResolveVolume(ctx, m1, mlmsoft.ResolveApplied, "carol@ops", "seen in the back office")
	if err != nil {
		t.Fatalf("ResolveVolume(applied): %v", err)
	}
	if r.State != mlmsoft.VolumeDelivered || !r.DeliveredAt.Equal(f.clock.Now()) || r.ResolvedBy != "carol@ops" || r.ResolvedNote != "seen in the back office" {
		t.Errorf("ResolveVolume returned %+v", r)
	}
	f.eventually("m3 delivered", f.inState(m3, mlmsoft.VolumeDelivered))
	f.wantLedger(l.AccountID, "PV 1 m1", "PV 2 m2", "PV 3 m3")
	if c := f.get(m1); c.Attempts != 1 {
		t.Errorf("m1 sent %d times, want 1", c.Attempts)
	}
	f.wantEvents(m1, mlmsoft.VolumeUncertain, mlmsoft.VolumeDelivered)
	if _, err := f.p.ResolveVolume(ctx, m1, mlmsoft.ResolveApplied, "carol@ops", "again"); !errors.Is(err, mlmsoft.ErrWrongState) {
		t.Errorf("resolving twice = %v, want ErrWrongState", err)
	}
}

func TestVolumeAmbiguousResolveResend(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, nil)
	f.start()
	l, b := f.vUncertainHead("resend", vc("PV", "1", "m1"), vc("PV", "2", "m2"))
	r, err := f.p.ResolveVolume(context.Background(), b.Changes[0].ID, mlmsoft.ResolveResend, "dave@ops", "not in the back office")
	if err != nil {
		t.Fatalf("ResolveVolume(resend): %v", err)
	}
	if r.State != mlmsoft.VolumePending || r.ResolvedBy != "dave@ops" {
		t.Errorf("ResolveVolume returned %+v", r)
	}
	f.advanceUntil(time.Second, "m2 delivered", f.inState(b.Changes[1].ID, mlmsoft.VolumeDelivered))
	// The fake did apply the first send: the operator's "resend" sends it
	// once more, which is what was asked.
	f.wantLedger(l.AccountID, "PV 1 m1", "PV 1 m1", "PV 2 m2")
	if c := f.get(b.Changes[0].ID); c.State != mlmsoft.VolumeDelivered || c.Attempts != 2 {
		t.Errorf("m1: %s after %d attempts, want delivered after 2", c.State, c.Attempts)
	}
}

func TestVolumeAmbiguousPolicyResend(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, func(c *mlmsoft.Config) {
		c.Volumes.AmbiguousPolicy = mlmsoft.AmbiguousResend
	})
	f.start()
	l := f.linkedUser("autoresend")
	f.fake.SetFaults(vVolumeEP, mlmsofttest.Faults{ApplyThenDropRate: 1})
	b := f.apply("autoresend", vc("PV", "1", "r1"), vc("PV", "2", "r2"))
	r1 := b.Changes[0].ID
	f.eventually("r1 to wait for a resend", func() bool {
		c := f.get(r1)
		return c.State == mlmsoft.VolumePending && c.Attempts == 1 && strings.Contains(c.LastError, "unknown outcome")
	})
	if c := f.get(r1); !c.NextAttemptAt.After(c.SentAt) {
		t.Errorf("resend scheduled at %v, not after the send at %v", c.NextAttemptAt, c.SentAt)
	}
	f.fake.SetFaults(vVolumeEP, mlmsofttest.Faults{})
	f.advanceUntil(time.Second, "r2 delivered", f.inState(b.Changes[1].ID, mlmsoft.VolumeDelivered))
	f.delivered(b)
	f.wantLedger(l.AccountID, "PV 1 r1", "PV 1 r1", "PV 2 r2")
	if c := f.get(r1); c.Attempts != 2 {
		t.Errorf("r1 attempts %d, want 2", c.Attempts)
	}
	f.wantEvents(r1, mlmsoft.VolumeDelivered) // never uncertain
}

// An operator's retry or resend must be taken up at once, like an enqueue,
// not at the next IdleRecheck: the clock does not move here.
func TestVolumeOperatorActionWakesDispatcher(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true, Aliases: []string{"PV"}}, nil)
	f.start()
	l, b := f.vUncertainHead("wake-resend", vc("PV", "1", "w1"), vc("PV", "2", "w2"))
	f.linkedUser("wake-retry")
	parked := f.apply("wake-retry", vc("Bogus", "1", "w3"))
	f.notDelivered(parked)
	// Let the dispatcher go idle before the operator acts.
	time.Sleep(20 * time.Millisecond)
	ctx := context.Background()
	if _, err := f.p.ResolveVolume(ctx, b.Changes[0].ID, mlmsoft.ResolveResend, "ops", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.p.RetryVolume(ctx, parked.Changes[0].ID, "ops", ""); err != nil {
		t.Fatal(err)
	}
	f.eventually("the resent change delivered", f.inState(b.Changes[1].ID, mlmsoft.VolumeDelivered))
	f.eventually("the retried change refused again", func() bool { return f.get(parked.Changes[0].ID).Attempts == 2 })
	f.wantLedger(l.AccountID, "PV 1 w1", "PV 1 w1", "PV 2 w2")
}

// A change parked because MLM Soft's document for it failed (under
// WaitForDocuments) keeps its DocumentID; retrying it must send it again,
// not poll the old document.
func TestVolumeRetryParkedDocumentResends(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, func(c *mlmsoft.Config) { c.Volumes.WaitForDocuments = true })
	ctx := context.Background()
	l := f.storeLink("docfail", true)
	c := f.apply("docfail", vc("PV", "1", "f1")).Changes[0]
	// What deliver and pollVolumeDocument leave behind: sent, queued as a
	// document, the document failed, parked.
	now := f.clock.Now()
	if hs, err := f.store.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w-old", Now: now, Lease: time.Minute, Limit: 1}); err != nil || len(hs) != 1 {
		t.Fatalf("ClaimVolumes = %+v, %v", hs, err)
	}
	if _, err := f.store.UpdateVolume(ctx, mlmsoft.VolumeUpdate{
		ID: c.ID, Owner: "w-old", From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, State: mlmsoft.VolumeParked, Attempts: 1,
		LastError: "the volume-change document failed: Insufficient balance", DocumentID: 999999, AccountID: l.AccountID,
		SentAt: now, UpdatedAt: now,
	}); err != nil {
		t.Fatal(err)
	}
	f.start()
	if _, err := f.p.RetryVolume(ctx, c.ID, "ops", "balance topped up"); err != nil {
		t.Fatal(err)
	}
	f.advanceUntil(time.Second, "f1 sent again and delivered", f.inState(c.ID, mlmsoft.VolumeDelivered))
	f.wantLedger(l.AccountID, "PV 1 f1")
}

func TestVolumeOperatorErrors(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, nil)
	f.start()
	f.linkedUser("op")
	done := f.delivered(f.apply("op", vc("PV", "1", "e1")))[0]
	ctx := context.Background()
	ops := map[string]func(id int64, by string) error{
		"retry": func(id int64, by string) error { _, err := f.p.RetryVolume(ctx, id, by, "note"); return err },
		"resolve applied": func(id int64, by string) error {
			_, err := f.p.ResolveVolume(ctx, id, mlmsoft.ResolveApplied, by, "note")
			return err
		},
		"resolve resend": func(id int64, by string) error {
			_, err := f.p.ResolveVolume(ctx, id, mlmsoft.ResolveResend, by, "note")
			return err
		},
		"skip": func(id int64, by string) error { _, err := f.p.SkipVolume(ctx, id, by, "note"); return err },
	}
	for name, op := range ops {
		if err := op(done.ID, "ops"); !errors.Is(err, mlmsoft.ErrWrongState) {
			t.Errorf("%s on a delivered change: %v, want ErrWrongState", name, err)
		}
		for _, by := range []string{"", "  "} {
			if err := op(done.ID, by); !errors.Is(err, mlmsoft.ErrInvalidInput) || !strings.Contains(err.Error(), "by") {
				t.Errorf("%s with by %q: %v, want ErrInvalidInput naming by", name, by, err)
			}
		}
		if err := op(424242, "ops"); !errors.Is(err, mlmsoft.ErrNotFound) {
			t.Errorf("%s on an unknown id: %v, want ErrNotFound", name, err)
		}
	}
	if _, err := f.p.ResolveVolume(ctx, done.ID, "maybe", "ops", ""); !errors.Is(err, mlmsoft.ErrInvalidInput) {
		t.Errorf("ResolveVolume(maybe) = %v, want ErrInvalidInput", err)
	}
	if c := f.get(done.ID); c.State != mlmsoft.VolumeDelivered || c.ResolvedBy != "" || !c.ResolvedAt.IsZero() {
		t.Errorf("refused operator calls changed the change: %+v", c)
	}
}

func TestVolumeCrashRecoveryUncertain(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{}, nil)
	ctx := context.Background()
	l := f.storeLink("crash", true)
	now := f.clock.Now()
	rec := func(key, order, amount string) mlmsoft.VolumeChange {
		return mlmsoft.VolumeChange{
			UserID: "crash", BatchID: "batch-1", IdempotencyKey: key, Alias: "PV", Amount: mlmsoft.MustAmount(amount), OrderID: order,
			State: mlmsoft.VolumePending, NextAttemptAt: now, CreatedAt: now, UpdatedAt: now,
		}
	}
	stored, err := f.store.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{rec("k1", "c1", "5"), rec("k2", "c2", "6")})
	if err != nil {
		t.Fatal(err)
	}
	// A worker claims the user, marks the head sending, and dies.
	heads, err := f.store.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "dead", Now: now, Lease: 20 * time.Second, Limit: 10})
	if err != nil || len(heads) != 1 || heads[0].Change.ID != stored[0].ID {
		t.Fatalf("ClaimVolumes = %+v, %v", heads, err)
	}
	if _, err := f.store.UpdateVolume(ctx, mlmsoft.VolumeUpdate{
		ID: stored[0].ID, Owner: "dead", KeepLease: true, LeaseUntil: now.Add(20 * time.Second),
		From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, State: mlmsoft.VolumeSending,
		Attempts: 1, NextAttemptAt: now, AccountID: l.AccountID, SentAt: now, UpdatedAt: now,
	}); err != nil {
		t.Fatal(err)
	}
	c1, c2 := stored[0].ID, stored[1].ID

	f.start()
	// Both loops (links, volumes) idle on the clock: the lease still holds.
	if !f.clock.BlockUntil(2, vDeadline) {
		t.Fatal("the workers did not go idle")
	}
	f.clock.Advance(10 * time.Second)
	if !f.clock.BlockUntil(2, vDeadline) {
		t.Fatal("the workers did not go idle")
	}
	if c := f.get(c1); c.State != mlmsoft.VolumeSending {
		t.Fatalf("taken over while the dead worker's lease held: %s", c.State)
	}
	f.clock.Advance(11 * time.Second) // the lease has expired
	f.eventually("c1 uncertain", f.inState(c1, mlmsoft.VolumeUncertain))
	if c := f.get(c1); !strings.Contains(c.LastError, "outcome unknown") || c.Attempts != 1 {
		t.Errorf("c1: %q, %d attempts", c.LastError, c.Attempts)
	}
	f.wantEvents(c1, mlmsoft.VolumeUncertain)
	// Never resent automatically, however long it waits.
	for range 5 {
		f.clock.Advance(time.Minute)
		time.Sleep(3 * time.Millisecond)
	}
	if n := f.fake.Calls(vVolumeEP); n != 0 {
		t.Fatalf("%s called %d times for an uncertain head", vVolumeEP, n)
	}
	if c := f.get(c2); c.State != mlmsoft.VolumePending || c.Attempts != 0 {
		t.Errorf("c2 behind the uncertain head: %s, %d attempts", c.State, c.Attempts)
	}
	// The operator knows it never reached MLM Soft.
	if _, err := f.p.ResolveVolume(ctx, c1, mlmsoft.ResolveResend, "ops", "not in the back office"); err != nil {
		t.Fatalf("ResolveVolume: %v", err)
	}
	f.advanceUntil(time.Second, "c2 delivered", f.inState(c2, mlmsoft.VolumeDelivered))
	f.wantLedger(l.AccountID, "PV 5 c1", "PV 6 c2")
}

func TestVolumeWaitForDocuments(t *testing.T) {
	t.Parallel()
	const delay = 10 * time.Second
	f := newVFix(t, mlmsofttest.Options{Synchronous: true, QueueVolumeChanges: true, DocumentDelay: delay}, func(c *mlmsoft.Config) {
		c.Volumes.WaitForDocuments = true
		c.Volumes.DocumentPollInitial, c.Volumes.DocumentPollMax = time.Second, 2*time.Second
	})
	f.start()
	l := f.linkedUser("docs")
	b := f.apply("docs", vc("Status", "1", "d1"), vc("PV", "2", "d2"), vc("PV", "3", "d3"))
	d1 := b.Changes[0].ID
	f.eventually("d1 queued as a document", func() bool {
		c := f.get(d1)
		return c.State == mlmsoft.VolumePending && c.DocumentID != 0
	})
	// Until d1's document is processed, d2 is not sent.
	f.advanceUntil(time.Second, "d1 delivered", func() bool {
		calls := f.fake.Calls(vVolumeEP) // read before the state: d2 is sent only after d1 is delivered
		if f.get(d1).State == mlmsoft.VolumeDelivered {
			return true
		}
		if calls != 1 {
			t.Fatalf("%d volume changes sent while d1's document is unprocessed (clock +%s)", calls, f.clock.Now().Sub(f.get(d1).SentAt))
		}
		return false
	})
	if n := f.fake.Calls(vDocumentEP); n == 0 {
		t.Errorf("the document was never polled")
	}
	f.advanceUntil(time.Second, "d3 delivered", f.inState(b.Changes[2].ID, mlmsoft.VolumeDelivered))
	cs := f.delivered(b)
	f.wantLedger(l.AccountID, "Status 1 d1", "PV 2 d2", "PV 3 d3")
	ledger := f.fake.Ledger(l.AccountID)
	if len(ledger) != 3 {
		t.Fatalf("ledger has %d entries", len(ledger))
	}
	for i, c := range cs {
		if c.DocumentID == 0 || c.DeliveredAt.Before(c.SentAt.Add(delay)) {
			t.Errorf("%s: document %d, sent %v, delivered %v: delivered before the document could be processed", c.OrderID, c.DocumentID, c.SentAt, c.DeliveredAt)
		}
		if i == 0 {
			continue
		}
		prev := cs[i-1]
		if c.SentAt.Before(prev.DeliveredAt) || c.SentAt.Before(ledger[i-1].At) {
			t.Errorf("%s sent at %v, before %s's document was processed (%v, ledger %v)", c.OrderID, c.SentAt, prev.OrderID, prev.DeliveredAt, ledger[i-1].At)
		}
	}
	if n := f.fake.Calls(vVolumeEP); n != 3 {
		t.Errorf("%s called %d times, want 3", vVolumeEP, n)
	}
}

func TestVolumeQueuedDocumentCountsAsDelivered(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true, QueueVolumeChanges: true, DocumentDelay: 10 * time.Second}, nil)
	f.start()
	l := f.linkedUser("nodocwait")
	b := f.apply("nodocwait", vc("Status", "1", "d1"), vc("PV", "2", "d2"), vc("PV", "3", "d3"))
	start := f.clock.Now()
	for _, c := range f.delivered(b) { // the clock never moves
		if c.DocumentID == 0 || !c.DeliveredAt.Equal(start) {
			t.Errorf("%s: document %d, delivered at %v", c.OrderID, c.DocumentID, c.DeliveredAt)
		}
	}
	if n, d := f.fake.Calls(vVolumeEP), f.fake.Calls(vDocumentEP); n != 3 || d != 0 {
		t.Errorf("calls: %s %d (want 3), %s %d (want 0)", vVolumeEP, n, vDocumentEP, d)
	}
	f.wantLedger(l.AccountID) // MLM Soft has not processed them yet
	f.clock.Advance(10 * time.Second)
	f.fake.ProcessDue()
	f.wantLedger(l.AccountID, "Status 1 d1", "PV 2 d2", "PV 3 d3")
}

// vInFlight counts concurrent account/volume-change requests, overall and
// per account.
type vInFlight struct {
	mu      sync.Mutex
	now     int
	max     int
	perAcct map[string]int
	overlap []string
}

func (v *vInFlight) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, vVolumeEP) {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(body))
		d.UseNumber()
		_ = d.Decode(&m)
		acct := fmt.Sprint(m["accountId"])
		v.mu.Lock()
		v.now++
		v.max = max(v.max, v.now)
		v.perAcct[acct]++
		if v.perAcct[acct] > 1 {
			v.overlap = append(v.overlap, acct)
		}
		v.mu.Unlock()
		defer func() {
			v.mu.Lock()
			v.now--
			v.perAcct[acct]--
			v.mu.Unlock()
		}()
		next.ServeHTTP(w, r)
	})
}

func TestVolumeNoHeadOfLineBlocking(t *testing.T) {
	t.Parallel()
	const concurrency, users = 4, 16
	flight := &vInFlight{perAcct: map[string]int{}}
	f := newVFix(t, mlmsofttest.Options{Synchronous: true, Aliases: []string{"PV", "Status"}}, func(c *mlmsoft.Config) {
		c.Volumes.Concurrency = concurrency
	})
	// Route the plugin through a counting front of the same fake.
	front := httptest.NewServer(flight.wrap(f.fake.Handler()))
	t.Cleanup(front.Close)
	p, err := mlmsoft.New(f.store, mlmsoft.Config{
		BaseURL: front.URL + mlmsofttest.BasePath, APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: f.root.AccountID,
		RequestTimeout: 3 * time.Second, Lease: time.Minute, Clock: f.clock, Logger: hTextLogger(f.logs),
		Volumes: mlmsoft.VolumeConfig{Concurrency: concurrency},
	})
	if err != nil {
		t.Fatal(err)
	}
	f.p = p
	f.fake.SetFaults(vVolumeEP, mlmsofttest.Faults{LatencyMin: 10 * time.Millisecond, LatencyMax: 10 * time.Millisecond})
	f.start()

	// Stuck users, enqueued first: a parked head and a user never linked.
	parked := f.linkedUser("stuck-parked")
	f.storeLink("stuck-unlinked", false)
	bp := f.apply("stuck-parked", vc("Bogus", "1", "p1"), vc("PV", "2", "p2"))
	bu := f.apply("stuck-unlinked", vc("PV", "1", "u1"), vc("PV", "2", "u2"))
	f.notDelivered(bp)

	links := map[string]mlmsoft.LinkInfo{}
	var ids []string
	for i := range users {
		id := fmt.Sprintf("free-%02d", i)
		links[id] = f.linkedUser(id)
		ids = append(ids, id)
	}
	want := map[string][]string{}
	var batches []*mlmsoft.Batch
	for round := range 2 {
		for _, id := range ids {
			cs := []mlmsoft.Change{vc("Status", fmt.Sprint(round+1), fmt.Sprintf("%s-s%d", id, round)), vc("PV", fmt.Sprintf("%d.5", round), fmt.Sprintf("%s-p%d", id, round))}
			batches = append(batches, f.apply(id, cs...))
			want[id] = append(want[id], vLine(cs[0]), vLine(cs[1]))
		}
	}
	for _, b := range batches {
		f.delivered(b)
	}
	for _, id := range ids {
		f.wantLedger(links[id].AccountID, want[id]...)
	}
	// The stuck users are still stuck, and were never in the way.
	if c := f.get(bp.Changes[1].ID); c.State != mlmsoft.VolumePending || c.Attempts != 0 {
		t.Errorf("p2 behind a parked head: %s, %d attempts", c.State, c.Attempts)
	}
	f.wantLedger(parked.AccountID)
	for _, c := range bu.Changes {
		if c := f.get(c.ID); c.State != mlmsoft.VolumePending || c.Attempts != 0 || (c.Seq == 1 && !strings.Contains(c.LastError, "link")) {
			t.Errorf("change %d of the unlinked user: %s, %d attempts, %q", c.ID, c.State, c.Attempts, c.LastError)
		}
	}
	flight.mu.Lock()
	defer flight.mu.Unlock()
	t.Logf("at most %d volume changes in flight (Concurrency %d)", flight.max, concurrency)
	if flight.max < 2 || flight.max > concurrency {
		t.Errorf("%d volume changes were in flight at once, want 2..%d", flight.max, concurrency)
	}
	if len(flight.overlap) > 0 {
		t.Errorf("accounts with two changes in flight at once: %v", flight.overlap)
	}
}

func TestVolumeStats(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true, Aliases: []string{"PV", "Status"}}, func(c *mlmsoft.Config) {
		c.Breaker = mlmsoft.BreakerConfig{ConsecutiveFailures: 1, OpenTimeout: 5 * time.Second}
	})
	ctx := context.Background()
	t0 := f.clock.Now()
	if st, err := f.p.Stats(ctx); err != nil || len(st.Volumes) != 0 || st.OldestOpen != 0 || st.Breaker != "closed" {
		t.Fatalf("empty Stats = %+v, %v", st, err)
	}
	// Before Start: a dead worker's change (sending, lease until t0+20s)
	// and an unlinked user's changes, both created at t0.
	f.storeLink("st-dead", true)
	dead := f.apply("st-dead", vc("PV", "1", "x1")).Changes[0]
	if hs, err := f.store.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "dead", Now: t0, Lease: 20 * time.Second, Limit: 1}); err != nil || len(hs) != 1 {
		t.Fatalf("ClaimVolumes = %+v, %v", hs, err)
	}
	if _, err := f.store.UpdateVolume(ctx, mlmsoft.VolumeUpdate{ID: dead.ID, Owner: "dead", KeepLease: true, LeaseUntil: t0.Add(20 * time.Second),
		From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, State: mlmsoft.VolumeSending, Attempts: 1, NextAttemptAt: t0, SentAt: t0, UpdatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	f.storeLink("st-unlinked", false)
	f.apply("st-unlinked", vc("PV", "1", "u1"), vc("PV", "2", "u2"))
	f.start()
	f.clock.Advance(10 * time.Second)
	f.linkedUser("st-a")
	f.notDelivered(f.apply("st-a", vc("PV", "1", "a1"), vc("Bogus", "2", "a2"), vc("PV", "3", "a3")))
	f.clock.Advance(80 * time.Second) // t0+90s: the dead worker's lease is long over
	// The dispatcher may have been busy when the clock moved: move it on
	// until it takes the change over.
	f.advanceUntil(time.Second, "the dead worker's change uncertain", f.inState(dead.ID, mlmsoft.VolumeUncertain))

	st, err := f.p.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantVol := map[mlmsoft.VolumeState]int{
		mlmsoft.VolumeDelivered: 1, mlmsoft.VolumeParked: 1, mlmsoft.VolumeUncertain: 1, mlmsoft.VolumePending: 3,
	}
	if got := vNonZero(st.Volumes); !maps.Equal(got, wantVol) {
		t.Errorf("Stats.Volumes = %v, want %v", st.Volumes, wantVol)
	}
	if want := f.clock.Now().Sub(t0); want < 90*time.Second || st.OldestOpen != want {
		t.Errorf("Stats.OldestOpen = %s, want %s (the unlinked user's changes, created at the start)", st.OldestOpen, want)
	}
	if want := map[mlmsoft.LinkState]int{mlmsoft.LinkLinked: 2, mlmsoft.LinkCreated: 1}; !maps.Equal(vNonZero(st.Links), want) {
		t.Errorf("Stats.Links = %v, want %v", st.Links, want)
	}
	if st.Breaker != "closed" || st.BreakerTrips != 0 {
		t.Errorf("Stats breaker %q trips %d, want closed 0", st.Breaker, st.BreakerTrips)
	}

	// MLM Soft goes down: the breaker opens at the first failure.
	f.linkedUser("st-b")
	f.fake.SetDown(true)
	b := f.apply("st-b", vc("PV", "4", "b1"))
	f.eventually("the breaker open", func() bool {
		st, err := f.p.Stats(ctx)
		return err == nil && st.Breaker == "open" && st.BreakerTrips == 1
	})
	f.fake.SetDown(false)
	f.advanceUntil(time.Second, "b1 delivered", f.inState(b.Changes[0].ID, mlmsoft.VolumeDelivered))
	if st, err := f.p.Stats(ctx); err != nil || st.Breaker != "closed" || st.BreakerTrips != 1 || st.Volumes[mlmsoft.VolumeDelivered] != 2 {
		t.Errorf("Stats after recovery = %+v, %v", st, err)
	}
}

func TestVolumeRetryAfterHonoured(t *testing.T) {
	t.Parallel()
	const retryAfter = 30 * time.Second
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, nil) // RetryInitial 1s, RetryMax 4s
	f.start()
	l := f.linkedUser("busy")
	f.fake.SetFaults(vVolumeEP, mlmsofttest.Faults{TooManyRate: 1, RetryAfter: retryAfter})
	b := f.apply("busy", vc("PV", "1", "r1"), vc("PV", "2", "r2"))
	r1 := b.Changes[0].ID
	f.eventually("r1 to fail once", func() bool {
		c := f.get(r1)
		return c.State == mlmsoft.VolumePending && c.Attempts == 1 && c.LastError != ""
	})
	failed := f.get(r1)
	failedAt := failed.SentAt
	if !strings.Contains(failed.LastError, "429") {
		t.Errorf("LastError %q does not mention the 429", failed.LastError)
	}
	if got := failed.NextAttemptAt.Sub(failedAt); got < retryAfter {
		t.Errorf("next attempt %s after the failure, want >= %s (Retry-After)", got, retryAfter)
	}
	f.fake.SetFaults(vVolumeEP, mlmsofttest.Faults{})
	// Walk up to just before Retry-After ends: no retry.
	for f.clock.Now().Before(failedAt.Add(retryAfter - time.Second)) {
		f.clock.Advance(time.Second)
		time.Sleep(3 * time.Millisecond)
		if n := f.fake.Calls(vVolumeEP); n != 1 {
			t.Fatalf("retried %s after the 429, before Retry-After (%s): %d calls", f.clock.Now().Sub(failedAt), retryAfter, n)
		}
	}
	f.advanceUntil(time.Second, "r2 delivered", f.inState(b.Changes[1].ID, mlmsoft.VolumeDelivered))
	f.delivered(b)
	f.wantLedger(l.AccountID, "PV 1 r1", "PV 2 r2")
	if c := f.get(r1); c.Attempts != 2 || c.SentAt.Before(failedAt.Add(retryAfter)) {
		t.Errorf("r1 resent at +%s with %d attempts", c.SentAt.Sub(failedAt), c.Attempts)
	}
	if e := f.fake.Ledger(l.AccountID)[0]; e.At.Before(failedAt.Add(retryAfter)) {
		t.Errorf("r1 applied at +%s, before Retry-After", e.At.Sub(failedAt))
	}
	if n := f.fake.Calls(vVolumeEP); n != 3 {
		t.Errorf("%s called %d times, want 3", vVolumeEP, n)
	}
}

// A change waiting for a document MLM Soft refuses to show (unknown id) is
// parked for a person to check, not polled forever.
func TestVolumeUnreadableDocumentParks(t *testing.T) {
	t.Parallel()
	f := newVFix(t, mlmsofttest.Options{Synchronous: true}, func(c *mlmsoft.Config) { c.Volumes.WaitForDocuments = true })
	ctx := context.Background()
	l := f.storeLink("docgone", true)
	c := f.apply("docgone", vc("PV", "1", "g1"), vc("PV", "2", "g2")).Changes[0]
	now := f.clock.Now()
	if hs, err := f.store.ClaimVolumes(ctx, mlmsoft.VolumeClaim{Owner: "w-old", Now: now, Lease: time.Minute, Limit: 1}); err != nil || len(hs) != 1 {
		t.Fatalf("ClaimVolumes = %+v, %v", hs, err)
	}
	// Sent and queued as a document that MLM Soft does not know.
	if _, err := f.store.UpdateVolume(ctx, mlmsoft.VolumeUpdate{
		ID: c.ID, Owner: "w-old", From: []mlmsoft.VolumeState{mlmsoft.VolumePending}, State: mlmsoft.VolumePending, Attempts: 1, NextAttemptAt: now,
		DocumentID: 999999, AccountID: l.AccountID, SentAt: now, UpdatedAt: now,
	}); err != nil {
		t.Fatal(err)
	}
	f.start()
	f.eventually("the change parked", f.inState(c.ID, mlmsoft.VolumeParked))
	if got := f.get(c.ID); !strings.Contains(got.LastError, "cannot read the volume-change document") {
		t.Errorf("LastError = %q", got.LastError)
	}
	if calls := f.fake.Calls("document/get"); calls != 1 {
		t.Errorf("document/get called %d times, want 1", calls)
	}
	f.wantLedger(l.AccountID) // the next change is held behind it
}

// linkRaceStore completes a user's link, as the link worker would, just
// after the dispatcher read it not linked: the moment in which the
// dispatcher's "waiting for the link" write used to undo the wake-up that
// the link's completion gave the user's changes.
type linkRaceStore struct {
	*memstore.Store
	armed   atomic.Bool
	account mlmsofttest.Account
	clock   *mlmsofttest.Clock
	err     error
}

func (s *linkRaceStore) GetLink(ctx context.Context, userID string) (mlmsoft.Link, error) {
	l, err := s.Store.GetLink(ctx, userID)
	if err == nil && l.State != mlmsoft.LinkLinked && s.armed.CompareAndSwap(true, false) {
		now := s.clock.Now()
		linked := l
		linked.State, linked.AccountID, linked.MLMUserID = mlmsoft.LinkLinked, s.account.AccountID, s.account.UserID
		linked.LinkedVia, linked.LinkedAt, linked.UpdatedAt, linked.NextAttemptAt = mlmsoft.LinkedViaCheckAuth, now, now, time.Time{}
		_, s.err = s.Store.UpdateLink(ctx, mlmsoft.LinkUpdate{Link: linked, WakeVolumes: true})
	}
	return l, err
}

// A link that completes while the dispatcher is setting the user's change
// to wait for it: the change goes at once, not LinkRecheck later.
func TestVolumeOfALinkCompletingMeanwhileGoesAtOnce(t *testing.T) {
	var rs *linkRaceStore
	f := newVFixWrapped(t, mlmsofttest.Options{Synchronous: true}, func(m *memstore.Store) mlmsoft.Store {
		rs = &linkRaceStore{Store: m}
		return rs
	}, func(c *mlmsoft.Config) { c.Volumes.LinkRecheck = time.Hour })
	rs.clock = f.clock
	l := f.storeLink("racer", false)
	rs.account = f.fake.AddAccount(l.Email, "pw-racer", f.root.AccountID)
	b := f.apply("racer", vc("PV", "7", "r1"))
	rs.armed.Store(true) // after ApplyVolumes: the next read of the link is the dispatcher's
	f.start()
	id := b.Changes[0].ID
	f.advanceUntil(100*time.Millisecond, "the change delivered well before LinkRecheck (1h)", f.inState(id, mlmsoft.VolumeDelivered))
	if rs.armed.Load() {
		t.Fatal("the dispatcher never read the link while it was not linked: the race was not staged")
	}
	if rs.err != nil {
		t.Fatalf("completing the link: %v", rs.err)
	}
	if waited := f.clock.Now().Sub(l.CreatedAt); waited > time.Minute {
		t.Errorf("delivered %s after the start, want well under LinkRecheck", waited)
	}
	f.wantLedger(rs.account.AccountID, "PV 7 r1")
}
