// Package shop is what the demo shops examples/ginshop and
// examples/nethttpshop share, everything but their HTTP layer: the
// environment-driven setup of the database, the fake MLM Soft and the
// plugin (Open), the shop's tables and queries (users, products, orders),
// its server-side sessions, the sign-up and purchase operations that call
// the plugin in the shop's own transactions, the account page's view of a
// user's MLM Soft link and volume changes, and the HTML templates.
//
// Each shop keeps its HTTP layer idiomatic for its framework: routing,
// middleware (sessions, CSRF, basic auth), cookies and form parsing.
package shop
