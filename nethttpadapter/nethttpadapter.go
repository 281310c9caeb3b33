// Package nethttpadapter mounts the plugin's HTTP handlers on a standard
// library *http.ServeMux, with Go 1.22 method patterns. It holds no logic of
// its own: the handlers are mlmsoft.Plugin's WebhookHandler and
// CheckAuthHandler.
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
