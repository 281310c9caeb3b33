package shop

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// The environment variables the shops read. Unset, the shop runs on its own:
// SQLite files and the built-in fake MLM Soft in the data directory.
const (
	EnvMLMSoftURL      = "MLMSOFT_URL"            // a real MLM Soft's API2 base URL; unset: the built-in fake
	EnvToken           = "MLMSOFT_TOKEN"          // its API token (required with MLMSOFT_URL)
	EnvWebhookSecret   = "MLMSOFT_WEBHOOK_SECRET" // the webhook's HMAC secret (unset with MLMSOFT_URL: webhook off)
	EnvAppID           = "MLMSOFT_APP_ID"         // the App-Id header (default "1")
	EnvDefaultSponsor  = "MLMSOFT_DEFAULT_SPONSOR"
	EnvPasswordKey     = "MLMSOFT_PASSWORD_KEY" // 32 bytes, hex or base64; unset: kept in the data directory
	EnvDatabaseURL     = "DATABASE_URL"         // postgres://... or mysql://... ; unset: SQLite in the data directory
	EnvAdminPassword   = "DEMO_ADMIN_PASSWORD"  // the console's password; unset: generated in the data directory
	DefaultDataDir     = "mlmsoft-demo-data"
	DefaultFakeAddr    = "127.0.0.1:0"
	AdminUser          = "admin"
	adminPasswordFile  = "admin-password"
	webhookSecretFile  = "webhook-secret"
	passwordKeyFile    = "password-key"
	fakeStateFile      = "fake-mlmsoft.json"
	sqliteFile         = "shop.db"
	dataDirLockFile    = "lock"
	passwordKeyLen     = 32
	webhookSecretBytes = 32
)

// Options is what a shop command is told by its flags and environment.
type Options struct {
	// Name is the command's name ("ginshop"), shown in its output.
	Name string
	// Addr is the address to listen on; port 0 picks a free one.
	Addr string
	// DataDir holds the SQLite database, the fake MLM Soft's state and the
	// generated secrets.
	DataDir string
	// FakeAddr is where the built-in fake MLM Soft listens.
	FakeAddr string
	// AdminPassword is the console's password; "" reads or generates it
	// in DataDir.
	AdminPassword string
	// Verbose logs at debug level.
	Verbose bool
	// Getenv reads the environment (os.Getenv; tests pass their own).
	Getenv func(string) string
	// Stdout receives the start-up banner and one line per link and
	// volume event; Stderr the logs.
	Stdout, Stderr io.Writer
}

// ParseFlags reads a shop command's flags. It returns flag.ErrHelp for -h.
func ParseFlags(name, defaultAddr string, args []string, getenv func(string) string, stdout, stderr io.Writer) (Options, error) {
	o := Options{Name: name, Getenv: getenv, Stdout: stdout, Stderr: stderr}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: %s [flags]

A demo web shop wired to MLM Soft through the mlmsoft plugin. With no
configuration it keeps everything in -data (SQLite, a built-in fake MLM Soft,
generated secrets) and prints its URL; see the package documentation (go doc)
for the environment variables that switch to a real MLM Soft and to
PostgreSQL or MySQL.

Flags:
`, name)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.Addr, "addr", defaultAddr, "`address` to listen on (port 0 picks a free one)")
	fs.StringVar(&o.DataDir, "data", DefaultDataDir, "`directory` for the SQLite database, the fake MLM Soft's state and the generated secrets")
	fs.StringVar(&o.FakeAddr, "fake-addr", DefaultFakeAddr, "`address` of the built-in fake MLM Soft (without "+EnvMLMSoftURL+")")
	fs.StringVar(&o.AdminPassword, "admin-password", "", "password of the console at /admin/ (user "+AdminUser+"); default: $"+EnvAdminPassword+", else generated in -data")
	fs.BoolVar(&o.Verbose, "v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", name, fs.Args())
		fs.Usage()
		return Options{}, errors.New("unexpected arguments")
	}
	if o.AdminPassword == "" {
		o.AdminPassword = getenv(EnvAdminPassword)
	}
	return o, nil
}

// parseKey reads a 32-byte key given as hex or base64 (standard or URL
// alphabet, padded or not).
func parseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if b, err := hex.DecodeString(s); err == nil && len(b) == passwordKeyLen {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == passwordKeyLen {
			return b, nil
		}
	}
	return nil, fmt.Errorf("want %d bytes as hex (%d digits) or base64", passwordKeyLen, 2*passwordKeyLen)
}

// readOrCreate returns the content of the file at path, first writing
// make() to it (readable by its owner only) when it does not exist.
func readOrCreate(path string, make func() string) (string, bool, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", false, fmt.Errorf("%s is empty: delete it to have it generated again", path)
		}
		return s, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", false, err
	}
	s := make()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, err
	}
	if _, err := f.WriteString(s + "\n"); err != nil {
		f.Close()
		return "", false, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", false, err
	}
	return s, true, f.Close()
}

// lockedWriter serialises writes of several goroutines (hooks) to one
// writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
