package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/regbridge/regbridge/notifier/watch"
)

// watchFake is a scripted reg notifier for runWatch: 200 (or status) to
// SUBSCRIBE, then the documents in docs one NOTIFY each, and a terminated
// full NOTIFY on Expires: 0.
type watchFake struct {
	transport string
	addr      string
	client    *sipgo.Client
	status    int
	docs      []string // bodies of the NOTIFYs after the SUBSCRIBE
	sending   sync.WaitGroup
}

func newWatchFake(t *testing.T, transport string, status int, docs ...string) *watchFake {
	t.Helper()
	// Before any goroutine of this test: watch.New only raises it when lower.
	if sip.UDPMTUSize < 65535 {
		sip.UDPMTUSize = 65535
	}
	f := &watchFake{transport: transport, status: status, docs: docs}
	log := slog.New(slog.DiscardHandler)
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log)))
	if err != nil {
		t.Fatal(err)
	}
	srv, _ := sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	f.client, _ = sipgo.NewClient(ua, sipgo.WithClientLogger(log))
	srv.OnSubscribe(f.onSubscribe)
	served := make(chan struct{})
	var closer io.Closer
	if transport == "UDP" {
		conn, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.addr, closer = conn.LocalAddr().String(), conn
		go func() { defer close(served); srv.ServeUDP(conn) }()
	} else {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.addr, closer = l.Addr().String(), l
		go func() { defer close(served); srv.ServeTCP(l) }()
	}
	t.Cleanup(func() {
		ua.Close()
		closer.Close()
		<-served
		f.sending.Wait()
	})
	return f
}

func (f *watchFake) server() string { return strings.ToLower(f.transport) + "://" + f.addr }

func (f *watchFake) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	if f.status != 200 {
		tx.Respond(sip.NewResponseFromRequest(req, f.status, "Bad Event", nil))
		return
	}
	expires := req.GetHeader("Expires").Value()
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	host, port, _ := net.SplitHostPort(f.addr)
	p, _ := strconv.Atoi(port)
	res.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", Host: host, Port: p}})
	res.AppendHeader(sip.NewHeader("Expires", expires))
	tag, _ := res.To().Params.Get("tag")
	tx.Respond(res)

	f.sending.Add(1)
	go func() {
		defer f.sending.Done()
		if expires == "0" {
			f.notify(req, tag, 100, "terminated;reason=timeout", "")
			return
		}
		for i, d := range f.docs {
			f.notify(req, tag, uint32(i+1), "active;expires="+expires, d)
		}
	}()
}

func (f *watchFake) notify(sub *sip.Request, tag string, cseq uint32, state, body string) {
	req := sip.NewRequest(sip.NOTIFY, sub.Contact().Address)
	from := &sip.FromHeader{Address: sub.To().Address, Params: sip.NewParams()}
	from.Params.Add("tag", tag)
	to := &sip.ToHeader{Address: sub.From().Address, Params: sub.From().Params.Clone()}
	cid := sip.CallIDHeader(sub.CallID().Value())
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.NOTIFY})
	req.AppendHeader(sip.NewHeader("Event", "reg"))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	if body != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", "application/reginfo+xml"))
	}
	req.SetBody([]byte(body))
	req.SetDestination(sub.Source())
	req.SetTransport(f.transport)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f.client.Do(ctx, req)
}

const watchFullDoc = `<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">
  <registration aor="sip:alice@example.com" id="a1" state="active">
    <contact id="c1a2b3" state="active" event="registered" expires="3600">
      <uri>sip:alice@192.0.2.10:5060</uri>
    </contact>
  </registration>
</reginfo>`

const watchPartialDoc = `<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="partial">
  <registration aor="sip:alice@example.com" id="a1" state="terminated">
    <contact id="c1a2b3" state="terminated" event="probation" expires="0" retry-after="600">
      <uri>sip:alice@192.0.2.10:5060</uri>
    </contact>
  </registration>
</reginfo>`

// watchOutput is an io.Writer safe to read while runWatch writes.
type watchOutput struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *watchOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *watchOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// watchRun is runWatch running in the background.
type watchRun struct {
	stdout, stderr *watchOutput
	cancel         context.CancelFunc
	done           chan struct{}
	code           int
}

func startRunWatch(t *testing.T, args ...string) *watchRun {
	t.Helper()
	return startRunning(t, func(ctx context.Context, stdout, stderr io.Writer) int {
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		return runWatch(ctx, args, stdout, stderr, log)
	})
}

// startRunning runs a command (runWatch, run) in the background.
func startRunning(t *testing.T, cmd func(ctx context.Context, stdout, stderr io.Writer) int) *watchRun {
	t.Helper()
	r := &watchRun{stdout: &watchOutput{}, stderr: &watchOutput{}, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.code = cmd(ctx, r.stdout, r.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("runWatch did not return after cancel")
		}
	})
	return r
}

// wait returns the exit code once runWatch returns on its own.
func (r *watchRun) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(10 * time.Second):
		t.Fatal("runWatch did not return")
		return -1
	}
}

