package admin

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mlmsoft-go/mlmsoft"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/console.css
var consoleCSS []byte

// serveCSS serves the console's style sheet.
func serveCSS(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write(consoleCSS)
}

// pageTemplates holds one template set per page.
type pageTemplates struct {
	byName map[string]*template.Template
}

// The pages, named as their template files and body[data-page].
var pageNames = []string{"overview", "links", "volumes", "volume", "user", "error"}

func mustParseTemplates() *pageTemplates {
	funcs := template.FuncMap{
		"ts":         formatTime,
		"dur":        formatDuration,
		"pathEscape": url.PathEscape,
		"linkMeaning": func(s mlmsoft.LinkState) string {
			return linkMeaning[s]
		},
		"volumeMeaning": func(s mlmsoft.VolumeState) string {
			return volumeMeaning[s]
		},
		"seconds":      func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) },
		"linkStates":   func() []mlmsoft.LinkState { return mlmsoft.LinkStates },
		"volumeStates": func() []mlmsoft.VolumeState { return mlmsoft.VolumeStates },
		"linkCount": func(m map[mlmsoft.LinkState]int, s string) int {
			return m[mlmsoft.LinkState(s)]
		},
		"volumeCount": func(m map[mlmsoft.VolumeState]int, s string) int {
			return m[mlmsoft.VolumeState(s)]
		},
		"act": func(p *page, c Change) actionForm { return actionForm{P: p, C: c} },
		"table": func(p *page, cs []Change, showUser bool) changeTable {
			return changeTable{P: p, Changes: cs, ShowUser: showUser}
		},
		"actLink": func(p *page, l Link) linkForm {
			return linkForm{P: p, L: l}
		},
	}
	t := &pageTemplates{byName: map[string]*template.Template{}}
	for _, name := range pageNames {
		t.byName[name] = template.Must(template.New(name).Funcs(funcs).ParseFS(templateFS,
			"templates/layout.html", "templates/partials.html", "templates/"+name+".html"))
	}
	return t
}

// actionForm and linkForm are what the action form templates get.
type actionForm struct {
	P *page
	C Change
}

type changeTable struct {
	P        *page
	Changes  []Change
	ShowUser bool
}

type linkForm struct {
	P *page
	L Link
}

// page is what every page template gets.
type page struct {
	Title    string    // the console's title
	Operator string    // who acts, as Options.Operator says; "" when unknown
	Heading  string    // the page's own
	Name     string    // body[data-page]
	Base     string    // relative path to the console's root
	CSRF     string    // the token for the forms
	Back     string    // this page relative to the root, for the forms' back field
	Flash    *flash    // shown once
	Now      time.Time // the console's clock
	Timeout  time.Duration
	Data     any
}

// Ago says how long ago t was, relative to the page's time ("" for zero).
func (p *page) Ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := p.Now.Sub(t)
	if d < 0 {
		return "in " + formatDuration(-d)
	}
	return formatDuration(d) + " ago"
}

// Before reports whether the page's time is before t.
func (p *page) Before(t time.Time) bool { return p.Now.Before(t) }

// newPage prepares the common part of a page and, for a person's page,
// takes its flash message.
func (c *console) newPage(w http.ResponseWriter, r *http.Request, name, heading string) *page {
	p := &page{
		Title: c.title, Heading: heading, Name: name, Base: base(r), CSRF: csrfToken(w, r),
		Back: self(r), Now: c.now().UTC(), Timeout: c.timeout,
	}
	if !wantsJSON(r) {
		p.Operator = strings.TrimSpace(c.operator(r))
	}
	if !wantsJSON(r) {
		p.Flash = takeFlash(w, r)
	}
	return p
}

// render answers a GET: v as JSON, or p (whose Data is v) as HTML.
func (c *console) render(w http.ResponseWriter, r *http.Request, p *page, v any) {
	if wantsJSON(r) {
		writeJSON(w, http.StatusOK, v)
		return
	}
	p.Data = v
	c.writeHTML(w, r, http.StatusOK, p)
}

