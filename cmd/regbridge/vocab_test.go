package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source/kamailio"
)

// TestJSONVocabulary checks every JSON output of a running regbridge
// against the component schemas of the OpenAPI document it serves: the
// API's answers, an SSE event, a webhook body, and the --json output of
// watch (reg and reg.winfo), registrations and subscriptions. Every field
// must be declared with the type it has, every required field present and
// every transport lower case, so that the outputs cannot drift apart
// again.
func TestJSONVocabulary(t *testing.T) {
	hooks := make(chan []byte, 10)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hooks <- b
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	s := startServer(t, "", map[string]string{"REGBRIDGE_ADMIN_TOKEN": e2eToken, "REGBRIDGE_WEBHOOK_URLS": rcv.URL})
	var doc map[string]any
	if code := s.call(t, "GET", "/v1/openapi.json", e2eToken, "", &doc); code != 200 {
		t.Fatalf("GET /v1/openapi.json: %d", code)
	}
	sc := &schemaChecker{t: t, doc: doc, seen: map[string]bool{}}

	es := openEvents(t, s, e2eToken)
	// A contact with every optional field the store has, so that each
	// one's type is checked.
	s.exec(t, `INSERT INTO location (ruid, username, contact, expires, q, callid, cseq, last_modified, user_agent,
		received, instance, reg_id, path, socket)
		VALUES ('uloc-1', 'alice', 'sip:alice@10.0.0.2:5060', ?, 0.9, 'call-1@phone', 42, ?, 'phone/1.0',
		'sip:198.51.100.7:40000;transport=TCP', '<urn:uuid:00000000-0000-1000-8000-000a95a0e128>', 1,
		'<sip:edge.example.com;lr>', 'TCP:192.0.2.1:5060')`,
		kamailio.TimeToJulian(time.Now().Add(time.Hour)), kamailio.TimeToJulian(time.Now()))
	sc.check("SSE event", "Event", decode(t, receive(t, "an SSE event", es.data)))
	sc.check("webhook body", "Event", decode(t, receive(t, "a webhook POST", hooks)))

	w := startRunWatch(t, "--json", "--server", "tcp://"+s.sip, "--expires", "600s", "alice@example.com")
	waitFor(t, "a NOTIFY with alice's contact", func() bool { return strings.Contains(w.stdout.String(), `"call_id"`) })

	get := func(what, path, schema string) {
		var v any
		if code := s.call(t, "GET", path, e2eToken, "", &v); code != 200 {
			t.Fatalf("%s: %d", path, code)
		}
		sc.check(what, schema, v)
	}
	get("GET /v1/registrations", "/v1/registrations", "RegistrationPage")
	get("GET /v1/registrations/{aor} without sip:", "/v1/registrations/alice@example.com", "Registration")
	get("GET /v1/registrations/{aor}/watchers", "/v1/registrations/alice@example.com/watchers", "WatcherList")
	get("GET /v1/subscriptions", "/v1/subscriptions", "SubscriptionPage")
	get("GET /v1/subscriptions paged", "/v1/subscriptions?limit=1", "SubscriptionPage")
	get("GET /v1/log-level", "/v1/log-level", "LogLevel")
	var notFound any
	if code := s.call(t, "GET", "/v1/registrations/nobody@example.com", e2eToken, "", &notFound); code != 404 {
		t.Errorf("unknown AOR: %d", code)
	}
	sc.check("404", "Error", notFound)

	// The reg watch above is a watcher of alice: watch --winfo sees it.
	wi := startRunWatch(t, "--winfo", "--json", "--server", "tcp://"+s.sip, "alice@example.com")
	waitFor(t, "a watcherinfo NOTIFY listing the reg watch", func() bool { return strings.Contains(wi.stdout.String(), `"watchers":[{`) })
	if code := wi.stop(t); code != 0 {
		t.Errorf("watch --winfo: exit %d: %s", code, wi.stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(wi.stdout.String()), "\n") {
		sc.check("watch --winfo --json", "WatchWinfoNotify", decode(t, []byte(line)))
	}
	for _, field := range []string{`"since":`, `"expires":`, `"expires_at":`} {
		if !strings.Contains(wi.stdout.String(), field) {
			t.Errorf("watch --winfo --json has no %s field to check:\n%s", field, wi.stdout.String())
		}
	}

	// watch --winfo has unsubscribed: its subscription ends once the
	// final NOTIFY's transaction does (RFC 6665 4.4.1), a moment after the
	// watch has exited; until then it is rightly still listed.
	waitFor(t, "the watcherinfo subscription ended", func() bool {
		var page struct {
			Subscriptions []any `json:"subscriptions"`
		}
		return s.call(t, "GET", "/v1/subscriptions", e2eToken, "", &page) == 200 && len(page.Subscriptions) == 1
	})
	env := map[string]string{"REGBRIDGE_HTTP_LISTEN": s.http, "REGBRIDGE_ADMIN_TOKEN": e2eToken, "REGBRIDGE_DOMAIN": "example.com"}
	for _, cmd := range []struct{ name, schema string }{{"registrations", "Registration"}, {"subscriptions", "Subscription"}} {
		code, out, stderr := runCmd(t, env, cmd.name, "--json")
		if code != 0 {
			t.Fatalf("%s --json: exit %d: %s", cmd.name, code, stderr)
		}
		list, ok := decode(t, []byte(out)).([]any)
		if !ok || len(list) != 1 {
			t.Fatalf("%s --json: want an array of one, got %s", cmd.name, out)
		}
		sc.check(cmd.name+" --json", cmd.schema, list[0])
	}

	var reg struct {
		Contacts []struct{ ID string } `json:"contacts"`
	}
	s.call(t, "GET", "/v1/registrations/alice@example.com", e2eToken, "", &reg)
	var acted any
	if code := s.call(t, "POST", "/v1/registrations/alice@example.com/contacts/"+reg.Contacts[0].ID+"/probation", e2eToken, `{"retry_after": 60}`, &acted); code != 200 {
		t.Fatalf("probation: %d %v", code, acted)
	}
	sc.check("POST probation", "ActResponse", acted)
	sc.check("SSE probation event", "Event", decode(t, receive(t, "the probation SSE event", es.data)))
	sc.check("probation webhook body", "Event", decode(t, receive(t, "the probation webhook POST", hooks)))
	waitFor(t, "the probation NOTIFY", func() bool { return strings.Contains(w.stdout.String(), `"probation"`) })
	if code := w.stop(t); code != 0 {
		t.Errorf("watch: exit %d: %s", code, w.stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(w.stdout.String()), "\n") {
		sc.check("watch --json", "WatchNotify", decode(t, []byte(line)))
	}

	// Each output above is compared with the schema field by field; these
	// must have been among the fields compared, or the contact above did
	// not exercise what it should.
	for _, want := range []string{
		"Event.q", "Event.transport", "Event.expires", "Event.expires_at", "Event.call_id", "Event.cseq", "Event.retry_after",
		"Contact.q", "Contact.transport", "Contact.expires", "Contact.expires_at", "Contact.received",
		"Contact.instance", "Contact.reg_id", "Contact.path", // no socket: the kamailio source does not read it
		"Contact.modified", "Contact.key", "Contact.retry_after",
		"Subscription.expires", "Subscription.expires_at", "Subscription.transport", "Watcher.since", "Watcher.expires", "Watcher.expires_at",
		"WatchNotify.version", "ActResponse.contact",
	} {
		if !sc.seen[want] {
			t.Errorf("no output had %s", want)
		}
	}
}

// receive waits a few seconds at most for what ch brings.
func receive(t *testing.T, what string, ch chan []byte) []byte {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
	}
	return nil
}

func decode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	return v
}

