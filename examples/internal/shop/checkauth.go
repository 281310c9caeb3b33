package shop

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
)

// LinkExisting links the user signed in on r to the MLM Soft account of
// login and password, through the plugin's check-auth handler, and says how
// it went in words for the user.
//
// The shops' "link my MLM Soft account" form posts to the shop's own route,
// which calls this, rather than to the plugin's check-auth route: that
// route answers JSON, which a plain HTML form (the shops use no JavaScript)
// would show raw, while here the answer becomes a message on the account
// page. The shop's route is covered by the shop's own CSRF protection
// (cross-origin check and token). The handler is handed a copy of r with a
// form body of its own: the same context (so CheckAuthConfig.CurrentUser
// finds the session's user as on any request), the same client address (so
// its per-address rate limit counts the real client) and the same headers
// (so its own cross-origin check sees what the browser sent). The plugin's
// route stays mounted for clients that want JSON.
func (a *App) LinkExisting(r *http.Request, login, password string) (linked bool, msg string) {
	body := url.Values{"login": {login}, "password": {password}}.Encode()
	req := r.Clone(r.Context())
	req.Method = http.MethodPost
	req.Body = io.NopCloser(bytes.NewReader([]byte(body)))
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Del("Content-Encoding")
	req.Form, req.PostForm = nil, nil
	rec := &recorder{header: http.Header{}}
	a.Plugin.CheckAuthHandler().ServeHTTP(rec, req)
	linked, msg = LinkAnswer(rec.status, rec.header, rec.body.Bytes())
	a.Log.Info("link with an existing MLM Soft account", "status", rec.status, "linked", linked)
	return linked, msg
}

// recorder keeps a handler's answer in memory.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
