package mlmsoft_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the SQLite driver sqlstore.OpenSQLite uses

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/sqlstore"
)

// A purchase and its volume changes commit together: the host inserts its
// order and enqueues the changes in one database transaction (the store's
// database), so a crash between the two can lose nothing and a rollback
// leaves nothing. The changes go to MLM Soft once the transaction commits.
func ExamplePlugin_ApplyVolumesTx() {
	dir, _ := os.MkdirTemp("", "mlmsoft-example-")
	defer os.RemoveAll(dir)
	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, filepath.Join(dir, "shop.db"))
	if err != nil {
		panic(err)
	}
	defer store.Close()
	db := store.DB() // the host's own tables live in the same database
	if _, err := db.ExecContext(ctx, "CREATE TABLE orders (id TEXT PRIMARY KEY, user_id TEXT, total TEXT)"); err != nil {
		panic(err)
	}

	fake := mlmsofttest.NewServer(mlmsofttest.Options{Synchronous: true})
	defer fake.Close()
	company := fake.AddAccount("root@company.example", "root-password", 0)
	plugin, err := mlmsoft.New(store, mlmsoft.Config{
		BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: company.AccountID,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	if err := plugin.Start(ctx); err != nil {
		panic(err)
	}
	defer plugin.Shutdown(ctx)
	if err := plugin.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: "42", Email: "ann@example.com"}); err != nil {
		panic(err)
	}

	// The checkout handler.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		panic(err)
	}
	defer tx.Rollback() // a no-op once committed
	if _, err := tx.ExecContext(ctx, "INSERT INTO orders (id, user_id, total) VALUES (?, ?, ?)", "order-1001", "42", "49.90"); err != nil {
		panic(err)
	}
	batch, err := plugin.ApplyVolumesTx(ctx, tx, "42",
		mlmsoft.Change{Alias: "Status", Amount: mlmsoft.MustAmount("2"), OrderID: "order-1001", IdempotencyKey: "order-1001/status"},
		mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount("49.90"), OrderID: "order-1001", IdempotencyKey: "order-1001/pv"},
	)
	if err != nil {
		panic(err) // tx is still usable: roll back, or go on
	}
	if err := tx.Commit(); err != nil {
		panic(err)
	}

	// Only after the commit: wait for MLM Soft to have them (optional).
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := batch.Wait(wctx); err != nil {
		panic(err)
	}
	l, _ := plugin.Link(ctx, "42")
	for _, e := range fake.Ledger(l.AccountID) {
		fmt.Println(e.Alias, e.Amount, e.OrderID)
	}
	// Output:
	// Status 2 order-1001
	// PV 49.9 order-1001
}
