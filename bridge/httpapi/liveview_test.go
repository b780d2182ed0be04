package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/vocab"
	"github.com/regbridge/regbridge/source"
)

// firstPaintServer serves the API over a bridge holding contacts.
func firstPaintServer(t *testing.T, token string, contacts []source.Contact, edit func(*Deps)) *httptest.Server {
	t.Helper()
	br := bridge.New(quiet)
	if err := br.Apply(t.Context(), source.Batch{Full: true, Contacts: contacts}); err != nil {
		t.Fatal(err)
	}
	deps := Deps{Registrations: br, Ready: br.Ready}
	if edit != nil {
		edit(&deps)
	}
	srv := httptest.NewServer(New(Config{AdminToken: token}, deps, quiet))
	t.Cleanup(srv.Close)
	return srv
}

func getPage(t *testing.T, url, bearer string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, body)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q: the first paint holds registrations", cc)
	}
	return string(body)
}

// TestLiveViewFirstPaint: the page carries its first rows, escaped, and
// only for a request that shows the admin token.
func TestLiveViewFirstPaint(t *testing.T) {
	hostile := source.Contact{
		Key: "k-x", AOR: "sip:mallory@example.com", URI: `sip:m@192.0.2.9;transport=tcp;x="><img src=x onerror=alert(1)>`,
		Expires: time.Now().Add(59*time.Minute + 12*time.Second + 300*time.Millisecond), Q: 0.5,
		CallID: `c"all'<id>`, CSeq: 42, UserAgent: `<script>alert("ua")</script>`, Instance: `<urn:uuid:1>`,
		Received: "sip:198.51.100.7:40123;transport=TCP",
	}
	plain := contact("k-a", "sip:alice@example.com", "sip:alice@192.0.2.1")
	srv := firstPaintServer(t, testToken, []source.Contact{hostile, plain}, func(d *Deps) {
		d.Subscriptions = func() []Subscription {
			// Differs from the registration's AOR in the host's case only.
			return []Subscription{{AOR: "sip:mallory@EXAMPLE.com", Subscriber: "sip:watcher@example.com", Transport: "UDP"}}
		}
	})

	t.Run("without the token", func(t *testing.T) {
		page := getPage(t, srv.URL+"/", "")
		if strings.Contains(page, "alice@192.0.2.1") || strings.Contains(page, "mallory") {
			t.Error("registrations rendered for a request without the admin token")
		}
		if !strings.Contains(page, "once the admin token is given") {
			t.Error("no note saying why the table is empty")
		}
		if page2 := getPage(t, srv.URL+"/?token=wrong", ""); strings.Contains(page2, "alice@192.0.2.1") {
			t.Error("registrations rendered for a wrong token")
		}
	})
	for name, get := range map[string]func() string{
		"token in the query":  func() string { return getPage(t, srv.URL+"/?token="+testToken, "") },
		"token in the header": func() string { return getPage(t, srv.URL+"/", testToken) },
	} {
		t.Run(name, func(t *testing.T) {
			page := get()
			for _, raw := range []string{`<img src=x`, `<script>alert`, `c"all'<id>`, `<urn:uuid:1>`} {
				if strings.Contains(page, raw) {
					t.Errorf("page holds %q unescaped", raw)
				}
			}
			for _, want := range []string{
				`data-aor="sip:alice@example.com"`,
				`<td class="uri">sip:alice@192.0.2.1</td>`,
				`&lt;script&gt;alert(&#34;ua&#34;)&lt;/script&gt;`,
				`>sip:198.51.100.7:40123;transport=TCP</td><td>TCP</td><td>0.5</td><td class="exp" data-expires-at="`,
				`>59m 12s</td>`,
				`c&#34;all&#39;&lt;id&gt; / 42`,
				`1 watcher</span>`,
				`sip:watcher@example.com over UDP`,
				`<b id="n-aors">2</b>`,
				`<b id="n-contacts">2</b>`,
				`<b id="n-subs">1</b>`,
				`data-act="probation"`,
			} {
				if !strings.Contains(page, want) {
					t.Errorf("page lacks %s", want)
				}
			}
		})
	}
}

// TestLiveViewFirstPaintPage: past one page the first paint shows the
// first page and says more are coming; before the store is loaded it
// says so instead of showing an empty table.
func TestLiveViewFirstPaintPage(t *testing.T) {
	var cs []source.Contact
	for i := range firstPageAORs + 5 {
		cs = append(cs, contact(fmt.Sprint("k", i), fmt.Sprintf("sip:u%03d@example.com", i), fmt.Sprintf("sip:u%03d@192.0.2.1", i)))
	}
	srv := firstPaintServer(t, "", cs, nil)
	page := getPage(t, srv.URL+"/", "")
	if n := strings.Count(page, `<tr class="aor"`); n != firstPageAORs {
		t.Errorf("%d AOR rows, want %d", n, firstPageAORs)
	}
	if !strings.Contains(page, "sip:u000@example.com") || strings.Contains(page, "sip:u100@example.com") {
		t.Error("the first paint is not the first page in AOR order")
	}
	for _, want := range []string{`<b id="n-aors">100&#43;</b>`, "First 100 AORs; loading the rest."} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	notReady := firstPaintServer(t, "", cs, func(d *Deps) { d.Ready = func() bool { return false } })
	page = getPage(t, notReady.URL+"/", "")
	if strings.Contains(page, "sip:u000@example.com") || !strings.Contains(page, "not loaded from the store yet") {
		t.Error("before the store is loaded the page must say so, not show rows")
	}
}

func TestTimeLeft(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{-time.Second, "expired"},
		{400 * time.Millisecond, "expired"},
		{45 * time.Second, "45s"},
		{59*time.Minute + 12*time.Second, "59m 12s"},
		{time.Hour + 5*time.Minute + 59*time.Second, "1h 05m"},
		{50*time.Hour + 10*time.Minute, "2d 02h"},
	} {
		if got := timeLeft(tt.d); got != tt.want {
			t.Errorf("timeLeft(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestTransportOf(t *testing.T) {
	for _, tt := range []struct{ uri, received, want string }{
		{"sip:a@192.0.2.1:5060", "", "UDP"},
		{"sip:a@192.0.2.1;transport=tcp", "", "TCP"},
		{"sips:a@192.0.2.1", "", "TLS"},
		{"sip:a@10.0.0.1;transport=udp", "sip:198.51.100.1:4000;transport=ws", "WS"},
		{"sip:a@10.0.0.1;Transport=TLS;ob", "sip:198.51.100.1:4000", "TLS"},
	} {
		if got := strings.ToUpper(vocab.ContactTransport("", tt.received, tt.uri)); got != tt.want {
			t.Errorf("transport of (%q, %q) = %q, want %q", tt.uri, tt.received, got, tt.want)
		}
	}
}
