package notifier

import (
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/notifier/siptest"
	"github.com/regbridge/regbridge/source"
)

// allListeners is one listener of every transport on loopback.
var allListeners = ListenAddrs{
	{"udp", "127.0.0.1:0"}, {"tcp", "127.0.0.1:0"}, {"tls", "127.0.0.1:0"},
	{"ws", "127.0.0.1:0"}, {"wss", "127.0.0.1:0"},
}

// TestTransports: a whole subscription over every transport, with a
// certificate made at test time. The NOTIFYs come back on the connection
// the SUBSCRIBE came on (the subscriber's Contact is unreachable on
// purpose), and our Contact names the transport (RFC 3261 12.1.1, RFC 7118
// 5.2).
func TestTransports(t *testing.T) {
	pki := siptest.NewPKI(t)
	h := newHarness(t, Config{Listen: allListeners, TLSCert: pki.CertFile, TLSKey: pki.KeyFile}, tAlice)
	tests := []struct {
		network   string
		aor       string
		transport string // of the NOTIFY as received
		contact   string // our Contact URI in the 200 and the NOTIFYs
	}{
		{"udp", "sip:alice@example.com", "UDP", "sip:regbridge@127.0.0.1:"},
		{"tcp", "sip:alice@example.com", "TCP", "sip:regbridge@127.0.0.1:*;transport=tcp"},
		{"tls", "sip:alice@example.com", "TLS", "sip:regbridge@127.0.0.1:*;transport=tls"},
		{"tls", "sips:alice@example.com", "TLS", "sips:regbridge@127.0.0.1:"},
		{"ws", "sip:alice@example.com", "WS", "sip:regbridge@127.0.0.1:*;transport=ws"},
		{"wss", "sip:alice@example.com", "WSS", "sips:regbridge@127.0.0.1:*;transport=ws"},
	}
	for _, tt := range tests {
		t.Run(tt.network+" "+strings.SplitN(tt.aor, ":", 2)[0], func(t *testing.T) {
			p := siptest.New(t, tt.network, h.addr(tt.network), siptest.WithTLS(pki.ClientConfig(false)))
			res := p.Subscribe(tt.aor, siptest.Header("Event", "reg"))
			if res.StatusCode != 200 {
				t.Fatalf("SUBSCRIBE: %d %s", res.StatusCode, res.Reason)
			}
			port := h.addr(tt.network)[strings.LastIndexByte(h.addr(tt.network), ':')+1:]
			want := strings.Replace(tt.contact, "*", port, 1)
			if !strings.Contains(tt.contact, "*") {
				want += port
			}
			if got := res.Contact().Address.String(); got != want {
				t.Errorf("200 Contact %s, want %s", got, want)
			}
			n := next(t, p)
			p.Check(n, 0, "full", "active;expires=")
			if n.Transport != tt.transport {
				t.Errorf("NOTIFY arrived over %s, want %s", n.Transport, tt.transport)
			}
			if got := n.Req.Contact().Address.String(); got != want {
				t.Errorf("NOTIFY Contact %s, want %s", got, want)
			}

			c2 := tAlice
			c2.Key, c2.URI, c2.CallID = "uloc-"+tt.network, "sip:alice@192.0.2.20", "c-"+tt.network
			h.br.Apply(t.Context(), source.Batch{Contacts: []source.Contact{c2}})
			p.Check(next(t, p), 1, "partial", "active;expires=")
			h.br.Apply(t.Context(), source.Batch{Deleted: []string{c2.Key}})
			p.Check(next(t, p), 2, "partial", "active;expires=")

			res = p.Subscribe(tt.aor, siptest.Header("Event", "reg"), siptest.Header("Expires", "0"))
			if res.StatusCode != 200 {
				t.Fatalf("unsubscribe: %d", res.StatusCode)
			}
			p.Check(next(t, p), 3, "full", "terminated;reason=timeout")
		})
	}
}

// TestTLSClientCertificate: with REGBRIDGE_TLS_CLIENT_CA a client without
// a certificate from that CA cannot talk SIP over TLS; one with it can.
func TestTLSClientCertificate(t *testing.T) {
	pki := siptest.NewPKI(t)
	h := newHarness(t, Config{
		Listen:  ListenAddrs{{"udp", "127.0.0.1:0"}, {"tls", "127.0.0.1:0"}},
		TLSCert: pki.CertFile, TLSKey: pki.KeyFile, TLSClientCA: pki.CAFile,
	}, tAlice)

	t.Run("without certificate", func(t *testing.T) {
		refused := func(err error) bool {
			var netErr net.Error
			if err == nil || (errors.As(err, &netErr) && netErr.Timeout()) {
				return false
			}
			return strings.Contains(err.Error(), "certificate required") || strings.Contains(err.Error(), "bad certificate")
		}
		conn, err := tls.Dial("tcp", h.addr("tls"), pki.ClientConfig(false))
		if err != nil {
			if !refused(err) { // refused in the handshake (TLS 1.2)
				t.Fatalf("dial: %v, want a refusal for the missing certificate", err)
			}
			return
		}
		defer conn.Close()
		// TLS 1.3 reports the missing certificate after the handshake.
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write([]byte("OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n\r\n"))
		_, err = conn.Read(make([]byte, 1))
		if !refused(err) {
			t.Fatalf("read after handshake without a client certificate: %v, want a TLS alert", err)
		}
	})
	t.Run("with certificate", func(t *testing.T) {
		p := siptest.New(t, "tls", h.addr("tls"), siptest.WithTLS(pki.ClientConfig(true)))
		if res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg")); res.StatusCode != 200 {
			t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
		}
		p.Check(next(t, p), 0, "full", "active")
	})
}

