package mlmsoft_test

// Enqueueing in the host's own transaction, on every SQL dialect: a rolled
// back order leaves nothing and sends nothing; a committed one is delivered
// in order, at once (not at the next idle poll).

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/sqlstore"
)

func TestTransactionalEnqueue(t *testing.T) {
	t.Parallel()
	for _, b := range rBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			store := b.open(t, 1)[0]
			db := store.DB()
			orders := store.TablePrefix() + "host_orders"
			ctx := context.Background()
			if _, err := db.ExecContext(ctx, "CREATE TABLE "+orders+" (id VARCHAR(64) PRIMARY KEY)"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS " + orders) })
			insertOrder := "INSERT INTO " + orders + " (id) VALUES (?)"
			if b.dialect.Name() == "postgres" {
				insertOrder = "INSERT INTO " + orders + " (id) VALUES ($1)"
			}

			fake := mlmsofttest.NewServer(mlmsofttest.Options{Synchronous: true})
			t.Cleanup(fake.Close)
			root := fake.AddAccount("root@example.com", "pw", 0)
			p, err := mlmsoft.New(store, mlmsoft.Config{
				BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: root.AccountID,
				// No idle poll within the test: only the commit can wake the workers.
				IdleRecheck: time.Hour, RequestTimeout: 5 * time.Second, Lease: time.Minute,
				Logger: hTextLogger(&hLogBuffer{}),
			})
			if err != nil {
				t.Fatal(err)
			}
			startPlugin(t, p)

			// Sign-up in the host's transaction: rolled back, nothing.
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.OnUserRegisteredTx(ctx, tx, mlmsoft.NewUser{UserID: "gone", Email: "gone@example.com"}); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Link(ctx, "gone"); !errors.Is(err, mlmsoft.ErrNotFound) {
				t.Errorf("after rollback: Link = %v, want ErrNotFound", err)
			}

			// Committed: linked promptly.
			tx, err = db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.OnUserRegisteredTx(ctx, tx, mlmsoft.NewUser{UserID: "kay", Email: "kay@example.com"}); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			kay := waitLinked(t, p, "kay")

			// An order and its volumes: rolled back, nothing stored or sent.
			tx, err = db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, insertOrder, "order-1"); err != nil {
				t.Fatal(err)
			}
			if _, err := p.ApplyVolumesTx(ctx, tx, "kay", vck("Status", "2", "order-1", "order-1/status"), vck("PV", "49.9", "order-1", "order-1/pv")); err != nil {
				t.Fatal(err)
			}
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}
			if cs, err := p.ListVolumes(ctx, mlmsoft.VolumeFilter{}); err != nil || len(cs) != 0 {
				t.Errorf("after rollback: %d changes stored (%v)", len(cs), err)
			}

			// The same order committed: delivered in order, without an idle
			// poll, and the host's order is there.
			start := time.Now()
			tx, err = db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.ExecContext(ctx, insertOrder, "order-1"); err != nil {
				t.Fatal(err)
			}
			batch, err := p.ApplyVolumesTx(ctx, tx, "kay", vck("Status", "2", "order-1", "order-1/status"), vck("PV", "49.9", "order-1", "order-1/pv"))
			if err != nil {
				t.Fatal(err)
			}
			// A failing enqueue leaves the host's transaction usable.
			if _, err := p.ApplyVolumesTx(ctx, tx, "kay", vck("PV", "1", "order-1", "order-1/pv")); !errors.Is(err, mlmsoft.ErrIdempotencyConflict) {
				t.Errorf("conflicting key in the same tx: %v, want ErrIdempotencyConflict", err)
			}
			if err := tx.Commit(); err != nil {
				t.Fatalf("commit after a refused enqueue: %v", err)
			}
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if _, err := batch.Wait(wctx); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: committed batch delivered %s after BEGIN (idle poll: 1h)", b.name, time.Since(start).Round(time.Millisecond))
			var got []string
			for _, e := range fake.Ledger(kay.AccountID) {
				got = append(got, e.Alias+" "+e.Amount+" "+e.OrderID)
			}
			if want := []string{"Status 2 order-1", "PV 49.9 order-1"}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
				t.Errorf("ledger %q, want %q", got, want)
			}
			var n int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+orders).Scan(&n); err != nil || n != 1 {
				t.Errorf("host orders: %d (%v)", n, err)
			}
		})
	}
}

func TestTransactionalEnqueueNeedsATxStore(t *testing.T) {
	t.Parallel()
	p, err := mlmsoft.New(memstore.New(), mlmsoft.Config{BaseURL: "http://127.0.0.1:1/api2/online-office/", APIToken: "t"})
	if err != nil {
		t.Fatal(err)
	}
	var tx *sql.Tx
	if _, err := p.ApplyVolumesTx(context.Background(), tx, "u", vc("PV", "1", "o")); !errors.Is(err, mlmsoft.ErrInvalidConfig) {
		t.Errorf("ApplyVolumesTx on memstore = %v, want ErrInvalidConfig", err)
	}
	if err := p.OnUserRegisteredTx(context.Background(), tx, mlmsoft.NewUser{UserID: "u", Email: "u@example.com"}); !errors.Is(err, mlmsoft.ErrInvalidConfig) {
		t.Errorf("OnUserRegisteredTx on memstore = %v, want ErrInvalidConfig", err)
	}
	var _ mlmsoft.TxStore = (*sqlstore.Store)(nil)
}
