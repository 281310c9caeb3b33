package mlmsofttest

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestServerErrorsAfterBody checks the two gateway faults on user/create and
// account/volume-change: both read the body (so the client sent it), only
// "after apply" leaves the user and the ledger entry behind, and each
// variant answers its own statuses with an HTML page.
func TestServerErrorsAfterBody(t *testing.T) {
	t.Parallel()
	cases := []struct {
		kind     FaultKind
		faults   Faults
		statuses []int
		applied  bool
		log      string
	}{
		{FaultServerErrorAfterApply, Faults{ServerErrorAfterApplyRate: 1}, []int{500, 502, 504}, true, "server error after apply"},
		{FaultServerErrorAfterRead, Faults{ServerErrorAfterReadRate: 1}, []int{502, 503, 504}, false, "server error after read"},
	}
	for _, tc := range cases {
		t.Run(tc.kind.String(), func(t *testing.T) {
			t.Parallel()
			logs := newLogRecorder(t)
			s, c := newTestServer(t, Options{Logf: logs.Logf})
			root := s.AddAccount("root@example.com", "pw", 0)

			// Injected: the variants in turn.
			s.InjectNext("user/create", tc.kind, 3)
			s.InjectNext("account/volume-change", tc.kind, 3)
			for i, want := range tc.statuses {
				login := "u" + string(rune('a'+i)) + "@example.com"
				for _, a := range []answer{
					c.post("user/create", createParams(login, "pw", root.AccountID)),
					c.post("account/volume-change", volumeParams(root.AccountID, "1.5", "ord-"+login, "PV")),
				} {
					if a.err != nil || a.status != want || a.jsonErr == nil || !a.bodyRead ||
						!strings.HasPrefix(a.header.Get("Content-Type"), "text/html") || !strings.Contains(string(a.raw), http.StatusText(want)) {
						t.Errorf("%s #%d: err=%v status=%d (want %d) body read %v body=%s", tc.kind, i, a.err, a.status, want, a.bodyRead, a.raw)
					}
				}
				_, created := s.Account(login)
				if created != tc.applied || s.CreatesAccepted(login) != map[bool]int{true: 1}[tc.applied] {
					t.Errorf("%s: account created %v, creates accepted %d; want applied %v", login, created, s.CreatesAccepted(login), tc.applied)
				}
			}
			want := map[bool]int{true: 3}[tc.applied]
			if l := s.Ledger(root.AccountID); len(l) != want {
				t.Errorf("ledger %+v, want %d entries", l, want)
			}
			line := "mlmsofttest: user/create: injecting " + tc.log
			if n := logs.count(line); n != 3 {
				t.Errorf("%q logged %d times, want 3; the log:\n%s", line, n, logs.all())
			}

			// Drawn at random: the same effect, statuses among the variants.
			s.SetFaults("account/volume-change", tc.faults)
			for i := range 6 {
				a := c.post("account/volume-change", volumeParams(root.AccountID, "2", "ord-r", "PV"))
				if !slices.Contains(tc.statuses, a.status) || a.jsonErr == nil || !a.bodyRead {
					t.Errorf("random #%d: err=%v status=%d body=%s", i, a.err, a.status, a.raw)
				}
			}
			want += map[bool]int{true: 6}[tc.applied]
			if l := s.Ledger(root.AccountID); len(l) != want {
				t.Errorf("ledger has %d entries, want %d", len(l), want)
			}
			line = "mlmsofttest: account/volume-change: injecting " + tc.log
			if n := logs.count(line); n != 9 {
				t.Errorf("%q logged %d times, want 9", line, n)
			}
		})
	}
}

