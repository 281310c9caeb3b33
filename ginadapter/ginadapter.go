// Package ginadapter mounts the plugin's HTTP handlers on a Gin router
// (github.com/gin-gonic/gin) and lets the check-auth handler find the
// signed-in user that the host's Gin middleware stored in *gin.Context. The
// handlers themselves are mlmsoft.Plugin's plain net/http handlers, wrapped
// with gin.WrapH: no logic lives here beyond mounting.
package ginadapter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/mlmsoft-go/mlmsoft"
)

// Mount registers on r, under prefix (such as "/mlmsoft"; "" mounts at r's
// own path, so r may be a group):
//
//	{prefix}/webhook           the Type III webhook, or
//	{prefix}/webhook/:token    when Config.Webhook.PathTokens is set
//	{prefix}/check-auth        the Type II check-auth handler
//
// Both are registered for every method so that the handlers answer 405
// themselves (Gin would answer 404). Each route runs Bridge first, so
// CurrentUser works for the check-auth handler whatever the host's
// middleware order, as long as the host's auth middleware (which calls
// c.Set) runs before the route.
//
// The webhook receives the raw body untouched: if a middleware before it
// read the body with c.ShouldBindBodyWith (which keeps the bytes under
// gin.BodyBytesKey), those bytes are handed on. A middleware that consumes
// the body without keeping it (c.ShouldBindJSON in a global middleware)
// would break every signature: keep such middleware off these routes.
func Mount(r gin.IRouter, p *mlmsoft.Plugin, prefix string) {
	prefix = strings.TrimRight(prefix, "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	webhook := prefix + mlmsoft.WebhookPath
	if p.WebhookUsesPathToken() {
		webhook += "/:" + mlmsoft.WebhookTokenParam
	}
	r.Any(webhook, Bridge(), webhookHandler(p.WebhookHandler()))
	r.Any(prefix+mlmsoft.CheckAuthPath, Bridge(), gin.WrapH(p.CheckAuthHandler()))
}

// webhookHandler hands the webhook the raw body and the path token, then
// runs it.
func webhookHandler(h http.Handler) gin.HandlerFunc {
	return func(c *gin.Context) {
		if v, ok := c.Get(gin.BodyBytesKey); ok {
			if b, ok := v.([]byte); ok {
				c.Request.Body = io.NopCloser(bytes.NewReader(b))
				c.Request.ContentLength = int64(len(b))
			}
		}
		if tok := c.Param(mlmsoft.WebhookTokenParam); tok != "" {
			c.Request.SetPathValue(mlmsoft.WebhookTokenParam, tok)
		}
		h.ServeHTTP(c.Writer, c.Request)
	}
}

// ginContextKey is the request-context key under which Bridge stores the
// *gin.Context.
type ginContextKey struct{}

// Bridge returns a Gin middleware that makes the *gin.Context reachable
// from the *http.Request handed on (c.Request's context carries it), so that
// a net/http handler wrapped with gin.WrapH can read values set with c.Set:
// see CurrentUser and Context. Mount uses it on its own routes; use it
// yourself only when you mount the plugin's handlers by hand.
func Bridge() gin.HandlerFunc {
	return func(c *gin.Context) {
		ctx := context.WithValue(c.Request.Context(), ginContextKey{}, c)
		c.Request = c.Request.WithContext(ctx)
		c.Next()
	}
}

// Context returns the *gin.Context of r, when r went through Bridge (all
// requests routed by Mount do), and false otherwise. It is valid only while
// the request is being handled.
func Context(r *http.Request) (*gin.Context, bool) {
	c, ok := r.Context().Value(ginContextKey{}).(*gin.Context)
	return c, ok && c != nil
}

// CurrentUser returns a function for mlmsoft.CheckAuthConfig.CurrentUser
// that reads the signed-in host user's id stored by the host's Gin auth
// middleware with c.Set(key, id). The value may be a string, a signed or
// unsigned integer, or a fmt.Stringer; anything else, an empty string, or a
// request that did not go through Bridge means nobody is signed in.
func CurrentUser(key string) func(*http.Request) (string, bool) {
	return func(r *http.Request) (string, bool) {
		c, ok := Context(r)
		if !ok {
			return "", false
		}
		v, ok := c.Get(key)
		if !ok {
			return "", false
		}
		var id string
		switch v := v.(type) {
		case string:
			id = v
		case int:
			id = strconv.Itoa(v)
		case int64:
			id = strconv.FormatInt(v, 10)
		case int32:
			id = strconv.FormatInt(int64(v), 10)
		case uint:
			id = strconv.FormatUint(uint64(v), 10)
		case uint64:
			id = strconv.FormatUint(v, 10)
		case uint32:
			id = strconv.FormatUint(uint64(v), 10)
		case fmt.Stringer:
			id = v.String()
		default:
			return "", false
		}
		return id, id != ""
	}
}
