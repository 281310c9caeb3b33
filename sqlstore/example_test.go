package sqlstore_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"
	"os"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/sqlstore"
)

// A single-process host keeps the plugin's data in a SQLite file (here in
// memory): OpenSQLite opens, tunes and migrates it.
func ExampleOpenSQLite() {
	ctx := context.Background()
	store, err := sqlstore.OpenSQLite(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	changes, err := store.EnqueueVolumes(ctx, []mlmsoft.VolumeChange{
		{UserID: "42", IdempotencyKey: "order-7/PV", Alias: "PV", Amount: mlmsoft.MustAmount("0.1"),
			OrderID: "order-7", State: mlmsoft.VolumePending, CreatedAt: now},
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(changes[0].UserID, changes[0].Seq, changes[0].Amount)
	// Output: 42 1 0.1
}

// Replicas of a host app share one PostgreSQL database: each opens it with
// the pgx driver, sizes the pool for the plugin's workers, wraps it in a
// Store and migrates at start-up (concurrent migrations wait for each
// other).
func ExampleNew() {
	ctx := context.Background()
	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	// Volumes.Concurrency + Linking.Concurrency + hook workers, and what
	// the host's own code uses of db.
	workers, appConns := mlmsoft.VolumeConcurrencyDefault+mlmsoft.LinkConcurrencyDefault+mlmsoft.HookConcurrencyDefault, 10
	n := sqlstore.PoolSize(workers) + appConns
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	store, err := sqlstore.New(db, sqlstore.Postgres{}, sqlstore.Config{TablePrefix: "shop_mlm_"})
	if err != nil {
		log.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	// store is an mlmsoft.Store (and TxStore, and WorkListener): hand it
	// to the plugin.
	var _ mlmsoft.TxStore = store
	var _ mlmsoft.WorkListener = store
}
