package mlmsofttest

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/mlmsoft-go/mlmsoft/internal/phpquery"
)

// maxBody is the largest request body accepted.
const maxBody = 1 << 20

// Messages of the request-level refusals (see the package doc).
const (
	msgBadKey   = "Security key is invalid"
	msgBadAppID = "App-Id is invalid"
	msgInjected = "Injected business error (mlmsofttest)"
)

type route struct {
	method string
	handle func(s *Server, p phpquery.Map) result
}

var routes = map[string]route{
	"user/create":           {http.MethodPost, (*Server).userCreate},
	"document/get":          {http.MethodGet, (*Server).documentGet},
	"user/exists":           {http.MethodGet, (*Server).userExists},
	"user/check-auth":       {http.MethodGet, (*Server).checkAuth},
	"account/volume-change": {http.MethodPost, (*Server).volumeChange},
}

// result is an endpoint's answer: a payload, or a business refusal.
type result struct {
	payload any
	errMsg  string // non-empty: primary.success false
}

func succeed(payload any) result { return result{payload: payload} }
func refuse(msg string) result   { return result{errMsg: msg} }
func (r result) failed() bool    { return r.errMsg != "" }
func (r result) envelope() phpquery.Map {
	if r.failed() {
		return envelope(false, []any{}, r.errMsg, []any{phpquery.Map{{Key: "message", Value: r.errMsg}}})
	}
	return envelope(true, r.payload, "", []any{})
}

// envelope builds the API2 answer envelope.
func envelope(success bool, payload any, message string, errs []any) phpquery.Map {
	return phpquery.Map{
		{Key: "errorCode", Value: 0},
		{Key: "errorMessage", Value: ""},
		{Key: "errorExtended", Value: nil},
		{Key: "primary", Value: phpquery.Map{
			{Key: "success", Value: success},
			{Key: "payload", Value: payload},
			{Key: "message", Value: message},
			{Key: "errors", Value: errs},
		}},
		{Key: "secondary", Value: []any{}},
		{Key: "locale", Value: "en_US"},
	}
}

// requestError is the envelope of a refusal at the request level (bad
// signature, unknown endpoint...): errorCode is the HTTP status.
func requestError(code int, msg string) phpquery.Map {
	return phpquery.Map{
		{Key: "errorCode", Value: code},
		{Key: "errorMessage", Value: msg},
		{Key: "errorExtended", Value: nil},
		{Key: "primary", Value: nil},
		{Key: "secondary", Value: []any{}},
		{Key: "locale", Value: "en_US"},
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only our own values are encoded: a bug
		panic("mlmsofttest: encode answer: " + err.Error())
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// ServeHTTP serves the API2 endpoints under BasePath and the views (and,
// with Options.Control, the control endpoint) under ViewsPath.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if sub, ok := viewPath(r.URL.Path); ok {
		if !s.enter() {
			writeText(w, http.StatusServiceUnavailable, "text/plain; charset=utf-8", "server closed\n")
			return
		}
		defer s.bg.Done()
		s.serveView(w, r, sub)
		return
	}
	endpoint := r.URL.Path
	if i := strings.Index(endpoint, BasePath); i >= 0 {
		endpoint = endpoint[i+len(BasePath):]
	}
	s.mu.Lock()
	s.calls[endpoint]++
	n := s.received
	s.received++
	if s.active == nil {
		s.active = map[uint64]struct{}{}
	}
	s.active[n] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.active, n)
		s.mu.Unlock()
	}()
	if !s.enter() {
		writeText(w, http.StatusServiceUnavailable, "text/plain; charset=utf-8", "server closed\n")
		return
	}
	defer s.bg.Done()

	if s.opts.IgnoreExpect && expectsContinue(r) && s.serveIgnoringExpect(w, r, endpoint) {
		return
	}
	s.serveAPI(w, r, endpoint)
}

