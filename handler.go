package mlmsoft

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// guard is what the webhook and check-auth handlers check before they do
// anything: that the feature is enabled, the method, how long the sender
// may take to send the body, and how large it may be.
type guard struct {
	feature     string // for the 404 message
	enabled     bool
	readTimeout time.Duration
	maxBody     int64
}

// admit answers 404 or 405 and returns false when r may not proceed; else it
// sets the connection's read deadline (real time: the network's) and
// returns true.
func (g guard) admit(rw http.ResponseWriter, r *http.Request) bool {
	if !g.enabled {
		writeError(rw, http.StatusNotFound, "not_found", g.feature+" is not enabled")
		return false
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		writeError(rw, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return false
	}
	// A sender trickling its body must not hold a handler: the deadline
	// cuts the read. Recorders and some wrappers cannot set one (ignored).
	_ = http.NewResponseController(rw).SetReadDeadline(time.Now().Add(g.readTimeout))
	return true
}

// body reads the whole body up to maxBody bytes. When it cannot it answers
// (413 too large, 408 too slow, 400 unreadable) and returns false.
func (g guard) body(rw http.ResponseWriter, r *http.Request) ([]byte, int, bool) {
	if r.ContentLength > g.maxBody {
		writeBodyError(rw, http.StatusRequestEntityTooLarge, g.maxBody)
		return nil, http.StatusRequestEntityTooLarge, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, g.maxBody))
	var tooLarge *http.MaxBytesError
	status := 0
	switch {
	case err == nil:
		return body, 0, true
	case errors.As(err, &tooLarge):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		status = http.StatusRequestTimeout
	default:
		status = http.StatusBadRequest
	}
	writeBodyError(rw, status, g.maxBody)
	return nil, status, false
}

func writeBodyError(rw http.ResponseWriter, status int, max int64) {
	switch status {
	case http.StatusRequestEntityTooLarge:
		writeError(rw, status, "too_large", fmt.Sprintf("the body is larger than %d bytes", max))
	case http.StatusRequestTimeout:
		rw.Header().Set("Connection", "close")
		writeError(rw, status, "timeout", "the body was not sent in time")
	default:
		writeError(rw, status, "malformed", "the body could not be read")
	}
}

// retrySeconds turns a delay into a Retry-After value: whole seconds,
// rounded up, at least 1.
func retrySeconds(d time.Duration) int {
	return max(int((d+time.Second-1)/time.Second), 1)
}

// codeFor is the JSON error code of a status the handlers answer.
func codeFor(status int) string {
	switch status {
	case http.StatusBadRequest:
		return "malformed"
	case http.StatusUnsupportedMediaType:
		return "unsupported_media_type"
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	}
	return "error"
}

// writeError answers {"error": message, "code": code}.
func writeError(rw http.ResponseWriter, status int, code, message string) {
	writeJSON(rw, status, map[string]string{"error": message, "code": code})
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	h := rw.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	rw.WriteHeader(status)
	_ = json.NewEncoder(rw).Encode(v)
}
