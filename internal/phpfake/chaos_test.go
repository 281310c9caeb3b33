package phpfake

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/api2"
	"github.com/mlmsoft-go/mlmsoft/internal/chaosproxy"
)

// TestThroughChaosProxy runs api2.Client, with its own transport (POST
// bodies wait for "100 Continue"), through a misbehaving proxy to the PHP
// emulator: the proxy answers 100 Continue itself, as nginx does, and each
// gateway failure must be classified by what MLM Soft actually did.
func TestThroughChaosProxy(t *testing.T) {
	s := Start(t, Options{})
	p := chaosproxy.New(s.URL, chaosproxy.Options{})
	defer p.Close()
	c, err := api2.New(api2.Config{BaseURL: p.URL, Token: s.Token, AppID: s.AppID, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const path = "account/volume-change"
	for i, tc := range []struct {
		mode    chaosproxy.Mode
		kind    api2.Kind // 0: success
		applied bool
	}{
		{chaosproxy.Pass, 0, true},
		// The proxy read the body before answering 5xx: from the client's
		// side MLM Soft may have applied it (and here it did, once).
		{chaosproxy.ForwardThen5xx, api2.Ambiguous, true},
		{chaosproxy.Reject5xxBeforeForward, api2.Ambiguous, false},
		{chaosproxy.ForwardThenDrop, api2.Ambiguous, true},
		{chaosproxy.ForwardThenHang, api2.Ambiguous, true},
	} {
		p.Next(tc.mode, 1)
		before := len(s.Ledger(t, s.Root.AccountID))
		order := fmt.Sprint("order-", i)
		_, err := c.ChangeVolume(context.Background(), api2.VolumeChange{AccountID: s.Root.AccountID, Amount: "2.5", OrderID: order, Alias: "PV"})
		if api2.KindOf(err) != tc.kind {
			t.Errorf("%v: got %v (kind %v), want kind %v", tc.mode, err, api2.KindOf(err), tc.kind)
		}
		var e *api2.Error
		if tc.mode == chaosproxy.ForwardThen5xx && (!errors.As(err, &e) || e.Status < 500) {
			t.Errorf("%v: got %v, want a gateway 5xx", tc.mode, err)
		}
		ledger := s.Ledger(t, s.Root.AccountID)
		applied := len(ledger) == before+1 && ledger[before].OrderID == order
		if applied != tc.applied || len(ledger) > before+1 {
			t.Errorf("%v: applied = %v, want %v (ledger %+v)", tc.mode, applied, tc.applied, ledger)
		}
	}
	got := p.Counts(path)
	if got.Seen != 5 || got.Forwarded != 4 || got.Modes[chaosproxy.ForwardThen5xx] != 1 {
		t.Errorf("proxy counts = %+v", got)
	}
}
