package kamailio

import (
	"fmt"
	"testing"
	"time"

	"github.com/regbridge/regbridge/internal/conformance"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// dbHarness runs the conformance suite on a real MySQL/MariaDB or
// PostgreSQL database written as Kamailio writes it (wall clock in
// Europe/Berlin, or BIGINT epochs), with the adapter behind a proxy that
// Break cuts.
type dbHarness struct {
	srv   server
	db    *sqltest.DB
	epoch bool
	n     int
	w     kamWriter
	proxy *sourcetest.Proxy
}

func TestConformanceDB(t *testing.T) {
	for _, srv := range servers {
		for _, epoch := range []bool{false, true} {
			name := srv.name + "/wall clock in " + registrarTZ
			if epoch {
				name = srv.name + "/BIGINT epoch"
			}
			t.Run(name, func(t *testing.T) {
				conformance.Run(t, &dbHarness{srv: srv, db: srv.open(t), epoch: epoch})
			})
		}
	}
}

func (h *dbHarness) NewSource(t *testing.T) source.Source {
	h.n++
	table := fmt.Sprintf("location_%d", h.n)
	h.srv.createTable(t, h.db, table, h.epoch)
	h.w = kamWriter{db: h.db, srv: h.srv, table: table, loc: mustLoad(t, registrarTZ), epoch: h.epoch}
	h.proxy = sourcetest.NewProxy(t, h.db.Endpoint.Addr)
	log, _ := newLogger(t)
	w, err := h.srv.newWatcher(DBConfig{
		Endpoint:     h.db.Via(h.proxy.Addr()),
		Table:        table,
		Domain:       conformance.Domain,
		TZ:           registrarTZ,
		PollInterval: 20 * time.Millisecond,
		MaxBackoff:   200 * time.Millisecond,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func binding(r conformance.Row) kamBinding {
	// use_domain=0 for even IDs (domain NULL, completed by Domain), 1 for
	// odd ones: both must give the same AOR.
	var dom any
	if r.ID%2 == 1 {
		dom = r.Domain
	}
	return kamBinding{ruid: ruidOf(r.ID), user: r.User, domain: dom, contact: r.URI, callid: r.CallID, ua: r.UserAgent,
		expires: r.Expires, cseq: r.CSeq}
}

func (h *dbHarness) Insert(t *testing.T, r conformance.Row) { h.w.insert(t, binding(r)) }
func (h *dbHarness) Update(t *testing.T, r conformance.Row) { h.w.update(t, binding(r)) }
func (h *dbHarness) Delete(t *testing.T, r conformance.Row) { h.w.delete(t, ruidOf(r.ID)) }

func (h *dbHarness) InsertBad(t *testing.T, r conformance.Row) {
	b := binding(r)
	b.contact = "<not a SIP URI>"
	h.w.insert(t, b)
}

func (h *dbHarness) Break(t *testing.T)   { h.proxy.Break() }
func (h *dbHarness) Restore(t *testing.T) { h.proxy.Restore() }
