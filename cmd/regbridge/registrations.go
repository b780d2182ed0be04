package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/regbridge/regbridge/bridge/httpapi"
)

const registrationsUsage = `Usage: regbridge registrations [flags] [AOR]

Lists the addresses-of-record a running regbridge holds and their contacts,
read from its HTTP API (GET /v1/registrations), in the layout of
'kamctl ul show'. With AOR, shows that one only; alice@example.com and
alice (with --domain) are accepted for sip:alice@example.com.

Example:
  regbridge registrations
  regbridge registrations --json alice@example.com | jq .

Flags:
`

// pageLimit is the API's largest page: fewest round trips.
const pageLimit = 1000

// runRegistrations implements `regbridge registrations [AOR]`: exit 0
// with the listing, 1 when the API cannot be read or the AOR has no
// contacts, 2 on bad usage.
func runRegistrations(ctx context.Context, args []string, env envconfig.Lookuper, stdout, stderr io.Writer) int {
	var f apiFlags
	positional, c, code := parseOpsArgs("registrations", registrationsUsage, args, env, &f, stderr)
	if c == nil {
		return code
	}
	var regs []httpapi.Registration
	var err error
	if len(positional) == 1 {
		aor := expandAOR(positional[0], f.domain)
		var r httpapi.Registration
		err = c.get(ctx, apiPath("/v1/registrations", aor), &r)
		if errors.Is(err, errNotFound) {
			err = fmt.Errorf("%s has no active contacts", aor)
		}
		regs = append(regs, r)
	} else {
		regs, err = listRegistrations(ctx, c)
	}
	if err != nil {
		fmt.Fprintf(stderr, "regbridge registrations: %v\n", err)
		return 1
	}
	if f.json {
		return writeJSONOut(stdout, stderr, regs)
	}
	io.WriteString(stdout, registrationsText(regs))
	return 0
}

// listRegistrations reads every page of GET /v1/registrations.
func listRegistrations(ctx context.Context, c *apiClient) ([]httpapi.Registration, error) {
	regs := []httpapi.Registration{}
	after := ""
	for {
		q := url.Values{"limit": {strconv.Itoa(pageLimit)}}
		if after != "" {
			q.Set("after", after)
		}
		var page struct {
			Registrations []httpapi.Registration `json:"registrations"`
			Next          string                 `json:"next"`
		}
		if err := c.get(ctx, "/v1/registrations?"+q.Encode(), &page); err != nil {
			return nil, err
		}
		regs = append(regs, page.Registrations...)
		if page.Next == "" || page.Next == after {
			return regs, nil
		}
		after = page.Next
	}
}

// registrationsText renders regs as kamctl ul show does: one block per
// AOR, one indented block per contact, then a count.
func registrationsText(regs []httpapi.Registration) string {
	var b strings.Builder
	contacts := 0
	for _, r := range regs {
		fmt.Fprintf(&b, "AOR: %s\n", r.AOR)
		for _, c := range r.Contacts {
			contacts++
			fmt.Fprintf(&b, "\tContact: %s Q=%s\n", c.URI, qText(c.Q))
			field := func(name, v string) {
				if v != "" {
					fmt.Fprintf(&b, "\t\t%s: %s\n", name, v)
				}
			}
			field("State", c.State+" ("+c.Event+")")
			field("Expires", expiresText(c))
			field("Received", c.Received)
			field("Transport", c.Transport)
			field("Socket", c.Socket)
			field("Call-ID", c.CallID)
			field("CSeq", strconv.FormatUint(c.CSeq, 10))
			field("User-Agent", c.UserAgent)
			field("Instance", c.Instance)
			if c.RegID != 0 {
				field("Reg-Id", strconv.FormatUint(uint64(c.RegID), 10))
			}
			field("Path", c.Path)
			if c.Modified != nil {
				field("Last-Modified", c.Modified.Local().Format(time.DateTime+" MST"))
			}
			if c.Administrative {
				field("Administrative", "yes")
			}
		}
	}
	fmt.Fprintf(&b, "%d AOR%s, %d contact%s\n", len(regs), plural(len(regs)), contacts, plural(contacts))
	return b.String()
}

// expiresText is the time left of an active contact, or what else it is.
func expiresText(c httpapi.Contact) string {
	switch {
	case c.Expires != nil && c.ExpiresAt != nil:
		return fmt.Sprintf("%s (at %s)", time.Duration(*c.Expires)*time.Second, c.ExpiresAt.Local().Format(time.DateTime+" MST"))
	case c.State == "active":
		return "permanent"
	}
	return ""
}

func qText(q *float32) string {
	if q == nil {
		return ""
	}
	return strconv.FormatFloat(float64(*q), 'f', -1, 32)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// parseOpsArgs parses the flags of an operator command, allows at most
// one AOR and returns the client to the API; a nil client means exit
// with code.
func parseOpsArgs(name, usage string, args []string, env envconfig.Lookuper, f *apiFlags, stderr io.Writer) (positional []string, c *apiClient, code int) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	f.register(fs, env)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	positional, err := parseArgs(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return nil, nil, 0
	case err != nil:
		return nil, nil, 2
	case len(positional) > 1:
		return nil, nil, opsUsageError(stderr, name, "want at most one AOR, got %q", positional)
	}
	if c, err = newAPIClient(f); err != nil {
		return nil, nil, opsUsageError(stderr, name, "%v", err)
	}
	return positional, c, 0
}

func opsUsageError(stderr io.Writer, name, format string, a ...any) int {
	fmt.Fprintf(stderr, "regbridge %s: "+format+"\n", append([]any{name}, a...)...)
	fmt.Fprintf(stderr, "Run 'regbridge %s -h' for usage.\n", name)
	return 2
}

func writeJSONOut(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "regbridge: writing JSON: %v\n", err)
		return 1
	}
	return 0
}
