package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// machine describes the CPU, cores and memory.
func machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	mem := ""
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "MemTotal:") {
				var kb float64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(sc.Text(), "MemTotal:")), "%f", &kb)
				mem = fmt.Sprintf(", %.0f GiB of memory", kb/(1<<20))
				break
			}
		}
		f.Close()
	}
	return fmt.Sprintf("%q, %d cores (nproc)%s, %s/%s", model, runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH)
}

func moduleVersions() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	want := map[string]bool{
		"github.com/riverqueue/river": true, "github.com/riverqueue/river/riverdriver/riverpgxv5": true,
		"github.com/jackc/pgx/v5": true, "github.com/go-sql-driver/mysql": true, "modernc.org/sqlite": true,
	}
	var out []string
	for _, d := range bi.Deps {
		if want[d.Path] {
			out = append(out, d.Path+" "+d.Version)
		}
	}
	return strings.Join(out, ", ")
}

func (b *bench) serverVersions() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []string
	if b.mon.pg != nil {
		var v string
		if b.mon.pg.QueryRowContext(ctx, "SHOW server_version").Scan(&v) == nil {
			out = append(out, "PostgreSQL "+v)
		}
	}
	if b.mon.my != nil {
		var v string
		if b.mon.my.QueryRowContext(ctx, "SELECT VERSION()").Scan(&v) == nil {
			out = append(out, "MariaDB "+v)
		}
	}
	if len(out) == 0 {
		return "no database server (DSNs unset)"
	}
	return strings.Join(out, ", ")
}

