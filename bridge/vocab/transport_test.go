package vocab

import "testing"

func TestContactTransport(t *testing.T) {
	tests := []struct {
		name, socket, received, uri, want string
	}{
		{"socket wins", "TCP:192.0.2.1:5060", "sip:198.51.100.7:5060;transport=udp", "sip:alice@198.51.100.7", "tcp"},
		{"received param", "", "sip:198.51.100.7:40000;transport=TLS", "sip:alice@10.0.0.2", "tls"},
		{"uri param", "", "", "<sip:alice@10.0.0.2:5060;transport=ws;ob>", "ws"},
		{"uri param before headers", "", "", "sip:alice@10.0.0.2;transport=tcp?Subject=x", "tcp"},
		{"sips default", "", "", "sips:alice@10.0.0.2", "tls"},
		{"sip default", "", "", "sip:alice@10.0.0.2:5060", "udp"},
		{"nothing known", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ContactTransport(tt.socket, tt.received, tt.uri); got != tt.want {
				t.Errorf("ContactTransport(%q, %q, %q) = %q, want %q", tt.socket, tt.received, tt.uri, got, tt.want)
			}
		})
	}
}
