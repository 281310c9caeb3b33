package shop

import (
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for DATABASE_URL=postgres://...
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	_ "modernc.org/sqlite" // the "sqlite" driver sqlstore.OpenSQLite uses

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/admin"
	"github.com/mlmsoft-go/mlmsoft/metrics"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/sqlstore"
)

// Where the shops mount the plugin's handlers and their own extras.
const (
	PluginPrefix = "/mlmsoft" // POST /mlmsoft/webhook, POST /mlmsoft/check-auth
	AdminPrefix  = "/admin"   // the operations console, behind basic auth
	MetricsPath  = "/metrics" // Prometheus
)

// The fake MLM Soft's demo accounts, made on the first run.
const (
	CompanyLogin    = "root@company.example"
	MemberLogin     = "member@demo.example" // an MLM Soft member from before the shop, to link with check-auth
	MemberPassword  = "member-password"
	companyPassword = "root-password"
)

// Shutdown bounds how long each step of a shutdown may take.
const shutdownStep = 10 * time.Second

// App is a running shop's non-HTTP half: its database, the plugin and its
// store, the fake MLM Soft (when no real one is configured), sessions and
// templates. A shop command opens it, builds its HTTP handler on it and
// hands that to Serve.
type App struct {
	Name string
	// URL is where the shop answers, such as "http://127.0.0.1:8080".
	URL string

	DB        *DB
	Sessions  *Sessions
	Store     *sqlstore.Store
	Plugin    *mlmsoft.Plugin
	Fake      *mlmsofttest.Server // nil with a real MLM Soft
	Templates *template.Template
	Log       *slog.Logger

	// AdminUser and AdminPassword guard the console.
	AdminUser, AdminPassword string
	// RequestTimeout is the plugin's Config.RequestTimeout (the console
	// wants it).
	RequestTimeout time.Duration
	// FakeViewsURL is the fake's read-only views ("" with a real MLM Soft).
	FakeViewsURL string

	out      io.Writer
	ln       net.Listener
	sqlDB    *sql.DB // closed by Close when the store does not own it
	closers  []func()
	dataDir  string
	mlmsoft  string // what MLM Soft is, for the banner
	database string // what the database is, for the banner
	webhook  string // how the webhook is set up, for the banner
	check    string // what Plugin.Check said
}