// stop cancels runWatch (Ctrl-C) and returns its exit code.
func (r *watchRun) stop(t *testing.T) int {
	t.Helper()
	r.cancel()
	return r.wait(t)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitUntil(t, 5*time.Second, what, cond)
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchText(t *testing.T) {
	for _, tp := range []string{"UDP", "TCP"} {
		t.Run(tp, func(t *testing.T) {
			f := newWatchFake(t, tp, 200, watchFullDoc, watchPartialDoc)
			r := startRunWatch(t, "--server", f.server(), "sip:alice@example.com", "--expires", "1h")
			waitFor(t, "two NOTIFYs", func() bool { return strings.Count(r.stdout.String(), "NOTIFY ") >= 2 })
			if code := r.stop(t); code != 0 {
				t.Fatalf("exit %d after cancel; stderr:\n%s", code, r.stderr.String())
			}
			want := `NOTIFY version=0 full  subscription=active;expires=3600
  sip:alice@example.com  registration=active
    contact c1a2b3  active  registered  sip:alice@192.0.2.10:5060  expires=3600
NOTIFY version=1 partial  subscription=active;expires=3600
  sip:alice@example.com  registration=terminated
    contact c1a2b3  terminated  probation  sip:alice@192.0.2.10:5060  expires=0  retry-after=600
NOTIFY (no body)  subscription=terminated;reason=timeout
`
			if got := r.stdout.String(); got != want {
				t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestWatchJSON(t *testing.T) {
	f := newWatchFake(t, "UDP", 200, watchFullDoc, watchPartialDoc)
	r := startRunWatch(t, "--json", "--server", f.server(), "sip:alice@example.com")
	waitFor(t, "two JSON lines", func() bool { return strings.Count(r.stdout.String(), "\n") >= 2 })
	if code := r.stop(t); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, r.stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines:\n%s", len(lines), r.stdout.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("line 1: %v", err)
	}
	if _, err := time.Parse(time.RFC3339Nano, first["time"].(string)); err != nil {
		t.Errorf("time: %v", err)
	}
	delete(first, "time")
	contact := first["registrations"].([]any)[0].(map[string]any)["contacts"].([]any)[0].(map[string]any)
	if at, err := time.Parse(time.RFC3339, fmt.Sprint(contact["expires_at"])); err != nil || time.Until(at) < 3590*time.Second || time.Until(at) > 3601*time.Second {
		t.Errorf("expires_at %v, want about an hour from now (%v)", contact["expires_at"], err)
	}
	delete(contact, "expires_at")
	wantFirst := `{"registrations":[{"aor":"sip:alice@example.com","contacts":[{"event":"registered","expires":3600,"id":"c1a2b3","state":"active","uri":"sip:alice@192.0.2.10:5060"}],"id":"a1","state":"active"}],"state":"full","subscription_state":"active;expires=3761","version":0}`
	if got, _ := json.Marshal(first); string(got) != wantFirst {
		t.Errorf("line 1:\n%s\nwant\n%s", got, wantFirst)
	}
	var second jsonNotify
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	c := second.Registrations[0].Contacts[0]
	if *second.Version != 1 || second.State != "partial" || c.RetryAfter != 600 || c.Expires == nil || *c.Expires != 0 || c.ExpiresAt != nil {
		t.Errorf("line 2: %s", lines[1])
	}
	var last map[string]any
	json.Unmarshal([]byte(lines[2]), &last)
	if _, ok := last["version"]; ok || last["subscription_state"] != "terminated;reason=timeout" {
		t.Errorf("line 3: %s", lines[2])
	}
}

func TestWatchRejected(t *testing.T) {
	f := newWatchFake(t, "TCP", 489)
	r := startRunWatch(t, "--server", f.server(), "sip:alice@example.com")
	if code := r.wait(t); code != 1 || !strings.Contains(r.stderr.String(), "489") {
		t.Errorf("exit %d, stderr %q; want 1 naming 489", code, r.stderr.String())
	}
}

func TestWatchUsage(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"help", []string{"-h"}, 0, "regbridge watch --server tcp://"},
		{"missing aor", []string{"--json"}, 2, "<aor>"},
		{"two aors", []string{"sip:a@x", "sip:b@x"}, 2, "one <aor>"},
		{"bad scheme", []string{"--server", "http://127.0.0.1:5065", "sip:a@x"}, 2, "--server"},
		{"no scheme", []string{"--server=127.0.0.1:5065", "sip:a@x"}, 2, "--server"},
		{"bad aor", []string{"tel:+1234"}, 2, "<aor>"},
		{"bad expires", []string{"--expires", "soon", "sip:a@x"}, 2, "-expires"},
		{"bad local", []string{"--local", "somehost", "sip:a@x"}, 2, "--local"},
		{"unknown flag", []string{"--verbose", "sip:a@x"}, 2, "verbose"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runWatch(context.Background(), tc.args, &stdout, &stderr, slog.New(slog.DiscardHandler))
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d mentioning %q", code, stderr.String(), tc.code, tc.stderr)
			}
		})
	}
}

func TestNotifyText(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	n := watch.Notify{
		SubscriptionState: "active;expires=3759",
		Doc: &watch.Reginfo{Version: 1, State: "partial", Registrations: []watch.Registration{
			{AOR: "sip:alice@example.com", ID: "a1", State: "active", Contacts: []watch.Contact{
				{ID: "c1a2b3", State: "active", Event: "registered", URI: "sip:alice@192.0.2.10:5060", Expires: u(3600)},
				{ID: "d4", State: "terminated", Event: "probation", URI: "sip:alice@192.0.2.11", RetryAfter: u(60)},
			}},
			{AOR: "sip:bob@example.com", ID: "b1", State: "init"},
		}},
	}
	want := (`NOTIFY version=1 partial  subscription=active;expires=3759
  sip:alice@example.com  registration=active
    contact c1a2b3  active  registered  sip:alice@192.0.2.10:5060  expires=3600
    contact d4  terminated  probation  sip:alice@192.0.2.11  retry-after=60
  sip:bob@example.com  registration=init
`)
	if got := notifyText(n); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}
