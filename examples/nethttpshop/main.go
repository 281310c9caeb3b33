// Command nethttpshop is a small web shop on plain net/http (Go 1.22
// routing patterns, html/template, no JavaScript) wired to MLM Soft through
// the mlmsoft plugin: every customer who signs up gets an MLM Soft account
// linked to their shop account, and every purchase reaches MLM Soft as the
// product's Status, then its PV, in order, once. Its twin examples/ginshop
// is the same shop on Gin; both share their non-HTTP parts in
// examples/internal/shop.
//
// # Running it
//
//	go run ./examples/nethttpshop
//
// needs no configuration: it keeps everything in ./mlmsoft-demo-data/ (the
// SQLite database with the shop's tables and the plugin's, the state of a
// fake MLM Soft started in-process, and generated secrets), starts the
// plugin and prints the shop's URL (http://127.0.0.1:8081/), the console's
// password and where the fake shows what it received. Ctrl-C stops it
// cleanly; run it again on the same directory and everything is still there
// (users, links, orders, and the fake's accounts and ledger). Two shops
// cannot use one data directory at the same time. The directory holds
// shop.db, fake-mlmsoft.json (the fake's accounts, passwords included, and
// ledger), webhook-secret, password-key and admin-password, all readable by
// their owner only; delete it to start afresh.
//
// Flags:
//
//	-addr            address to listen on (default 127.0.0.1:8081; port 0 picks a free one)
//	-data            data directory (default ./mlmsoft-demo-data)
//	-fake-addr       address of the fake MLM Soft (default 127.0.0.1:0, a free port)
//	-admin-password  the console's password (default $DEMO_ADMIN_PASSWORD, else generated
//	                 in the data directory and printed)
//	-v               log at debug level
//
// Environment variables switch to real services (secrets are never printed):
//
//	MLMSOFT_URL              a real MLM Soft's API2 base URL, such as
//	                         https://acme.mlmsoft.com/api2/online-office/ (unset: the fake)
//	MLMSOFT_TOKEN            its API token (required with MLMSOFT_URL)
//	MLMSOFT_APP_ID           its App-Id (default 1)
//	MLMSOFT_DEFAULT_SPONSOR  the account id sponsoring customers who sign up without a
//	                         referral (required with MLMSOFT_URL; the fake's company account otherwise)
//	MLMSOFT_WEBHOOK_SECRET   the secret MLM Soft signs its webhook with; MLM Soft posts it to
//	                         <shop URL>/mlmsoft/webhook (unset with MLMSOFT_URL: no webhook;
//	                         with the fake: generated in the data directory)
//	MLMSOFT_PASSWORD_KEY     32 bytes, hex or base64, sealing sign-up passwords until MLM Soft
//	                         has them (unset: generated in the data directory)
//	DATABASE_URL             postgres://user:pass@host:5432/db (driver pgx), or
//	                         mysql://user:pass@tcp(host:3306)/db or a go-sql-driver DSN
//	                         such as user:pass@tcp(host:3306)/db (unset: SQLite in the data directory)
//	DEMO_ADMIN_PASSWORD      the console's password (see -admin-password)
//
// At start it calls Plugin.Check and prints what MLM Soft said; it refuses
// to start when MLM Soft refuses the URL, App-Id or token, and starts anyway
// when MLM Soft cannot be reached (work waits in the database).
//
// # What to try
//
//   - Sign up at /signup. The account page (/account) shows your MLM Soft
//     link: pending, then linked (by the fake's webhook, or by polling), with
//     your MLM Soft account id. Its "Invite people" link (/signup?ref=<your
//     id>) makes you the sponsor of whoever signs up with it.
//   - Buy something on the products page (/). The account page lists the
//     order with its Status and PV changes and their state: pending, then
//     delivered (or parked, uncertain: see below).
//   - Tick "I am an MLM Soft member already" at sign-up, then link the fake's
//     demo member (member@demo.example / member-password) on the account
//     page: the shop asks the plugin's check-auth handler.
//   - Open the fake's views (the "What MLM Soft received" link, /_fake/ on
//     the fake's port) to see the accounts it made, the sponsor tree and the
//     ledger of volume changes, in order, with exact amounts.
//   - Scrape /metrics (Prometheus).
//   - Open the operations console at /admin/ (user admin, the printed
//     password). Make the fake refuse the next volume change, buy, and the
//     change is parked: retry it from the console. Make it apply the next
//     one but lose the answer, buy, and the change is uncertain: resolve it
//     from the console, and see the audit of what you did.
//
// The fake takes such orders on its control endpoint (its port is printed
// at start):
//
//	curl -d endpoint=account/volume-change -d kind=business-error http://127.0.0.1:PORT/_fake/inject
//	curl -d endpoint=account/volume-change -d kind=server-error-after-apply http://127.0.0.1:PORT/_fake/inject
//
// The console's password is a demo password for this demo only: a real shop
// puts the console behind its own staff sign-in, over TLS.
//
// "Link my existing MLM Soft account" on the account page posts to the
// shop's own /account/link, which hands the login and password to the
// plugin's check-auth handler on the server and shows its JSON answer as a
// message: a plain HTML form posting to the handler itself would show the
// raw JSON, and the shop's route is covered by the shop's CSRF protection.
// The handler stays mounted at /mlmsoft/check-auth for clients that want
// JSON.
//
// # Routes
//
//	GET  /                   products                 POST /buy            an order (CSRF-protected)
//	GET  /signup, /signin    forms                    POST /signup, /signin, /signout
//	GET  /account            link, referrals, orders  POST /account/link   link an existing MLM Soft account
//	POST /mlmsoft/webhook    the plugin's webhook     POST /mlmsoft/check-auth  the plugin's check-auth (JSON)
//	GET  /metrics            Prometheus               /admin/              the operations console (basic auth)
//
// # Tests
//
//	go test ./examples/nethttpshop
//
// runs the shop in-process: a smoke test (sign-ups with a referral, links,
// a purchase delivered in order, check-auth, metrics, the console's
// password, a second run on the same files) and what it refuses (CSRF,
// other sites, visitors). The browser test lives with examples/ginshop.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mlmsoft-go/mlmsoft/examples/internal/shop"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr, nil)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nethttpshop:", err)
		os.Exit(1)
	}
}

// run starts the shop and serves until ctx ends, then shuts it down.
// started, when not nil, is called with the running app once it is set up
// (tests use it to find the URL and the fake MLM Soft).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, started func(*shop.App)) error {
	opts, err := shop.ParseFlags("nethttpshop", "127.0.0.1:8081", args, getenv, stdout, stderr)
	if err != nil {
		return err
	}
	app, err := shop.Open(ctx, opts, currentUser)
	if err != nil {
		return err
	}
	h := newServer(app).routes()
	if started != nil {
		started(app)
	}
	return app.Serve(ctx, h)
}