// TestTLSConfig: TLS settings are checked at start-up, naming the
// variable (ParseListen accepts every transport; Validate and New refuse
// what cannot work).
func TestTLSConfig(t *testing.T) {
	pki := siptest.NewPKI(t)
	tlsListen := ListenAddrs{{"tls", "127.0.0.1:0"}}
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for none
	}{
		{"tls without certificate", Config{Listen: tlsListen}, "REGBRIDGE_TLS_CERT"},
		{"wss without certificate", Config{Listen: ListenAddrs{{"wss", "127.0.0.1:0"}}}, "REGBRIDGE_TLS_CERT"},
		{"certificate without key", Config{Listen: tlsListen, TLSCert: pki.CertFile}, "REGBRIDGE_TLS_KEY"},
		{"client CA without certificate", Config{Listen: ListenAddrs{{"udp", "127.0.0.1:0"}}, TLSClientCA: pki.CAFile}, "REGBRIDGE_TLS_CLIENT_CA"},
		{"unreadable certificate", Config{Listen: tlsListen, TLSCert: pki.CertFile + ".missing", TLSKey: pki.KeyFile}, "REGBRIDGE_TLS_CERT"},
		{"key of another certificate", Config{Listen: tlsListen, TLSCert: pki.CAFile, TLSKey: pki.KeyFile}, "REGBRIDGE_TLS_CERT"},
		{"client CA not PEM", Config{Listen: tlsListen, TLSCert: pki.CertFile, TLSKey: pki.KeyFile, TLSClientCA: pki.KeyFile}, "REGBRIDGE_TLS_CLIENT_CA"},
		{"valid", Config{Listen: tlsListen, TLSCert: pki.CertFile, TLSKey: pki.KeyFile, TLSClientCA: pki.CAFile}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, nil, testLog())
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New: %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

func TestParseListen(t *testing.T) {
	tests := []struct {
		name, in string
		want     string // String() of the result joined by ","; "" for an error
	}{
		{"every transport", "udp://127.0.0.1:5065, tcp://127.0.0.1:5065,tls://[::1]:5061,ws://0.0.0.0:8080,wss://127.0.0.1:8443",
			"udp://127.0.0.1:5065,tcp://127.0.0.1:5065,tls://[::1]:5061,ws://0.0.0.0:8080,wss://127.0.0.1:8443"},
		{"unknown transport", "sctp://127.0.0.1:5065", ""},
		{"no scheme", "127.0.0.1:5065", ""},
		{"no port", "tls://127.0.0.1", ""},
		{"no host", "wss://:8443", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseListen(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ParseListen(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var parts []string
			for _, l := range got {
				parts = append(parts, l.String())
			}
			if s := strings.Join(parts, ","); s != tt.want {
				t.Fatalf("got %s, want %s", s, tt.want)
			}
		})
	}
}

// TestUDPSymmetric: a UDP subscriber behind NAT advertises a Contact it
// cannot be reached at; with rport in its Via the NOTIFYs go to the
// address and port its SUBSCRIBE came from (RFC 3581), and leave from the
// SIP port it subscribed to. Without rport they go to the Contact.
func TestUDPSymmetric(t *testing.T) {
	tests := []struct {
		name      string
		opts      []siptest.Option
		delivered bool
	}{
		{"rport", []siptest.Option{siptest.WithNAT()}, true},
		{"no rport", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{}, tAlice)
			p := siptest.New(t, "udp", h.addr("udp"), tt.opts...)
			res := p.Subscribe("sip:alice@example.com", siptest.Header("Event", "reg"), siptest.Header("Contact", "<sip:watcher@127.0.0.1:9>"))
			if res.StatusCode != 200 {
				t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
			}
			if !tt.delivered {
				p.None(300 * time.Millisecond)
				return
			}
			n := next(t, p)
			p.Check(n, 0, "full", "active")
			if n.Source != h.addr("udp") {
				t.Errorf("NOTIFY came from %s, want the SIP port %s", n.Source, h.addr("udp"))
			}
		})
	}
}