// TestServerErrorAfterApplyIsChecked: a request the server refuses is not
// applied, whatever the gateway then answers.
func TestServerErrorAfterApplyIsChecked(t *testing.T) {
	t.Parallel()
	s, c := newTestServer(t, Options{})
	root := s.AddAccount("root@example.com", "pw", 0)
	s.InjectNext("account/volume-change", FaultServerErrorAfterApply, 2)
	a := c.post("account/volume-change", volumeParams(root.AccountID, "1", "o", "PV"), func(r *http.Request) { r.Header.Set("Security-Key", "bad") })
	if a.status != http.StatusForbidden {
		t.Errorf("bad signature: status %d, want 403", a.status)
	}
	// The refused request used the first injection (500): this one meets
	// the second (502).
	if a := c.post("account/volume-change", volumeParams(root.AccountID+5, "1", "o", "PV")); a.status != http.StatusBadGateway {
		t.Errorf("unknown account: status %d, want 502", a.status)
	}
	if n := len(s.AllLedger()); n != 0 {
		t.Errorf("ledger has %d entries", n)
	}
}

func TestInjectNext(t *testing.T) {
	t.Parallel()
	random := Faults{BusinessErrorRate: 0.2, ServerErrorRate: 0.2, TooManyRate: 0.1, NonJSONRate: 0.1, RetryAfter: 3 * time.Second}
	// What the random faults alone give for a seed.
	s0, c0 := newTestServer(t, Options{Seed: 11})
	s0.SetFaults("*", random)
	var baseline []string
	for range 12 {
		baseline = append(baseline, describe(c0.get("user/exists", loginParams("a@example.com"))))
	}

	logs := newLogRecorder(t)
	s, c := newTestServer(t, Options{Seed: 11, Logf: logs.Logf})
	s.SetFaults("*", random)
	s.InjectNext("user/exists", FaultServerError, 3)
	s.InjectNext("user/exists", FaultBusinessError, 3)
	s.InjectNext("user/exists", FaultTooMany, 1)
	s.InjectNext("*", FaultNonJSON, 1)
	s.InjectNext("document/get", FaultHang, 2)
	s.InjectNext("document/get", FaultHang, 0) // cancels the two hangs

	// Requests that never reach fault injection consume nothing.
	s.SetDown(true)
	if a := c.get("user/exists", loginParams("a@example.com")); a.status != http.StatusServiceUnavailable {
		t.Fatalf("down: status %d", a.status)
	}
	s.SetDown(false)
	if a := c.get("user/create", nil); a.status != http.StatusMethodNotAllowed {
		t.Fatalf("wrong method: status %d", a.status)
	}

	var got []answer
	for range 7 {
		got = append(got, c.get("user/exists", loginParams("a@example.com")))
	}
	for i, want := range []int{500, 502, 503} {
		if got[i].status != want || got[i].jsonErr == nil {
			t.Errorf("request %d: status %d, want %d (HTML)", i, got[i].status, want)
		}
	}
	for i, shape := range []string{"string", "[]interface {}", "map[string]interface {}"} {
		a := got[3+i]
		if a.env.Primary == nil || a.env.Primary.Success || len(a.env.Primary.Errors) != 1 {
			t.Errorf("request %d: not a business error: %s", 3+i, a.raw)
			continue
		}
		if d := describe(a); d != "refused "+shape || !strings.Contains(string(a.raw), "Injected business error (mlmsofttest)") {
			t.Errorf("request %d: %s, want shape %s: %s", 3+i, d, shape, a.raw)
		}
	}
	if a := got[6]; a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") != "3" {
		t.Errorf("request 6: status %d Retry-After %q", a.status, a.header.Get("Retry-After"))
	}
	// "*" serves any endpoint whose own injections ran out, once.
	if a := c.get("document/get", docParams(1)); a.status != http.StatusOK || a.jsonErr == nil {
		t.Errorf(`"*" injection: status %d body %s`, a.status, a.raw)
	}

	// No random draw was taken: the random faults go on as without them.
	var after []string
	for range 12 {
		after = append(after, describe(c.get("user/exists", loginParams("a@example.com"))))
	}
	if strings.Join(after, ",") != strings.Join(baseline, ",") {
		t.Errorf("injections changed the random sequence:\n%v\n%v", baseline, after)
	}
	for line, want := range map[string]int{
		"mlmsofttest: user/exists: injecting server error":      3,
		"mlmsofttest: user/exists: injecting business error":    3,
		"mlmsofttest: user/exists: injecting too many requests": 1,
		"mlmsofttest: document/get: injecting non-JSON":         1,
		"mlmsofttest: document/get: injecting hang":             0,
	} {
		if n := logs.count(line); n < want || want == 0 && n != 0 {
			t.Errorf("%q logged %d times, want %d", line, n, want)
		}
	}
}

