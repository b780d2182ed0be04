package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/httpapi"
	"github.com/regbridge/regbridge/bridge/vocab"
)

const subscriptionsUsage = `Usage: regbridge subscriptions [flags] [AOR]

Lists the live SUBSCRIBE dialogs of a running regbridge, read from its HTTP
API (GET /v1/subscriptions): who watches which AOR, from which address,
over which transport, and when the subscription expires unless refreshed.
With AOR, only the watchers of that AOR.

Example:
  regbridge subscriptions
  regbridge subscriptions alice@example.com

Flags:
`

// runSubscriptions implements `regbridge subscriptions [AOR]`.
func runSubscriptions(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	var f apiFlags
	positional, c, code := parseOpsArgs("subscriptions", subscriptionsUsage, args, env, &f, stderr)
	if c == nil {
		return code
	}
	var list struct {
		Subscriptions []httpapi.Subscription `json:"subscriptions"`
	}
	if err := c.get(ctx, "/v1/subscriptions", &list); err != nil {
		fmt.Fprintf(stderr, "regbridge subscriptions: %v\n", err)
		return 1
	}
	subs := list.Subscriptions
	if len(positional) == 1 {
		want := bridge.CanonicalAOR(expandAOR(positional[0], f.domain))
		subs = subs[:0:0]
		for _, s := range list.Subscriptions {
			if bridge.CanonicalAOR(s.AOR) == want {
				subs = append(subs, s)
			}
		}
	}
	if subs == nil {
		subs = []httpapi.Subscription{}
	}
	if f.json {
		return writeJSONOut(stdout, stderr, subs)
	}
	io.WriteString(stdout, subscriptionsText(subs, time.Now()))
	return 0
}

// subscriptionsText renders subs as a table, expiry as time left.
func subscriptionsText(subs []httpapi.Subscription, now time.Time) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "AOR\tWATCHER\tFROM\tTRANSPORT\tEXPIRES IN\tVERSION\tCALL-ID")
	for _, s := range subs {
		left := time.Duration(vocab.SecondsLeft(s.ExpiresAt, now)) * time.Second
		version := "-"
		if s.Version >= 0 {
			version = fmt.Sprint(s.Version)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.AOR, s.Subscriber, s.Source,
			s.Transport, left, version, s.CallID)
	}
	tw.Flush()
	fmt.Fprintf(&b, "%d subscription%s\n", len(subs), plural(len(subs)))
	return b.String()
}
