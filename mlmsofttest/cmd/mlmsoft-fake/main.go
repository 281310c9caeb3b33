// Command mlmsoft-fake runs the fake MLM Soft API2 server of package
// mlmsofttest as a standalone process, so a developer can point their own
// application at it, watch what it received in a browser, and restart
// either side without losing the fake's accounts.
//
// # Usage
//
//	go run ./mlmsofttest/cmd/mlmsoft-fake [flags]
//
// It prints the API base URL to configure (requests are signed with the
// -token, "test-token" by default, and carry App-Id -app-id, "1" by
// default), the URL of the read-only views (accounts, documents, ledger,
// request counts) and the root sponsor's account id, then logs what
// happens to stderr until SIGINT or SIGTERM stops it. Examples:
//
//	# Keep accounts across restarts; documents processed after 2 s.
//	mlmsoft-fake -state /tmp/mlmsoft-fake.json -document-delay 2s
//
//	# A flaky MLM Soft: 10% 5xx, 5% answers lost after applying, 20-300 ms latency.
//	mlmsoft-fake -seed 7 -fault-5xx 0.1 -fault-drop 0.05 -latency 20ms,300ms
//
//	# Inject faults on demand from a script (needs -control).
//	mlmsoft-fake -control &
//	curl -d endpoint=account/volume-change -d kind=server-error-after-apply -d count=2 \
//	    http://127.0.0.1:8089/_fake/inject
//
// The webhook secret (-webhook-secret), the token and passwords are never
// printed. With -state, the state file holds the accounts' passwords and is
// created readable by its owner only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// config is what the flags say.
type config struct {
	addr         string
	opts         mlmsofttest.Options
	rootLogin    string
	rootPassword string
	faults       mlmsofttest.Faults
}

// rate is a flag holding a probability.
type rate struct{ p *float64 }

func (r rate) String() string {
	if r.p == nil {
		return "0"
	}
	return strconv.FormatFloat(*r.p, 'g', -1, 64)
}

func (r rate) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1 {
		return errors.New("want a rate from 0 to 1")
	}
	*r.p = f
	return nil
}

// latency is a flag holding "min,max" or a single duration.
type latency struct{ f *mlmsofttest.Faults }

func (l latency) String() string {
	if l.f == nil || l.f.LatencyMax == 0 && l.f.LatencyMin == 0 {
		return ""
	}
	return l.f.LatencyMin.String() + "," + l.f.LatencyMax.String()
}

func (l latency) Set(s string) error {
	first, second, found := strings.Cut(s, ",")
	lo, err := time.ParseDuration(strings.TrimSpace(first))
	if err != nil || lo < 0 {
		return errors.New("want min,max durations such as 10ms,250ms")
	}
	hi := lo
	if found {
		if hi, err = time.ParseDuration(strings.TrimSpace(second)); err != nil || hi < lo {
			return errors.New("want min,max durations such as 10ms,250ms, max not below min")
		}
	}
	l.f.LatencyMin, l.f.LatencyMax = lo, hi
	return nil
}

