package api2

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Kind classifies a failure: what it says about whether MLM Soft applied
// the request, and so whether the request may be sent again. The package
// comment has the table that decides it.
type Kind int

// The kinds of failure. The zero Kind is no failure (see KindOf).
const (
	// Retryable: MLM Soft certainly did not apply the request (it was a
	// GET, or the body of a POST never left, or MLM Soft said it did not
	// take it). Sending it again later is safe.
	Retryable Kind = iota + 1
	// Ambiguous: the request may have been applied but no usable answer
	// came back. Never resend it blindly: find out first.
	Ambiguous
	// Business: MLM Soft answered and refused the request (a failed
	// envelope). Permanent: sending it again gets the same refusal.
	Business
	// Misconfigured: the integration itself is misconfigured (the token, the
	// App-Id or the base URL), not this one request: MLM Soft refused the
	// credentials or the path, or the base URL redirects. The request was
	// not applied; every other request fails the same way until a person
	// fixes the configuration.
	Misconfigured
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case Retryable:
		return "retryable"
	case Ambiguous:
		return "ambiguous"
	case Business:
		return "business"
	case Misconfigured:
		return "config"
	}
	return "unknown"
}

// Error is every failure the client returns. Its text never includes the
// token, the Security-Key, a password or a request URL's query.
type Error struct {
	Kind       Kind
	Endpoint   string
	Status     int           // HTTP status, 0 if no answer came
	RetryAfter time.Duration // from a non-2xx answer's Retry-After, 0 if none
	Code       int           // the envelope's errorCode, if an envelope came
	// Message is MLM Soft's own text for a Business or Misconfigured error (and
	// for any failure whose answer was a failed envelope): errorMessage,
	// primary.message and primary.errors joined (Envelope.Reason). For a
	// Misconfigured error without an envelope it is a short description such as
	// "HTTP 404 Not Found" or "redirected to https://host/path".
	Message string
	Err     error // the transport cause, if any
}

// Error describes the failure without secrets. It starts with the endpoint
// and says the kind in words.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Endpoint)
	b.WriteString(": ")
	switch e.Kind {
	case Misconfigured, Business:
		if e.Kind == Misconfigured {
			b.WriteString("MLM Soft refused the credentials or the path")
		} else {
			b.WriteString("refused by MLM Soft")
		}
		var details []string
		// A description of the status already says it.
		if e.Status != 0 && !(e.Kind == Business && is2xx(e.Status)) && !strings.HasPrefix(e.Message, "HTTP ") {
			details = append(details, fmt.Sprintf("HTTP %d", e.Status))
		}
		if e.Code != 0 && e.Code != e.Status {
			details = append(details, fmt.Sprintf("errorCode %d", e.Code))
		}
		if len(details) > 0 {
			b.WriteString(" (" + strings.Join(details, ", ") + ")")
		}
		if e.Message != "" {
			b.WriteString(": " + e.Message)
		}
		if e.Err != nil {
			b.WriteString(": " + e.Err.Error())
		}
		return b.String()
	case Ambiguous:
		b.WriteString("no usable answer after the request was sent (it may have been applied)")
	default:
		b.WriteString("not processed")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
		if t := http.StatusText(e.Status); t != "" {
			b.WriteString(" " + t)
		}
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.Code != 0 && e.Code != e.Status {
		fmt.Fprintf(&b, ": errorCode %d", e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the transport cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of err, or 0 when err is nil or not from this
// client.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func is2xx(status int) bool { return status >= 200 && status <= 299 }

// redacted is an error whose text had secrets taken out.
type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

// scrub replaces every secret in s. Secrets shorter than minSecret are
// left alone: replacing them would garble ordinary words.
func scrub(s string, secrets []string) string {
	for _, x := range secrets {
		if len(x) >= minSecret {
			s = strings.ReplaceAll(s, x, "[redacted]")
		}
	}
	return s
}

const minSecret = 4

// scrubErr returns err, or a wrapper of it whose text has the secrets
// taken out.
func scrubErr(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	if msg := err.Error(); scrub(msg, secrets) != msg {
		return &redacted{scrub(msg, secrets), err}
	}
	return err
}
