package notifier

import (
	"bytes"
	"context"
	"io"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// authenticate answers a subscriber's digest challenge to a NOTIFY (RFC
// 3261 22.2 and 22.3; docs/sip.md#subscribe-and-notify) with the configured
// credentials: the same NOTIFY, the same document and version, in a new
// transaction of the same dialog with the next CSeq. It answers once per
// NOTIFY: a second challenge is the outcome, handled like any other
// failure (the subscription survives and owes full state, RFC 5057).
// res is the 401 or 407.
func (n *Notifier) authenticate(ctx context.Context, s *subscription, j *job, body []byte, res *sip.Response) (*sip.Response, error) {
	chalName, credName := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		chalName, credName = "Proxy-Authenticate", "Proxy-Authorization"
	}
	log := n.log.With("aor", s.aor, "call_id", j.d.callID)
	h := res.GetHeader(chalName)
	if h == nil {
		log.Info("NOTIFY challenged without a challenge header", "status", res.StatusCode)
		return res, nil
	}
	chal, err := digest.ParseChallenge(h.Value())
	if err != nil {
		log.Info("NOTIFY challenge not understood", "status", res.StatusCode, "err", err)
		return res, nil
	}
	chal.Algorithm = strings.ToUpper(chal.Algorithm)

	s.mu.Lock()
	s.d.localCSeq++ // a new transaction in the same dialog
	j.d.localCSeq = s.d.localCSeq
	s.mu.Unlock()
	to := hopOf(&j.d)
	cred, err := digest.Digest(chal, digest.Options{
		Method:   string(sip.NOTIFY),
		URI:      to.ruri.String(),
		Username: n.cfg.NotifyAuthUser,
		Password: string(n.cfg.NotifyAuthPassword),
		GetBody:  func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
	})
	if err != nil {
		log.Info("NOTIFY challenge not answerable", "status", res.StatusCode, "err", err)
		return res, nil
	}
	return n.send(ctx, j, body, credName+": "+cred.String())
}
