// Package vocab is regbridge's JSON vocabulary: the one set of field
// names and types that every JSON output uses for contacts, contact
// events, subscriptions and watchers. The HTTP API (bridge/httpapi), its
// Server-Sent Events, the webhooks (bridge/feed) and the --json output of
// the regbridge commands all marshal these types, so a field has the same
// name and type wherever it appears; bridge/httpapi/openapi.json describes
// them once, as component schemas.
//
// The conventions, in brief: names are snake_case (call_id, user_agent);
// expires is the whole seconds left and expires_at the same instant as an
// RFC 3339 time in UTC; q is a JSON number; transport is lower case (udp,
// tcp, tls, sctp, ws, wss), as in the metrics' labels and in the
// transport URI parameter of RFC 3261; absent values are omitted, not
// null.
package vocab
