package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
)

// riverSchema is the PostgreSQL schema River's tables live in for the
// bench, dropped at the start and the end of a run.
const riverSchema = "mlmbench_river"

// postArgs is one River job: one volume change to send.
type postArgs struct {
	AccountID int64  `json:"account_id"`
	Amount    string `json:"amount"`
	OrderID   string `json:"order_id"`
	Alias     string `json:"alias"`
}

func (postArgs) Kind() string { return "mlmbench_volume_change" }

// postWorker sends a job's change: one signed POST to the fake through the
// library's own API client, exactly as the plugin's dispatcher sends it.
type postWorker struct {
	river.WorkerDefaults[postArgs]
	client *api2.Client
}

func (w *postWorker) Work(ctx context.Context, job *river.Job[postArgs]) error {
	return apiPost(ctx, w.client, job.Args.AccountID, job.Args.Amount, job.Args.OrderID, job.Args.Alias)
}

// riverSide is a running River client on its own pgx pool.
type riverSide struct {
	pool   *pgxpool.Pool
	client *river.Client[pgx.Tx]
}

// startRiver migrates River into riverSchema (fresh) and starts a client
// with workers workers on the default queue, posting through a client made
// like the plugin's. inserts-only (workers 0) starts nothing but the
// inserting client.
func startRiver(ctx context.Context, dsn, base string, workers, poolConns int, cooldown time.Duration) (*riverSide, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(poolConns)
	cfg.MinConns = int32(poolConns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*riverSide, error) {
		pool.Close()
		return nil, err
	}
	if _, err := pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+riverSchema+" CASCADE"); err != nil {
		return fail(err)
	}
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+riverSchema); err != nil {
		return fail(err)
	}
	discard := slog.New(slog.DiscardHandler)
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: riverSchema, Logger: discard})
	if err != nil {
		return fail(err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fail(fmt.Errorf("river migrate: %w", err))
	}
	rcfg := &river.Config{Schema: riverSchema, Logger: discard}
	if workers > 0 {
		api, err := newAPIClient(base, 0, workers)
		if err != nil {
			return fail(err)
		}
		ws := river.NewWorkers()
		river.AddWorker(ws, &postWorker{client: api})
		rcfg.Workers = ws
		rcfg.Queues = map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}}
		rcfg.FetchCooldown = cooldown
	}
	client, err := river.NewClient(riverpgxv5.New(pool), rcfg)
	if err != nil {
		return fail(err)
	}
	if workers > 0 {
		if err := client.Start(ctx); err != nil {
			return fail(err)
		}
	}
	return &riverSide{pool: pool, client: client}, nil
}

func (r *riverSide) insert(ctx context.Context, a postArgs) error {
	_, err := r.client.Insert(ctx, a, nil)
	return err
}

func (r *riverSide) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = r.client.Stop(ctx)
	_, _ = r.pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+riverSchema+" CASCADE")
	r.pool.Close()
}
