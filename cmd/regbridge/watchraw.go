package main

import (
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/sethvargo/go-envconfig"
)

// rawNotify is a NOTIFY as it came off the wire (start line, headers,
// body), followed by a blank line so that consecutive ones stay apart.
func rawNotify(req *sip.Request) string {
	s := req.String()
	if !strings.HasSuffix(s, "\n") {
		s += "\r\n"
	}
	return s + "\r\n"
}

// withDomainDefault gives `regbridge watch` REGBRIDGE_DOMAIN as the
// default of --domain, the way the server completes AORs without a domain;
// an explicit --domain, coming later, wins.
func withDomainDefault(args []string, env envconfig.Lookuper) []string {
	d, ok := env.Lookup(envPrefix + "DOMAIN")
	if !ok || d == "" {
		return args
	}
	return append([]string{"--domain=" + d}, args...)
}