// schemaChecker compares decoded JSON with the OpenAPI document's
// component schemas: the subset of JSON Schema the document uses ($ref,
// allOf, type, properties, required, additionalProperties, items, enum,
// minimum, maximum, format date-time).
type schemaChecker struct {
	t   *testing.T
	doc map[string]any
	// seen records "Schema.property" for every property met in an output.
	seen map[string]bool
}

func (sc *schemaChecker) check(what, component string, v any) {
	sc.t.Helper()
	for _, err := range sc.validate(component, sc.component(component), v, component) {
		sc.t.Errorf("%s: %s", what, err)
	}
}

func (sc *schemaChecker) component(name string) map[string]any {
	m, ok := sc.doc["components"].(map[string]any)["schemas"].(map[string]any)[name].(map[string]any)
	if !ok {
		sc.t.Fatalf("openapi.json has no component schema %s", name)
	}
	return m
}

// validate returns what is wrong with v under schema; at is the JSON path
// so far, name the component the schema belongs to.
func (sc *schemaChecker) validate(name string, schema map[string]any, v any, at string) []string {
	if ref, ok := schema["$ref"].(string); ok {
		name = strings.TrimPrefix(ref, "#/components/schemas/")
		if name == "Transport" {
			if s, ok := v.(string); ok && s != strings.ToLower(s) {
				return []string{fmt.Sprintf("%s: transport %q is not lower case", at, s)}
			}
		}
		return sc.validate(name, sc.component(name), v, at)
	}
	var errs []string
	props, required := map[string]any{}, []string{}
	var additional map[string]any
	var collect func(s map[string]any)
	collect = func(s map[string]any) {
		if ref, ok := s["$ref"].(string); ok {
			s = sc.component(strings.TrimPrefix(ref, "#/components/schemas/"))
		}
		for _, sub := range asSlice(s["allOf"]) {
			collect(sub.(map[string]any))
		}
		for k, p := range asMap(s["properties"]) {
			props[k] = p
		}
		for _, r := range asSlice(s["required"]) {
			required = append(required, r.(string))
		}
		if a, ok := s["additionalProperties"].(map[string]any); ok {
			additional = a
		}
	}
	collect(schema)
	typ, _ := schema["type"].(string)
	if typ == "" && len(props) > 0 {
		typ = "object"
	}
	if enum := asSlice(schema["enum"]); enum != nil && !slices.Contains(enum, v) {
		errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", at, v, enum))
	}
	switch typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want an object, got %T", at, v))
		}
		for _, r := range required {
			if _, ok := m[r]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required field %q is missing", at, r))
			}
		}
		for k, x := range m {
			p, ok := props[k].(map[string]any)
			switch {
			case ok:
				sc.seen[name+"."+k] = true
				errs = append(errs, sc.validate(name, p, x, at+"."+k)...)
			case additional != nil:
				errs = append(errs, sc.validate(name, additional, x, at+"."+k)...)
			default:
				errs = append(errs, fmt.Sprintf("%s: field %q is not in the %s schema", at, k, name))
			}
		}
	case "array":
		l, ok := v.([]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want an array, got %T", at, v))
		}
		for i, x := range l {
			errs = append(errs, sc.validate(name, asMap(schema["items"]), x, fmt.Sprintf("%s[%d]", at, i))...)
		}
	case "string":
		s, ok := v.(string)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want a string, got %T %v", at, v, v))
		}
		if schema["format"] == "date-time" {
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				errs = append(errs, fmt.Sprintf("%s: %q is not an RFC 3339 time", at, s))
			}
		}
	case "integer", "number":
		f, ok := v.(float64)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want a %s, got %T %v", at, typ, v, v))
		}
		if typ == "integer" && f != math.Trunc(f) {
			errs = append(errs, fmt.Sprintf("%s: %v is not an integer", at, f))
		}
		if lo, ok := schema["minimum"].(float64); ok && f < lo {
			errs = append(errs, fmt.Sprintf("%s: %v is below the minimum %v", at, f, lo))
		}
		if hi, ok := schema["maximum"].(float64); ok && f > hi {
			errs = append(errs, fmt.Sprintf("%s: %v is above the maximum %v", at, f, hi))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			errs = append(errs, fmt.Sprintf("%s: want a boolean, got %T %v", at, v, v))
		}
	default:
		errs = append(errs, fmt.Sprintf("%s: the schema has no type the checker knows (%q)", at, typ))
	}
	return errs
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }
func asSlice(v any) []any        { l, _ := v.([]any); return l }
