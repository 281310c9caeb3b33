// Command quickstart is the smallest complete host of the plugin: it starts
// the fake MLM Soft server in-process, keeps the plugin's state in a SQLite
// file (the embedded default), registers a small sponsor tree through the
// plugin, prints each user's link as it completes, then sends a purchase's
// Status and PV to MLM Soft in order and shows what MLM Soft recorded.
//
//	go run ./examples/quickstart
//
// It needs no MLM Soft account and no network. Flags: -db to keep the SQLite
// file somewhere (default: a fresh temporary directory), -v for the plugin's
// logs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the SQLite driver sqlstore.OpenSQLite uses

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
	"github.com/mlmsoft-go/mlmsoft/sqlstore"
)

// The sponsor tree: each user and the host user id of their sponsor ("" =
// the company's root account).
var signups = []struct{ id, email, sponsor string }{
	{"alice", "alice@example.com", ""},
	{"bob", "bob@example.com", "alice"},
	{"carol", "carol@example.com", "alice"},
	{"dave", "dave@example.com", "bob"},
	{"erin", "erin@example.com", "carol"},
	{"frank", "frank@example.com", "dave"},
}

func main() {
	dbPath := flag.String("db", "", "SQLite file for the plugin's state (default: a new temporary directory)")
	verbose := flag.Bool("v", false, "print the plugin's logs")
	flag.Parse()
	if err := run(*dbPath, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(dbPath string, verbose bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// 1. Where state lives: a fresh temporary directory, or -db (then the
	// fake MLM Soft keeps its accounts and ledger beside it, so a second
	// run finds the same world).
	if dbPath == "" {
		dir, err := os.MkdirTemp("", "mlmsoft-quickstart-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		dbPath = filepath.Join(dir, "mlmsoft.db")
	}

	// 2. A fake MLM Soft: documents take a moment, as the real ones do.
	fake, err := mlmsofttest.Start("127.0.0.1:0", mlmsofttest.Options{DocumentDelay: 300 * time.Millisecond, StateFile: dbPath + ".fake.json"})
	if err != nil {
		return err
	}
	defer fake.Close()
	const companyLogin = "root@company.example"
	company, ok := fake.Account(companyLogin)
	if !ok {
		company = fake.AddAccount(companyLogin, "root-password", 0)
	}
	fmt.Printf("fake MLM Soft at %s (company root account %d)\n", fake.URL, company.AccountID)

	// 3. The plugin's state in SQLite.
	store, err := sqlstore.OpenSQLite(ctx, dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	fmt.Printf("plugin state in SQLite at %s\n\n", dbPath)

	// 4. The plugin, wired with a few lines.
	logOut := io.Discard
	if verbose {
		logOut = os.Stderr
	}
	plugin, err := mlmsoft.New(store, mlmsoft.Config{
		BaseURL:                 fake.URL,
		APIToken:                mlmsofttest.DefaultToken,
		PasswordKey:             []byte("demo-key-32-bytes-long-000000000"), // from your secret store in real life
		DefaultSponsorAccountID: company.AccountID,
		Linking:                 mlmsoft.LinkingConfig{PollInitial: 100 * time.Millisecond, SponsorWait: 100 * time.Millisecond},
		IdleRecheck:             100 * time.Millisecond,
		Logger:                  slog.New(slog.NewTextHandler(logOut, nil)),
		Hooks: mlmsoft.Hooks{
			// Hooks run on the plugin's own goroutines, at least once.
			OnLinked: func(ctx context.Context, e mlmsoft.LinkEvent) error {
				l := e.Link
				fmt.Printf("linked  %-6s -> MLM Soft account %d (user %d) via %s\n", l.UserID, l.AccountID, l.MLMUserID, l.LinkedVia)
				return nil
			},
			OnLinkFailed: func(ctx context.Context, e mlmsoft.LinkEvent) error {
				fmt.Printf("FAILED  %-6s: %s\n", e.Link.UserID, e.Link.LastError)
				return nil
			},
		},
	})
	if err != nil {
		return err
	}
	if err := plugin.Check(ctx); err != nil {
		return err
	}
	if err := plugin.Start(ctx); err != nil {
		return err
	}
	defer plugin.Shutdown(context.Background())

	// 5. The host's sign-up path calls OnUserRegistered; it returns at once.
	for _, s := range signups {
		err := plugin.OnUserRegistered(ctx, mlmsoft.NewUser{
			UserID: s.id, Email: s.email, Password: "Secret-" + s.id, FirstName: s.id, SponsorUserID: s.sponsor,
		})
		switch {
		case errors.Is(err, mlmsoft.ErrDuplicate):
			fmt.Printf("%-6s was signed up in an earlier run\n", s.id)
			continue
		case err != nil:
			return err
		}
		fmt.Printf("signed up %-6s (sponsor: %s)\n", s.id, orCompany(s.sponsor))
	}
	fmt.Println()
	linked := map[string]mlmsoft.LinkInfo{}
	for _, s := range signups {
		for {
			l, err := plugin.Link(ctx, s.id)
			if err != nil {
				return err
			}
			if l.State == mlmsoft.LinkLinked {
				linked[s.id] = l
				break
			}
			if l.State == mlmsoft.LinkFailed {
				return fmt.Errorf("%s could not be linked: %s", s.id, l.LastError)
			}
			select {
			case <-ctx.Done():
				return errors.New("not every user was linked within a minute")
			case <-time.After(20 * time.Millisecond):
			}
		}
	}

	// 6. A purchase: the status first, then the volume, in that order. The
	// idempotency keys make a second run add nothing.
	batch, err := plugin.ApplyVolumes(ctx, "dave",
		mlmsoft.Change{Alias: "Status", Amount: mlmsoft.MustAmount("2"), OrderID: "order-1001", IdempotencyKey: "order-1001/status"},
		mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount("149.90"), OrderID: "order-1001", IdempotencyKey: "order-1001/pv"},
	)
	if err != nil {
		return err
	}
	if _, err := batch.Wait(ctx); err != nil {
		return err
	}
	fmt.Println("\nMLM Soft recorded for dave, in order:")
	for _, e := range fake.Ledger(linked["dave"].AccountID) {
		fmt.Printf("  %-6s %8s  (order %s)\n", e.Alias, e.Amount, e.OrderID)
	}

	// 7. Check the tree MLM Soft built: each sponsor is the sponsor's account.
	fmt.Println("\nsponsor tree in MLM Soft:")
	for _, s := range signups {
		acct, _ := fake.Account(s.email)
		want := company.AccountID
		if s.sponsor != "" {
			want = linked[s.sponsor].AccountID
		}
		if acct.SponsorAccountID != want {
			return fmt.Errorf("%s has sponsor account %d, want %d", s.id, acct.SponsorAccountID, want)
		}
		fmt.Printf("  %-6s account %d, sponsored by account %d (%s)\n", s.id, acct.AccountID, acct.SponsorAccountID, orCompany(s.sponsor))
	}
	fmt.Printf("\nall %d users linked\n", len(signups))
	return nil
}

func orCompany(sponsor string) string {
	if sponsor == "" {
		return "the company"
	}
	return sponsor
}