// Open sets up everything a shop needs, from its options and environment,
// and starts the plugin's workers: it listens on opts.Addr, opens the data
// directory, the database (SQLite there, or DATABASE_URL), the fake MLM Soft
// (unless MLMSOFT_URL is set) and the plugin. currentUser is the plugin's
// CheckAuthConfig.CurrentUser, which each shop reads from its own session
// middleware. On error everything opened so far is closed.
func Open(ctx context.Context, opts Options, currentUser func(*http.Request) (string, bool)) (_ *App, err error) {
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Stdout == nil {
		opts.Stdout = io.Discard
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	level := slog.LevelInfo
	if opts.Verbose {
		level = slog.LevelDebug
	}
	a := &App{
		Name: opts.Name,
		Log:  slog.New(slog.NewTextHandler(opts.Stderr, &slog.HandlerOptions{Level: level})).With("app", opts.Name),
		out:  &lockedWriter{w: opts.Stdout},
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	env := opts.Getenv

	// The data directory, locked for this process.
	dir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	a.dataDir = dir
	// Keep the directory out of version control wherever it is made (the
	// default is relative to the working directory, which may be a clone).
	if _, _, err := readOrCreate(filepath.Join(dir, ".gitignore"), func() string {
		return "# The demo shops' data: databases, state, secrets.\n*"
	}); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	unlock, err := lockDir(filepath.Join(dir, dataDirLockFile))
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, unlock)

	// Listen first: the fake MLM Soft must know where to send webhooks.
	a.ln, err = net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	a.URL = "http://" + dialable(a.ln.Addr())

	// Secrets: from the environment, else kept in the data directory.
	a.AdminUser = AdminUser
	a.AdminPassword = opts.AdminPassword
	if a.AdminPassword == "" {
		if a.AdminPassword, _, err = readOrCreate(filepath.Join(dir, adminPasswordFile), func() string { return randomHex(6) }); err != nil {
			return nil, fmt.Errorf("console password: %w", err)
		}
	}
	var passwordKey []byte
	if s := env(EnvPasswordKey); s != "" {
		if passwordKey, err = parseKey(s); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvPasswordKey, err)
		}
	} else {
		s, _, err := readOrCreate(filepath.Join(dir, passwordKeyFile), func() string { return randomHex(passwordKeyLen) })
		if err != nil {
			return nil, fmt.Errorf("password key: %w", err)
		}
		if passwordKey, err = parseKey(s); err != nil {
			return nil, fmt.Errorf("password key in %s: %w", filepath.Join(dir, passwordKeyFile), err)
		}
	}

	// The database: the plugin's tables and the shop's, side by side, so
	// that one transaction covers both.
	cfg := mlmsoft.Config{
		PasswordKey: passwordKey,
		CheckAuth:   mlmsoft.CheckAuthConfig{Enabled: true, CurrentUser: currentUser},
		Logger:      a.Log,
		Hooks: mlmsoft.Hooks{
			OnLinked:     a.onLinked,
			OnLinkFailed: a.onLinkFailed,
			OnVolume:     a.onVolume,
		},
	}
	if err := a.openDatabase(ctx, dir, env(EnvDatabaseURL), workersOf(cfg)); err != nil {
		return nil, err
	}

	// MLM Soft: the real one, or the fake.
	if base := env(EnvMLMSoftURL); base != "" {
		if err := a.realMLMSoft(&cfg, base, env); err != nil {
			return nil, err
		}
	} else if err := a.fakeMLMSoft(&cfg, dir, opts.FakeAddr, env(EnvWebhookSecret)); err != nil {
		return nil, err
	}

	a.Plugin, err = mlmsoft.New(a.Store, cfg)
	if err != nil {
		return nil, err
	}
	a.RequestTimeout = cmp.Or(cfg.RequestTimeout, mlmsoft.RequestTimeoutDefault)
	a.closers = append(a.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownStep)
		defer cancel()
		if err := a.Plugin.Shutdown(ctx); err != nil {
			a.Log.Warn("plugin shutdown", "err", err)
		}
	})
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	err = a.Plugin.Check(cctx)
	cancel()
	switch {
	case err == nil:
		a.check = "ok: MLM Soft accepts the URL, App-Id and token"
	case errors.Is(err, mlmsoft.ErrMisconfigured):
		return nil, fmt.Errorf("MLM Soft refuses the configuration (check %s, %s, %s): %w", EnvMLMSoftURL, EnvAppID, EnvToken, err)
	default:
		// Work waits in the database until MLM Soft is back.
		a.check = "MLM Soft cannot be reached now; starting anyway: " + err.Error()
	}
	if err := a.Plugin.Start(ctx); err != nil {
		return nil, err
	}

	a.Sessions = &Sessions{db: a.DB}
	if err := a.Sessions.Purge(ctx); err != nil {
		return nil, err
	}
	a.Templates, err = parseTemplates()
	if err != nil {
		return nil, err
	}
	return a, nil
}

// workersOf returns how many workers the plugin runs with cfg (for sizing
// the database pool): volume, link and hook workers.
func workersOf(cfg mlmsoft.Config) int {
	return cmp.Or(cfg.Volumes.Concurrency, mlmsoft.VolumeConcurrencyDefault) +
		cmp.Or(cfg.Linking.Concurrency, mlmsoft.LinkConcurrencyDefault) +
		cmp.Or(cfg.Hooks.Concurrency, mlmsoft.HookConcurrencyDefault)
}

// shopConns is how many connections the shop's own handlers may hold at
// once, on top of the plugin's.
const shopConns = 10

