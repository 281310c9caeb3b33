package api2

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
)

func TestErrorText(t *testing.T) {
	t.Parallel()
	cases := []struct {
		e    Error
		want string
	}{
		{Error{Kind: Misconfigured, Endpoint: "user/create", Status: 403, Code: 403, Message: "Security key is invalid"},
			"user/create: MLM Soft refused the credentials or the path (HTTP 403): Security key is invalid"},
		{Error{Kind: Misconfigured, Endpoint: "user/create", Status: 301, Message: "redirected to https://host/path"},
			"user/create: MLM Soft refused the credentials or the path (HTTP 301): redirected to https://host/path"},
		{Error{Kind: Misconfigured, Endpoint: "user/create", Status: 404, Message: "HTTP 404 Not Found"},
			"user/create: MLM Soft refused the credentials or the path: HTTP 404 Not Found"},
		{Error{Kind: Misconfigured, Endpoint: "user/create", Status: 200, Code: 12, Message: "API token is invalid"},
			"user/create: MLM Soft refused the credentials or the path (HTTP 200, errorCode 12): API token is invalid"},
		{Error{Kind: Business, Endpoint: "user/create", Status: 200, Code: 17, Message: "Login exists"},
			"user/create: refused by MLM Soft (errorCode 17): Login exists"},
		{Error{Kind: Business, Endpoint: "user/create", Status: 200, Message: "Sponsor not found"},
			"user/create: refused by MLM Soft: Sponsor not found"},
		{Error{Kind: Business, Endpoint: "account/volume-change", Status: 400, Code: 400, Message: "Invalid JSON body"},
			"account/volume-change: refused by MLM Soft (HTTP 400): Invalid JSON body"},
		{Error{Kind: Ambiguous, Endpoint: "account/volume-change", Status: 502},
			"account/volume-change: no usable answer after the request was sent (it may have been applied): HTTP 502 Bad Gateway"},
		{Error{Kind: Ambiguous, Endpoint: "account/volume-change", Status: 500, Code: 500, Message: "Internal server error"},
			"account/volume-change: no usable answer after the request was sent (it may have been applied): HTTP 500 Internal Server Error: Internal server error"},
		{Error{Kind: Ambiguous, Endpoint: "account/volume-change", Err: context.DeadlineExceeded},
			"account/volume-change: no usable answer after the request was sent (it may have been applied): context deadline exceeded"},
		{Error{Kind: Retryable, Endpoint: "document/get", Status: 503, RetryAfter: 7 * time.Second},
			"document/get: not processed: HTTP 503 Service Unavailable (retry after 7s)"},
		{Error{Kind: Retryable, Endpoint: "account/volume-change", Status: 429, Code: 429, Message: "Too many requests"},
			"account/volume-change: not processed: HTTP 429 Too Many Requests: Too many requests"},
		{Error{Kind: Retryable, Endpoint: "user/exists", Status: 599},
			"user/exists: not processed: HTTP 599"},
	}
	for _, c := range cases {
		if got := c.e.Error(); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}

func TestKindOf(t *testing.T) {
	t.Parallel()
	wrapped := errors.Join(errors.New("step"), &Error{Kind: Misconfigured})
	if KindOf(wrapped) != Misconfigured || KindOf(nil) != 0 || KindOf(errors.New("x")) != 0 {
		t.Fatal("KindOf")
	}
	for k, s := range map[Kind]string{Retryable: "retryable", Ambiguous: "ambiguous", Business: "business", Misconfigured: "config", 0: "unknown"} {
		if k.String() != s {
			t.Errorf("%d.String() = %q", k, k.String())
		}
	}
}

func TestScrub(t *testing.T) {
	t.Parallel()
	s := scrub("key abcd1234 and pw and tok", []string{"abcd1234", "pw", ""})
	if s != "key [redacted] and pw and tok" {
		t.Fatalf("scrub = %q", s)
	}
	base := errors.New("echo abcd1234")
	err := scrubErr(base, []string{"abcd1234"})
	if err.Error() != "echo [redacted]" || !errors.Is(err, base) {
		t.Fatalf("scrubErr = %v", err)
	}
	if scrubErr(base, []string{"zzzz"}) != base || scrubErr(nil, nil) != nil {
		t.Fatal("scrubErr changed an error without secrets")
	}
}

func TestSecretsForms(t *testing.T) {
	t.Parallel()
	got := secrets("tok", "key", "", phpquery.Map{{Key: "login", Value: "jane"}, {Key: "password", Value: `a b&c~"é/`},
		{Key: "profile", Value: phpquery.Map{{Key: "newPassword", Value: "n3w-Secret"}}}})
	for _, want := range []string{`a b&c~"é/`, `a+b%26c%7E%22%C3%A9%2F`, `a b&c~\"é/`, "n3w-Secret"} {
		if !slices.Contains(got, want) {
			t.Errorf("secrets %q lack %q", got, want)
		}
	}
	if slices.Contains(got, "jane") {
		t.Errorf("secrets %q hold the login", got)
	}
}
