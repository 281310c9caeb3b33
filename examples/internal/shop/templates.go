package shop

import (
	"embed"
	"html/template"
	"time"
)

// assets holds the templates and the style sheet.
//
//go:embed templates/*.html static/*
var assets embed.FS

// The names of the page templates, for html/template's ExecuteTemplate (net/http)
// or gin.Context.HTML (Gin). Each renders a whole page from a Page.
const (
	PageProducts = "products"
	PageSignUp   = "signup"
	PageSignIn   = "signin"
	PageAccount  = "account"
	PageError    = "error"
)

var funcs = template.FuncMap{
	// when formats a time for people, in UTC; "" for the zero time.
	"when": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
}

// parseTemplates parses the page templates into one set.
func parseTemplates() (*template.Template, error) {
	return template.New("shop").Funcs(funcs).ParseFS(assets, "templates/*.html")
}
