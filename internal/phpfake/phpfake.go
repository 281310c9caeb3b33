// Package phpfake runs an MLM Soft API2 ("online-office") emulator written in
// PHP under PHP's built-in web server (php -S), for tests that must not rely
// only on code we wrote in Go. Production code never imports it.
//
// The emulator (router.php, embedded) is independent of package mlmsofttest:
// it verifies the Security-Key exactly as MLM Soft's PHP integration does,
// md5(http_build_query($params) . $token) after ksort($params), where
// $params is PHP's own $_GET for a GET and json_decode($body, true) for a
// POST. A client whose PHP encoding emulation is wrong is refused with HTTP
// 403 and {"errorCode":403,"errorMessage":"Security key is invalid",
// "primary":null}, as it is for a wrong App-Id.
//
// # Endpoints
//
//	POST user/create            login, type="member", password, sponsorId, confirmationUrl, profile{...}
//	GET  document/get           id
//	GET  user/exists            login, type="member"
//	GET  user/check-auth        login, type="member", password
//	POST account/volume-change  accountId, pointsAmount (a JSON number), orderId (a string), volumePropertyAlias
//	GET  /_state                the whole state, unsigned (see Server.State)
//
// Answers use the API2 envelope. user/create answers {queueRequest: true,
// documentId}; the document gets its result (a whole envelope with
// auth.user.id and auth.user.account.id) on the first API request that
// arrives once Options.DocumentDelay has passed (GET /_state processes
// nothing). A login is taken while its create is pending, and logins compare
// case-insensitively (ASCII only, PHP's strtolower). The ledger keeps each
// pointsAmount as the literal text of the JSON body ("0.1", "-3.75"), never
// a float. User ids start at 100001, account ids at 700001 and document ids
// at 40001; the root account holds the first two.
//
// State is one JSON file locked with flock for the whole of each request,
// so several PHP workers (Options.Workers) stay consistent.
//
// # php -S and "Expect: 100-continue"
//
// PHP's built-in server never answers "100 Continue". Observed with PHP 8.2:
// it waits for the whole body before running the script, so a client that
// sent "Expect: 100-continue" and waits for "100 Continue" stalls until its
// own ExpectContinueTimeout, then sends the body anyway and gets a normal
// answer: a Go http.Transport with ExpectContinueTimeout = 1s gets every
// POST answered about one second late, body intact (TestExpectContinue).
// internal/api2's Client waits at most its ExpectContinueTimeout (one second
// by default, as curl) and then sends the body, so it works against php -S,
// a second late per POST; the plugin's end-to-end test against this
// emulator relies on exactly that. A proxy that answers 100 Continue itself,
// as nginx and internal/chaosproxy do, hides the question.
package phpfake

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

//go:embed router.php
var router []byte

// BasePath is the path under which the API2 endpoints are served.
const BasePath = "/api2/online-office/"

// Defaults applied to empty Options fields.
const (
	// DefaultToken is the API token when Options.Token is empty.
	DefaultToken = "test-token"
	// DefaultAppID is the App-Id when Options.AppID is empty.
	DefaultAppID = "1"
	// DefaultRootLogin is the root account's login when Options.RootLogin
	// is empty.
	DefaultRootLogin = "root@example.com"
	// DefaultRootPassword is the root account's password when
	// Options.RootPassword is empty.
	DefaultRootPassword = "root-password"
)

// startTimeout bounds how long php -S may take to answer its first request.
const startTimeout = 10 * time.Second

// Options configures the emulator. The zero value works.
type Options struct {
	// Token is the API token requests must be signed with (DefaultToken
	// when empty).
	Token string
	// AppID is the App-Id header requests must carry (DefaultAppID when
	// empty).
	AppID string
	// RootLogin and RootPassword are the credentials of the root account
	// created at start (DefaultRootLogin, DefaultRootPassword when empty).
	RootLogin, RootPassword string
	// DocumentDelay is how long a user/create document waits before the
	// next request gives it a result. Zero means the next API request.
	DocumentDelay time.Duration
	// Workers is the number of PHP processes serving requests in parallel
	// (PHP_CLI_SERVER_WORKERS); 0 or 1 means a single process.
	Workers int
}

// Account is a user known to the emulator.
type Account struct {
	// Login is the login as first given.
	Login string `json:"login"`
	// UserID is auth.user.id.
	UserID int64 `json:"userId"`
	// AccountID is auth.user.account.id, the id used as a sponsor id and
	// as a volume target.
	AccountID int64 `json:"accountId"`
	// SponsorAccountID is the sponsor's account id; 0 for the root.
	SponsorAccountID int64 `json:"sponsorAccountId"`
	// Title is "firstname lastname" from the profile, or the login.
	Title string `json:"title"`
}

