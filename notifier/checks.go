package notifier

import (
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Checks of an incoming SUBSCRIBE, in the order RFC 3261 8.2 applies
// them (extensions, then content, then the event package), each a pure
// function of the request.

// unsupportedRequire returns the option tags of the request's Require
// headers, comma-separated; regbridge supports none, so any tag means
// 420 Bad Extension with them in Unsupported (RFC 3261 8.2.2.3).
func unsupportedRequire(req *sip.Request) string {
	var tags []string
	for _, h := range req.GetHeaders("Require") {
		for tag := range strings.SplitSeq(h.Value(), ",") {
			if tag = strings.TrimSpace(tag); tag != "" {
				tags = append(tags, tag)
			}
		}
	}
	return strings.Join(tags, ", ")
}

// unsupportedBody reports whether the SUBSCRIBE carries a body regbridge
// would have to understand. RFC 3680 4.3 allows a filter body whose format
// it leaves open; regbridge implements no filter format, so any body is of
// an unsupported type (RFC 3261 8.2.3: 415), unless its Content-Disposition
// says handling=optional, which allows ignoring it (RFC 3261 20.11).
func unsupportedBody(req *sip.Request) bool {
	if len(strings.TrimSpace(string(req.Body()))) == 0 {
		return false
	}
	if h := req.GetHeader("Content-Disposition"); h != nil {
		for p := range strings.SplitSeq(h.Value(), ";") {
			k, v, _ := strings.Cut(p, "=")
			if strings.EqualFold(strings.TrimSpace(k), "handling") && strings.EqualFold(strings.TrimSpace(v), "optional") {
				return false
			}
		}
	}
	return true
}

// eventHeader returns the single Event header's value (long or compact
// form). Two or more Event headers are an error (RFC 6665 8.2.1).
func eventHeader(req *sip.Request) (string, bool) {
	hs := req.GetHeaders("Event")
	hs = append(hs, req.GetHeaders("o")...)
	if len(hs) != 1 {
		return "", false
	}
	v := strings.TrimSpace(hs[0].Value())
	if strings.ContainsRune(v, ',') {
		return "", false // one event type only
	}
	return v, v != ""
}

// eventPackageName returns the package name of an Event value: the token
// before any parameter, compared byte by byte (RFC 6665 8.2.1).
func eventPackageName(v string) string {
	name, _, _ := strings.Cut(v, ";")
	return strings.TrimSpace(name)
}

// eventKey is what identifies a subscription within a dialog: the package
// and the id parameter (RFC 6665 8.2.1: other parameters do not count).
func eventKey(v string) string {
	name, params, _ := strings.Cut(v, ";")
	key := strings.TrimSpace(name)
	for p := range strings.SplitSeq(params, ";") {
		k, val, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "id") {
			key += ";id=" + strings.TrimSpace(val)
		}
	}
	return key
}

// accepts reports whether the SUBSCRIBE's Accept headers allow media type
// mt. No Accept means the package's default type, which is mt (RFC 3680
// 4.5, RFC 3856 6.5); a range with q=0 excludes (RFC 3261 20.1).
func accepts(req *sip.Request, mt string) bool {
	hs := req.GetHeaders("Accept")
	if len(hs) == 0 {
		return true
	}
	major, _, _ := strings.Cut(mt, "/")
	for _, h := range hs {
		for item := range strings.SplitSeq(h.Value(), ",") {
			typ, params, _ := strings.Cut(item, ";")
			switch strings.ToLower(strings.TrimSpace(typ)) {
			case mt, major + "/*", "*/*":
				if !zeroQ(params) {
					return true
				}
			}
		}
	}
	return false
}

// zeroQ reports whether media-range parameters carry q=0.
func zeroQ(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && q == 0
		}
	}
	return false
}

// requestedExpires reads Expires; absent means the package default def.
func requestedExpires(req *sip.Request, def time.Duration) (time.Duration, bool) {
	h := req.GetHeader("Expires")
	if h == nil {
		return def, true
	}
	v, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil {
		return 0, false
	}
	return time.Duration(v) * time.Second, true
}

// secureRequest reports whether the SUBSCRIBE asked for SIPS: its
// Request-URI, top Record-Route or (without Record-Route) Contact is a
// sips URI. The 2xx's Contact must then be SIPS (RFC 3261 12.1.1).
func secureRequest(req *sip.Request) bool {
	if req.Recipient.IsEncrypted() {
		return true
	}
	if rr := req.RecordRoute(); rr != nil {
		return rr.Address.IsEncrypted()
	}
	if c := req.Contact(); c != nil {
		return c.Address.IsEncrypted()
	}
	return false
}

// answerable reports whether a response to req can be well formed and
// can find its way back: the request speaks SIP/2.0 (RFC 3261 7.1) and
// its top Via, which the response copies (8.2.6.2) and is sent by
// (18.2.2), names a protocol, a transport and a host. sipgo hands on
// requests that fail this; answering them would put a message no SIP
// parser reads on the wire, so they get no answer, as unparsable ones do.
func answerable(req *sip.Request) bool {
	if req.SipVersion != "SIP/2.0" {
		return false
	}
	via := req.Via()
	if via == nil || !strings.EqualFold(via.ProtocolName, "SIP") || via.ProtocolVersion != "2.0" ||
		!isToken(via.Transport) || via.Host == "" || strings.ContainsAny(via.Host, " \t\r\n;,") {
		return false
	}
	// The branch is a token (RFC 3261 20.42): the client matches our
	// response by it, byte for byte.
	if branch, ok := via.Params.Get("branch"); ok && !isToken(branch) {
		return false
	}
	// What sipgo reads leniently it does not always print back in a form
	// it reads (a From of "sip::A"): the headers a response copies must
	// survive the trip, or the response is not SIP.
	var b strings.Builder
	sip.NewResponseFromRequest(req, 400, "Bad Request", nil).StringWrite(&b)
	_, err := sip.ParseMessage([]byte(b.String()))
	return err == nil
}

// isToken reports whether s is an RFC 3261 25.1 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-.!%*_+`'~", c) >= 0) {
			return false
		}
	}
	return true
}

// answerableOnly is h for the requests that are answerable; the rest are
// dropped unanswered.
func answerableOnly(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		if answerable(req) {
			h(req, tx)
		}
	}
}
