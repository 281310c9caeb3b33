// Command bench measures the plugin's volume delivery, each figure
// interleaved with its reference in the same run, and can write the
// results to BENCHMARKS.md at the repository root.
//
//	cd bench && go run . -quick            # a smoke run, a minute or two
//	cd bench && go run . -write            # the full run, regenerating ../BENCHMARKS.md
//	cd bench && go run . -sections drain -stores postgres -drain-sizes 1000,100000
//
// PostgreSQL and MariaDB parts need MLMSOFT_TEST_POSTGRES_DSN and
// MLMSOFT_TEST_MYSQL_DSN; without them they are skipped with a message.
// It is its own module so that River, the reference job queue, never
// enters the library's go.mod. See BENCHMARKS.md for the method.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sections, in the order they run.
var sectionOrder = []string{"throughput", "drain", "enqueue", "wire", "webhook", "heap", "expect", "stats"}

type config struct {
	sections    []string
	stores      []string
	rounds      int
	users       int
	perUser     int
	callers     int
	concurrency int
	timeout     time.Duration

	riverCooldown time.Duration
	dbStats       bool

	drainSizes   []int
	drainRounds  int
	drainPerUser int

	enqueueSamples int
	wireSamples    int
	wireInterval   time.Duration
	webhookReqs    int
	heapSize       int
	latencies      []time.Duration
	expectSamples  int
	expectUsers    int
	expectPerUser  int
	statsRows      int
	statsCalls     int

	quick      bool
	write      bool
	out        string
	profile    []string
	profileDir string
}

func main() {
	log.SetFlags(0)
	var c config
	var sections, stores, drainSizes, latencies, profiles string
	flag.StringVar(&sections, "sections", strings.Join(sectionOrder, ","), "sections to run, comma-separated: "+strings.Join(sectionOrder, ", "))
	flag.StringVar(&stores, "stores", "memstore,sqlite,postgres,mysql", "stores to measure, comma-separated")
	flag.IntVar(&c.rounds, "rounds", 5, "interleaved rounds per figure (the median is reported)")
	flag.IntVar(&c.users, "users", 100, "throughput: users")
	flag.IntVar(&c.perUser, "per-user", 50, "throughput: changes per user")
	flag.IntVar(&c.callers, "callers", 8, "concurrent ApplyVolumes callers (River: inserters)")
	flag.IntVar(&c.concurrency, "concurrency", 16, "Volumes.Concurrency (River: workers; reference loops: goroutines)")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Minute, "longest a single measurement may take")
	flag.DurationVar(&c.riverCooldown, "river-fetch-cooldown", time.Millisecond, "River's FetchCooldown (its default, 100ms, caps a queue at MaxWorkers jobs per 100ms)")
	flag.BoolVar(&c.dbStats, "dbstats", true, "read the database servers' counters around each SQL delivery measurement (adds ~2.5 s each)")
	flag.StringVar(&drainSizes, "drain-sizes", "1000,10000,100000", "drain: backlog sizes")
	flag.IntVar(&c.drainRounds, "drain-rounds", 3, "drain: interleaved rounds")
	flag.IntVar(&c.drainPerUser, "drain-per-user", 50, "drain: changes per user in the backlog")
	flag.IntVar(&c.enqueueSamples, "enqueue-samples", 1000, "enqueue: ApplyVolumes calls per round per caller setting")
	flag.IntVar(&c.wireSamples, "wire-samples", 200, "wire: changes per round")
	flag.DurationVar(&c.wireInterval, "wire-interval", 10*time.Millisecond, "wire: pause between changes")
	flag.IntVar(&c.webhookReqs, "webhook-requests", 5000, "webhook: requests per round")
	flag.IntVar(&c.heapSize, "heap-size", 100000, "heap: changes queued")
	flag.StringVar(&latencies, "latencies", "10ms,25ms", "expect: one-way latencies of the delaying proxy")
	flag.IntVar(&c.expectSamples, "expect-samples", 20, "expect: sequential POSTs per round")
	flag.IntVar(&c.expectUsers, "expect-users", 50, "expect: users of the delivery workload")
	flag.IntVar(&c.expectPerUser, "expect-per-user", 10, "expect: changes per user of the delivery workload")
	flag.IntVar(&c.statsRows, "stats-rows", 1000000, "stats: rows bulk-loaded into the outbox")
	flag.IntVar(&c.statsCalls, "stats-calls", 200, "stats: Stats calls per round")
	flag.BoolVar(&c.quick, "quick", false, "small sizes and few rounds: a smoke run of every section (overrides the size flags)")
	flag.BoolVar(&c.write, "write", false, "write the results to -out")
	flag.StringVar(&c.out, "out", "../BENCHMARKS.md", "where -write writes")
	flag.StringVar(&profiles, "profile", "", "CPU-profile these measurements (comma-separated; a section name, or section/variant such as throughput/postgres or drain/postgres/100000); top functions go into the report")
	flag.StringVar(&c.profileDir, "profile-dir", "profiles", "where -profile writes its files")
	flag.Parse()

	if c.quick {
		c.rounds, c.users, c.perUser = 2, 20, 20
		drainSizes, c.drainRounds, c.drainPerUser = "500,2000", 1, 20
		c.enqueueSamples, c.wireSamples, c.webhookReqs, c.heapSize = 200, 40, 1000, 10000
		latencies, c.expectSamples, c.expectUsers, c.expectPerUser = "10ms", 5, 20, 5
		c.statsRows, c.statsCalls = 20000, 50
		c.dbStats = false
	}
	c.sections = splitList(sections)
	for _, s := range c.sections {
		if !slices.Contains(sectionOrder, s) {
			log.Fatalf("unknown section %q (have %s)", s, strings.Join(sectionOrder, ", "))
		}
	}
	c.stores = splitList(stores)
	for _, s := range c.stores {
		if _, ok := storeTitles[s]; !ok {
			log.Fatalf("unknown store %q", s)
		}
	}
	for _, s := range splitList(drainSizes) {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			log.Fatalf("bad -drain-sizes entry %q", s)
		}
		c.drainSizes = append(c.drainSizes, n)
	}
	for _, s := range splitList(latencies) {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			log.Fatalf("bad -latencies entry %q", s)
		}
		c.latencies = append(c.latencies, d)
	}
	c.profile = splitList(profiles)

	tmp, err := os.MkdirTemp("", "mlmsoft-bench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	b := &bench{cfg: c, env: &env{
		pgDSN: os.Getenv("MLMSOFT_TEST_POSTGRES_DSN"), myDSN: os.Getenv("MLMSOFT_TEST_MYSQL_DSN"),
		tmp: tmp, concurrency: c.concurrency, callers: c.callers,
	}, profiles: map[string][]string{}}
	b.started = time.Now()
	ctx := context.Background()
	b.env.dropStale(ctx)
	b.openMonitors()
	for _, name := range sectionOrder {
		if !slices.Contains(c.sections, name) {
			continue
		}
		logf("== %s", name)
		start := time.Now()
		t, err := sectionFuncs[name](ctx, b)
		if err != nil {
			log.Fatalf("%s: %v", name, err)
		}
		logf("   (%s took %s)", name, time.Since(start).Round(time.Second))
		if t != nil {
			b.tables = append(b.tables, t)
		}
	}
	b.elapsed = time.Since(b.started)
	report := b.render()
	fmt.Println()
	fmt.Println(report)
	if c.write {
		if err := os.WriteFile(c.out, []byte(report), 0o644); err != nil {
			log.Fatal(err)
		}
		logf("wrote %s", c.out)
	}
}

