package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// fixtures are messages as regbridge sent them (testdata, CRLF kept) and
// hand-made variants exercising what other SIP stacks do: compact header
// names, folded lines, several Vias, display names, odd spacing.
func fixtures(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	files, _ := filepath.Glob("testdata/*.sip")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	if len(out) == 0 {
		t.Fatal("no testdata/*.sip")
	}
	crlf := func(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }
	out["compact"] = crlf(`NOTIFY sip:watcher3@127.0.0.1:5000 SIP/2.0
v: SIP/2.0/UDP 10.0.0.1:5065;branch=z9hG4bK.1
v: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK.2;received=10.0.0.9
f: "Reg Bridge" <sip:alice@example.com>;tag=srv
t: <sip:watcher3@example.com>;tag=rlx.3
i: rlx.3@regload
CSeq: 7 NOTIFY
m: <sip:regbridge@10.0.0.1:5065;transport=udp>;expires=5
Subscription-State: terminated;reason=timeout
l: 2

ab`)
	out["folded"] = crlf(`SIP/2.0 200 OK
Via: SIP/2.0/TCP 127.0.0.1:4000;branch=z9hG4bK.3,
 SIP/2.0/TCP 127.0.0.1:4001;branch=z9hG4bK.4
From: sip:watcher1@example.com;tag=rlx.1
To: <sip:bob@example.com>;tag=abc
Call-ID: rlx.1@regload
CSeq: 2 SUBSCRIBE
Contact: sip:regbridge@127.0.0.1:5065;transport=tcp
Expires: 0
Content-Length: 0

`)
	return out
}

// TestParseAgreesWithSipgo reads every fixture with both parsers.
func TestParseAgreesWithSipgo(t *testing.T) {
	for name, data := range fixtures(t) {
		t.Run(name, func(t *testing.T) {
			var m message
			if err := parse(data, &m); err != nil {
				t.Fatalf("parse: %v", err)
			}
			want, err := sip.ParseMessage(data)
			if err != nil {
				t.Fatalf("sipgo: %v", err)
			}
			var callID, fromTag, toTag, cseqM, contact, subs string
			var cseq uint32
			switch w := want.(type) {
			case *sip.Request:
				if !m.request || string(m.method) != string(w.Method) {
					t.Errorf("method %q request=%v, want %s", m.method, m.request, w.Method)
				}
			case *sip.Response:
				if m.request || m.status != w.StatusCode {
					t.Errorf("status %d request=%v, want %d", m.status, m.request, w.StatusCode)
				}
			}
			callID = want.CallID().Value()
			fromTag, _ = want.From().Params.Get("tag")
			toTag, _ = want.To().Params.Get("tag")
			cseq, cseqM = want.CSeq().SeqNo, string(want.CSeq().MethodName)
			if cs := want.GetHeaders("Contact"); len(cs) > 0 {
				contact = cs[0].(*sip.ContactHeader).Address.String()
			}
			if hs := want.GetHeaders("Subscription-State"); len(hs) > 0 {
				subs = hs[0].Value()
			}
			for _, c := range []struct{ what, got, want string }{
				{"Call-ID", string(m.callID), callID},
				{"From tag", string(m.fromTag), fromTag},
				{"To tag", string(m.toTag), toTag},
				{"CSeq method", string(m.cseqM), cseqM},
				{"Contact", string(m.contact), contact},
				{"Subscription-State", string(m.subs), subs},
				{"body", string(m.body), string(want.Body())},
			} {
				if c.got != c.want {
					t.Errorf("%s %q, want %q", c.what, c.got, c.want)
				}
			}
			if m.cseq != cseq {
				t.Errorf("CSeq %d, want %d", m.cseq, cseq)
			}
			if got, want := m.nvia, len(want.GetHeaders("Via")); got > want || got == 0 {
				t.Errorf("%d Via lines for %d Via values", got, want)
			}
		})
	}
}

