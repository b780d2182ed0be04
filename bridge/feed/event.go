package feed

import (
	"encoding/json"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/vocab"
)

// Event is one contact event as the SSE stream and the webhooks send it,
// in the vocabulary every JSON output shares.
type Event = vocab.Event

// Events flattens a change into one Event per changed contact.
func Events(c *bridge.Change) []Event { return vocab.EventsOf(c) }

// encode marshals each contact event of c on its own. The results are
// shared read-only by every queue they are put in.
func encode(c *bridge.Change) [][]byte {
	evs := Events(c)
	out := make([][]byte, 0, len(evs))
	for i := range evs {
		b, err := jsonLine(&evs[i])
		if err != nil {
			continue
		}
		out = append(out, b)
	}
	return out
}

// jsonLine marshals e. Event has only marshalable fields, so the error is
// theoretical; encoding/json escapes newlines inside strings, so the
// result is one line (SSE needs that).
func jsonLine(e *Event) ([]byte, error) { return json.Marshal(e) }