// serveAPI answers one API2 request, faults included.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, endpoint string) {
	if s.down.Load() {
		writeText(w, http.StatusServiceUnavailable, "text/html; charset=utf-8", htmlPage(http.StatusServiceUnavailable))
		return
	}
	rt, found := routes[endpoint]
	if !found {
		writeJSON(w, http.StatusNotFound, requestError(http.StatusNotFound, "Not found"))
		return
	}
	if r.Method != rt.method {
		w.Header().Set("Allow", rt.method)
		writeJSON(w, http.StatusMethodNotAllowed, requestError(http.StatusMethodNotAllowed, "Method not allowed"))
		return
	}

	p := s.plan(endpoint)
	if p.kind != 0 {
		s.logf("%s: injecting %s", endpoint, p.kind.logName())
	}
	if !s.sleep(r, p.latency) {
		if s.ctx.Err() != nil {
			writeText(w, http.StatusServiceUnavailable, "text/plain; charset=utf-8", "server closed\n")
		}
		return
	}
	if s.actBeforeBody(w, r, p) {
		return
	}

	// From here on the request is checked and, unless refused, applied.
	if r.Method == http.MethodPost {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt != "application/json" {
			writeJSON(w, http.StatusUnsupportedMediaType, requestError(http.StatusUnsupportedMediaType, "Content-Type must be application/json"))
			return
		}
	}
	token, appID := s.credentials()
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("App-Id")), []byte(appID)) != 1 {
		writeJSON(w, http.StatusForbidden, requestError(http.StatusForbidden, msgBadAppID))
		return
	}
	params, code, msg := readParams(w, r)
	if code != 0 {
		s.logf("%s: refused: %s", endpoint, msg)
		writeJSON(w, code, requestError(code, msg))
		return
	}
	want := phpquery.SecurityKey(params, token)
	if subtle.ConstantTimeCompare([]byte(r.Header.Get("Security-Key")), []byte(want)) != 1 {
		writeJSON(w, http.StatusForbidden, requestError(http.StatusForbidden, msgBadKey))
		return
	}
	switch p.kind {
	case FaultBusinessError:
		writeJSON(w, http.StatusOK, injectedBusinessError(p.variant))
		return
	case FaultServerErrorAfterRead:
		writeServerError(w, p.variant, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout)
		return
	}

	s.ProcessDue()
	res := rt.handle(s, params)
	s.saveState() // before anyone can learn of the change
	switch p.kind {
	case FaultApplyThenDrop:
		drop(w, false)
		return
	case FaultServerErrorAfterApply:
		writeServerError(w, p.variant, http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout)
		return
	}
	writeJSON(w, http.StatusOK, res.envelope())
}

// readParams returns the request's parameters as PHP sees them: the query
// string for GET, the JSON object body for POST. On failure it returns an
// HTTP status and a message.
func readParams(w http.ResponseWriter, r *http.Request) (phpquery.Map, int, string) {
	if r.Method != http.MethodPost {
		m, err := phpquery.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, http.StatusBadRequest, "Invalid query string"
		}
		return m, 0, ""
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			return nil, http.StatusRequestEntityTooLarge, "Request body too large"
		}
		return nil, http.StatusBadRequest, "Cannot read request body"
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return phpquery.Map{}, 0, ""
	}
	m, err := phpquery.DecodeJSONObject(body)
	if err != nil {
		return nil, http.StatusBadRequest, "Invalid JSON body"
	}
	return m, 0, ""
}

// injectedBusinessError is a failed envelope in one of the three shapes of
// primary.errors seen from MLM Soft.
func injectedBusinessError(variant int) phpquery.Map {
	const msg = msgInjected
	var item any
	switch variant {
	case 0:
		item = msg
	case 1:
		item = []any{msg}
	default:
		item = phpquery.Map{{Key: "message", Value: msg}}
	}
	return envelope(false, []any{}, "", []any{item})
}
