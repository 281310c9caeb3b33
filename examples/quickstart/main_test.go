package main

import (
	"path/filepath"
	"testing"
)

// The demo runs twice on the same files: the second run finds the users,
// their links and the fake MLM Soft's accounts and ledger as the first left
// them, and adds nothing (the purchase's idempotency keys).
func TestQuickstartRunsTwiceOnTheSameFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("links six users through the fake MLM Soft in real time")
	}
	db := filepath.Join(t.TempDir(), "state.db")
	for i := 1; i <= 2; i++ {
		if err := run(db, false); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
}
