package notifier

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/emiago/sipgo/sip"
)

// listener is an opened listener of any transport.
type listener struct {
	network string // udp, tcp, tls, ws, wss
	packet  net.PacketConn
	stream  net.Listener // for tls and wss already wrapped in TLS
}

// loadTLS builds the server and client TLS configurations from the
// configured PEM files: nil, nil when none are configured. The client side
// is used when a NOTIFY needs a new TLS connection (to a Record-Route hop):
// it presents the same certificate and trusts the client CA as well as the
// system roots.
func loadTLS(cfg *Config) (server, client *tls.Config, err error) {
	if cfg.TLSCert == "" {
		return nil, nil, nil
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, nil, fmt.Errorf("REGBRIDGE_TLS_CERT/REGBRIDGE_TLS_KEY: %w", err)
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.TLSClientCA != "" {
		pem, err := os.ReadFile(cfg.TLSClientCA)
		if err != nil {
			return nil, nil, fmt.Errorf("REGBRIDGE_TLS_CLIENT_CA: %w", err)
		}
		cas := x509.NewCertPool()
		if !cas.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("REGBRIDGE_TLS_CLIENT_CA: %s holds no PEM certificate", cfg.TLSClientCA)
		}
		server.ClientCAs = cas
		server.ClientAuth = tls.RequireAndVerifyClientCert
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		roots.AppendCertsFromPEM(pem)
		client.RootCAs = roots
	}
	return server, client, nil
}

// Listen opens every configured listener, so that a port already in use
// stops start-up with a clear error before anything runs.
func (n *Notifier) Listen() error {
	for _, l := range n.cfg.Listen {
		opened, err := n.listen(l)
		if err != nil {
			n.closeListeners()
			return fmt.Errorf("listening on %s: %w", l, err)
		}
		n.listeners = append(n.listeners, opened)
		addr := ""
		if opened.packet != nil {
			addr = opened.packet.LocalAddr().String()
		} else {
			addr = opened.stream.Addr().String()
		}
		n.bound = append(n.bound, ListenAddr{l.Network, addr})
	}
	return nil
}

func (n *Notifier) listen(l ListenAddr) (listener, error) {
	switch l.Network {
	case "udp":
		pc, err := net.ListenPacket("udp", l.Addr)
		if err != nil {
			return listener{}, err
		}
		n.sizeUDPBuffers(pc)
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			return listener{network: l.Network, packet: pc}, nil
		}
		local, _ := netip.ParseAddrPort(uc.LocalAddr().String())
		sock := &udpSocket{UDPConn: uc, local: local, txs: n.udpTxs, srv: n.udpSrv}
		n.udpSockets = append(n.udpSockets, sock)
		return listener{network: l.Network, packet: sock}, nil
	case "tcp", "ws":
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil {
			return listener{}, err
		}
		return listener{network: l.Network, stream: n.streamListener(ln, sip.NetworkToUpper(l.Network))}, nil
	case "tls", "wss":
		if n.tlsServer == nil {
			return listener{}, errors.New("REGBRIDGE_TLS_CERT and REGBRIDGE_TLS_KEY are required")
		}
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil {
			return listener{}, err
		}
		ln = tls.NewListener(ln, n.tlsServer)
		return listener{network: l.Network, stream: n.streamListener(ln, sip.NetworkToUpper(l.Network))}, nil
	}
	return listener{}, fmt.Errorf("unknown transport %q", l.Network)
}

// streamListener wraps a TCP, TLS, WS or WSS listener (proto is the
// transport in upper case) so that the NOTIFYs on the connections it
// accepts run lean transactions (conntx.go, wsconn.go).
func (n *Notifier) streamListener(ln net.Listener, proto string) net.Listener {
	return &streamListener{Listener: ln, proto: proto, txs: n.udpTxs, conns: &n.conns}
}

// serve runs sipgo on one opened listener until it is closed.
func (n *Notifier) serve(l listener) error {
	switch l.network {
	case "udp":
		return n.srv.ServeUDP(l.packet)
	case "tcp":
		return n.srv.ServeTCP(l.stream)
	case "tls":
		return n.srv.ServeTLS(l.stream)
	case "ws":
		return n.srv.ServeWS(l.stream)
	case "wss":
		return n.srv.ServeWSS(l.stream)
	}
	return fmt.Errorf("unknown transport %q", l.network)
}

func (n *Notifier) closeListeners() {
	for _, l := range n.listeners {
		if l.packet != nil {
			l.packet.Close()
		}
		if l.stream != nil {
			l.stream.Close()
		}
	}
}

// Addrs returns the bound listener addresses (after Listen).
func (n *Notifier) Addrs() []ListenAddr { return n.bound }

// udpBufferBytes is the socket buffer regbridge asks for on UDP listeners.
// The kernel default (about 208 KiB) overflows when thousands of
// subscribers answer NOTIFYs at once, and every dropped 200 OK costs a
// retransmission; the kernel caps the request at net.core.rmem_max.
const udpBufferBytes = 8 << 20

// sizeUDPBuffers raises a UDP listener's socket buffers and logs what the
// kernel granted.
func (n *Notifier) sizeUDPBuffers(pc net.PacketConn) {
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		return
	}
	if err := uc.SetReadBuffer(udpBufferBytes); err != nil {
		n.log.Warn("cannot raise UDP receive buffer", "err", err)
	}
	if err := uc.SetWriteBuffer(udpBufferBytes); err != nil {
		n.log.Warn("cannot raise UDP send buffer", "err", err)
	}
	if raw, err := uc.SyscallConn(); err == nil {
		var got int
		_ = raw.Control(func(fd uintptr) {
			got, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
		})
		if got > 0 && got < udpBufferBytes {
			n.log.Info("UDP receive buffer smaller than asked; raise net.core.rmem_max for large fan-outs",
				"addr", pc.LocalAddr().String(), "granted_bytes", got, "asked_bytes", udpBufferBytes)
		}
	}
}
