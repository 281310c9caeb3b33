package sqlstore

import (
	"database/sql"
	"testing"

	"github.com/mlmsoft-go/mlmsoft"
	"github.com/mlmsoft-go/mlmsoft/storetest"
)

// TestConformance runs the Store conformance suite against every dialect,
// each subtest on a fresh database (SQLite) or table prefix.
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			newTestDB(t, b) // skips when the DSN is unset
			storetest.Run(t, func(t *testing.T) mlmsoft.Store {
				return newTestDB(t, b).store()
			})
		})
	}
}

// TestConformanceTx runs the TxStore conformance suite against every
// dialect.
func TestConformanceTx(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			newTestDB(t, b)
			storetest.RunTx(t, func(t *testing.T) (mlmsoft.TxStore, *sql.DB) {
				s := newTestDB(t, b).store()
				return s, s.DB()
			})
		})
	}
}