func TestInjectNextEveryKind(t *testing.T) {
	t.Parallel()
	const ep = "account/volume-change"
	cases := []struct {
		kind    FaultKind
		applied bool
		check   func(a answer) bool
	}{
		{FaultBusinessError, false, func(a answer) bool { return a.status == 200 && a.env.Primary != nil && !a.env.Primary.Success }},
		{FaultServerError, false, func(a answer) bool { return a.status == 500 && !a.bodyRead }},
		{FaultTooMany, false, func(a answer) bool { return a.status == 429 && !a.bodyRead }},
		{FaultHang, false, func(a answer) bool { return a.err != nil && !a.bodyRead }},
		{FaultReset, false, func(a answer) bool { return a.err != nil && !a.bodyRead }},
		{FaultApplyThenDrop, true, func(a answer) bool { return a.err != nil && a.bodyRead }},
		{FaultNonJSON, false, func(a answer) bool { return a.status == 200 && a.jsonErr != nil && !a.bodyRead }},
		{FaultServerErrorAfterApply, true, func(a answer) bool { return a.status == 500 && a.bodyRead }},
		{FaultServerErrorAfterRead, false, func(a answer) bool { return a.status == 502 && a.bodyRead }},
	}
	for _, tc := range cases {
		t.Run(tc.kind.String(), func(t *testing.T) {
			t.Parallel()
			s, c := newTestServer(t, Options{})
			root := s.AddAccount("root@example.com", "pw", 0)
			s.InjectNext(ep, tc.kind, 1)
			ctx := t.Context()
			if tc.kind == FaultHang {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, 100*time.Millisecond)
				defer cancel()
			}
			a := c.do(ctx, http.MethodPost, ep, volumeParams(root.AccountID, "1", "o-1", "PV"))
			if !tc.check(a) {
				t.Errorf("err=%v status=%d body read %v body=%.100s", a.err, a.status, a.bodyRead, a.raw)
			}
			if n := len(s.AllLedger()); n != map[bool]int{true: 1}[tc.applied] {
				t.Errorf("ledger has %d entries, want applied %v", n, tc.applied)
			}
			mustOK(t, c.post(ep, volumeParams(root.AccountID, "1", "o-2", "PV"))) // used up
		})
	}
}

func TestFaultKindNames(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for k := FaultBusinessError; k <= FaultServerErrorAfterRead; k++ {
		name := k.String()
		if seen[name] || strings.ContainsAny(name, " _") || name != strings.ToLower(name) {
			t.Errorf("bad or repeated name %q", name)
		}
		seen[name] = true
		if got, err := ParseFaultKind(name); err != nil || got != k {
			t.Errorf("ParseFaultKind(%q) = %v, %v", name, got, err)
		}
	}
	for in, want := range map[string]FaultKind{
		"business-error": FaultBusinessError, "server-error-after-apply": FaultServerErrorAfterApply,
		"apply-then-drop": FaultApplyThenDrop, " Apply Then_Drop ": FaultApplyThenDrop, "NON-JSON": FaultNonJSON,
		"too-many": FaultTooMany, "server-error-after-read": FaultServerErrorAfterRead,
	} {
		if got, err := ParseFaultKind(in); err != nil || got != want {
			t.Errorf("ParseFaultKind(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "none", "server", "500", "hang!"} {
		if _, err := ParseFaultKind(bad); err == nil {
			t.Errorf("ParseFaultKind(%q) accepted", bad)
		}
	}
	if FaultKind(0).String() != "none" || FaultKind(99).String() != "FaultKind(99)" {
		t.Errorf("String of zero and unknown: %q %q", FaultKind(0), FaultKind(99))
	}
	s := NewServer(Options{})
	defer s.Close()
	for _, k := range []FaultKind{0, 99} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("InjectNext with kind %d: no panic", k)
				}
			}()
			s.InjectNext("user/exists", k, 1)
		}()
	}
}
