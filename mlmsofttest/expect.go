package mlmsofttest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// rawWriteTimeout bounds the writing of an answer on a taken-over
// connection.
const rawWriteTimeout = 10 * time.Second

// expectsContinue reports whether r's body waits for "100 Continue", which
// Go's server would send on the first read of r.Body.
func expectsContinue(r *http.Request) bool {
	return r.ProtoAtLeast(1, 1) && r.ContentLength != 0 &&
		strings.EqualFold(strings.TrimSpace(r.Header.Get("Expect")), "100-continue")
}

// serveIgnoringExpect serves a request carrying "Expect: 100-continue"
// without ever answering it (Options.IgnoreExpect): it takes the connection
// over before r.Body is touched, waits for the whole body (which the client
// sends when its own wait runs out), serves the request as usual and writes
// the answer itself, then closes the connection. It reports false, having
// done nothing, when the connection cannot be taken over.
func (s *Server) serveIgnoringExpect(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return false
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return false
	}
	defer conn.Close()
	rw := &rawResponse{conn: conn, brw: brw, header: http.Header{}}
	switch {
	case r.ContentLength < 0:
		writeJSON(rw, http.StatusLengthRequired, requestError(http.StatusLengthRequired, "Content-Length required"))
		rw.flush()
		return true
	case r.ContentLength > maxBody:
		writeJSON(rw, http.StatusRequestEntityTooLarge, requestError(http.StatusRequestEntityTooLarge, "Request body too large"))
		rw.flush()
		return true
	}

	body := make([]byte, r.ContentLength)
	stop := context.AfterFunc(s.ctx, func() { conn.Close() })
	_, err = io.ReadFull(brw, body)
	stop()
	if err != nil {
		s.logf("%s: the body never came (100 Continue not sent): %v", endpoint, readFailure(err))
		return true
	}
	r2 := r.Clone(r.Context())
	r2.Body = io.NopCloser(bytes.NewReader(body))
	s.serveAPI(rw, r2, endpoint)
	if !rw.hijacked {
		rw.flush()
	}
	return true
}

// readFailure describes a failed body read without addresses.
func readFailure(err error) string {
	switch {
	case err == io.EOF, err == io.ErrUnexpectedEOF:
		return "the client closed the connection"
	case strings.Contains(err.Error(), "use of closed network connection"):
		return "the server closed"
	}
	if ne, ok := errors.AsType[*net.OpError](err); ok {
		return ne.Err.Error()
	}
	return err.Error()
}

// rawResponse is the http.ResponseWriter of a request served on a
// taken-over connection: it keeps the answer and flush writes it as an
// HTTP/1.1 response that closes the connection. Its Hijack hands the
// connection to the hang and drop faults.
type rawResponse struct {
	conn     net.Conn
	brw      *bufio.ReadWriter
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
}

func (w *rawResponse) Header() http.Header { return w.header }

func (w *rawResponse) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *rawResponse) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

func (w *rawResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	return w.conn, w.brw, nil
}

// flush writes the answer: status line, headers with Content-Length and
// "Connection: close", body.
func (w *rawResponse) flush() {
	w.WriteHeader(http.StatusOK)
	h := w.header.Clone()
	h.Set("Content-Length", strconv.Itoa(w.body.Len()))
	h.Set("Connection", "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", http.DetectContentType(w.body.Bytes()))
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(rawWriteTimeout))
	fmt.Fprintf(w.brw, "HTTP/1.1 %03d %s\r\n", w.status, http.StatusText(w.status))
	_ = h.Write(w.brw)
	_, _ = w.brw.WriteString("\r\n")
	_, _ = w.brw.Write(w.body.Bytes())
	_ = w.brw.Flush()
}
