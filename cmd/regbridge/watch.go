package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/regbridge/regbridge/bridge/vocab"
	"github.com/regbridge/regbridge/notifier/watch"
)

const watchUsage = `Usage: regbridge watch [flags] <aor>

Subscribes to the registration state of <aor> (SIP reg event package,
RFC 3680) at a notifier such as regbridge itself, and prints every NOTIFY
until interrupted; Ctrl-C unsubscribes. With --winfo it subscribes to
reg.winfo instead (RFC 3857 watcher information) and prints who watches
<aor>: each subscriber coming and going.

<aor> may be sip:alice@example.com, alice@example.com, or alice with
--domain (default REGBRIDGE_DOMAIN). A 503 answer is retried after its
Retry-After; when the notifier ends the subscription (a restart, say)
watch subscribes again and says so on stderr.

Example:
  regbridge watch --server tcp://127.0.0.1:5065 sip:alice@example.com
  regbridge watch --json alice@example.com | jq .
  regbridge watch --raw --domain example.com alice
  regbridge watch --winfo sip:alice@example.com

Flags:
`

// runWatch implements `regbridge watch [flags] <aor>`; returns the process
// exit code: 0 after ctx is cancelled (Ctrl-C) and the subscription ended,
// 1 on a SIP error, 2 on bad usage.
func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer, log *slog.Logger) int {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", watch.DefaultServer, "notifier address: udp://host:port or tcp://host:port")
	jsonOut := fs.Bool("json", false, "print one JSON object per NOTIFY, one per line")
	expires := fs.Duration("expires", watch.DefaultExpires, "requested subscription duration")
	local := fs.String("local", "", "local IP address to listen on and name in From (default 127.0.0.1, or ::1 for an IPv6 server)")
	winfo := fs.Bool("winfo", false, "watch who subscribes to <aor>'s registrations (Event: reg.winfo) instead of the registrations")
	event := fs.String("event", "", "event package: reg, reg.winfo or presence.winfo (default reg; --winfo means reg.winfo)")
	raw := fs.Bool("raw", false, "print each NOTIFY as received: start line, headers and body")
	domain := fs.String("domain", "", "domain for an <aor> given without one (default REGBRIDGE_DOMAIN)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), watchUsage)
		fs.PrintDefaults()
	}

	// Flags may come before or after the AOR.
	positional, err := parseArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2 // flag already printed the error and the usage
	}
	usageError := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "regbridge watch: "+format+"\n", a...)
		fmt.Fprintln(stderr, "Run 'regbridge watch -h' for usage.")
		return 2
	}
	switch {
	case len(positional) == 0:
		return usageError("missing <aor> argument, e.g. sip:alice@example.com")
	case len(positional) > 1:
		return usageError("want one <aor>, got %q", positional)
	case *raw && *jsonOut:
		return usageError("--raw and --json exclude each other")
	}
	aor := expandAOR(positional[0], *domain)
	if !strings.Contains(aor, "@") && !strings.HasPrefix(strings.ToLower(aor), "tel:") {
		return usageError("<aor> %q has no domain: give user@domain, or set --domain or REGBRIDGE_DOMAIN", positional[0])
	}

	if *winfo {
		if *event != "" && *event != "reg.winfo" {
			return usageError("--winfo and --event %s contradict each other", *event)
		}
		*event = "reg.winfo"
	}
	s, err := watch.New(watch.Config{
		Server:  *server,
		AOR:     aor,
		Expires: *expires,
		Local:   *local,
		Event:   *event,
		Notice:  func(msg string) { fmt.Fprintf(stderr, "regbridge watch: %s\n", msg) },
	}, log)
	if err != nil {
		var ce *watch.ConfigError
		if errors.As(err, &ce) {
			return usageError("%s: %v", configFlag(ce.Field), ce.Err)
		}
		return usageError("%v", err)
	}

	p := &notifyPrinter{w: stdout, json: *jsonOut, raw: *raw}
	if err := s.Run(ctx, p.print); err != nil {
		fmt.Fprintf(stderr, "regbridge watch: %v\n", err)
		return 1
	}
	return 0
}

// configFlag names the flag or argument behind a watch.Config field.
func configFlag(field string) string {
	switch field {
	case "Server":
		return "--server"
	case "Expires":
		return "--expires"
	case "Local":
		return "--local"
	case "AOR":
		return "<aor>"
	case "Event":
		return "--event"
	}
	return field
}

