package main

import (
	"testing"

	"github.com/mlmsoft-go/mlmsoft/examples/internal/shoptest"
)

// TestSmoke runs the shop in-process on a fresh data directory with the
// built-in fake MLM Soft: sign-ups with a referral, links, a purchase
// delivered in order, check-auth, metrics, the console's password, and a
// second run on the same files (see shoptest.Smoke).
func TestSmoke(t *testing.T) {
	shoptest.Smoke(t, run)
}

// TestSecurity checks what the shop refuses: forms without their CSRF
// token or from another site, members' pages to visitors, the console
// without its password (see shoptest.Security).
func TestSecurity(t *testing.T) {
	shoptest.Security(t, run)
}