func (c *console) writeHTML(w http.ResponseWriter, r *http.Request, status int, p *page) {
	var buf bytes.Buffer
	if err := c.pages.byName[p.Name].ExecuteTemplate(&buf, "layout", p); err != nil {
		c.log.Error("rendering a console page failed", "page", p.Name, "err", err)
		http.Error(w, "the console could not render this page; see the logs", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, `{"error":"internal","message":"encoding the answer failed","status":500}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// problem is a failed request: its status, code and message.
type problem struct {
	status  int
	code    string
	message string
	detail  string
}

// problemOf maps an error of the plugin to a status and a code; message is
// the text for people (err's own when empty).
func problemOf(err error, message string) problem {
	p := problem{status: http.StatusInternalServerError, code: "internal", message: message, detail: err.Error()}
	switch {
	case errors.Is(err, mlmsoft.ErrNotFound):
		p.status, p.code = http.StatusNotFound, "not_found"
	case errors.Is(err, mlmsoft.ErrWrongState):
		p.status, p.code = http.StatusConflict, "wrong_state"
	case errors.Is(err, mlmsoft.ErrConflict):
		p.status, p.code = http.StatusConflict, "conflict"
	case errors.Is(err, mlmsoft.ErrInvalidInput):
		p.status, p.code = http.StatusBadRequest, "invalid_input"
	case errors.Is(err, mlmsoft.ErrMisconfigured):
		p.status, p.code = http.StatusServiceUnavailable, "misconfigured"
	case errors.Is(err, mlmsoft.ErrUpstreamUnavailable):
		p.status, p.code = http.StatusServiceUnavailable, "upstream_unavailable"
	}
	if p.message == "" {
		p.message = err.Error()
	}
	return p
}

// errorPage is the data of the error page.
type errorPage struct {
	Status  int
	Code    string
	Message string
	Detail  string
	Back    string // where to go back to, relative to the root
}

// fail answers a failed request as JSON or as the error page.
func (c *console) fail(w http.ResponseWriter, r *http.Request, pr problem, back string) {
	if wantsJSON(r) {
		writeJSON(w, pr.status, ErrorResponse{Error: pr.code, Message: pr.message, Detail: pr.detail, Status: pr.status})
		return
	}
	p := &page{
		Title: c.title, Heading: strconv.Itoa(pr.status) + " " + http.StatusText(pr.status), Name: "error",
		Base: base(r), CSRF: csrfToken(w, r), Now: c.now().UTC(), Timeout: c.timeout,
		Data: errorPage{Status: pr.status, Code: pr.code, Message: pr.message, Detail: pr.detail, Back: back},
	}
	if pr.detail == pr.message {
		p.Data = errorPage{Status: pr.status, Code: pr.code, Message: pr.message, Back: back}
	}
	c.writeHTML(w, r, pr.status, p)
}

// notFound answers paths the console does not have, and methods a path
// does not take (405, as the mux would without the console's catch-all).
func (c *console) notFound(w http.ResponseWriter, r *http.Request) {
	for _, m := range []string{http.MethodGet, http.MethodPost} {
		if m == r.Method || (m == http.MethodGet && r.Method == http.MethodHead) {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := c.mux.Handler(probe); pattern != "/" && pattern != "" {
			w.Header().Set("Allow", m)
			if m == http.MethodGet {
				w.Header().Set("Allow", "GET, HEAD")
			}
			c.fail(w, r, problem{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
				message: fmt.Sprintf("This address takes %s requests only.", m)}, "")
			return
		}
	}
	c.fail(w, r, problem{status: http.StatusNotFound, code: "not_found",
		message: "The console has no page at this address."}, "")
}

// formatTime shows t in UTC to the second; "—" for the zero time.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// formatDuration shows d roughly, in its two largest units.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd %dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}
