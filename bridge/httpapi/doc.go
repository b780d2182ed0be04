// Package httpapi is regbridge's JSON API over HTTP under /v1: the
// registrations as the bridge sees them, the live subscriptions, a
// Server-Sent Events stream of contact events, the operator actions of
// RFC 3680 section 4.7.1 (deactivated, probation, rejected) that enter the
// bridge like a source, and the log level. It also serves the live view
// at / (an operator's page whose first rows the server renders, for a
// request that shows the admin token when one is configured) and its own
// OpenAPI 3.1 description at /v1/openapi.json.
//
// Its JSON types are those of package vocab, which the event stream, the
// webhooks and the commands' --json output share, so that a field has one
// name and one type everywhere; openapi.json describes them once.
//
// When an admin token is configured every /v1 request must carry it as
// "Authorization: Bearer <token>" (RFC 6750 2.1); GET /v1/events also
// accepts it as the access_token query parameter (RFC 6750 2.3), because a
// browser's EventSource cannot set headers. Without a token the API must
// only be reachable on loopback; cmd/regbridge refuses other listeners.
//
// The package reads the bridge and, for the subscriptions, a function the
// caller supplies: it never imports the notifier (imports follow
// the data, docs/design.md#the-data-path).
package httpapi
