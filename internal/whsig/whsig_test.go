package whsig

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"email":"a@example.com","userId":7}`)
	old, cur := []byte("old-secret"), []byte("new-secret")
	ts := strconv.FormatInt(now.Unix(), 10)
	good := Sign(cur, now.Unix(), body)
	cases := []struct {
		name      string
		secrets   [][]byte
		ts, sig   string
		body      []byte
		now       time.Time
		wantError error
	}{
		{"ok", [][]byte{cur}, ts, good, body, now, nil},
		{"rotation: old and new accepted", [][]byte{old, cur}, ts, good, body, now, nil},
		{"several signatures", [][]byte{cur}, ts, Sign(old, now.Unix(), body) + ", " + good, body, now, nil},
		{"wrong secret", [][]byte{old}, ts, good, body, now, ErrMismatch},
		{"body changed", [][]byte{cur}, ts, good, append([]byte{' '}, body...), now, ErrMismatch},
		{"timestamp changed", [][]byte{cur}, strconv.FormatInt(now.Unix()-1, 10), good, body, now, ErrMismatch},
		{"missing signature", [][]byte{cur}, ts, "", body, now, ErrMissing},
		{"missing timestamp", [][]byte{cur}, "", good, body, now, ErrMissing},
		{"bad timestamp", [][]byte{cur}, "yesterday", good, body, now, ErrMalformed},
		{"no sha256 prefix", [][]byte{cur}, ts, good[len("sha256="):], body, now, ErrMalformed},
		{"stale", [][]byte{cur}, ts, good, body, now.Add(5*time.Minute + time.Second), ErrStale},
		{"future", [][]byte{cur}, ts, good, body, now.Add(-5*time.Minute - time.Second), ErrStale},
		{"edge of window", [][]byte{cur}, ts, good, body, now.Add(5 * time.Minute), nil},
	}
	for _, c := range cases {
		err := Verify(c.secrets, c.ts, c.sig, c.body, c.now, 5*time.Minute)
		if !errors.Is(err, c.wantError) || (c.wantError == nil && err != nil) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.wantError)
		}
	}
}
