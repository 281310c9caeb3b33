package admin

import (
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

// Defaults of Options.
const (
	// TitleDefault is shown in the header when Options.Title is empty.
	TitleDefault = "MLM Soft integration"
	// PageSizeDefault is the page size when Options.PageSize is zero.
	PageSizeDefault = 50
	// PageSizeMax is the largest page size, of Options.PageSize and of the
	// limit query parameter alike.
	PageSizeMax = mlmsoft.ListLimitMax
)

// Options configures the console. Only Operator is required.
type Options struct {
	// Operator returns who makes the request, as the host's own
	// authentication established it (a login or an e-mail address): it is
	// stored as the audit of every action (ResolvedBy), logged, and shown
	// in the header of every page. It is called for every page and action,
	// so it should be cheap. It is required: Handler panics when it is nil.
	// A request for which it returns "" (blank) may read every page but its
	// actions are refused with 403.
	Operator func(*http.Request) string

	// Title is shown in the header and the pages' titles. Empty:
	// TitleDefault.
	Title string

	// PageSize is how many links or changes a page shows unless the limit
	// query parameter says otherwise. Zero or negative: PageSizeDefault;
	// above PageSizeMax: PageSizeMax.
	PageSize int

	// Logger receives one line per action taken or refused. Nil:
	// slog.Default().
	Logger *slog.Logger

	// RequestTimeout should be the plugin's Config.RequestTimeout: the
	// console uses it to tell when a request whose answer was lost has
	// surely finished, so that an uncertain change can be checked in MLM
	// Soft's back office. Zero or negative: mlmsoft.RequestTimeoutDefault.
	RequestTimeout time.Duration

	// Clock should be the plugin's Config.Clock, when it has one: the
	// console reads the time from it to show ages and to tell whether an
	// uncertain change may be checked yet. Nil: the real clock.
	Clock mlmsoft.Clock
}

// console is the Handler.
type console struct {
	p        *mlmsoft.Plugin
	operator func(*http.Request) string
	title    string
	pageSize int
	log      *slog.Logger
	timeout  time.Duration
	now      func() time.Time
	cop      *http.CrossOriginProtection
	mux      *http.ServeMux
	pages    *pageTemplates
}

// Handler returns the console of p, configured by opts. The handler does
// no authentication: mount it behind the host's own (see the package
// documentation). It panics if p or opts.Operator is nil: both are
// mistakes in the host's wiring, best found when the app starts rather than
// when an operator first acts (as http.Handle panics on a nil handler).
func Handler(p *mlmsoft.Plugin, opts Options) http.Handler {
	if p == nil {
		panic("admin: Handler: the *mlmsoft.Plugin is nil")
	}
	if opts.Operator == nil {
		panic("admin: Handler: Options.Operator is nil; the console must know who acts, for the audit of every action")
	}
	c := &console{
		p:        p,
		operator: opts.Operator,
		title:    strings.TrimSpace(opts.Title),
		pageSize: opts.PageSize,
		log:      opts.Logger,
		timeout:  opts.RequestTimeout,
		cop:      http.NewCrossOriginProtection(),
		pages:    mustParseTemplates(),
	}
	if c.title == "" {
		c.title = TitleDefault
	}
	switch {
	case c.pageSize <= 0:
		c.pageSize = PageSizeDefault
	case c.pageSize > PageSizeMax:
		c.pageSize = PageSizeMax
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("component", "mlmsoft-admin")
	if c.timeout <= 0 {
		c.timeout = mlmsoft.RequestTimeoutDefault
	}
	c.now = time.Now
	if opts.Clock != nil {
		c.now = opts.Clock.Now
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.overview)
	mux.HandleFunc("GET /links", c.links)
	mux.HandleFunc("GET /volumes", c.volumes)
	mux.HandleFunc("GET /volumes/{id}", c.volume)
	mux.HandleFunc("GET /user", c.user)
	mux.HandleFunc("POST /volumes/{id}/retry", c.volumeAction(actRetry))
	mux.HandleFunc("POST /volumes/{id}/resolve", c.volumeAction(actResolve))
	mux.HandleFunc("POST /volumes/{id}/skip", c.volumeAction(actSkip))
	mux.HandleFunc("POST /user/retry-link", c.retryLink)
	mux.HandleFunc("GET /static/console.css", serveCSS)
	mux.HandleFunc("/", c.notFound)
	c.mux = mux
	return c
}

// ServeHTTP sets the headers every answer carries and routes r.
func (c *console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Content-Security-Policy",
		"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	if r.URL.Path == "" {
		// Mounted with the prefix stripped and asked for the prefix itself
		// ("/admin"): relative links need the trailing slash.
		c.toRoot(w, r)
		return
	}
	c.mux.ServeHTTP(w, r)
}

// toRoot redirects a request for the mount point without its trailing
// slash to the same path with it.
func (c *console) toRoot(w http.ResponseWriter, r *http.Request) {
	target := "./"
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
		p := strings.TrimSuffix(u.EscapedPath(), "/")
		target = p[strings.LastIndexByte(p, '/')+1:] + "/"
		if target == "/" || strings.HasPrefix(target, ".") {
			target = "./"
		}
	}
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	w.Header().Set("Location", target)
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		w.WriteHeader(http.StatusMovedPermanently)
		return
	}
	w.WriteHeader(http.StatusPermanentRedirect) // keeps the method and body

}

