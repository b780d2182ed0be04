package digest

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/regbridge/regbridge/source"
)

// Outcome says how a check ended, for counters and logs.
type Outcome string

// Outcomes of Check.
const (
	OutcomeOK         Outcome = "ok"          // authenticated
	OutcomeChallenged Outcome = "challenged"  // 401: no credentials for our realm, or not ours to check
	OutcomeStale      Outcome = "stale"       // 401 stale=true: correct answer to an expired nonce
	OutcomeReplay     Outcome = "replay"      // 401 stale=true: nonce-count used before
	OutcomeDenied     Outcome = "denied"      // 403: wrong answer or unknown user
	OutcomeMalformed  Outcome = "malformed"   // 400: unreadable Authorization or From
	OutcomeStoreError Outcome = "store_error" // 503: the credential store did not answer
)

// storeRetryAfter is the Retry-After of a 503 sent while the credential
// store does not answer: a short outage should not lose the subscriber.
const storeRetryAfter = "5"

// storeWarnEvery spaces the log lines of a store outage: one line says
// it, a thousand SUBSCRIBEs do not need one each.
const storeWarnEvery = time.Minute

// Result is what Check learned.
type Result struct {
	Outcome Outcome
	// User and Realm are the digest username and realm (set when the
	// answer was checked).
	User, Realm string
	// Identity is the SIP identity the credentials prove (OutcomeOK only):
	// sip:user@realm, or sip:user when the username holds a domain
	// (alice@example.com).
	Identity string
	// Algorithm is the algorithm of the answer.
	Algorithm Algorithm
	// Err says what was wrong (never a secret), for a debug log line.
	Err error
}

// Authenticator checks digest credentials in requests and builds
// challenges.
type Authenticator struct {
	cfg    Config
	creds  Credentials
	log    *slog.Logger
	nonces *nonces
	replay *replayTable
	now    func() time.Time
	// storeWarned is when a store failure was last logged (Unix ns).
	storeWarned atomic.Int64
}

// Option adjusts an Authenticator.
type Option func(*Authenticator)

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(a *Authenticator) { a.now = now } }