// TestResponseMatchesSipgo: our 200 to a NOTIFY carries what sipgo's
// NewResponseFromRequest would copy.
func TestResponseMatchesSipgo(t *testing.T) {
	for name, data := range fixtures(t) {
		if !bytes.HasPrefix(data, []byte("NOTIFY")) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			var m message
			if err := parse(data, &m); err != nil {
				t.Fatal(err)
			}
			got, err := sip.ParseMessage(appendResponse(nil, &m, 200, "OK"))
			if err != nil {
				t.Fatalf("sipgo cannot read our 200: %v", err)
			}
			res, ok := got.(*sip.Response)
			if !ok || res.StatusCode != 200 || len(res.Body()) != 0 {
				t.Fatalf("not a bodiless 200: %v", got)
			}
			req, _ := sip.ParseMessage(data)
			want := sip.NewResponseFromRequest(req.(*sip.Request), 200, "OK", nil)
			for _, h := range []string{"Via", "From", "To", "Call-ID", "CSeq"} {
				var g, w []string
				for _, x := range res.GetHeaders(h) {
					g = append(g, x.Value())
				}
				for _, x := range want.GetHeaders(h) {
					w = append(w, x.Value())
				}
				// sipgo adds received= to the top Via of requests it
				// received from the network; ours copies them untouched.
				if strings.Join(g, ",") != strings.Join(w, ",") {
					t.Errorf("%s %q, want %q", h, g, w)
				}
			}
		})
	}
}

// TestSubscribeReadsBack: sipgo reads our SUBSCRIBEs as we meant them, and
// the dialog identifiers lead back to the subscription.
func TestSubscribeReadsBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  subscribeReq
	}{
		{"initial udp", subscribeReq{transport: "UDP", local: "127.0.0.1:4000", run: "x1y2z", idx: 12345,
			user: "rlx1y2zu45", domain: "regload.invalid", cseq: 1, expires: 3600}},
		{"unsubscribe tcp", subscribeReq{transport: "TCP", local: "[::1]:4001", run: "x1y2z", idx: 0,
			user: "rlx1y2zu0", domain: "example.com", target: "sip:regbridge@[::1]:5065;transport=tcp",
			toTag: "6f583b1d", cseq: 2, expires: 0}},
		{"initial wss", subscribeReq{transport: "WSS", local: "127.0.0.1:4002", run: "x1y2z", idx: 7,
			user: "rlx1y2zu7", domain: "regload.invalid", cseq: 1, expires: 600}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := sip.ParseMessage(appendSubscribe(nil, &tc.req))
			if err != nil {
				t.Fatal(err)
			}
			req := msg.(*sip.Request)
			if req.Method != sip.SUBSCRIBE || req.GetHeader("Event").Value() != "reg" ||
				req.GetHeader("Expires").Value() != strconv.Itoa(tc.req.expires) || req.CSeq().SeqNo != tc.req.cseq {
				t.Errorf("SUBSCRIBE read back wrong:\n%s", req)
			}
			if tc.req.target != "" && req.Recipient.String() != tc.req.target {
				t.Errorf("Request-URI %s, want %s", req.Recipient.String(), tc.req.target)
			}
			if tag, _ := req.To().Params.Get("tag"); tag != tc.req.toTag {
				t.Errorf("To tag %q, want %q", tag, tc.req.toTag)
			}
			if via := req.Via(); via.Transport != tc.req.transport || !via.Params.Has("rport") {
				t.Errorf("Via %s", via.Value())
			}
			wantTP := map[string]string{"UDP": "", "TCP": "tcp", "WSS": "ws"}[tc.req.transport] // RFC 7118: ws for WSS too
			if tp, _ := req.Contact().Address.UriParams.Get("transport"); tp != wantTP {
				t.Errorf("Contact %s, want transport %q", req.Contact().Value(), wantTP)
			}
			fromTag, _ := req.From().Params.Get("tag")
			if got := dialogIndex([]byte(req.CallID().Value()), tc.req.run); got != tc.req.idx {
				t.Errorf("Call-ID %s names %d", req.CallID().Value(), got)
			}
			if got := dialogIndex([]byte(fromTag), tc.req.run); got != tc.req.idx {
				t.Errorf("From tag %s names %d", fromTag, got)
			}
		})
	}
}

