package digest

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// TestSipgoClientOverUDP runs the authenticator behind a real sipgo
// server on loopback and lets sipgo's own UAC answer the challenge
// (DoDigestAuth, which takes the first WWW-Authenticate: SHA-256), with
// credentials from a Kamailio subscriber table in SQLite.
func TestSipgoClientOverUDP(t *testing.T) {
	path := sqliteStore(t, kamailioDDL, kamailioRows)
	creds, closeFn, err := Open(t.Context(), Source("kamailio+sqlite://"+filepath.ToSlash(path)), testLog())
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	a, err := New(Config{Realm: "example.com"}, creds, testLog())
	if err != nil {
		t.Fatal(err)
	}

	srvUA, err := sipgo.NewUA(sipgo.WithUserAgent("regbridge-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer srvUA.Close()
	srv, err := sipgo.NewServer(srvUA, sipgo.WithServerLogger(testLog()))
	if err != nil {
		t.Fatal(err)
	}
	identities := make(chan string, 4)
	srv.OnSubscribe(func(req *sip.Request, tx sip.ServerTransaction) {
		r, res := a.Check(context.Background(), req)
		if res == nil {
			identities <- r.Identity
			res = sip.NewResponseFromRequest(req, 200, "OK", nil)
			res.AppendHeader(sip.NewHeader("Expires", "0"))
		}
		_ = tx.Respond(res)
	})
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeUDP(conn)
	defer conn.Close()
	addr := conn.LocalAddr().(*net.UDPAddr)

	cliUA, err := sipgo.NewUA(sipgo.WithUserAgent("watcher"))
	if err != nil {
		t.Fatal(err)
	}
	defer cliUA.Close()
	cli, err := sipgo.NewClient(cliUA, sipgo.WithClientHostname("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		user, pw string
		want     int
	}{
		{"right password", "alice", "alice-pw", 200},
		{"wrong password", "alice", "guess", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			target := sip.Uri{Scheme: "sip", User: "alice", Host: "example.com"}
			req := sip.NewRequest(sip.SUBSCRIBE, target)
			req.SetDestination(addr.String())
			fromParams := sip.NewParams()
			fromParams.Add("tag", "w1")
			req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: tt.user, Host: "example.com"}, Params: fromParams})
			req.AppendHeader(&sip.ToHeader{Address: target})
			req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "watcher", Host: "127.0.0.1"}})
			req.AppendHeader(sip.NewHeader("Event", "reg"))
			res, err := cli.Do(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != 401 {
				t.Fatalf("first answer %d, want 401", res.StatusCode)
			}
			res, err = cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: tt.user, Password: tt.pw})
			if err != nil {
				t.Fatal(err)
			}
			if res.StatusCode != tt.want {
				t.Fatalf("answered request got %d %s, want %d", res.StatusCode, res.Reason, tt.want)
			}
			if tt.want == 200 {
				if id := <-identities; id != "sip:alice@example.com" {
					t.Errorf("identity %q", id)
				}
			}
		})
	}
}
