// Package whsig signs and verifies webhook bodies: HMAC-SHA256 over
// "<unix timestamp>.<raw body>", sent as "sha256=<hex>". MLM Soft does not
// document a webhook signature; this scheme is our assumption (see
// docs/mlmsoft-api.md, "Webhook"), shared by the plugin's receiver and the
// fake server so the whole loop is tested.
package whsig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Default header names; the plugin lets hosts configure others.
const (
	TimestampHeader = "X-Mlmsoft-Timestamp"
	SignatureHeader = "X-Mlmsoft-Signature"
)

// Errors returned by Verify.
var (
	ErrMissing   = errors.New("webhook signature or timestamp missing")
	ErrMalformed = errors.New("webhook signature or timestamp malformed")
	ErrStale     = errors.New("webhook timestamp outside the accepted window")
	ErrMismatch  = errors.New("webhook signature does not match")
)

// Sign returns the signature header value for body sent at ts.
func Sign(secret []byte, ts int64, body []byte) string {
	return "sha256=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(strconv.FormatInt(ts, 10)))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks a signature header (one or more comma-separated
// "sha256=<hex>" values) and a timestamp header against body, accepting any
// of secrets, and a timestamp no further than window from now in either
// direction. Comparisons are constant-time.
func Verify(secrets [][]byte, timestamp, signature string, body []byte, now time.Time, window time.Duration) error {
	timestamp, signature = strings.TrimSpace(timestamp), strings.TrimSpace(signature)
	if timestamp == "" || signature == "" {
		return ErrMissing
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrMalformed
	}
	var sigs [][]byte
	for _, part := range strings.Split(signature, ",") {
		hexsig, ok := strings.CutPrefix(strings.TrimSpace(part), "sha256=")
		if !ok {
			continue
		}
		raw, err := hex.DecodeString(hexsig)
		if err != nil || len(raw) != sha256.Size {
			continue
		}
		sigs = append(sigs, raw)
	}
	if len(sigs) == 0 {
		return ErrMalformed
	}
	at := time.Unix(ts, 0)
	if d := now.Sub(at); d > window || d < -window {
		return ErrStale
	}
	matched := false
	for _, s := range secrets { // no early exit: every secret is tried
		want := mac(s, ts, body)
		for _, got := range sigs {
			if hmac.Equal(want, got) {
				matched = true
			}
		}
	}
	if !matched {
		return ErrMismatch
	}
	return nil
}