// base returns the relative path from the page r asks for to the console's
// root: "./" for pages at the root ("/", "/links"), "../" one level down
// ("/volumes/5"), and so on.
func base(r *http.Request) string {
	depth := strings.Count(r.URL.EscapedPath(), "/") - 1
	if depth <= 0 {
		return "./"
	}
	return strings.Repeat("../", depth)
}

// mountPath returns the path the console is mounted at, for its cookies:
// the request's original target without the path the console was handed
// ("/admin" for "/admin/links" handed as "/links"), or "/" when it cannot
// tell (a proxy rewrote the path).
func mountPath(r *http.Request) string {
	u, err := url.ParseRequestURI(r.RequestURI)
	if r.RequestURI == "" || err != nil {
		return "/"
	}
	full, inner := u.EscapedPath(), r.URL.EscapedPath()
	if !strings.HasSuffix(full, inner) {
		return "/"
	}
	p := strings.TrimSuffix(full, inner)
	if p == "" || !strings.HasPrefix(p, "/") || strings.ContainsAny(p, ";,") {
		return "/"
	}
	return p
}

// wantsJSON reports whether r asks for JSON: ?format=json, or an Accept
// header naming application/json.
func wantsJSON(r *http.Request) bool {
	if f := r.URL.Query().Get("format"); f != "" {
		return strings.EqualFold(f, "json")
	}
	for _, v := range r.Header.Values("Accept") {
		if strings.Contains(strings.ToLower(v), "application/json") {
			return true
		}
	}
	return false
}

// self returns the page r asks for, relative to the console's root and
// without the format parameter: the back field of the page's forms.
func self(r *http.Request) string {
	p := strings.TrimPrefix(r.URL.EscapedPath(), "/")
	q := r.URL.Query()
	q.Del("format")
	if s := q.Encode(); s != "" {
		p += "?" + s
	}
	return p
}

// cleanBack returns s if it is a safe place to return to after an action:
// a path relative to the console's root, with no scheme, host, leading
// slash, backslash or dot segment (so that no form can send the browser
// elsewhere). Otherwise it returns "" (the overview).
func cleanBack(s string) string {
	if s == "" || len(s) > 2048 || strings.HasPrefix(s, "/") || strings.HasPrefix(s, ".") ||
		strings.ContainsAny(s, "\\\r\n\t\x00") {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || u.Fragment != "" {
		return ""
	}
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return ""
		}
	}
	return s
}
