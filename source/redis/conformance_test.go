package redis

import (
	"context"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/internal/conformance"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
)

// harness runs the conformance suite against the local Redis: the watcher
// reads through a sourcetest.Proxy (Break cuts it), the harness writes
// straight to the server as the registrar would.
type harness struct {
	layout Layout
	events Events
	loc    *time.Location // registrar's zone (Kamailio layout)

	rdb    *goredis.Client
	prefix string
	proxy  *sourcetest.Proxy
}

func TestConformance(t *testing.T) {
	tests := []struct {
		name string
		h    *harness
	}{
		{"kamailio layout, keyspace events, registrar in Berlin", &harness{layout: LayoutKamailio, events: EventsAuto, loc: mustZone(t, "Europe/Berlin")}},
		{"kamailio layout, polling (events=off)", &harness{layout: LayoutKamailio, events: EventsOff, loc: time.UTC}},
		{"generic layout, keyspace events", &harness{layout: LayoutGeneric, events: EventsAuto}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conformance.Run(t, tt.h)
		})
	}
}

func (h *harness) NewSource(t *testing.T) source.Source {
	rdb, err := h.connect()
	if err != nil {
		sourcetest.Unavailable(t, "Redis", err, `redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis`)
	}
	t.Cleanup(func() { rdb.Close() })
	h.rdb = rdb
	if h.events == EventsAuto {
		setKeyspaceEvents(t, rdb, "Kghx", true)
	}
	h.proxy = sourcetest.NewProxy(t, redisAddr)
	cfg := Config{Addr: h.proxy.Addr(), DB: testDB, Layout: h.layout, Events: h.events, PollInterval: 20 * time.Millisecond}
	switch h.layout {
	case LayoutKamailio:
		cfg.Table = uniqueName(t, "v1:location")
		cfg.Location = h.loc
		cfg.Domain = conformance.Domain // use_domain=0: username only
		h.prefix = kamailioPrefix(cfg.Table)
	case LayoutGeneric:
		cfg.Prefix = uniqueName(t, "reg:contact") + ":"
		h.prefix = cfg.Prefix
	}
	cleanPrefix(t, rdb, h.prefix)
	w, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.backoffCap = 200 * time.Millisecond
	return w
}

func (h *harness) connect() (*goredis.Client, error) {
	rdb := goredis.NewClient(&goredis.Options{Addr: redisAddr, DB: testDB, DisableIdentity: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		rdb.Close()
		return nil, err
	}
	return rdb, nil
}

// key is the binding's Redis key; for Kamailio its suffix is a ruid in
// the sruid format.
func (h *harness) key(id int) string {
	if h.layout == LayoutKamailio {
		return h.prefix + fmt.Sprintf("uloc-6741a3b2-5c1-%d", id)
	}
	return h.prefix + fmt.Sprint("b", id)
}

// fields renders r as the registrar writes it.
func (h *harness) fields(r conformance.Row, contact string) map[string]any {
	if h.layout == LayoutGeneric {
		exp := int64(0)
		if !r.Expires.IsZero() {
			exp = r.Expires.Unix()
		}
		return map[string]any{
			"aor": r.AOR, "uri": contact, "expires": exp, "callid": r.CallID, "cseq": r.CSeq,
			"user_agent": r.UserAgent, "modified": time.Now().Unix(),
		}
	}
	e := kamailioEntry{ruid: h.key(r.ID)[len(h.prefix):], user: r.User, contact: contact, expires: r.Expires, callid: r.CallID, cseq: int(r.CSeq)}
	f := e.fields(h.loc)
	f["user_agent"] = r.UserAgent
	return f
}

func (h *harness) Insert(t *testing.T, r conformance.Row) {
	hset(t, h.rdb, h.key(r.ID), h.fields(r, r.URI))
}

func (h *harness) InsertBad(t *testing.T, r conformance.Row) {
	hset(t, h.rdb, h.key(r.ID), h.fields(r, "<not a SIP URI>"))
}

// Update rewrites what a refresh rewrites, in one HSET on the same key.
func (h *harness) Update(t *testing.T, r conformance.Row) {
	f := h.fields(r, r.URI)
	if h.layout == LayoutKamailio {
		f = map[string]any{"expires": f["expires"], "callid": f["callid"], "cseq": f["cseq"], "user_agent": f["user_agent"], "last_modified": f["last_modified"]}
	}
	hset(t, h.rdb, h.key(r.ID), f)
}

func (h *harness) Delete(t *testing.T, r conformance.Row) { del(t, h.rdb, h.key(r.ID)) }

func (h *harness) Break(t *testing.T)   { h.proxy.Break() }
func (h *harness) Restore(t *testing.T) { h.proxy.Restore() }