// notifyPrinter writes NOTIFYs as readable text or as JSON lines.
type notifyPrinter struct {
	w         io.Writer
	json, raw bool
}

func (p *notifyPrinter) print(n watch.Notify) {
	if p.raw && n.Raw != nil {
		io.WriteString(p.w, rawNotify(n.Raw))
		return
	}
	if p.json {
		var v any = notifyJSON(n)
		if n.Winfo != nil {
			v = winfoJSON(n)
		}
		b, err := json.Marshal(v)
		if err == nil {
			b = append(b, '\n')
			p.w.Write(b)
		}
		return
	}
	if n.Winfo != nil {
		io.WriteString(p.w, winfoText(n))
		return
	}
	io.WriteString(p.w, notifyText(n))
}

// notifyText renders one NOTIFY as
//
//	NOTIFY version=1 partial  subscription=active;expires=3759
//	  sip:alice@example.com  registration=active
//	    contact c1a2b3  active  registered  sip:alice@192.0.2.10:5060  expires=3600
func notifyText(n watch.Notify) string {
	var b strings.Builder
	b.WriteString("NOTIFY ")
	if n.Doc == nil {
		b.WriteString("(no body)")
	} else {
		fmt.Fprintf(&b, "version=%d %s", n.Doc.Version, n.Doc.State)
	}
	if n.SubscriptionState != "" {
		b.WriteString("  subscription=" + n.SubscriptionState)
	}
	b.WriteString("\n")
	if n.Doc == nil {
		return b.String()
	}
	for _, r := range n.Doc.Registrations {
		fmt.Fprintf(&b, "  %s  registration=%s\n", r.AOR, r.State)
		for _, c := range r.Contacts {
			fmt.Fprintf(&b, "    contact %s  %s  %s  %s", c.ID, c.State, c.Event, c.URI)
			if c.Expires != nil {
				b.WriteString("  expires=" + strconv.FormatUint(*c.Expires, 10))
			}
			if c.RetryAfter != nil {
				b.WriteString("  retry-after=" + strconv.FormatUint(*c.RetryAfter, 10))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// jsonNotify is the --json form of one NOTIFY. Its registrations and
// contacts are the vocabulary's, as the HTTP API answers them.
type jsonNotify struct {
	Time              string               `json:"time"`
	Version           *uint32              `json:"version,omitempty"`
	State             string               `json:"state,omitempty"`
	SubscriptionState string               `json:"subscription_state"`
	Registrations     []vocab.Registration `json:"registrations"`
}

// notifyJSON is the --json form of one NOTIFY; version and state are
// omitted when the NOTIFY had no body.
func notifyJSON(n watch.Notify) jsonNotify {
	out := jsonNotify{
		Time:              n.Received.UTC().Format(time.RFC3339Nano),
		SubscriptionState: n.SubscriptionState,
		Registrations:     []vocab.Registration{},
	}
	if n.Doc == nil {
		return out
	}
	v := n.Doc.Version
	out.Version, out.State = &v, n.Doc.State
	for _, r := range n.Doc.Registrations {
		jr := vocab.Registration{AOR: r.AOR, ID: r.ID, State: r.State, Contacts: []vocab.Contact{}}
		for i := range r.Contacts {
			jr.Contacts = append(jr.Contacts, reginfoContact(&r.Contacts[i], n.Received))
		}
		out.Registrations = append(out.Registrations, jr)
	}
	return out
}

// reginfoContact is a reginfo <contact> in the vocabulary: q as a number,
// and for an active contact its expiry also as the instant it was
// received plus expires. A value too large for its field, or a q that is
// not a number, is left out rather than misreported.
func reginfoContact(c *watch.Contact, received time.Time) vocab.Contact {
	out := vocab.Contact{
		ID: c.ID,
		Binding: vocab.Binding{
			URI: c.URI, State: c.State, Event: c.Event, CallID: c.CallID,
		},
		DurationRegistered: c.DurationRegistered, DisplayName: c.DisplayName,
		Params: c.Params, PubGRUU: c.PubGRUU, TempGRUU: c.TempGRUU,
	}
	if c.Expires != nil && *c.Expires <= math.MaxInt32 {
		left := int64(*c.Expires)
		out.Expires = &left
		if c.State == "active" {
			at := received.Add(time.Duration(left) * time.Second).UTC().Truncate(time.Second)
			out.ExpiresAt = &at
		}
	}
	if c.RetryAfter != nil {
		out.RetryAfter = *c.RetryAfter
	}
	if c.CSeq != nil {
		out.CSeq = *c.CSeq
	}
	if q, err := strconv.ParseFloat(c.Q, 32); err == nil && q >= 0 && q <= 1 {
		q32 := float32(q)
		out.Q = &q32
	}
	return out
}

// winfoText renders one watcher information NOTIFY as
//
//	NOTIFY version=1 partial  subscription=active;expires=3595
//	  sip:alice@example.com  package=reg
//	    watcher w3f2a...  active  subscribe  sip:bob@example.com  "Bob"  subscribed=0s  expires=600
func winfoText(n watch.Notify) string {
	var b strings.Builder
	fmt.Fprintf(&b, "NOTIFY version=%d %s", n.Winfo.Version, n.Winfo.State)
	if n.SubscriptionState != "" {
		b.WriteString("  subscription=" + n.SubscriptionState)
	}
	b.WriteString("\n")
	for _, l := range n.Winfo.Lists {
		fmt.Fprintf(&b, "  %s  package=%s\n", l.Resource, l.Package)
		for _, w := range l.Watchers {
			fmt.Fprintf(&b, "    watcher %s  %s  %s  %s", w.ID, w.Status, w.Event, w.URI)
			if w.DisplayName != "" {
				b.WriteString("  " + strconv.Quote(w.DisplayName))
			}
			if w.DurationSubscribed != nil {
				fmt.Fprintf(&b, "  subscribed=%ds", *w.DurationSubscribed)
			}
			if w.Expiration != nil {
				fmt.Fprintf(&b, "  expires=%d", *w.Expiration)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

type jsonWinfo struct {
	Time              string            `json:"time"`
	Version           uint32            `json:"version"`
	State             string            `json:"state"`
	SubscriptionState string            `json:"subscription_state"`
	WatcherLists      []jsonWatcherList `json:"watcher_lists"`
}

type jsonWatcherList struct {
	Resource string          `json:"resource"`
	Package  string          `json:"package"`
	Watchers []vocab.Watcher `json:"watchers"`
}

// winfoJSON is the --json form of one watcher information NOTIFY; its
// watchers are the vocabulary's, as GET /v1/registrations/{aor}/watchers
// answers them.
func winfoJSON(n watch.Notify) jsonWinfo {
	out := jsonWinfo{
		Time: n.Received.UTC().Format(time.RFC3339Nano), Version: n.Winfo.Version, State: n.Winfo.State,
		SubscriptionState: n.SubscriptionState, WatcherLists: []jsonWatcherList{},
	}
	for _, l := range n.Winfo.Lists {
		jl := jsonWatcherList{Resource: l.Resource, Package: l.Package, Watchers: []vocab.Watcher{}}
		for i := range l.Watchers {
			jl.Watchers = append(jl.Watchers, winfoWatcher(&l.Watchers[i], l.Package, n.Received))
		}
		out.WatcherLists = append(out.WatcherLists, jl)
	}
	return out
}

// winfoWatcher is a watcherinfo <watcher> in the vocabulary: its
// duration-subscribed and expiration become the instants since and
// expires_at, counted from when the NOTIFY was received, and expiration
// is expires. Values too large to be true are left out.
func winfoWatcher(w *watch.Watcher, pkg string, received time.Time) vocab.Watcher {
	out := vocab.Watcher{ID: w.ID, Package: pkg, URI: w.URI, DisplayName: w.DisplayName, Status: w.Status, Event: w.Event}
	if d := w.DurationSubscribed; d != nil && *d <= math.MaxInt32 {
		out.Since = received.Add(-time.Duration(*d) * time.Second).UTC().Truncate(time.Second)
	}
	if e := w.Expiration; e != nil && *e <= math.MaxInt32 {
		left := int64(*e)
		out.Expires = &left
		out.ExpiresAt = received.Add(time.Duration(left) * time.Second).UTC().Truncate(time.Second)
	}
	return out
}