func header(b *bench) string {
	c := b.cfg
	var s strings.Builder
	s.WriteString("# Benchmarks\n\n")
	s.WriteString("This file is written by the bench command (`bench/`, a module of its own so that River, the reference job " +
		"queue, never enters the library's go.mod). Regenerate it with:\n\n")
	s.WriteString("```sh\nexport MLMSOFT_TEST_POSTGRES_DSN='postgres://postgres@127.0.0.1:5432/test?sslmode=disable'\n" +
		"export MLMSOFT_TEST_MYSQL_DSN='root@tcp(127.0.0.1:3306)/test'\n" +
		"cd bench && go run . -write -profile throughput/client,throughput/client-noexpect,throughput/minimal,throughput/sqlite,throughput/postgres,throughput/river,throughput/mysql,enqueue/postgres/8,enqueue/mysql/8   # ~40 min\n" +
		"cd bench && go run . -quick                      # a smoke run of every section, ~2 min, prints only\n" +
		"cd bench && go vet ./... && go build ./...      # what must stay green (not run by CI: the bench is manual)\n```\n\n")
	s.WriteString("Flags pick the sections (`-sections throughput,drain,enqueue,wire,webhook,heap,expect,stats`), the stores " +
		"(`-stores memstore,sqlite,postgres,mysql`), the rounds and sizes (`-rounds`, `-users`, `-per-user`, `-drain-sizes`, " +
		"`-stats-rows`, ...; `go run . -h` lists them all); `-profile` CPU-profiles named measurements (a section, or " +
		"section/variant such as `drain/postgres/100000`) and puts `go tool pprof -top` of each in the report. Without a DSN the " +
		"SQL parts are skipped with a message. The stats section bulk-loads a million rows per SQL store (10–60 s each): leave it " +
		"out with `-sections` for a faster run.\n\n")
	fmt.Fprintf(&s, "## This run\n\n")
	fmt.Fprintf(&s, "- Date: %s; the run took %s.\n", b.started.UTC().Format("2006-01-02 15:04 MST"), b.elapsed.Round(time.Second))
	fmt.Fprintf(&s, "- Machine: %s. Shared and noisy: figures taken minutes apart differ by 10–30%%; only figures of the same "+
		"rounds are compared.\n", machine())
	fmt.Fprintf(&s, "- Go %s; %s; %s.\n", runtime.Version(), b.serverVersions(), moduleVersions())
	fmt.Fprintf(&s, "- Command: `go run . %s`.\n", strings.Join(os.Args[1:], " "))
	s.WriteString("\n## Method\n\n")
	fmt.Fprintf(&s, "- **Interleaving.** Every figure is measured in the same rounds as its reference, one after the other "+
		"(A, B, A, B, ...), %d rounds unless a section says otherwise, and the median of the rounds is reported; a ratio is the "+
		"ratio of the two medians. Targets are reported, never asserted.\n", c.rounds)
	s.WriteString("- **The fake.** mlmsofttest.NewServer with Synchronous and no faults, delays or state file, served on a loopback " +
		"listener of the bench's own behind a handler that counts acknowledged (HTTP 200) account/volume-change requests, so a " +
		"delivery measurement ends when the last change was acknowledged. It runs in the same process, and so shares its two cores.\n")
	fmt.Fprintf(&s, "- **The plugin** is configured as the README wires it: mlmsoft.New with BaseURL and APIToken, Config defaults "+
		"(RequestTimeout 30 s, ExpectContinueTimeout 1 s, Lease 2 min, IdleRecheck 1 s, Linking.Concurrency %d, Hooks.Concurrency "+
		"%d, breaker defaults) except Volumes.Concurrency %d and a slog logger that discards. Users are linked before a measurement "+
		"by storing linked links (Store.CreateLink with the fake's account ids), as the link worker leaves them.\n",
		4, 2, c.concurrency)
	fmt.Fprintf(&s, "- **The stores.** memstore.New(). SQLite: sqlstore.OpenSQLite on a file in a temporary directory (WAL, "+
		"synchronous=FULL, its own pool of 4). PostgreSQL: sql.Open(\"pgx\", DSN) as the README shows, and the pool sized as "+
		"sqlstore.New's doc and ExampleNew say: SetMaxOpenConns and SetMaxIdleConns of PoolSize(Volumes %d + Linking 4 + hooks 2) "+
		"+ %d for the host's own callers = %d. MariaDB: the same with sql.Open(\"mysql\", DSN) plus interpolateParams=true, which "+
		"sqlstore's MySQL doc recommends. Each store has tables of its own (a fresh TablePrefix), dropped afterwards. River gets a "+
		"pgxpool of the same %d connections on the same database, in a schema of its own.\n",
		c.concurrency, c.callers, poolSize(c.concurrency, c.callers), poolSize(c.concurrency, c.callers))
	s.WriteString("\n## Targets\n\n")
	s.WriteString("| section | figure | ratio / value | target | |\n| --- | --- | --- | --- | --- |\n")
	for _, t := range b.tables {
		for _, r := range t.rows {
			if r.target == "" {
				continue
			}
			mark := "met"
			if r.met == -1 {
				mark = "**missed**"
			}
			v := fmt.Sprintf("%.2f×", r.ratio)
			if r.ratio == 0 {
				v = r.value
			}
			fmt.Fprintf(&s, "| %s | %s | %s | %s | %s |\n", t.key, r.what, v, r.target, mark)
		}
	}
	if a := b.analysis(); a != "" {
		s.WriteString("\n" + a + "\n")
	}
	s.WriteString("\n## Results\n")
	return s.String()
}

// analysis returns bench/analysis.md, the hand-written reading of the
// recorded run's misses, when it exists.
func (b *bench) analysis() string {
	data, err := os.ReadFile("analysis.md")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

func footer(*bench) string {
	return `
## Other benchmarks (go test)

The packages keep micro-benchmarks of their own; they are not part of this run, so no figures are recorded here:

` + "```sh" + `
go test -run '^$' -bench 'OnUserRegistered|VolumeDelivery' -benchtime 2s .
go test -run '^$' -bench . -benchtime 2s ./memstore/ ./sqlstore/   # with the MLMSOFT_TEST_*_DSN variables for PG/MySQL
go test -run '^$' -bench 'Counts|Drain' -benchtime 200x ./sqlstore/
` + "```\n"
}
