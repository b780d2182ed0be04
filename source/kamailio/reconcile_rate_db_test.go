package kamailio

import (
	"strings"
	"testing"
	"time"

	"github.com/regbridge/regbridge/source/sqlwatch"
)

// TestCDCPacedReconcile: with reconcile_rate= the reconcile beside the
// feed reads Kamailio's table in pages (250 rows, pages of 100) and still
// finds the changes the feed never reported, as non-Full batches.
func TestCDCPacedReconcile(t *testing.T) {
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			f := newCDCFixture(t, srv, DBConfig{CDC: sqlwatch.CDCTrigger, ReconcileInterval: 500 * time.Millisecond, ReconcileRate: 1000}, true)
			for i := range 250 {
				f.kw.insert(t, bindingN(i))
			}
			last := bindingN(249)
			f.rec.WaitFor(t, 0, "inserts through the feed", hasKey(last.ruid, false))

			// Behind the feed's back: the triggers dropped, two writes
			// (in the first and the last page), the triggers back.
			dropTriggers(t, f.w)
			first := bindingN(0)
			first.cseq = 9
			n := f.rec.Count()
			f.kw.update(t, first)
			f.kw.delete(t, bindingN(98).ruid) // keys sort as text: uloc-cdc-98 is in the last page
			install(t, f.w, true)

			got := f.rec.WaitFor(t, n, "unreported update", hasKey(first.ruid, false))
			if c := byKey(got)[first.ruid]; c.CSeq != 9 {
				t.Errorf("CSeq after the unreported update = %d, want 9", c.CSeq)
			}
			f.rec.WaitFor(t, n, "unreported delete", hasKey(bindingN(98).ruid, true))
			for i, b := range f.rec.All() {
				if i > 0 && b.Full {
					t.Errorf("batch %d is Full: the paced reconcile fell back to a full read", i)
				}
			}
		})
	}
}

// dropTriggers removes the change-capture triggers only (what install
// would drop first), so writes happen behind the feed's back.
func dropTriggers(t *testing.T, w *sqlwatch.Watcher) {
	t.Helper()
	stmts, err := w.CaptureSQL(true)
	if err != nil {
		t.Fatal(err)
	}
	var drops []string
	for _, q := range stmts {
		if strings.HasPrefix(q, "DROP TRIGGER") {
			drops = append(drops, q)
		}
	}
	if err := w.ExecCapture(t.Context(), drops); err != nil {
		t.Fatal(err)
	}
}