// openDatabase opens SQLite in dir, or the database of databaseURL, and
// migrates the plugin's tables and the shop's.
func (a *App) openDatabase(ctx context.Context, dir, databaseURL string, workers int) error {
	var dialect sqlstore.Dialect
	var name string
	switch {
	case databaseURL == "":
		path := filepath.Join(dir, sqliteFile)
		st, err := sqlstore.OpenSQLite(ctx, path) // opens, tunes, sizes and migrates
		if err != nil {
			return err
		}
		a.Store, name = st, DialectSQLite
		a.database = "SQLite at " + path
	case strings.HasPrefix(databaseURL, "postgres://"), strings.HasPrefix(databaseURL, "postgresql://"):
		db, err := sql.Open("pgx", databaseURL)
		if err != nil {
			return fmt.Errorf("%s: %w", EnvDatabaseURL, err)
		}
		a.sqlDB, dialect, name = db, sqlstore.Postgres{}, DialectPostgres
		a.database = "PostgreSQL at " + redactURL(databaseURL)
	default:
		dsn := strings.TrimPrefix(databaseURL, "mysql://")
		c, err := mysql.ParseDSN(dsn)
		if err != nil || !strings.Contains(dsn, "/") {
			return fmt.Errorf("%s: want postgres://user:pass@host:port/db, mysql://user:pass@tcp(host:port)/db or a MySQL DSN such as user:pass@tcp(host:port)/db", EnvDatabaseURL)
		}
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			return fmt.Errorf("%s: %w", EnvDatabaseURL, err)
		}
		a.sqlDB, dialect, name = db, sqlstore.MySQL{}, DialectMySQL
		a.database = fmt.Sprintf("MySQL at %s/%s", c.Addr, c.DBName)
	}
	if a.sqlDB != nil {
		// sqlstore.New's rule: a connection per worker plus its headroom,
		// open and idle, plus what the shop's handlers use.
		n := sqlstore.PoolSize(workers) + shopConns
		a.sqlDB.SetMaxOpenConns(n)
		a.sqlDB.SetMaxIdleConns(n)
		a.sqlDB.SetConnMaxIdleTime(5 * time.Minute)
		a.closers = append(a.closers, func() { a.sqlDB.Close() })
		st, err := sqlstore.New(a.sqlDB, dialect, sqlstore.Config{})
		if err != nil {
			return err
		}
		if err := st.Migrate(ctx); err != nil {
			return fmt.Errorf("migrate the plugin's tables: %w", err)
		}
		a.Store = st
	}
	a.closers = append(a.closers, func() { a.Store.Close() })
	d, err := NewDB(a.Store.DB(), name)
	if err != nil {
		return err
	}
	a.DB = d
	return d.Migrate(ctx)
}

// realMLMSoft configures the plugin for the MLM Soft of the environment.
func (a *App) realMLMSoft(cfg *mlmsoft.Config, base string, env func(string) string) error {
	cfg.BaseURL = base
	cfg.APIToken = env(EnvToken)
	if cfg.APIToken == "" {
		return fmt.Errorf("%s is set but %s is not", EnvMLMSoftURL, EnvToken)
	}
	cfg.AppID = env(EnvAppID)
	s := env(EnvDefaultSponsor)
	if s == "" {
		return fmt.Errorf("%s is required with %s: the MLM Soft account id that sponsors users who sign up without a referral", EnvDefaultSponsor, EnvMLMSoftURL)
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return fmt.Errorf("%s: want a positive MLM Soft account id, not %q", EnvDefaultSponsor, s)
	}
	cfg.DefaultSponsorAccountID = id
	if secret := env(EnvWebhookSecret); secret != "" {
		cfg.Webhook = mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{secret}}
		a.webhook = fmt.Sprintf("on at %s%s%s (signed with %s)", a.URL, PluginPrefix, mlmsoft.WebhookPath, EnvWebhookSecret)
	} else {
		a.webhook = "off (set " + EnvWebhookSecret + " to receive MLM Soft's webhook); links complete by polling"
	}
	u, err := url.Parse(base)
	if err != nil {
		return fmt.Errorf("%s: %w", EnvMLMSoftURL, err)
	}
	a.mlmsoft = fmt.Sprintf("%s://%s%s (App-Id %s, default sponsor account %d)", u.Scheme, u.Host, u.Path, cmp.Or(cfg.AppID, mlmsoft.AppIDDefault), id)
	return nil
}

