// Package nethttpadapter mounts the plugin's HTTP handlers on a standard
// library *http.ServeMux, with Go 1.22 method patterns: Mount the webhook
// and check-auth handlers (mlmsoft.Plugin's WebhookHandler and
// CheckAuthHandler), and MountAdmin the operations console of package admin
// under a prefix of the host's choice. It holds no logic of its own beyond
// mounting.
package nethttpadapter

import (
	"net/http"
	"strings"

	"github.com/mlmsoft-go/mlmsoft"
)

// Mount registers on mux, under prefix (such as "/mlmsoft"; "" mounts at the
// root):
//
//	POST {prefix}/webhook           the Type III webhook, or
//	POST {prefix}/webhook/{token}   when Config.Webhook.PathTokens is set
//	POST {prefix}/check-auth        the Type II check-auth handler
//
// Other methods on these paths get the mux's 405. Handlers of a disabled
// feature answer 404. The host puts its own middleware (sessions, so that
// CheckAuthConfig.CurrentUser finds the user) around mux as usual. Like
// mux.Handle, Mount panics if a pattern conflicts with one registered
// before; call it once per mux and prefix.
func Mount(mux *http.ServeMux, p *mlmsoft.Plugin, prefix string) {
	prefix = strings.TrimRight(prefix, "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	webhook := prefix + mlmsoft.WebhookPath
	if p.WebhookUsesPathToken() {
		webhook += "/{" + mlmsoft.WebhookTokenParam + "}"
	}
	mux.Handle(http.MethodPost+" "+webhook, p.WebhookHandler())
	mux.Handle(http.MethodPost+" "+prefix+mlmsoft.CheckAuthPath, p.CheckAuthHandler())
}

// MountAdmin registers h — the operations console made by admin.Handler,
// wrapped in the host's own authentication middleware, or any handler —
// on mux for every method and every path under prefix (such as "/admin"),
// with the prefix stripped: a request for {prefix}/links reaches h as
// /links, so the console's relative links work wherever it is mounted. The
// mux redirects a request for the prefix itself to the prefix with a
// trailing slash. "" (or "/") mounts h at the root of mux.
//
// The console authenticates nobody: never mount it without the host's
// authentication around h. Like mux.Handle, MountAdmin panics if the
// pattern conflicts with one registered before.
func MountAdmin(mux *http.ServeMux, prefix string, h http.Handler) {
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		mux.Handle("/", h)
		return
	}
	if !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	mux.Handle(prefix+"/", http.StripPrefix(prefix, h))
}
