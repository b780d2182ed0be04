package metrics

import (
	"net/url"
	"slices"
	"strings"

	"github.com/regbridge/regbridge/notifier"
)

// Transports are the transports of the SIP listeners, lower case as in
// the metrics' transport label.
func Transports(ls notifier.ListenAddrs) []string {
	var out []string
	for _, l := range ls {
		if t := strings.ToLower(l.Network); !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// SourceScheme is REGBRIDGE_SOURCE's scheme (never its credentials), the
// scheme label of regbridge_source_info.
func SourceScheme(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return strings.ToLower(u.Scheme)
}
