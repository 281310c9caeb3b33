// Package ginadapter mounts the plugin's HTTP handlers on a Gin router
// (github.com/gin-gonic/gin) and lets them find what the host's Gin
// middleware stored in *gin.Context: Mount mounts the webhook and check-auth
// handlers, whose CurrentUser finds the signed-in user; MountAdmin mounts
// the operations console of package admin under a prefix of the host's
// choice. The handlers themselves are plain net/http handlers (mlmsoft.Plugin's
// and admin.Handler's): no logic lives here beyond mounting.
package ginadapter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
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

// adminParam is the catch-all parameter of MountAdmin's route.
const adminParam = "consolePath"

// MountAdmin registers h — the operations console made by admin.Handler,
// wrapped in the host's own authentication, or any net/http handler — on r
// for every method and every path under prefix (such as "/admin"; "" mounts
// at r's own path, so r may be a group given to the console alone), with the
// full mount path stripped: a request for {group}{prefix}/links reaches h as
// /links, so the console's relative links work wherever it is mounted. A
// request for the prefix itself is redirected to it with a trailing slash.
//
// The request h receives goes through Bridge's work too: Context (and
// CurrentUser) find the *gin.Context in it, so that admin.Options.Operator
// can read who the host's Gin auth middleware (run before the route) said is
// signed in. The console authenticates nobody: never mount it without that
// middleware. Like every Gin route, MountAdmin panics if the routes
// conflict with ones registered before.
func MountAdmin(r gin.IRouter, prefix string, h http.Handler) {
	prefix = strings.TrimRight(prefix, "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	r.Any(prefix+"/*"+adminParam, func(c *gin.Context) {
		req := c.Request
		rest := c.Param(adminParam) // "/links": the path under the mount
		mount := strings.TrimSuffix(req.URL.Path, rest)
		u := *req.URL
		u.Path = rest
		if u.RawPath != "" {
			// The mount's segments hold no escaped slash (Gin routes on
			// the unescaped path): drop as many from the raw path.
			raw := u.RawPath
			for range strings.Count(mount, "/") {
				i := strings.IndexByte(raw[1:], '/')
				if i < 0 {
					raw = "/"
					break
				}
				raw = raw[1+i:]
			}
			if p, err := url.PathUnescape(raw); err == nil && p == rest {
				u.RawPath = raw
			} else {
				u.RawPath = ""
			}
		}
		inner := req.WithContext(context.WithValue(req.Context(), ginContextKey{}, c))
		inner.URL = &u
		h.ServeHTTP(c.Writer, inner)
	})
	if prefix != "" {
		r.Any(prefix, func(c *gin.Context) {
			target := path.Base(c.Request.URL.Path) + "/"
			if c.Request.URL.RawQuery != "" {
				target += "?" + c.Request.URL.RawQuery
			}
			code := http.StatusMovedPermanently
			if c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead {
				code = http.StatusPermanentRedirect
			}
			c.Header("Location", target)
			c.Status(code)
		})
	}
}
