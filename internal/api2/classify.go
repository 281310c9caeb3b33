package api2

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// envState is what an answer's body holds.
type envState int

const (
	envAbsent envState = iota // no well-formed envelope: no answer, HTML, garbage, a cut or a foreign JSON
	envOK                     // a success envelope: errorCode 0 and primary.success
	envFailed                 // any other well-formed envelope
)

// outcome is everything the classification looks at: what was sent and
// what came back.
type outcome struct {
	method string // the request's method: a GET never changes anything in MLM Soft
	// bodyRead: the server may have read the request body. False only when
	// the body certainly never left: "Expect: 100-continue" was sent and the
	// transport had not started sending the body when the answer (or the
	// failure) came. Always true without the Expect gate (it is disabled,
	// or the RoundTripper is not an *http.Transport).
	bodyRead  bool
	err       error // a transport failure: no answer, or its body could not be read
	status    int   // the HTTP status; 0 when no answer came
	env       envState
	misconfig bool // the failed envelope's reason matches Config.MisconfigMessages
}

// success is classify's verdict for a usable answer.
const success Kind = 0

// classify is the one rule that decides what a request's outcome means; it
// returns success (0) or the Kind of the failure. The package comment holds
// the same rule as a table.
func classify(o outcome) Kind {
	env := o.env
	if o.err != nil {
		env = envAbsent // a cut answer decides nothing
	}
	st := o.status
	is4xx := st >= 400 && st <= 499

	// The credentials or the path: whatever the method, whatever was sent,
	// MLM Soft did not apply the request.
	switch {
	case st >= 300 && st <= 399, // redirects are not followed: the base URL is wrong
		st == http.StatusUnauthorized, st == http.StatusForbidden, st == http.StatusNotFound:
		return Misconfigured
	case env == envFailed && o.misconfig && st != http.StatusTooManyRequests:
		return Misconfigured
	}

	// MLM Soft's own answer.
	if is2xx(st) {
		switch env {
		case envOK:
			return success
		case envFailed:
			return Business
		}
	}

	if o.method == http.MethodGet {
		// A GET only reads: losing its answer is as harmless as not
		// sending it.
		if env == envFailed && is4xx && st != http.StatusTooManyRequests {
			return Business
		}
		return Retryable
	}
	if !o.bodyRead {
		return Retryable // the body never left: nothing to apply
	}
	// The server may have the body: only a well-formed envelope decides.
	if env == envFailed && is4xx {
		if st == http.StatusTooManyRequests {
			return Retryable // MLM Soft itself says it did not take it
		}
		return Business
	}
	// No answer, a cut or foreign answer, a gateway's page, any 5xx (a
	// server error may follow a partial apply).
	return Ambiguous
}

// answered is the outcome of a request that got an answer: its status, and
// its body raw as far as it could be read (readErr says why not further).
// The envelope is returned when the body is a well-formed one.
func answered(method string, bodyRead bool, status int, raw []byte, readErr error, misconfig []string) (outcome, *Envelope) {
	o := outcome{method: method, bodyRead: bodyRead, status: status}
	if readErr != nil {
		o.err = fmt.Errorf("answer cut: %w", readErr)
		return o, nil
	}
	env := parseEnvelope(raw)
	switch {
	case env == nil:
	case env.OK():
		o.env = envOK
	default:
		o.env = envFailed
		o.misconfig = misconfigured(env.Reason(), misconfig)
	}
	return o, env
}

// parseEnvelope parses an answer's body as an envelope, whatever the
// status. A well-formed envelope is a JSON object with a numeric errorCode;
// primary may be null (request-level errors). It returns nil for anything
// else.
func parseEnvelope(raw []byte) *Envelope {
	var head struct {
		ErrorCode    json.RawMessage `json:"errorCode"`
		ErrorMessage json.RawMessage `json:"errorMessage"`
		Primary      json.RawMessage `json:"primary"`
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &head) != nil {
		return nil
	}
	var code int
	if c := head.ErrorCode; len(c) == 0 || (c[0] != '-' && (c[0] < '0' || c[0] > '9')) || json.Unmarshal(c, &code) != nil {
		return nil // absent, not a number, or not an integer
	}
	if p := head.Primary; code == 0 && (len(p) == 0 || p[0] != '{') {
		return nil // neither an error nor a primary answer: not MLM Soft's
	}
	var env Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		if code == 0 {
			return nil // claims success but its primary is unreadable
		}
		// A refusal whatever the rest holds: keep its code and message.
		env = Envelope{ErrorCode: code}
		_ = json.Unmarshal(head.ErrorMessage, &env.ErrorMessage)
	}
	return &env
}

// MisconfigMessagesDefault is the default Config.MisconfigMessages: parts
// of MLM Soft's refusals that blame the credentials rather than the
// request. MLM Soft does not document these texts; they are guesses from
// what API gateways commonly say. Do not modify it: copy it to extend it.
var MisconfigMessagesDefault = []string{
	"security key", "security-key", "app-id", "app id",
	"api key", "api token", "invalid token", "token is invalid",
}

// misconfigured reports whether reason contains one of the lower-cased
// needles.
func misconfigured(reason string, needles []string) bool {
	reason = strings.ToLower(reason)
	for _, n := range needles {
		if n != "" && strings.Contains(reason, n) {
			return true
		}
	}
	return false
}

// describe is a short description of an answer that carries no envelope:
// where a redirect points (without its query, which may hold a GET's
// parameters), or the status.
func describe(resp *http.Response) string {
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 && resp.Header.Get("Location") != "" {
		loc, err := resp.Location()
		if err != nil {
			return "redirected (unreadable Location)"
		}
		loc.User, loc.RawQuery, loc.ForceQuery, loc.Fragment, loc.RawFragment = nil, "", false, "", ""
		return "redirected to " + loc.String()
	}
	if t := http.StatusText(resp.StatusCode); t != "" {
		return fmt.Sprintf("HTTP %d %s", resp.StatusCode, t)
	}
	return fmt.Sprintf("HTTP %d", resp.StatusCode)
}
