package mlmsofttest

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// viewPath reports whether p is under ViewsPath (wherever the handler is
// mounted) and returns the rest of it.
func viewPath(p string) (string, bool) {
	if strings.Contains(p, BasePath) {
		return "", false
	}
	if i := strings.Index(p, ViewsPath); i >= 0 {
		return p[i+len(ViewsPath):], true
	}
	if strings.HasSuffix(p, strings.TrimSuffix(ViewsPath, "/")) {
		return "", true // redirected to the page
	}
	return "", false
}

// docView is a document as the views show it.
type docView struct {
	ID        int64           `json:"id"`
	Entity    string          `json:"entity"`
	Action    string          `json:"action"`
	Due       time.Time       `json:"due"`
	Processed bool            `json:"processed"`
	Summary   string          `json:"summary"`
	Result    json.RawMessage `json:"result"` // the whole envelope; null until processed
}

type callCount struct {
	Endpoint string
	Count    int
}

// viewState is what the views show, copied under the lock.
type viewState struct {
	Accounts  []Account
	Documents []docView
	Ledger    []LedgerEntry
	Calls     []callCount
}

func (s *Server) viewState() viewState {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := viewState{Accounts: []Account{}, Documents: []docView{}, Ledger: append([]LedgerEntry{}, s.ledger...)}
	for _, u := range s.byAccount {
		v.Accounts = append(v.Accounts, u.Account)
	}
	slices.SortFunc(v.Accounts, func(a, b Account) int { return cmp.Compare(a.AccountID, b.AccountID) })
	for _, d := range s.docs {
		dv := docView{ID: d.id, Entity: d.entity, Action: d.action, Due: d.due, Processed: d.result != nil, Summary: d.summary, Result: json.RawMessage("null")}
		if d.result != nil {
			if b, err := d.result.MarshalJSON(); err == nil {
				dv.Result = b
			}
		} else {
			switch {
			case d.create != nil:
				dv.Summary = fmt.Sprintf("pending: %s under account %d", d.create.login, d.create.sponsor)
			case d.volume != nil:
				e := d.volume
				dv.Summary = fmt.Sprintf("pending: %s %s to account %d, order %s (seq %d)", e.Amount, e.Alias, e.AccountID, e.OrderID, e.Seq)
			}
		}
		v.Documents = append(v.Documents, dv)
	}
	slices.SortFunc(v.Documents, func(a, b docView) int { return cmp.Compare(a.ID, b.ID) })
	for ep, n := range s.calls {
		v.Calls = append(v.Calls, callCount{ep, n})
	}
	slices.SortFunc(v.Calls, func(a, b callCount) int { return strings.Compare(a.Endpoint, b.Endpoint) })
	return v
}

