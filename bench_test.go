package mlmsoft_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/sqlstore"
)

// benchStores are the stores the benchmarks run on.
func benchStores(b *testing.B) map[string]func() mlmsoft.Store {
	return map[string]func() mlmsoft.Store{
		"memstore": func() mlmsoft.Store { return memstore.New() },
		"sqlite": func() mlmsoft.Store {
			s, err := sqlstore.OpenSQLite(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		},
	}
}

// BenchmarkOnUserRegistered measures what the host's sign-up path pays:
// validation, sealing the password and storing the pending link.
func BenchmarkOnUserRegistered(b *testing.B) {
	for name, newStore := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			p, err := mlmsoft.New(newStore(), mlmsoft.Config{
				BaseURL: "http://127.0.0.1:1/api2/online-office/", APIToken: "t", DefaultSponsorAccountID: 1,
				PasswordKey: []byte("0123456789abcdef0123456789abcdef"), Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				u := fmt.Sprintf("bench-%d", i)
				if err := p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: u, Email: u + "@example.com", Password: "pw"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVolumeDelivery measures end-to-end throughput: b.N changes over
// 50 linked users, from ApplyVolumes until the fake MLM Soft acknowledged
// every one, one request per change over loopback HTTP.
func BenchmarkVolumeDelivery(b *testing.B) {
	const users = 50
	for name, newStore := range benchStores(b) {
		b.Run(name, func(b *testing.B) {
			fake := mlmsofttest.NewServer(mlmsofttest.Options{Synchronous: true})
			defer fake.Close()
			root := fake.AddAccount("root@example.com", "pw", 0)
			p, err := mlmsoft.New(newStore(), mlmsoft.Config{
				BaseURL: fake.URL, APIToken: mlmsofttest.DefaultToken, DefaultSponsorAccountID: root.AccountID,
				IdleRecheck: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
				Volumes: mlmsoft.VolumeConfig{Concurrency: 16},
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			ids := make([]string, users)
			for i := range ids {
				ids[i] = fmt.Sprintf("u%d", i)
				if err := p.OnUserRegistered(ctx, mlmsoft.NewUser{UserID: ids[i], Email: ids[i] + "@example.com"}); err != nil {
					b.Fatal(err)
				}
			}
			if err := p.Start(ctx); err != nil {
				b.Fatal(err)
			}
			defer p.Shutdown(ctx)
			for _, u := range ids {
				for l, _ := p.Link(ctx, u); l.State != mlmsoft.LinkLinked; l, _ = p.Link(ctx, u) {
					time.Sleep(time.Millisecond)
				}
			}
			b.ResetTimer()
			batches := make([]*mlmsoft.Batch, 0, b.N)
			for i := range b.N {
				batch, err := p.ApplyVolumes(ctx, ids[i%users], mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount("1.5"), OrderID: fmt.Sprint(i)})
				if err != nil {
					b.Fatal(err)
				}
				batches = append(batches, batch)
			}
			for _, batch := range batches {
				if _, err := batch.Wait(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if got := len(fake.AllLedger()); got != b.N {
				b.Fatalf("ledger has %d, want %d", got, b.N)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}
