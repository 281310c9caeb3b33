package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

func TestFlags(t *testing.T) {
	t.Parallel()
	cfg, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.addr != "127.0.0.1:8089" || cfg.opts.Token != mlmsofttest.DefaultToken || cfg.rootLogin != "root@company.example" ||
		cfg.rootPassword != "root-password" || cfg.faults != (mlmsofttest.Faults{}) || cfg.opts.WebhookSecret != nil {
		t.Errorf("defaults %+v", cfg)
	}

	cfg, err = parseFlags([]string{
		"-addr", "127.0.0.1:0", "-token", "t", "-app-id", "5", "-document-delay", "2s", "-sync", "-queue-volumes",
		"-webhook-url", "http://h/x", "-webhook-secret", "s", "-state", "f.json", "-root-login", "", "-seed", "9",
		"-ignore-expect", "-control", "-fault-business", "0.1", "-fault-5xx", "0.2", "-fault-5xx-after-apply", "0.03",
		"-fault-5xx-after-read", "0.04", "-fault-429", "0.05", "-fault-hang", "0.01", "-fault-reset", "0.02",
		"-fault-drop", "0.06", "-fault-nonjson", "0.07", "-latency", "10ms,250ms",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.opts
	if o.Token != "t" || o.AppID != "5" || o.DocumentDelay != 2*time.Second || !o.Synchronous || !o.QueueVolumeChanges ||
		o.WebhookURL != "http://h/x" || string(o.WebhookSecret) != "s" || o.StateFile != "f.json" || cfg.rootLogin != "" ||
		o.Seed != 9 || !o.IgnoreExpect || !o.Control {
		t.Errorf("options %+v", o)
	}
	want := mlmsofttest.Faults{BusinessErrorRate: 0.1, ServerErrorRate: 0.2, ServerErrorAfterApplyRate: 0.03, ServerErrorAfterReadRate: 0.04,
		TooManyRate: 0.05, HangRate: 0.01, ResetRate: 0.02, ApplyThenDropRate: 0.06, NonJSONRate: 0.07,
		LatencyMin: 10 * time.Millisecond, LatencyMax: 250 * time.Millisecond}
	if cfg.faults != want {
		t.Errorf("faults %+v, want %+v", cfg.faults, want)
	}
	if cfg, err := parseFlags([]string{"-latency", "40ms"}, io.Discard); err != nil || cfg.faults.LatencyMin != 40*time.Millisecond || cfg.faults.LatencyMax != 40*time.Millisecond {
		t.Errorf("single latency: %+v %v", cfg, err)
	}

	for _, bad := range [][]string{
		{"-fault-5xx", "2"}, {"-fault-drop", "-0.1"}, {"-fault-hang", "x"}, {"-latency", "10ms,5ms"}, {"-latency", "soon"},
		{"-seed", "x"}, {"-nope"}, {"extra"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
		if code := run(t.Context(), bad, io.Discard, io.Discard); code != 2 {
			t.Errorf("run %q: exit %d, want 2", bad, code)
		}
	}

	var help bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
	for _, name := range []string{"addr", "token", "app-id", "document-delay", "sync", "queue-volumes", "webhook-url", "webhook-secret",
		"state", "root-login", "root-password", "seed", "ignore-expect", "control", "fault-business", "fault-5xx", "fault-5xx-after-apply",
		"fault-5xx-after-read", "fault-429", "fault-hang", "fault-reset", "fault-drop", "fault-nonjson", "latency", "/_fake/"} {
		if !strings.Contains(help.String(), "-"+name) && !strings.Contains(help.String(), name) {
			t.Errorf("-h does not document %s", name)
		}
	}
	if code := run(t.Context(), []string{"-h"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("-h: exit %d", code)
	}
}

func TestRunFailures(t *testing.T) {
	t.Parallel()
	corrupt := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(corrupt, []byte("{oops"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := run(t.Context(), []string{"-addr", "127.0.0.1:0", "-state", corrupt}, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "corrupt") {
		t.Errorf("corrupt state: exit %d, stderr %q", code, stderr.String())
	}
}

// TestRunInProcess runs the command's run until its context is canceled.
func TestRunInProcess(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0", "-root-login", "boss@example.com", "-control"}, pw, &stderr)
		pw.Close()
	}()
	out := bufio.NewScanner(pr)
	var lines []string
	for out.Scan() {
		lines = append(lines, out.Text())
		if strings.HasPrefix(out.Text(), "Root account:") {
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	text := strings.Join(lines, "\n")
	for _, want := range []string{"API base URL: http://127.0.0.1:", "/api2/online-office/", "Views: http://", "/_fake/", "Control: POST ", "Root account: boss@example.com, account id 700001, user id 100001 (created)"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run does not return after its context is done")
	}
	if !strings.Contains(stderr.String(), "mlmsoft-fake: stopped") {
		t.Errorf("stderr %q", stderr.String())
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// fakeProcess is the command running as a real process.
type fakeProcess struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *bytes.Buffer
	base   string // API base URL
	views  string
	root   int64 // root account id
	how    string
}

var rootLine = regexp.MustCompile(`^Root account: (\S+), account id (\d+), user id (\d+) \((created|found)\)$`)

func startFake(t *testing.T, bin string, args ...string) *fakeProcess {
	t.Helper()
	p := &fakeProcess{cmd: exec.Command(bin, args...), lines: make(chan string, 16), stderr: &bytes.Buffer{}}
	p.cmd.Stderr = p.stderr
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	deadline := time.After(20 * time.Second)
	for p.root == 0 {
		select {
		case line, ok := <-p.lines:
			if !ok {
				_ = p.cmd.Wait()
				t.Fatalf("the command ended before printing its root account; stderr:\n%s", p.stderr)
			}
			switch {
			case strings.HasPrefix(line, "API base URL: "):
				p.base = strings.TrimPrefix(line, "API base URL: ")
			case strings.HasPrefix(line, "Views: "):
				p.views = strings.TrimPrefix(line, "Views: ")
			default:
				if m := rootLine.FindStringSubmatch(line); m != nil {
					p.root, _ = strconv.ParseInt(m[2], 10, 64)
					p.how = m[4]
				}
			}
		case <-deadline:
			t.Fatal("the command printed no root account in time")
		}
	}
	return p
}

// stop sends SIGINT and waits for a clean exit.
func (p *fakeProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v; stderr:\n%s", err, p.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after SIGINT")
	}
}

// TestCommand builds the command and runs it as a real process twice on
// one state file: a user created through the first survives into the
// second, and nothing secret is ever printed.
func TestCommand(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("sends SIGINT")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the command with")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "mlmsoft-fake")
	build := exec.Command(goTool, "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const (
		token   = "cmd-secret-token"
		secret  = "cmd-webhook-secret"
		rootPw  = "cmd-root-password"
		janePw  = "cmd-jane-password"
		janeLog = "jane@example.com"
	)
	state := filepath.Join(dir, "state.json")
	args := []string{"-addr", "127.0.0.1:0", "-state", state, "-token", token, "-app-id", "3",
		"-webhook-url", "http://127.0.0.1:1/hook", "-webhook-secret", secret, "-root-password", rootPw, "-sync"}

	p1 := startFake(t, bin, args...)
	if p1.how != "created" || !strings.HasSuffix(p1.base, mlmsofttest.BasePath) || !strings.HasSuffix(p1.views, mlmsofttest.ViewsPath) {
		t.Fatalf("first run: %+v", p1)
	}
	client := func(base string) *api2.Client {
		c, err := api2.New(api2.Config{BaseURL: base, Token: token, AppID: "3", Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c1 := client(p1.base)
	created, err := c1.CreateUser(t.Context(), api2.CreateUser{Login: janeLog, Password: janePw, SponsorID: p1.root, Profile: api2.Profile{FirstName: "Jane"}})
	if err != nil || created.Queued || created.AccountID == 0 {
		t.Fatalf("user/create: %+v %v", created, err)
	}
	if _, err := client(p1.base).CheckAuth(t.Context(), "root@company.example", rootPw); err != nil {
		t.Errorf("root check-auth: %v", err)
	}
	if _, err := c1.ChangeVolume(t.Context(), api2.VolumeChange{AccountID: created.AccountID, Amount: "12.50", OrderID: "o-1", Alias: "PV"}); err != nil {
		t.Errorf("volume change: %v", err)
	}
	resp, err := http.Get(p1.views + "accounts")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), janeLog) {
		t.Errorf("views: %s", body)
	}
	p1.stop(t)

	p2 := startFake(t, bin, args...)
	if p2.how != "found" || p2.root != p1.root {
		t.Errorf("second run: root %d (%s), want %d found", p2.root, p2.how, p1.root)
	}
	c2 := client(p2.base)
	ex, err := c2.UserExists(t.Context(), janeLog)
	if err != nil || !ex.Exists || ex.AccountID != created.AccountID || ex.UserID != created.UserID {
		t.Errorf("user/exists after restart: %+v %v, want %+v", ex, err, created)
	}
	if auth, err := c2.CheckAuth(t.Context(), janeLog, janePw); err != nil || auth.AccountID != created.AccountID {
		t.Errorf("check-auth after restart: %+v %v", auth, err)
	}
	next, err := c2.CreateUser(t.Context(), api2.CreateUser{Login: "next@example.com", Password: "pw", SponsorID: created.AccountID})
	if err != nil || next.AccountID <= created.AccountID {
		t.Errorf("next user: %+v %v (after %d)", next, err, created.AccountID)
	}
	resp, err = http.Get(p2.views + "ledger?account=" + strconv.FormatInt(created.AccountID, 10))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"amount":"12.50"`) {
		t.Errorf("ledger after restart: %s", body)
	}
	p2.stop(t)

	for _, out := range []string{p1.stderr.String(), p2.stderr.String()} {
		for _, never := range []string{token, secret, rootPw, janePw} {
			if strings.Contains(out, never) {
				t.Errorf("the command printed %q:\n%s", never, out)
			}
		}
		if !strings.Contains(out, "mlmsoft-fake: stopped") {
			t.Errorf("no clean stop in stderr:\n%s", out)
		}
	}
}
