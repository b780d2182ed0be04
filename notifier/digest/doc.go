// Package digest authenticates SIP requests with HTTP Digest, server
// side: the notifier challenges a SUBSCRIBE and checks the answer before
// it creates a subscription (RFC 3680 7, RFC 6665 4.2.1.3;
// invariant 6, docs/design.md#invariants).
//
// What it implements:
//   - RFC 3261 22.1, 22.4 and 8.2.3: a request without credentials for our
//     realm gets 401 (Unauthorized) with WWW-Authenticate. A notifier is a
//     user agent, so the challenge is never 407 (RFC 6665 4.2.1.3).
//   - RFC 7616 (via RFC 8760 for SIP): algorithms MD5 and SHA-256, one
//     WWW-Authenticate per configured algorithm, most preferred first;
//     qop=auth only (auth-int and the -sess variants are not offered).
//   - Stateless nonces: a timestamp and random bytes signed with HMAC-SHA256,
//     bound to the realm, expiring after Config.NonceTTL; an expired nonce
//     answered correctly gets 401 with stale=true (RFC 7616 3.3).
//   - Replay protection per nonce on nonce-count (RFC 7616 3.4): a 64-entry
//     sliding window per nonce in a table of fixed maximum size.
//
// Credentials come from a Credentials implementation: a file (File), the
// registrar's own tables through database/sql (Kamailio and OpenSIPS
// `subscriber`, Asterisk `ps_auths`; see SQL), or anything else with the
// one method. Open builds the one REGBRIDGE_AUTH names. Secrets (passwords,
// HA1 values, the nonce key) never reach a log line or an error message.
package digest