// LedgerEntry is one accepted account/volume-change.
type LedgerEntry struct {
	// Seq is the order of acceptance, from 1, over all accounts.
	Seq int64 `json:"seq"`
	// AccountID is the account changed.
	AccountID int64 `json:"accountId"`
	// Alias is the volumePropertyAlias received.
	Alias string `json:"alias"`
	// Amount is pointsAmount exactly as the JSON literal received.
	Amount string `json:"amount"`
	// OrderID is the orderId received.
	OrderID string `json:"orderId"`
}

// Document is a queued user/create request.
type Document struct {
	// ID is the documentId.
	ID int64 `json:"id"`
	// Entity is the document's context entity ("user").
	Entity string `json:"entity"`
	// Action is the document's action ("create").
	Action string `json:"action"`
	// Result is the result envelope as JSON, "null" until processed.
	Result json.RawMessage `json:"result"`
}

// Processed reports whether the document has its result.
func (d Document) Processed() bool {
	return len(d.Result) > 0 && string(d.Result) != "null"
}

// State is everything the emulator holds, passwords left out.
type State struct {
	// Accounts lists the users created so far, the root first.
	Accounts []Account `json:"accounts"`
	// Ledger lists the accepted volume changes in order.
	Ledger []LedgerEntry `json:"ledger"`
	// Documents lists the user/create documents in id order.
	Documents []Document `json:"documents"`
	// Creates counts accepted user/create requests per login, lowercased.
	Creates map[string]int `json:"creates"`
}

// Server is a running emulator. Its methods are safe for concurrent use.
type Server struct {
	// URL is the API2 base URL, ending in BasePath.
	URL string
	// Token is the API token requests must be signed with.
	Token string
	// AppID is the App-Id requests must carry.
	AppID string
	// Root is the root account created at start.
	Root Account

	origin string // http://127.0.0.1:PORT
	output *phpOutput
}

// Available reports whether a php binary is on PATH.
func Available() bool {
	_, err := exec.LookPath("php")
	return err == nil
}

// Start starts the emulator under php -S on a free local port and stops it
// when the test ends. It skips the test when php is not installed and fails
// it, with php's output, when the server does not answer within 10 seconds.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	php, err := exec.LookPath("php")
	if err != nil {
		t.Skip("phpfake: php (php-cli) is not on PATH; skipping the test against the PHP emulator")
	}
	opts.Token = cmpOr(opts.Token, DefaultToken)
	opts.AppID = cmpOr(opts.AppID, DefaultAppID)
	opts.RootLogin = cmpOr(opts.RootLogin, DefaultRootLogin)
	opts.RootPassword = cmpOr(opts.RootPassword, DefaultRootPassword)

	dir := t.TempDir()
	script := filepath.Join(dir, "router.php")
	if err := os.WriteFile(script, router, 0o600); err != nil {
		t.Fatal(err)
	}
	// php -S answers an empty 200 to every request when the router does not
	// compile, and reports nothing: check it first.
	if out, err := exec.Command(php, "-n", "-l", script).CombinedOutput(); err != nil {
		t.Fatalf("phpfake: router.php does not compile: %v\n%s", err, out)
	}
	// The free port is released before php binds it, so another process may
	// take it first: php then exits at once and we try another.
	for attempt := 1; ; attempt++ {
		s, err := launch(t, php, dir, opts)
		if err == nil {
			return s
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatalf("phpfake: %v", err)
		}
	}
}

var (
	errPortTaken = errors.New("port taken")
	errBadAnswer = errors.New("bad answer")
)

