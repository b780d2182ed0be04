package kamailio

import (
	"testing"

	"github.com/regbridge/regbridge/source/sourcetest"
	"github.com/regbridge/regbridge/source/sqlwatch"
)

// TestConformanceLogical runs the suite over PostgreSQL logical
// replication (cdc=logical), polling and reconcile an hour apart: every
// change the suite sees came through the replication stream.
func TestConformanceLogical(t *testing.T) {
	srv := servers[1]
	sourcetest.Run(t, &cdcHarness{dbHarness: dbHarness{srv: srv, db: srv.open(t)}, mode: sqlwatch.CDCLogical})
}