// fakeMLMSoft starts the fake MLM Soft in this process, its state kept in
// dir and its webhooks sent to this shop, and configures the plugin for it.
func (a *App) fakeMLMSoft(cfg *mlmsoft.Config, dir, addr, secret string) error {
	secretFrom := EnvWebhookSecret
	if secret == "" {
		path := filepath.Join(dir, webhookSecretFile)
		var err error
		if secret, _, err = readOrCreate(path, func() string { return randomHex(webhookSecretBytes) }); err != nil {
			return fmt.Errorf("webhook secret: %w", err)
		}
		secretFrom = path
	}
	webhookURL := a.URL + PluginPrefix + mlmsoft.WebhookPath
	fakeLog := a.Log.With("component", "fake-mlmsoft")
	fake, err := mlmsofttest.Start(addr, mlmsofttest.Options{
		// Documents take a moment, as MLM Soft's do: the account page
		// shows a link pending, then linked.
		DocumentDelay: 500 * time.Millisecond,
		WebhookURL:    webhookURL,
		WebhookSecret: []byte(secret),
		StateFile:     filepath.Join(dir, fakeStateFile),
		// POST /_fake/inject, to make it fail on demand (see the shops'
		// documentation). It listens on loopback only by default.
		Control: true,
		Logf:    func(format string, args ...any) { fakeLog.Info(fmt.Sprintf(format, args...)) },
	})
	if err != nil {
		return fmt.Errorf("fake MLM Soft: %w", err)
	}
	a.Fake = fake
	a.closers = append(a.closers, fake.Close)
	company, ok := fake.Account(CompanyLogin)
	if !ok {
		company = fake.AddAccount(CompanyLogin, companyPassword, 0)
	}
	if _, ok := fake.Account(MemberLogin); !ok {
		fake.AddAccount(MemberLogin, MemberPassword, company.AccountID)
	}
	cfg.BaseURL = fake.URL
	cfg.APIToken = mlmsofttest.DefaultToken
	cfg.DefaultSponsorAccountID = company.AccountID
	cfg.Webhook = mlmsoft.WebhookConfig{Enabled: true, Secrets: []string{secret}}
	// Snappier than the defaults, which suit a real MLM Soft.
	cfg.Linking.PollInitial = 300 * time.Millisecond
	cfg.Linking.SponsorWait = 300 * time.Millisecond
	cfg.IdleRecheck = 300 * time.Millisecond
	cfg.RequestTimeout = 10 * time.Second

	a.FakeViewsURL = strings.TrimSuffix(fake.URL, mlmsofttest.BasePath) + mlmsofttest.ViewsPath
	a.mlmsoft = fmt.Sprintf("the built-in fake at %s\n             state in %s; company root account %d\n             what it received: %s",
		fake.URL, filepath.Join(dir, fakeStateFile), company.AccountID, a.FakeViewsURL)
	a.webhook = fmt.Sprintf("on at %s (signed with the secret in %s)", webhookURL, secretFrom)
	return nil
}

// Serve serves h until ctx ends, then shuts everything down: the HTTP
// server (letting requests in flight finish), the plugin, the fake MLM
// Soft and the store. It prints the banner once it serves.
func (a *App) Serve(ctx context.Context, h http.Handler) error {
	defer func() {
		a.Close()
		fmt.Fprintf(a.out, "%s: stopped\n", a.Name)
	}()
	srv := NewHTTPServer(h, a.Log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(a.ln) }()
	a.printBanner()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	fmt.Fprintf(a.out, "%s: shutting down\n", a.Name)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownStep)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		a.Log.Warn("HTTP server shutdown", "err", err)
	}
	<-errc
	return nil
}

