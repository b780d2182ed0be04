package opensips

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/regbridge/regbridge/internal/conformance"
	"github.com/regbridge/regbridge/source/sqlwatch"
	"github.com/regbridge/regbridge/source/sqlwatch/sqltest"
)

// TestConformanceCDC runs the suite with change capture installed (as
// `regbridge cdc install` does: triggers, or PostgreSQL logical
// replication) and polling and reconcile an hour apart:
// every change must come through the triggers.
func TestConformanceCDC(t *testing.T) {
	for _, b := range []struct {
		name string
		open func(testing.TB) *sqltest.DB
		newW func(DBConfig, *slog.Logger) (*sqlwatch.Watcher, error)
		mode string
	}{
		{"mysql", sqltest.MySQL, NewMySQL, sqlwatch.CDCTrigger},
		{"postgres", sqltest.Postgres, NewPostgres, sqlwatch.CDCTrigger},
		{"postgres", sqltest.Postgres, NewPostgres, sqlwatch.CDCLogical},
	} {
		t.Run(b.name+"_"+b.mode, func(t *testing.T) {
			db := b.open(t)
			st := &store{backend: b.name, db: db, addr: db.Endpoint.Addr}
			st.newSource = func(t *testing.T, table, addr string) snapshotSource {
				log, _ := newLogger(t)
				w, err := b.newW(DBConfig{Endpoint: db.Via(addr), Table: table, Domain: "example.com", TZ: registrarTZ,
					PollInterval: time.Hour, ReconcileInterval: time.Hour, MaxBackoff: 200 * time.Millisecond, CDC: b.mode}, log)
				if err != nil {
					t.Fatal(err)
				}
				stmts, err := w.CaptureSQL(true)
				if err == nil {
					err = w.ExecCapture(context.Background(), stmts)
				}
				if err != nil {
					t.Fatalf("cdc install: %v", err)
				}
				if b.mode == sqlwatch.CDCLogical {
					// After the suite stopped the watcher: no slot
					// outlives the subtest.
					t.Cleanup(func() {
						if stmts, err := w.CaptureSQL(false); err != nil || w.ExecCapture(context.Background(), stmts) != nil {
							t.Errorf("cdc uninstall failed")
						}
					})
				}
				return w
			}
			conformance.Run(t, &harness{store: st})
		})
	}
}