// parseFlags reads args; it returns flag.ErrHelp for -h.
func parseFlags(args []string, stderr io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("mlmsoft-fake", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: mlmsoft-fake [flags]

Runs a fake MLM Soft API2 ("online-office") server until SIGINT or SIGTERM.
It prints the API base URL, the URL of the read-only views and the root
sponsor account, and logs events to stderr. Requests must be signed with
-token and carry the App-Id -app-id. The views are /_fake/ (an HTML page)
and /_fake/accounts, /_fake/documents, /_fake/ledger[?account=ID] (JSON).
Fault rates are probabilities from 0 to 1 applied to every endpoint, one
outcome per request; their sum should not exceed 1.

Flags:
`)
		fs.PrintDefaults()
	}
	o := &cfg.opts
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8089", "`address` to listen on (port 0 picks a free one)")
	fs.StringVar(&o.Token, "token", mlmsofttest.DefaultToken, "API `token` requests must be signed with (never logged)")
	fs.StringVar(&o.AppID, "app-id", mlmsofttest.DefaultAppID, "App-Id header requests must carry")
	fs.DurationVar(&o.DocumentDelay, "document-delay", 0, "how long queued documents (user/create, and volume changes with -queue-volumes) wait before they are processed")
	fs.BoolVar(&o.Synchronous, "sync", false, "answer user/create with the created user at once instead of a queued document")
	fs.BoolVar(&o.QueueVolumeChanges, "queue-volumes", false, "answer account/volume-change with a queued document, applied after -document-delay")
	fs.StringVar(&o.WebhookURL, "webhook-url", "", "`URL` that receives the webhook (a JSON POST) after each user is created")
	webhookSecret := fs.String("webhook-secret", "", "`secret` that signs webhooks (never logged); empty sends them unsigned")
	fs.StringVar(&o.StateFile, "state", "", "JSON state `file`: accounts, documents and the ledger are loaded from it at start and saved after every change (it holds passwords)")
	fs.StringVar(&cfg.rootLogin, "root-login", "root@company.example", "`login` of the root sponsor, created if it does not exist yet; empty creates none")
	fs.StringVar(&cfg.rootPassword, "root-password", "root-password", "`password` of a root sponsor created now (never logged)")
	fs.Int64Var(&o.Seed, "seed", 0, "seed of the random fault draws: a seed and an order of requests give the same faults")
	fs.BoolVar(&o.IgnoreExpect, "ignore-expect", false, `never answer "Expect: 100-continue" (like php -S and some proxies)`)
	fs.BoolVar(&o.Control, "control", false, "enable POST /_fake/inject (form fields endpoint, kind, count) to inject faults on demand; it takes no credentials")
	f := &cfg.faults
	for _, r := range []struct {
		name, usage string
		p           *float64
	}{
		{"fault-business", "rate of business errors (HTTP 200, failed envelope, nothing applied)", &f.BusinessErrorRate},
		{"fault-5xx", "rate of 500/502/503 answers before the body is read", &f.ServerErrorRate},
		{"fault-5xx-after-apply", "rate of 500/502/504 answers after the request was applied", &f.ServerErrorAfterApplyRate},
		{"fault-5xx-after-read", "rate of 502/503/504 answers after the body was read, nothing applied", &f.ServerErrorAfterReadRate},
		{"fault-429", "rate of 429 answers before the body is read", &f.TooManyRate},
		{"fault-hang", "rate of requests never answered", &f.HangRate},
		{"fault-reset", "rate of connections reset before the body is read", &f.ResetRate},
		{"fault-drop", "rate of requests applied, then the connection closed without an answer", &f.ApplyThenDropRate},
		{"fault-nonjson", "rate of HTML answers with HTTP 200, nothing applied", &f.NonJSONRate},
	} {
		fs.Var(rate{r.p}, r.name, "`rate` (0..1) of "+strings.TrimPrefix(r.usage, "rate of "))
	}
	fs.Var(latency{f}, "latency", "latency `min,max` (such as 10ms,250ms) drawn uniformly for every request before it is handled; one duration is a fixed latency")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mlmsoft-fake: unexpected arguments %q\n", fs.Args())
		fs.Usage()
		return nil, errors.New("unexpected arguments")
	}
	if *webhookSecret != "" {
		o.WebhookSecret = []byte(*webhookSecret)
	}
	return cfg, nil
}

// run runs the server until ctx is done and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	logger := &lineLogger{w: stderr}
	cfg.opts.Logf = logger.Logf
	srv, err := mlmsofttest.Start(cfg.addr, cfg.opts)
	if err != nil {
		fmt.Fprintf(stderr, "mlmsoft-fake: %v\n", err)
		return 1
	}
	defer srv.Close()
	srv.SetFaults("*", cfg.faults)

	root := strings.TrimSuffix(srv.URL, mlmsofttest.BasePath)
	fmt.Fprintf(stdout, "API base URL: %s\n", srv.URL)
	fmt.Fprintf(stdout, "App-Id: %s\n", cmpOr(cfg.opts.AppID, mlmsofttest.DefaultAppID))
	fmt.Fprintf(stdout, "Views: %s%s\n", root, mlmsofttest.ViewsPath)
	if cfg.opts.Control {
		fmt.Fprintf(stdout, "Control: POST %s%sinject\n", root, mlmsofttest.ViewsPath)
	}
	if cfg.rootLogin != "" {
		acc, found := srv.Account(cfg.rootLogin)
		how := "found"
		if !found {
			if acc, err = addAccount(srv, cfg.rootLogin, cfg.rootPassword); err != nil {
				fmt.Fprintf(stderr, "mlmsoft-fake: root account: %v\n", err)
				return 1
			}
			how = "created"
		}
		fmt.Fprintf(stdout, "Root account: %s, account id %d, user id %d (%s)\n", acc.Login, acc.AccountID, acc.UserID, how)
	}

	<-ctx.Done()
	fmt.Fprintln(stderr, "mlmsoft-fake: stopping")
	srv.Close() // saves the state file
	fmt.Fprintln(stderr, "mlmsoft-fake: stopped")
	return 0
}

// addAccount is Server.AddAccount with its panic (a login still pending in
// the state file) turned into an error.
func addAccount(srv *mlmsofttest.Server, login, password string) (acc mlmsofttest.Account, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return srv.AddAccount(login, password, 0), nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// lineLogger writes the server's events to w, one timestamped line each.
// Safe for concurrent use.
type lineLogger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineLogger) Logf(format string, args ...any) {
	line := fmt.Sprintf("%s %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, line)
}