// NewHTTPServer returns an http.Server for h with the limits docs/operations.md
// recommends: the plugin's handlers bound their bodies' read time, but the
// headers are read before any handler runs.
func NewHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// Close stops and closes what Open opened, in reverse order: the plugin,
// the fake MLM Soft, the store and database, the listener (when Serve never
// ran) and the data directory's lock. It is safe to call more than once.
func (a *App) Close() {
	if a.ln != nil {
		a.ln.Close()
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}

func (a *App) printBanner() {
	w := a.out
	fmt.Fprintf(w, "%s: a demo shop wired to MLM Soft\n", a.Name)
	fmt.Fprintf(w, "  data:      %s\n", a.dataDir)
	fmt.Fprintf(w, "  database:  %s\n", a.database)
	fmt.Fprintf(w, "  MLM Soft:  %s\n", a.mlmsoft)
	if a.Fake != nil {
		fmt.Fprintf(w, "             an existing member to link on the account page: %s / %s\n", MemberLogin, MemberPassword)
	}
	fmt.Fprintf(w, "  check:     %s\n", a.check)
	fmt.Fprintf(w, "  webhook:   %s\n", a.webhook)
	fmt.Fprintf(w, "  console:   %s%s/  (user %s, password %s: for this demo only)\n", a.URL, AdminPrefix, a.AdminUser, a.AdminPassword)
	fmt.Fprintf(w, "  metrics:   %s%s\n", a.URL, MetricsPath)
	fmt.Fprintf(w, "Shop at %s/  (Ctrl-C stops it)\n", a.URL)
}

func (a *App) onLinked(_ context.Context, e mlmsoft.LinkEvent) error {
	l := e.Link
	fmt.Fprintf(a.out, "linked    user %s (%s) to MLM Soft account %d via %s\n", l.UserID, l.Email, l.AccountID, l.LinkedVia)
	return nil
}

func (a *App) onLinkFailed(_ context.Context, e mlmsoft.LinkEvent) error {
	fmt.Fprintf(a.out, "FAILED    link of user %s (%s): %s\n", e.Link.UserID, e.Link.Email, e.Link.LastError)
	return nil
}

func (a *App) onVolume(_ context.Context, e mlmsoft.VolumeEvent) error {
	c := e.Change
	fmt.Fprintf(a.out, "%-9s %s %s of order %s (user %s, change %d)\n", c.State, c.Alias, c.Amount, c.OrderID, c.UserID, c.ID)
	return nil
}

// dialable returns a host:port to reach addr at: an unspecified address
// (":8080", "[::]:8080") is reached on the loopback.
func dialable(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// redactURL returns u without its password and query (which may hold one).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	u.User = nil
	u.RawQuery = ""
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// StaticFS returns the shop's static files (its style sheet), to serve
// under /static/.
func StaticFS() fs.FS {
	sub, err := fs.Sub(assets, "static")
	if err != nil {
		panic(err)
	}
	return sub
}

// Console returns the plugin's operations console (package admin), which
// authenticates nobody: mount it behind the shop's basic auth. operator
// says who the request's authenticated operator is, for the audit of every
// action.
func (a *App) Console(operator func(*http.Request) string) http.Handler {
	return admin.Handler(a.Plugin, admin.Options{
		Operator:       operator,
		Title:          a.Name + " · MLM Soft operations",
		Logger:         a.Log.With("component", "console"),
		RequestTimeout: a.RequestTimeout,
	})
}

// Metrics returns the Prometheus handler of the plugin's metrics (package
// metrics), in a registry of their own.
func (a *App) Metrics() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(a.Plugin, metrics.Options{}))
	// ContinueOnError: health and stats_up are still exported while the
	// database is down.
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