// launch starts one php -S process; the caller retries on errPortTaken.
func launch(t testing.TB, php, dir string, opts Options) (*Server, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()

	state := filepath.Join(dir, "state.json")
	out := &phpOutput{errLog: filepath.Join(dir, "php-errors.log")}
	// -n: no php.ini, so PHP's built-in defaults (precision=14) on every
	// machine. PHP's errors go to a log file: php -S would show them in
	// answers (display_errors) or, with -q (no access log), drop them.
	cmd := exec.Command(php, "-n", "-d", "display_errors=0", "-d", "log_errors=1",
		"-d", "error_reporting=-1", "-d", "error_log="+out.errLog,
		"-q", "-S", addr, "-t", dir, filepath.Join(dir, "router.php"))
	cmd.Dir = dir
	cmd.Env = append(environ(),
		"PHPFAKE_STATE="+state,
		"PHPFAKE_TOKEN="+opts.Token,
		"PHPFAKE_APP_ID="+opts.AppID,
		"PHPFAKE_ROOT_LOGIN="+opts.RootLogin,
		"PHPFAKE_ROOT_PASSWORD="+opts.RootPassword,
		"PHPFAKE_DOCUMENT_DELAY_US="+strconv.FormatInt(opts.DocumentDelay.Microseconds(), 10),
	)
	if opts.Workers > 1 {
		cmd.Env = append(cmd.Env, "PHP_CLI_SERVER_WORKERS="+strconv.Itoa(opts.Workers))
	}
	cmd.Stdout = &out.stderr
	cmd.Stderr = &out.stderr
	setGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start php: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		interrupt(cmd)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			forceKill(cmd)
			<-exited
		}
	}

	s := &Server{
		URL:    "http://" + addr + BasePath,
		Token:  opts.Token,
		AppID:  opts.AppID,
		origin: "http://" + addr,
		output: out,
	}
	deadline := time.Now().Add(startTimeout)
	for {
		st, err := s.state()
		if err == nil {
			if len(st.Accounts) == 0 {
				stop()
				return nil, errors.New("php -S answered /_state without the root account")
			}
			s.Root = st.Accounts[0]
			break
		}
		if errors.Is(err, errBadAnswer) { // php runs, but the router is broken
			stop()
			return nil, fmt.Errorf("%v\nphp -S output:\n%s", err, out)
		}
		select {
		case <-exited:
			if strings.Contains(out.String(), "Failed to listen") {
				return nil, errPortTaken
			}
			return nil, fmt.Errorf("php -S exited at start:\n%s", out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("php -S did not answer within %v (last error: %v); its output:\n%s", startTimeout, err, out)
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("phpfake: php -S output:\n%s", out)
		}
	})
	return s, nil
}

// environ is the environment without variables that would change php's
// behaviour behind our back.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PHPFAKE_") && !strings.HasPrefix(kv, "PHP_CLI_SERVER_WORKERS=") &&
			!strings.HasPrefix(kv, "PHP_INI_SCAN_DIR=") && !strings.HasPrefix(kv, "PHPRC=") {
			env = append(env, kv)
		}
	}
	return env
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// state fetches and decodes GET /_state.
func (s *Server) state() (State, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(s.origin + "/_state")
	if err != nil {
		return State{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return State{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return State{}, fmt.Errorf("%w: GET /_state: HTTP %d: %s", errBadAnswer, resp.StatusCode, b)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return State{}, fmt.Errorf("%w: GET /_state: %v: %s", errBadAnswer, err, b)
	}
	return st, nil
}

// State returns the emulator's whole state. It fails the test if the
// emulator does not answer.
func (s *Server) State(t testing.TB) State {
	t.Helper()
	st, err := s.state()
	if err != nil {
		t.Fatalf("phpfake: %v\nphp -S output:\n%s", err, s.output)
	}
	return st
}

// Ledger returns the accepted volume changes of accountID, in order.
func (s *Server) Ledger(t testing.TB, accountID int64) []LedgerEntry {
	t.Helper()
	var out []LedgerEntry
	for _, e := range s.State(t).Ledger {
		if e.AccountID == accountID {
			out = append(out, e)
		}
	}
	return out
}

// Account returns the created user whose login matches login (ASCII case
// folded, as PHP's strtolower does).
func (s *Server) Account(t testing.TB, login string) (Account, bool) {
	t.Helper()
	for _, a := range s.State(t).Accounts {
		if phpLower(a.Login) == phpLower(login) {
			return a, true
		}
	}
	return Account{}, false
}

// CreatesAccepted returns how many user/create requests for login were
// accepted (queued), whether or not they were processed yet.
func (s *Server) CreatesAccepted(t testing.TB, login string) int {
	t.Helper()
	return s.State(t).Creates[phpLower(login)]
}

// phpLower is PHP 8's strtolower: ASCII letters only.
func phpLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// phpOutput is what php reports: its stderr and its error log.
type phpOutput struct {
	stderr syncBuffer
	errLog string
}

func (o *phpOutput) String() string {
	s := o.stderr.String()
	if b, err := os.ReadFile(o.errLog); err == nil {
		s += string(b)
	}
	return s
}

// syncBuffer collects php's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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