// TestTagParam covers what sipgo does not read: spaces around ';' and '='
// (RFC 3261 25.1 SEMI and EQUAL), and URI parameters named tag.
func TestTagParam(t *testing.T) {
	for _, tc := range []struct{ v, want string }{
		{"<sip:a@b>;tag=x1", "x1"},
		{"<sip:a@b> ; tag = x1 ;foo", "x1"},
		{"<sip:a@b;tag=uri>;TAG=x2", "x2"},
		{"<sip:a@b;tag=uri>", ""},
		{"sip:a@b;tag=x3", "x3"},
		{`"A;tag=no" <sip:a@b>;tagx=1;tag=x4`, "x4"},
	} {
		if got := string(tagParam([]byte(tc.v))); got != tc.want {
			t.Errorf("tagParam(%q) = %q, want %q", tc.v, got, tc.want)
		}
	}
}

func TestDialogIndex(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want int
	}{
		{"rlab1.0@regload", 0},
		{"rlab1.42", 42},
		{"rlab1.42@regload", 42},
		{"rlab2.42@regload", -1},
		{"rlab1.@regload", -1},
		{"rlab1.4x2@regload", -1},
		{"xxab1.1", -1},
		{"rlab1.99999999999999", -1},
	} {
		if got := dialogIndex([]byte(tc.v), "ab1"); got != tc.want {
			t.Errorf("dialogIndex(%q) = %d, want %d", tc.v, got, tc.want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for name, data := range map[string]string{
		"no blank line":  "NOTIFY sip:a@b SIP/2.0\r\nVia: x\r\n",
		"bad start":      "HELLO\r\n\r\n",
		"short length":   "SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 X\r\nContent-Length: 9\r\n\r\nab",
		"no Call-ID":     "SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCSeq: 1 X\r\n\r\n",
		"bad CSeq":       "SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: x X\r\n\r\n",
		"no colon":       "SIP/2.0 200 OK\r\nVia x\r\n\r\n",
		"status too big": "SIP/2.0 999 No\r\n\r\n",
	} {
		var m message
		if err := parse([]byte(data), &m); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, data := range fixtures(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m message
		if parse(data, &m) != nil {
			return
		}
		_ = appendResponse(nil, &m, 200, "OK")
		if len(m.body) > len(data) {
			t.Fatal("body beyond the message")
		}
	})
}

// BenchmarkParse compares reading a NOTIFY and building its 200 with our
// parser and with sipgo's (the choice sip.go explains).
func BenchmarkParse(b *testing.B) {
	data, err := os.ReadFile("testdata/notify-partial.sip")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("regload", func(b *testing.B) {
		var m message
		var d reginfo
		var out []byte
		b.ReportAllocs()
		for b.Loop() {
			if err := parse(data, &m); err != nil {
				b.Fatal(err)
			}
			if err := scanReginfo(m.body, &d); err != nil {
				b.Fatal(err)
			}
			out = appendResponse(out[:0], &m, 200, "OK")
		}
	})
	b.Run("sipgo", func(b *testing.B) {
		var d reginfo
		b.ReportAllocs()
		for b.Loop() {
			msg, err := sip.ParseMessage(data)
			if err != nil {
				b.Fatal(err)
			}
			req := msg.(*sip.Request)
			if err := scanReginfo(req.Body(), &d); err != nil {
				b.Fatal(err)
			}
			_ = sip.NewResponseFromRequest(req, 200, "OK", nil).String()
		}
	})
}
