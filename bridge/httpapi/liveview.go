package httpapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/vocab"
)

// liveView is the page at /: one file of HTML, CSS and JavaScript with no
// build step. The handler fills its first page of rows in (so that the
// page shows data before any script runs: a screenshot, a slow client);
// the script then reads every registration from GET /v1/registrations and
// follows GET /v1/events.
//
//go:embed liveview.html
var liveView []byte

// liveViewCSP allows exactly the page's own inline script and style (by
// hash) and requests to this origin: contact URIs and user agents on the
// page come from the store and are untrusted.
var liveViewCSP = "default-src 'none'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; " +
	"script-src " + inlineHash(liveView, "<script>", "</script>") + "; " +
	"style-src " + inlineHash(liveView, "<style>", "</style>")

// inlineHash returns the CSP source expression ('sha256-...') of the text
// between the first open and close tags of page.
func inlineHash(page []byte, open, close string) string {
	_, rest, ok := bytes.Cut(page, []byte(open))
	if !ok {
		panic("liveview.html has no " + open)
	}
	body, _, ok := bytes.Cut(rest, []byte(close))
	if !ok {
		panic("liveview.html has no " + close)
	}
	sum := sha256.Sum256(body)
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// firstPageAORs is how many AORs the first paint carries: the page size
// of the script too, so the first paint is the page the script shows.
const firstPageAORs = 100

// liveViewParts is the page cut at its <!--rb:NAME--> markers: static
// text, then the fragment named after it, in turn. Only the text between
// markers is static; the fragments are html/template output, so every
// store string in them is escaped for its context.
var liveViewParts = splitMarkers(liveView)

type pagePart struct {
	static   []byte
	fragment string // "" after the last part
}

func splitMarkers(page []byte) []pagePart {
	var parts []pagePart
	for {
		before, rest, ok := bytes.Cut(page, []byte("<!--rb:"))
		if !ok {
			return append(parts, pagePart{static: page})
		}
		name, after, ok := bytes.Cut(rest, []byte("-->"))
		if !ok {
			panic("liveview.html: unclosed <!--rb: marker")
		}
		if liveViewFragments.Lookup(string(name)) == nil {
			panic("liveview.html: no fragment " + string(name))
		}
		parts = append(parts, pagePart{static: before, fragment: string(name)})
		page = after
	}
}

// liveViewFragments render the first paint. Their markup matches what the
// script's render() builds, so the script takes the rows over unchanged
// (the countdown, the action buttons) until it has loaded everything.
var liveViewFragments = template.Must(template.New("").Parse(`
{{- define "stats" -}}
<span class="stat">AORs <b id="n-aors">{{.AORsText}}</b></span>
  <span class="stat">contacts <b id="n-contacts">{{.ContactsText}}</b></span>
  <span class="stat">subscriptions <b id="n-subs">{{.Subscriptions}}</b></span>
{{- end -}}
{{- define "rows" -}}
{{- range .AORs}}
<tr class="aor" data-aor="{{.AOR}}"><td colspan="11"><span class="name">{{.AOR}}</span> <span class="muted">{{.ContactsText}}</span> <span class="watch{{if .Watchers}} on{{end}}" title="{{.WatcherList}}">{{.WatchersText}}</span></td></tr>
{{- range .Contacts}}
<tr class="contact" data-aor="{{.AOR}}" data-contact-id="{{.ID}}" data-uri="{{.URI}}"><td class="uri">{{.URI}}</td><td title="{{.Received}}">{{.Received}}</td><td>{{.Transport}}</td><td>{{.Q}}</td><td class="exp"{{if .ExpiresAtISO}} data-expires-at="{{.ExpiresAtISO}}"{{end}}>{{.ExpiresIn}}</td><td class="at">{{.ExpiresAt}}</td><td class="cid" title="{{.CallID}}">{{.CallIDText}}</td><td class="inst" title="{{.Instance}}">{{.Instance}}</td><td class="ua" title="{{.UserAgent}}">{{.UserAgent}}</td><td><span class="ev {{.State}}">{{.Event}}</span></td><td class="act"><button type="button" data-act="deactivate">deactivate</button><button type="button" data-act="probation">probation</button><button type="button" data-act="reject">reject</button></td></tr>
{{- end}}
{{- end}}
{{- end -}}
{{- define "note" -}}
{{.Note}}
{{- end -}}
`))

// firstPaint is what the fragments show.
type firstPaint struct {
	AORsText, ContactsText string
	Subscriptions          string
	AORs                   []paintAOR
	Note                   string
}

type paintAOR struct {
	AOR, ContactsText         string
	Watchers                  int
	WatchersText, WatcherList string
	Contacts                  []paintContact
}

type paintContact struct {
	AOR, ID, URI, Received, Transport, Q string
	ExpiresIn, ExpiresAt, ExpiresAtISO   string
	CallID, CallIDText, Instance         string
	UserAgent, State, Event              string
}

func (a *API) serveLiveView(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", liveViewCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	// The page may be opened as /?token=...: never send that URL on.
	h.Set("Referrer-Policy", "no-referrer")
	// The first paint holds registrations: no shared or stored copies.
	h.Set("Cache-Control", "no-store")
	p := a.firstPaint(r, time.Now())
	var buf bytes.Buffer
	for _, part := range liveViewParts {
		buf.Write(part.static)
		if part.fragment != "" {
			if err := liveViewFragments.ExecuteTemplate(&buf, part.fragment, p); err != nil {
				a.log.Error("rendering the live view", "err", err)
				writeError(w, http.StatusInternalServerError, "rendering the live view failed")
				return
			}
		}
	}
	_, _ = w.Write(buf.Bytes())
}

// firstPaint reads the first page of registrations for the page itself.
// With an admin token configured it does so only for a request that
// carries the token (as the Authorization header, or as ?token= which the
// script then removes from the address bar): the page is public, the
// registrations are not.
func (a *API) firstPaint(r *http.Request, now time.Time) firstPaint {
	p := firstPaint{AORsText: "-", ContactsText: "-", Subscriptions: "-"}
	if a.tokenSum != nil && !a.authorized(r, false) && !a.tokenMatches(r.URL.Query().Get("token")) {
		p.Note = "Registrations appear once the admin token is given."
		return p
	}
	if a.deps.Ready != nil && !a.deps.Ready() {
		p.Note = "Registrations are not loaded from the store yet."
		return p
	}
	watchers := map[string][]string{}
	if a.deps.Subscriptions != nil {
		subs := a.deps.Subscriptions()
		p.Subscriptions = strconv.Itoa(len(subs))
		for _, s := range subs {
			k := bridge.CanonicalAOR(s.AOR)
			w := s.Subscriber
			if s.Transport != "" {
				w += " over " + s.Transport
			}
			if !s.ExpiresAt.IsZero() {
				w += " until " + isoTime(s.ExpiresAt)
			}
			watchers[k] = append(watchers[k], w)
		}
	} else {
		p.Subscriptions = "0"
	}
	regs := a.deps.Registrations.List("", "", firstPageAORs+1)
	more := len(regs) > firstPageAORs
	regs = regs[:min(len(regs), firstPageAORs)]
	contacts := 0
	for i := range regs {
		reg := &regs[i]
		pa := paintAOR{AOR: reg.AOR, ContactsText: plural(len(reg.Contacts), "contact")}
		ws := watchers[bridge.CanonicalAOR(reg.AOR)]
		pa.Watchers, pa.WatchersText, pa.WatcherList = len(ws), watchersText(len(ws)), strings.Join(ws, "\n")
		for j := range reg.Contacts {
			pa.Contacts = append(pa.Contacts, paintContactOf(reg.AOR, &reg.Contacts[j], now))
		}
		contacts += len(reg.Contacts)
		p.AORs = append(p.AORs, pa)
	}
	p.AORsText, p.ContactsText = strconv.Itoa(len(regs)), strconv.Itoa(contacts)
	if more {
		p.AORsText, p.ContactsText = p.AORsText+"+", p.ContactsText+"+"
		p.Note = fmt.Sprintf("First %d AORs; loading the rest.", firstPageAORs)
	}
	return p
}

func paintContactOf(aor string, v *bridge.ContactView, now time.Time) paintContact {
	c := paintContact{
		AOR: aor, ID: v.ID, URI: v.URI, Received: v.Received, Transport: strings.ToUpper(vocab.ContactTransport(v.Socket, v.Received, v.URI)),
		CallID: v.CallID, CallIDText: v.CallID, Instance: v.Instance, UserAgent: v.UserAgent,
		State: string(v.State), Event: string(v.Event), ExpiresIn: "permanent",
	}
	if v.CSeq != 0 {
		c.CallIDText += " / " + strconv.FormatUint(uint64(v.CSeq), 10)
	}
	if v.Q >= 0 {
		c.Q = strconv.FormatFloat(float64(v.Q), 'f', -1, 32)
	}
	if !v.Permanent() {
		c.ExpiresIn = timeLeft(v.Expires.Sub(now))
		c.ExpiresAt = isoTime(v.Expires)
		c.ExpiresAtISO = v.Expires.UTC().Format(time.RFC3339)
	}
	return c
}

// The helpers below have twins of the same name in liveview.html; the
// browser test compares the first paint with the script's rows.

// timeLeft says how long until an expiry as an operator reads it:
// "45s", "59m 12s", "3h 05m", "2d 04h".
func timeLeft(d time.Duration) string {
	s := int64((d + time.Second/2) / time.Second)
	switch {
	case s <= 0:
		return "expired"
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm %02ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh %02dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd %02dh", s/86400, s%86400/3600)
}

// isoTime is an instant as the page shows it: 24-hour UTC with the date.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") }

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

func watchersText(n int) string {
	if n == 0 {
		return "no watchers"
	}
	return plural(n, "watcher")
}