var sectionFuncs = map[string]func(context.Context, *bench) (*table, error){
	"throughput": throughput,
	"drain":      drain,
	"enqueue":    enqueue,
	"wire":       wire,
	"webhook":    webhook,
	"heap":       heap,
	"expect":     expect,
	"stats":      statsSection,
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// bench is one run.
type bench struct {
	cfg      config
	env      *env
	mon      monitors
	tables   []*table
	profiles map[string][]string // measurement id -> profile files
	started  time.Time
	elapsed  time.Duration
}

// stores returns the stores to measure of those wanted, saying why others
// are skipped.
func (b *bench) stores(sqlOnly bool) []string {
	var out []string
	for _, s := range b.cfg.stores {
		if sqlOnly && !isSQL(s) {
			continue
		}
		if ok, why := b.env.available(s); !ok {
			logf("   %s skipped: %s", s, why)
			continue
		}
		out = append(out, s)
	}
	return out
}

// profiled runs fn, CPU-profiling it when id (or a prefix of it ending at
// a slash) was named in -profile.
func (b *bench) profiled(id string, fn func() error) error {
	want := false
	for _, p := range b.cfg.profile {
		if id == p || strings.HasPrefix(id, p+"/") {
			want = true
		}
	}
	if !want {
		return fn()
	}
	if err := os.MkdirAll(b.cfg.profileDir, 0o755); err != nil {
		return err
	}
	name := filepath.Join(b.cfg.profileDir, fmt.Sprintf("%s-%d.pprof", strings.ReplaceAll(id, "/", "_"), len(b.profiles[id])+1))
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return err
	}
	err = fn()
	pprof.StopCPUProfile()
	f.Close()
	b.profiles[id] = append(b.profiles[id], name)
	return err
}

// profileTops returns `go tool pprof -top` of each profiled measurement.
func (b *bench) profileTops() []string {
	var ids []string
	for id := range b.profiles {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []string
	for _, id := range ids {
		files := strings.Join(b.profiles[id], " ")
		flat := pprofTop(b.profiles[id], "-top", "-nodecount=25")
		// The cumulative view, the library's own functions only: where
		// its time goes, waiting on the database included.
		var own []string
		for _, line := range strings.Split(pprofTop(b.profiles[id], "-top", "-cum", "-nodecount=400"), "\n") {
			if strings.Contains(line, "flat%") || strings.Contains(line, "github.com/mlmsoft-go/mlmsoft") && !strings.Contains(line, "mlmsoft/bench") {
				own = append(own, line)
			}
			if len(own) > 25 {
				break
			}
		}
		out = append(out, fmt.Sprintf("#### %s\n\n`go tool pprof -top -nodecount=25 %s`\n\n```\n%s```\n\n"+
			"The library's functions in `go tool pprof -top -cum` of the same files:\n\n```\n%s\n```", id, files,
			strings.TrimLeft(flat, "\n"), strings.Join(own, "\n")))
	}
	return out
}

// pprofTop runs go tool pprof with args over files.
func pprofTop(files []string, args ...string) string {
	cmd := exec.Command("go", append(append([]string{"tool", "pprof"}, args...), files...)...)
	text, err := cmd.Output()
	if err != nil {
		text = fmt.Appendf(text, "\n(go tool pprof failed: %v)", err)
	}
	return string(text)
}

func (b *bench) render() string {
	var s strings.Builder
	s.WriteString(header(b))
	for _, t := range b.tables {
		s.WriteString("\n" + t.markdown())
	}
	if tops := b.profileTops(); len(tops) > 0 {
		s.WriteString("\n## CPU profiles taken in this run\n\n")
		s.WriteString(strings.Join(tops, "\n\n") + "\n")
	}
	s.WriteString(footer(b))
	return s.String()
}

// gc collects twice, so that finalizers' memory goes too.
func gc() {
	runtime.GC()
	runtime.GC()
}
