package main

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source/kamailio"
)

// webSIPDir is the npm project of the web client (SIP.js); .ci/run runs
// npm ci there.
const webSIPDir = "../../testdata/websip"

// pageRecord is what testdata/websip/subscriber.html recorded.
type pageRecord struct {
	Accepted []struct {
		Status           int
		Expires, Contact string
		CSeq             string
	}
	Notifies    []pageNotify
	RawNotifies []string
	Received    []pageLine
	Sent        []pageLine
	States      []string
	Warnings    []string
	Errors      []string
}

type pageLine struct{ Line, CSeq string }

// pageNotify is one NOTIFY as SIP.js gave it to the page, and its body as
// the browser's DOMParser read it.
type pageNotify struct {
	Event, SubscriptionState, ContentType string
	CSeq                                  int
	Body                                  string
	Doc                                   struct {
		Error, Root, Namespace string
		Version                uint32
		State                  string
		Registrations          []struct {
			AOR, ID, State string
			Contacts       []struct {
				ID, State, Event, URI string
				Expires               *string
			}
		}
	}
}

// TestWebSubscriber runs a web SIP client from npm, SIP.js 0.21, in
// headless Chromium as a softphone or an operator dashboard would: a page
// served from loopback opens a WebSocket to regbridge's ws:// (then
// wss://) listener, subscribes to reg for an AOR with Accept
// application/reginfo+xml, and records each NOTIFY SIP.js hands it, with
// its body read by the browser's DOMParser. The test changes the store as
// Kamailio would and checks, from the page's record, the 200 to SUBSCRIBE,
// the full document at version 0, one partial document per change
// (registered, refreshed, unregistered, shortened, expired), that SIP.js
// accepted every NOTIFY, and a clean unsubscribe.
func TestWebSubscriber(t *testing.T) {
	chromium, err1 := exec.LookPath("chromium")
	driver, err2 := exec.LookPath("chromedriver")
	_, err3 := os.Stat(filepath.Join(webSIPDir, "node_modules", "sip.js", "lib", "index.js"))
	if err1 != nil || err2 != nil || err3 != nil {
		why := "chromium and chromedriver (apt-get install chromium chromium-driver), and SIP.js (npm ci in testdata/websip)"
		if os.Getenv("CI") != "" {
			t.Fatalf("required under CI: %s: %v %v %v", why, err1, err2, err3)
		}
		t.Skipf("needs %s", why)
	}
	pki := siptest.NewPKI(t)
	listen := map[string]string{"ws": fmt.Sprintf("127.0.0.1:%d", freePort(t)), "wss": fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	s := startServer(t, "", map[string]string{
		"REGBRIDGE_SIP_LISTEN":  "ws://" + listen["ws"] + ",wss://" + listen["wss"],
		"REGBRIDGE_TLS_CERT":    pki.CertFile,
		"REGBRIDGE_TLS_KEY":     pki.KeyFile,
		"REGBRIDGE_ADMIN_TOKEN": e2eToken,
	})
	page := webPage(t)
	// The test CA is not Chromium's: the wss:// certificate is accepted
	// as a browser whose user trusted it would.
	wd := startWebDriver(t, driver, chromium, "--ignore-certificate-errors")

	for _, network := range []string{"ws", "wss"} {
		t.Run(network, func(t *testing.T) {
			defer func(parent *testing.T) { wd.t = parent }(wd.t)
			wd.t = t
			user := "web-" + network
			aor := "sip:" + user + "@example.com"
			ruid := func(c string) string { return user + "-" + c }
			s.insert(t, ruid("a"), user, "sip:"+user+"@192.0.2.10:5060", time.Now().Add(time.Hour), "call-a", 1)
			siptest.Eventually(t, func() bool {
				return s.call(t, "GET", "/v1/registrations/"+aor, e2eToken, "", nil) == 200
			}, "contact A loaded")

			wd.navigate(page)
			wd.until("SIP.js loaded", `return typeof window.watch === 'function'`)
			wd.exec(`window.watch(arguments[0], arguments[1]); return true`, network+"://"+listen[network], aor)

			// The 200 to SUBSCRIBE and the full state, version 0.
			rec := waitNotifies(wd, 1)
			if len(rec.Accepted) != 1 || rec.Accepted[0].Status != 200 {
				t.Fatalf("answers to SUBSCRIBE: %+v", rec.Accepted)
			}
			if e, err := strconv.Atoi(rec.Accepted[0].Expires); err != nil || e <= 0 || e > 600 {
				t.Errorf("200 Expires %q, want 1..600 (asked 600)", rec.Accepted[0].Expires)
			}
			if !strings.Contains(rec.Accepted[0].Contact, ";transport=ws") {
				t.Errorf("200 Contact %q names no WebSocket transport (RFC 7118 5.2)", rec.Accepted[0].Contact)
			}
			n := checkPageNotify(t, rec, 0, aor, "full", "active;expires=")
			if r := n.Doc.Registrations[0]; r.State != "active" || len(r.Contacts) != 1 || r.Contacts[0].State != "active" || r.Contacts[0].URI != "sip:"+user+"@192.0.2.10:5060" {
				t.Fatalf("full state: %s", n.Body)
			}
			idA := n.Doc.Registrations[0].Contacts[0].ID

			var subs struct {
				Subscriptions []struct{ AOR, Transport string }
			}
			s.call(t, "GET", "/v1/subscriptions", e2eToken, "", &subs)
			if l := subs.Subscriptions; len(l) != 1 || l[0].AOR != aor || !strings.EqualFold(l[0].Transport, network) {
				t.Errorf("regbridge's subscriptions: %+v, want one for %s over %s", l, aor, network)
			}

			// One partial document per change, version +1 each.
			steps := []struct {
				name       string
				change     func()
				state, ev  string
				id         string // "" for a new contact
				maxExpires int    // checked when > 0
				regState   string
			}{
				{"registered", func() {
					s.insert(t, ruid("b"), user, "sip:"+user+"@192.0.2.11:5060;transport=tcp", time.Now().Add(time.Hour), "call-b", 1)
				}, "active", "registered", "", 0, "active"},
				{"refreshed", func() {
					s.exec(t, `UPDATE location SET cseq = 2, expires = ? WHERE ruid = ?`, kamailio.TimeToJulian(time.Now().Add(2*time.Hour)), ruid("a"))
				}, "active", "refreshed", idA, 0, "active"},
				{"unregistered", func() {
					s.exec(t, `DELETE FROM location WHERE ruid = ?`, ruid("b"))
				}, "terminated", "unregistered", "", 0, "active"},
				{"shortened", func() {
					s.exec(t, `UPDATE location SET expires = ? WHERE ruid = ?`, kamailio.TimeToJulian(time.Now().Add(2*time.Second)), ruid("a"))
				}, "active", "shortened", idA, 2, "active"},
				{"expired", func() {}, "terminated", "expired", idA, 0, "terminated"},
			}
			var idB string
			for i, st := range steps {
				st.change()
				rec = waitNotifies(wd, i+2)
				n := checkPageNotify(t, rec, i+1, aor, "partial", "active;expires=")
				id, state, ev, _, expires := onlyContact(t, n)
				if state != st.state || ev != st.ev || n.Doc.Registrations[0].State != st.regState {
					t.Fatalf("%s: contact %s/%s, registration %s:\n%s", st.name, state, ev, n.Doc.Registrations[0].State, n.Body)
				}
				switch {
				case st.name == "registered":
					idB = id
				case st.name == "unregistered" && id != idB, st.id != "" && id != st.id:
					t.Fatalf("%s: contact id %s changed:\n%s", st.name, id, n.Body)
				}
				if st.maxExpires > 0 && (expires < 0 || expires > st.maxExpires) {
					t.Fatalf("%s: expires %d, want 0..%d:\n%s", st.name, expires, st.maxExpires, n.Body)
				}
			}

			// Unsubscribe: 200 to the SUBSCRIBE with Expires 0, then a
			// final NOTIFY (SIP.js answers it below the application),
			// and regbridge holds no subscription any more.
			wd.exec(`window.unwatch(); return true`)
			siptest.EventuallyWithin(t, 15*time.Second, func() bool {
				rec = record(wd)
				return len(rec.RawNotifies) == len(steps)+2 && len(rec.Accepted) == 2
			}, "final NOTIFY")
			if rec.Accepted[1].Status != 200 || rec.Accepted[1].Expires != "0" {
				t.Errorf("answer to the unsubscribe: %+v", rec.Accepted[1])
			}
			msg, err := sip.ParseMessage([]byte(rec.RawNotifies[len(steps)+1]))
			if err != nil {
				t.Fatalf("final NOTIFY: %v", err)
			}
			final := msg.(*sip.Request)
			var doc siptest.Reginfo
			if h := final.GetHeader("Subscription-State"); h == nil || h.Value() != "terminated;reason=timeout" {
				t.Errorf("final Subscription-State %v, want terminated;reason=timeout", h)
			}
			if err := xml.Unmarshal(final.Body(), &doc); err != nil || doc.Version != uint32(len(steps)+1) || doc.State != "full" {
				t.Errorf("final document (%v):\n%s", err, final.Body())
			}
			cseq := fmt.Sprintf("%d NOTIFY", final.CSeq().SeqNo)
			siptest.Eventually(t, func() bool {
				for _, l := range record(wd).Sent {
					if l.CSeq == cseq && strings.HasPrefix(l.Line, "SIP/2.0 200") {
						return true
					}
				}
				return false
			}, "SIP.js answers the final NOTIFY 200")
			siptest.Eventually(t, func() bool {
				s.call(t, "GET", "/v1/subscriptions", e2eToken, "", &subs)
				return len(subs.Subscriptions) == 0
			}, "no subscription left in regbridge")
			// SIP.js must not subscribe again after reason=timeout when
			// its application unsubscribed; it would have by now, as it
			// does so while handling the NOTIFY it answered above.
			for _, n := range rec.Notifies {
				t.Logf("SIP.js NOTIFY CSeq %d, %s: version %d %s, %s", n.CSeq, n.SubscriptionState, n.Doc.Version, n.Doc.State, contactsSummary(n))
			}
			t.Logf("final NOTIFY CSeq %d, %s: version %d %s", final.CSeq().SeqNo, final.GetHeader("Subscription-State").Value(), doc.Version, doc.State)
			if w := record(wd).Warnings; len(w) > 0 {
				t.Errorf("SIP.js warned: %q", w)
			}
			if n := countLines(record(wd).Sent, "SUBSCRIBE "); n != 2 {
				t.Errorf("SIP.js sent %d SUBSCRIBEs, want 2 (subscribe, unsubscribe)", n)
			}
		})
	}
}

// contactsSummary is "uri state/event" per contact, for the test log.
func contactsSummary(n pageNotify) string {
	var out []string
	for _, c := range n.Doc.Registrations[0].Contacts {
		out = append(out, fmt.Sprintf("%s %s/%s", c.URI, c.State, c.Event))
	}
	return "registration " + n.Doc.Registrations[0].State + ": " + strings.Join(out, ", ")
}

func countLines(lines []pageLine, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l.Line, prefix) {
			n++
		}
	}
	return n
}

