package opensips

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/regbridge/regbridge/internal/conformance"
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/sourcetest"
)

// harness runs the conformance suite on one backend: servers behind a
// proxy that Break cuts, SQLite by moving the file away (OpenSIPS's open
// connection keeps writing to it).
type harness struct {
	*store
	n     int
	w     osWriter
	proxy *sourcetest.Proxy
}

func TestConformance(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			conformance.Run(t, &harness{store: b.open(t)})
		})
	}
}

func (h *harness) NewSource(t *testing.T) source.Source {
	h.n++
	table := fmt.Sprintf("location_%d", h.n)
	createTable(t, h.db, h.backend, table)
	loc, err := time.LoadLocation(registrarTZ)
	if err != nil {
		t.Fatal(err)
	}
	h.w = osWriter{db: h.db, table: table, loc: loc}
	addr := ""
	if h.addr != "" {
		h.proxy = sourcetest.NewProxy(t, h.addr)
		addr = h.proxy.Addr()
	}
	return h.newSource(t, table, addr)
}

func binding(r conformance.Row) osBinding {
	var dom any // use_domain=0 for even IDs: Domain completes the AOR
	if r.ID%2 == 1 {
		dom = r.Domain
	}
	return osBinding{id: contactID(r.ID), user: r.User, domain: dom, contact: r.URI, callid: r.CallID, ua: r.UserAgent,
		expires: r.Expires, cseq: r.CSeq}
}

func (h *harness) Insert(t *testing.T, r conformance.Row) { h.w.insert(t, binding(r)) }
func (h *harness) Update(t *testing.T, r conformance.Row) { h.w.update(t, binding(r)) }
func (h *harness) Delete(t *testing.T, r conformance.Row) { h.w.delete(t, contactID(r.ID)) }

func (h *harness) InsertBad(t *testing.T, r conformance.Row) {
	b := binding(r)
	b.contact = "<not a SIP URI>"
	h.w.insert(t, b)
}

func (h *harness) Break(t *testing.T) {
	if h.proxy != nil {
		h.proxy.Break()
		return
	}
	if err := os.Rename(h.path, h.path+".moved"); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) Restore(t *testing.T) {
	if h.proxy != nil {
		h.proxy.Restore()
		return
	}
	if err := os.Rename(h.path+".moved", h.path); err != nil {
		t.Fatal(err)
	}
}