// New builds an authenticator answering from creds.
func New(cfg Config, creds Credentials, log *slog.Logger, opts ...Option) (*Authenticator, error) {
	cfg.setDefaults()
	if creds == nil {
		return nil, errors.New("digest: no credential store")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n, err := newNonces([]byte(cfg.NonceKey))
	if err != nil {
		return nil, fmt.Errorf("digest: making a nonce key: %w", err)
	}
	a := &Authenticator{cfg: cfg, creds: creds, log: log.With("component", "auth"), nonces: n, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	a.replay = newReplayTable(cfg.ReplayEntries, cfg.NonceTTL)
	return a, nil
}

// Check authenticates req. With a nil response the request is
// authenticated and the Result names who sent it; otherwise the response
// (401, 403, 400 or 503) is ready to send and the Result says why.
func (a *Authenticator) Check(ctx context.Context, req *sip.Request) (Result, *sip.Response) {
	now := a.now()
	realm := a.realmOf(req)
	if realm == "" {
		return Result{Outcome: OutcomeMalformed, Err: errors.New("no From domain to use as realm")},
			sip.NewResponseFromRequest(req, 400, "Bad From", nil)
	}
	c, found, err := credentialsFor(req, realm)
	if err != nil {
		return Result{Outcome: OutcomeMalformed, Realm: realm, Err: err},
			sip.NewResponseFromRequest(req, 400, "Bad Authorization", nil)
	}
	if !found {
		return Result{Outcome: OutcomeChallenged, Realm: realm}, a.challenge(req, realm, false, now)
	}
	r := Result{User: c.username, Realm: realm}
	alg, algOK := ParseAlgorithm(c.algorithm)
	switch {
	case !algOK || !a.offers(alg):
		r.Outcome, r.Err = OutcomeChallenged, errors.New("algorithm not offered")
	case !strings.EqualFold(c.qop, "auth"):
		r.Outcome, r.Err = OutcomeChallenged, errors.New("qop=auth required")
	case c.userhash:
		r.Outcome, r.Err = OutcomeChallenged, errors.New("userhash not offered")
	}
	if r.Outcome != "" {
		return r, a.challenge(req, realm, false, now)
	}
	r.Algorithm = alg
	if !uriMatches(c.uri, req) {
		r.Outcome, r.Err = OutcomeMalformed, errors.New("digest uri names neither the Request-URI nor the To URI")
		return r, sip.NewResponseFromRequest(req, 400, "Digest URI Mismatch", nil)
	}
	ident := identity(c.username, realm)
	if ident == "" {
		r.Outcome, r.Err = OutcomeDenied, errors.New("username is not usable as a SIP identity")
		return r, sip.NewResponseFromRequest(req, 403, "Forbidden", nil)
	}
	ha1, known, err := a.creds.HA1(ctx, c.username, realm, alg)
	if err != nil {
		r.Outcome, r.Err = OutcomeStoreError, err
		if last := a.storeWarned.Load(); now.UnixNano()-last >= int64(storeWarnEvery) && a.storeWarned.CompareAndSwap(last, now.UnixNano()) {
			a.log.Warn("credential store did not answer; SUBSCRIBEs needing it get 503", "err", err)
		}
		res := sip.NewResponseFromRequest(req, 503, "Credential Store Unavailable", nil)
		res.AppendHeader(sip.NewHeader("Retry-After", storeRetryAfter))
		return r, res
	}
	if !known {
		// Same work as a known user, so the answer time does not tell
		// which usernames exist.
		ha1 = HA1(alg, c.username, realm, "")
	}
	want := expectedResponse(alg, ha1, c, string(req.Method))
	got := strings.ToLower(c.response)
	if subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 || !known {
		r.Outcome, r.Err = OutcomeDenied, errors.New("wrong answer or unknown user")
		return r, sip.NewResponseFromRequest(req, 403, "Forbidden", nil)
	}
	// Only now is the nonce judged. The answer was right for the nonce
	// the UA holds, so whatever is wrong with that nonce, stale=true lets
	// the UA retry with a fresh one without asking its user (RFC 7616
	// 3.3): a nonce from before a restart (random key), from another
	// instance, or simply too old.
	issued, id, ours := a.nonces.verify(c.nonce, realm, now)
	if !ours {
		r.Outcome, r.Err = OutcomeStale, errors.New("nonce not issued here (restart, another key or another realm)")
		return r, a.challenge(req, realm, true, now)
	}
	if now.Sub(issued) > a.cfg.NonceTTL {
		r.Outcome, r.Err = OutcomeStale, errors.New("nonce expired")
		return r, a.challenge(req, realm, true, now)
	}
	if !a.replay.accept(id, issued, c.nc, now) {
		r.Outcome, r.Err = OutcomeReplay, errors.New("nonce-count used before")
		return r, a.challenge(req, realm, true, now)
	}
	r.Outcome, r.Identity = OutcomeOK, ident
	return r, nil
}

// challenge builds 401 (Unauthorized) with one WWW-Authenticate per
// configured algorithm, most preferred first (RFC 8760 2.4), sharing one
// nonce. Never 407: a notifier is a UA (RFC 6665 4.2.1.3).
func (a *Authenticator) challenge(req *sip.Request, realm string, stale bool, now time.Time) *sip.Response {
	res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
	nonce := a.nonces.issue(realm, now)
	for _, alg := range a.cfg.Algorithms {
		ch := digest.Challenge{Realm: realm, Nonce: nonce, Algorithm: string(alg), QOP: []string{"auth"}, Stale: stale}
		res.AppendHeader(sip.NewHeader("WWW-Authenticate", ch.String()))
	}
	return res
}

func (a *Authenticator) offers(alg Algorithm) bool {
	for _, x := range a.cfg.Algorithms {
		if x == alg {
			return true
		}
	}
	return false
}

// realmOf is the configured realm, or the From URI's host in lower case
// (the watcher's domain, as Kamailio's auth_check("$fd", ...)).
func (a *Authenticator) realmOf(req *sip.Request) string {
	if a.cfg.Realm != "" {
		return a.cfg.Realm
	}
	from := req.From()
	if from == nil || !source.ValidHost(from.Address.Host) {
		return ""
	}
	return strings.ToLower(from.Address.Host)
}

// credentialsFor returns the Digest credentials for realm among the
// request's Authorization headers (RFC 3261 22.4: one per realm). found
// is false when there are none; a Digest header that does not parse is an
// error, whatever realm it meant.
func credentialsFor(req *sip.Request, realm string) (c credentials, found bool, err error) {
	for _, h := range req.GetHeaders("Authorization") {
		c, err := parseCredentials(h.Value())
		if errors.Is(err, errNotDigest) {
			continue
		}
		if err != nil {
			return c, false, err
		}
		if c.realm == realm {
			return c, true, nil
		}
	}
	return credentials{}, false, nil
}

// expectedResponse computes the qop=auth response (RFC 7616 3.4.1):
// H(HA1:nonce:nc:cnonce:qop:H(method:uri)).
func expectedResponse(alg Algorithm, ha1 string, c credentials, method string) string {
	ha2 := hexHash(alg, method, ":", c.uri)
	return hexHash(alg, ha1, ":", c.nonce, ":", fmt.Sprintf("%08x", c.nc), ":", c.cnonce, ":", strings.ToLower(c.qop), ":", ha2)
}

// uriMatches reports whether the digest uri names the request's
// Request-URI or its To URI (a proxy may have rewritten the Request-URI
// after the UA computed its answer). RFC 7616 3.4.6 asks servers to check
// it, so a captured answer cannot be replayed against another resource.
func uriMatches(digestURI string, req *sip.Request) bool {
	var u sip.Uri
	if err := sip.ParseUri(digestURI, &u); err != nil {
		return false
	}
	same := func(v *sip.Uri) bool {
		return v != nil && u.User == v.User && strings.EqualFold(u.Host, v.Host) && u.Port == v.Port
	}
	if same(&req.Recipient) {
		return true
	}
	if to := req.To(); to != nil {
		return same(&to.Address)
	}
	return false
}

// identity turns a digest username into the SIP identity it proves:
// sip:user@realm, or sip:user when the username carries its own domain.
// "" when the username holds characters that would change the URI's
// meaning (parameters, headers, another scheme).
func identity(user, realm string) string {
	at := strings.IndexByte(user, '@')
	local, domain := user, realm
	if at >= 0 {
		local, domain = user[:at], user[at+1:]
		if !source.ValidHost(domain) {
			return ""
		}
	}
	if local == "" {
		return ""
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-_.!~*'()&=+$,%", c) >= 0:
		default:
			return ""
		}
	}
	return "sip:" + local + "@" + strings.ToLower(domain)
}