// webPage serves subscriber.html and SIP.js (ES modules straight from
// node_modules: SIP.js 0.21 ships them with no dependencies, so no bundler
// is needed).
func webPage(t *testing.T) string {
	mux := http.NewServeMux()
	mux.Handle("/sip.js/", http.StripPrefix("/sip.js/", http.FileServer(http.Dir(filepath.Join(webSIPDir, "node_modules", "sip.js")))))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(webSIPDir, "subscriber.html"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// record reads the page's record.
func record(wd *webDriver) pageRecord {
	wd.t.Helper()
	raw, _ := wd.exec(`return JSON.stringify(window.rec)`).(string)
	var rec pageRecord
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		wd.t.Fatalf("page record %q: %v", raw, err)
	}
	if len(rec.Errors) > 0 {
		wd.t.Fatalf("errors in the page: %q", rec.Errors)
	}
	return rec
}

// waitNotifies waits until SIP.js has handed the page n NOTIFYs.
func waitNotifies(wd *webDriver, n int) pageRecord {
	wd.t.Helper()
	var rec pageRecord
	siptest.EventuallyWithin(wd.t, 15*time.Second, func() bool {
		rec = record(wd)
		return len(rec.Notifies) >= n
	}, fmt.Sprintf("NOTIFY %d in the page", n))
	if len(rec.Notifies) > n {
		wd.t.Fatalf("%d NOTIFYs, want %d: %+v", len(rec.Notifies), n, rec.Notifies)
	}
	return rec
}

// checkPageNotify checks the i-th NOTIFY the page saw: headers as SIP.js
// parsed them, the document as DOMParser read it (and as encoding/xml
// reads the same body), and that SIP.js answered it 200.
func checkPageNotify(t *testing.T, rec pageRecord, i int, aor, state, subsPrefix string) pageNotify {
	t.Helper()
	n := rec.Notifies[i]
	if n.Event != "reg" || n.ContentType != "application/reginfo+xml" || !strings.HasPrefix(n.SubscriptionState, subsPrefix) {
		t.Errorf("NOTIFY %d: Event %q, Content-Type %q, Subscription-State %q (want reg, application/reginfo+xml, %s...)",
			i, n.Event, n.ContentType, n.SubscriptionState, subsPrefix)
	}
	d := n.Doc
	if d.Error != "" || d.Root != "reginfo" || d.Namespace != "urn:ietf:params:xml:ns:reginfo" {
		t.Fatalf("NOTIFY %d: DOMParser: root {%s}%s, error %q:\n%s", i, d.Namespace, d.Root, d.Error, n.Body)
	}
	if d.Version != uint32(i) || d.State != state || len(d.Registrations) != 1 || d.Registrations[0].AOR != aor {
		t.Fatalf("NOTIFY %d: version %d state %s, want %d %s for %s:\n%s", i, d.Version, d.State, i, state, aor, n.Body)
	}
	var doc siptest.Reginfo
	if err := xml.Unmarshal([]byte(n.Body), &doc); err != nil || doc.Version != d.Version || doc.State != d.State ||
		len(doc.Registrations) != 1 || len(doc.Registrations[0].Contacts) != len(d.Registrations[0].Contacts) {
		t.Fatalf("NOTIFY %d: DOMParser and encoding/xml disagree (%v):\n%s", i, err, n.Body)
	}
	answered := false
	for _, l := range rec.Sent {
		answered = answered || (l.CSeq == fmt.Sprintf("%d NOTIFY", n.CSeq) && strings.HasPrefix(l.Line, "SIP/2.0 200"))
	}
	if !answered {
		t.Errorf("NOTIFY %d (CSeq %d): SIP.js sent no 200: %+v", i, n.CSeq, rec.Sent)
	}
	return n
}

// onlyContact returns the one contact of a partial document.
func onlyContact(t *testing.T, n pageNotify) (id, state, event, uri string, expires int) {
	t.Helper()
	cs := n.Doc.Registrations[0].Contacts
	if len(cs) != 1 {
		t.Fatalf("want one contact:\n%s", n.Body)
	}
	c := cs[0]
	expires = -1
	if c.Expires != nil {
		expires, _ = strconv.Atoi(*c.Expires)
	}
	return c.ID, c.State, c.Event, c.URI, expires
}
