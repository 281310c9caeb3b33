package mlmsofttest_test

import (
	"fmt"
	"strings"

	"github.com/mlmsoft-go/mlmsoft/mlmsofttest"
)

// A host's test starts the fake, creates the root sponsor its users will
// hang under, and points the plugin's configuration at srv.URL with token
// mlmsofttest.DefaultToken and App-Id mlmsofttest.DefaultAppID.
func ExampleNewServer() {
	srv := mlmsofttest.NewServer(mlmsofttest.Options{Aliases: []string{"PV", "Status"}})
	defer srv.Close()

	root := srv.AddAccount("root@example.com", "root-password", 0)
	fmt.Println(strings.HasPrefix(srv.URL, "http://127.0.0.1:"), strings.HasSuffix(srv.URL, "/api2/online-office/"))
	fmt.Println("root account:", root.AccountID, "user:", root.UserID)

	// After the plugin ran: what reached MLM Soft?
	fmt.Println("volume changes:", len(srv.AllLedger()), "creates:", srv.CreatesAccepted("jane@example.com"))
	// Output:
	// true true
	// root account: 700001 user: 100001
	// volume changes: 0 creates: 0
}
