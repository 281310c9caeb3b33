package mlmsoft_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/memstore"
	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// A host wires the plugin with a few lines: a Store, a Config, Start and
// Shutdown around the app's life, OnUserRegistered in the sign-up path and
// ApplyVolumes after a purchase. Here MLM Soft is the fake server; in
// production BaseURL is the tenant's API2 gateway, such as
// "https://acme.mlmsoft.com/api2/online-office/", and the store is usually
// sqlstore.
func Example() {
	fake := mlmsofttest.NewServer(mlmsofttest.Options{})
	defer fake.Close()
	company := fake.AddAccount("root@company.example", "root-password", 0)

	linked := make(chan mlmsoft.LinkInfo, 1)
	plugin, err := mlmsoft.New(memstore.New(), mlmsoft.Config{
		BaseURL:                 fake.URL,
		APIToken:                mlmsofttest.DefaultToken,
		PasswordKey:             []byte("32-byte-key-from-your-secrets!!!"),
		DefaultSponsorAccountID: company.AccountID,
		Logger:                  slog.New(slog.DiscardHandler),
		Hooks: mlmsoft.Hooks{
			// Hooks run on the plugin's goroutines, at least once: a host
			// copies the account id into its own user record here.
			OnLinked: func(ctx context.Context, e mlmsoft.LinkEvent) error {
				linked <- e.Link
				return nil
			},
		},
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := plugin.Start(ctx); err != nil {
		panic(err)
	}
	defer plugin.Shutdown(ctx)

	// In the sign-up handler, after the host saved its own user:
	err = plugin.OnUserRegistered(ctx, mlmsoft.NewUser{
		UserID: "42", Email: "ann@example.com", Password: "her-chosen-password", FirstName: "Ann",
	})
	if err != nil {
		panic(err)
	}
	l := <-linked
	fmt.Println("linked to account", l.AccountID)

	// After a purchase: the status first, then the volume.
	batch, err := plugin.ApplyVolumes(ctx, "42",
		mlmsoft.Change{Alias: "Status", Amount: mlmsoft.MustAmount("2"), OrderID: "order-1001"},
		mlmsoft.Change{Alias: "PV", Amount: mlmsoft.MustAmount("49.90"), OrderID: "order-1001"},
	)
	if err != nil {
		panic(err)
	}
	if _, err := batch.Wait(ctx); err != nil {
		panic(err)
	}
	for _, e := range fake.Ledger(l.AccountID) {
		fmt.Println(e.Alias, e.Amount, e.OrderID)
	}
	// Output:
	// linked to account 700002
	// Status 2 order-1001
	// PV 49.9 order-1001
}