// serveView serves the views under ViewsPath and the control endpoint.
func (s *Server) serveView(w http.ResponseWriter, r *http.Request, sub string) {
	if sub == "inject" {
		if !s.opts.Control {
			http.NotFound(w, r)
			return
		}
		s.serveInject(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if sub == "" && !strings.HasSuffix(r.URL.Path, "/") {
		http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
		return
	}
	switch sub {
	case "":
		var b bytes.Buffer
		if err := viewTemplate.Execute(&b, s.viewState()); err != nil { // only our own values: a bug
			panic("mlmsofttest: render view: " + err.Error())
		}
		writeText(w, http.StatusOK, "text/html; charset=utf-8", b.String())
	case "accounts":
		writeJSON(w, http.StatusOK, s.viewState().Accounts)
	case "documents":
		writeJSON(w, http.StatusOK, s.viewState().Documents)
	case "ledger":
		l := s.viewState().Ledger
		if a := r.URL.Query().Get("account"); a != "" {
			n, err := strconv.ParseInt(a, 10, 64)
			if err != nil {
				http.Error(w, "account must be an account id", http.StatusBadRequest)
				return
			}
			l = slices.DeleteFunc(l, func(e LedgerEntry) bool { return e.AccountID != n })
		}
		writeJSON(w, http.StatusOK, l)
	default:
		http.NotFound(w, r)
	}
}

// maxControlBody bounds the control endpoint's form.
const maxControlBody = 64 << 10

// serveInject serves POST ViewsPath+"inject": form fields endpoint, kind
// and count (default 1), passed to InjectNext.
func (s *Server) serveInject(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxControlBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "invalid form", http.StatusBadRequest)
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	endpoint := r.Form.Get("endpoint")
	if _, ok := routes[endpoint]; !ok && endpoint != "*" {
		http.Error(w, fmt.Sprintf("unknown endpoint %q", endpoint), http.StatusBadRequest)
		return
	}
	kind, err := ParseFaultKind(r.Form.Get("kind"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	count := 1
	if c := r.Form.Get("count"); c != "" {
		if count, err = strconv.Atoi(c); err != nil || count < 0 {
			http.Error(w, "count must be a whole number, 0 or more", http.StatusBadRequest)
			return
		}
	}
	s.InjectNext(endpoint, kind, count)
	s.logf("control: the next %d requests to %s meet %s", count, endpoint, kind.logName())
	w.WriteHeader(http.StatusNoContent)
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format("2006-01-02 15:04:05.000 MST")
}

var viewTemplate = template.Must(template.New("view").Funcs(template.FuncMap{"time": formatTime}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>mlmsofttest: what MLM Soft received</title>
<style>
body { font-family: sans-serif; margin: 1em 2em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
td.n { text-align: right; font-family: monospace; }
</style>
</head>
<body>
<h1>Fake MLM Soft API2</h1>
<p>What the fake received, as of this page's load (reload to refresh). JSON:
<a href="accounts">accounts</a>, <a href="documents">documents</a>, <a href="ledger">ledger</a> (<code>ledger?account=ID</code> for one account).</p>

<h2>Accounts ({{len .Accounts}})</h2>
{{if .Accounts}}<table>
<tr><th>Login</th><th>User id</th><th>Account id</th><th>Sponsor account id</th></tr>
{{range .Accounts}}<tr><td>{{.Login}}</td><td class="n">{{.UserID}}</td><td class="n"><a href="ledger?account={{.AccountID}}">{{.AccountID}}</a></td><td class="n">{{if .SponsorAccountID}}{{.SponsorAccountID}}{{else}}(root){{end}}</td></tr>
{{end}}</table>{{else}}<p>None.</p>{{end}}

<h2>Documents ({{len .Documents}})</h2>
{{if .Documents}}<table>
<tr><th>Id</th><th>Entity/action</th><th>Due</th><th>Processed</th><th>Result</th></tr>
{{range .Documents}}<tr><td class="n">{{.ID}}</td><td>{{.Entity}}/{{.Action}}</td><td>{{time .Due}}</td><td>{{if .Processed}}yes{{else}}no{{end}}</td><td>{{.Summary}}</td></tr>
{{end}}</table>{{else}}<p>None.</p>{{end}}

<h2>Ledger ({{len .Ledger}})</h2>
{{if .Ledger}}<table>
<tr><th>Seq</th><th>Account id</th><th>Alias</th><th>Amount</th><th>Order id</th><th>At</th></tr>
{{range .Ledger}}<tr><td class="n">{{.Seq}}</td><td class="n">{{.AccountID}}</td><td>{{.Alias}}</td><td class="n">{{.Amount}}</td><td>{{.OrderID}}</td><td>{{time .At}}</td></tr>
{{end}}</table>{{else}}<p>None.</p>{{end}}

<h2>Requests per endpoint</h2>
{{if .Calls}}<table>
<tr><th>Endpoint</th><th>Requests</th></tr>
{{range .Calls}}<tr><td>{{.Endpoint}}</td><td class="n">{{.Count}}</td></tr>
{{end}}</table>{{else}}<p>None.</p>{{end}}
</body>
</html>
`))
