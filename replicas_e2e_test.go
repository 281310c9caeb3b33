package mlmsoft_test

// Several replicas of a host app share one database: each runs its own
// plugin (link worker and dispatcher) on the same sqlstore. Helper names
// start with "r".

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/sqlstore"
)

// rBackend opens one fresh store per replica on the backend: a SQLite file,
// or a unique table prefix in the PostgreSQL / MySQL database named by an
// environment variable (the test skips without it).
type rBackend struct {
	name, driver, env string
	dialect           sqlstore.Dialect
}

var rBackends = []rBackend{
	{"sqlite", "sqlite", "", sqlstore.SQLite{}},
	{"postgres", "pgx", "MLMSOFT_TEST_POSTGRES_DSN", sqlstore.Postgres{}},
	{"mysql", "mysql", "MLMSOFT_TEST_MYSQL_DSN", sqlstore.MySQL{}},
}

func (b rBackend) open(t *testing.T, replicas int) []*sqlstore.Store {
	t.Helper()
	dsn := os.Getenv(b.env)
	if b.env == "" {
		dsn = filepath.Join(t.TempDir(), "shared.db") + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)"
	} else if dsn == "" {
		t.Skipf("%s replicas skipped: set %s (see .ci/services.sh)", b.name, b.env)
	}
	var raw [4]byte
	_, _ = rand.Read(raw[:])
	prefix := "rep_" + hex.EncodeToString(raw[:]) + "_"
	var stores []*sqlstore.Store
	for range replicas { // one pool each, as separate processes would have
		db, err := sql.Open(b.driver, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		s, err := sqlstore.New(db, b.dialect, sqlstore.Config{TablePrefix: prefix})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Migrate(context.Background()); err != nil { // every replica migrates at start
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	if b.env != "" {
		t.Cleanup(func() {
			for _, table := range []string{"events", "counts", "volume_changes", "volume_users", "links", "schema_migrations"} {
				_, _ = stores[0].DB().Exec("DROP TABLE IF EXISTS " + prefix + table)
			}
		})
	}
	return stores
}

// TestReplicasShareOneDatabase: three plugins on one database, MLM Soft
// failing a fifth of the requests and losing some answers. Every user is
// created once, and every change lands once, in order.
func TestReplicasShareOneDatabase(t *testing.T) {
	t.Parallel()
	for _, b := range rBackends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			users, batches := 24, 5
			if testing.Short() {
				users, batches = 8, 3
			}
			stores := b.open(t, 3)
			fake := mlmsofttest.NewServer(mlmsofttest.Options{Seed: 7, DocumentDelay: 20 * time.Millisecond})
			defer fake.Close()
			root := fake.AddAccount("root@example.com", "root-pw", 0)
			faults := mlmsofttest.Faults{ServerErrorRate: 0.15, ResetRate: 0.05, ApplyThenDropRate: 0.02}
			for _, ep := range []string{"user/create", "document/get", "account/volume-change"} {
				fake.SetFaults(ep, faults)
			}
			ctx := context.Background()
			var plugins []*mlmsoft.Plugin
			for i, s := range stores {
				cfg := lConfig(fake, root, &hLogBuffer{})
				cfg.WorkerID = fmt.Sprintf("replica-%d", i)
				cfg.RequestTimeout, cfg.Lease = time.Second, 3*time.Second
				cfg.Volumes = mlmsoft.VolumeConfig{Concurrency: 4, RetryInitial: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, LinkRecheck: 50 * time.Millisecond}
				p, err := mlmsoft.New(s, cfg)
				if err != nil {
					t.Fatal(err)
				}
				plugins = append(plugins, p)
			}
			// Sign-ups arrive at any replica.
			var ids []string
			for i := range users {
				id := fmt.Sprintf("r%02d", i)
				ids = append(ids, id)
				if err := plugins[i%3].OnUserRegistered(ctx, mlmsoft.NewUser{UserID: id, Email: id + "@example.com"}); err != nil {
					t.Fatal(err)
				}
			}
			for _, p := range plugins {
				if err := p.Start(ctx); err != nil {
					t.Fatal(err)
				}
				defer p.Shutdown(ctx)
			}
			// Purchases arrive at any replica too, in order per user.
			want := map[string][]string{}
			for bt := range batches {
				for i, id := range ids {
					order := fmt.Sprintf("%s-%d", id, bt)
					_, err := plugins[(i+bt)%3].ApplyVolumes(ctx, id,
						mlmsoft.Change{Alias: "Status", Amount: mlmsoft.AmountFromInt(int64(bt + 1)), OrderID: order},
						mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount(fmt.Sprintf("%d.25", i)), OrderID: order})
					if err != nil {
						t.Fatal(err)
					}
					want[id] = append(want[id], fmt.Sprintf("Status %d %s", bt+1, order), fmt.Sprintf("PV %d.25 %s", i, order))
				}
			}
			total := users * batches * 2
			op := newCOperator(fake) // settles uncertain changes from the ledger
			deadline := time.Now().Add(2 * time.Minute)
			for {
				op.round(t, plugins[1])
				st, err := plugins[2].Stats(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if st.Volumes[mlmsoft.VolumeDelivered] == total {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not delivered in time: %+v", st)
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, id := range ids {
				l, err := plugins[0].Link(ctx, id)
				if err != nil || l.State != mlmsoft.LinkLinked {
					t.Fatalf("%s: %+v %v", id, l, err)
				}
				if n := fake.CreatesAccepted(l.Email); n != 1 {
					t.Errorf("%s created %d times", id, n)
				}
				var got []string
				for _, e := range fake.Ledger(l.AccountID) {
					got = append(got, fmt.Sprintf("%s %s %s", e.Alias, e.Amount, e.OrderID))
				}
				if fmt.Sprint(got) != fmt.Sprint(want[id]) {
					t.Errorf("%s: ledger %v, want %v", id, got, want[id])
				}
			}
			t.Logf("%s: %d users, %d changes delivered exactly once in order by 3 replicas", b.name, users, total)
		})
	}
}
