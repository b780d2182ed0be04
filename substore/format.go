package substore

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/regbridge/regbridge/source"
)

// The stored formats. Every JSON value substore writes carries its format
// version under "v", and its fields are named by the types in this
// package, never by another package's struct: the Redis layout changes
// only when these types do, and an instance reads what an older one
// wrote, so a deployment upgrades in place.
//
// Contacts record (the hash <prefix>contacts, one field per store key):
//
//	format 0  source.Contact marshalled as it was (Go field names: "Key",
//	          "AOR", "CallID"...), written by releases before formats
//	          were versioned; read, never written
//	format 1  contactRecord: snake_case names, "v":1
//
// Subscription records and watchers: format 1 is the JSON of Record and
// Watcher (snake_case names, which they always had); a value without "v"
// is format 1 too.
//
// A value with a "v" above formatVersion was written by a newer regbridge;
// it is skipped (and logged) rather than misread.
const formatVersion = 1

// contactRecord is one binding in the contacts record: what the bridge
// needs to take it up again after a restart (bridge.Restore).
type contactRecord struct {
	V   int    `json:"v"`
	Key string `json:"key"` // the store's identity of the binding
	AOR string `json:"aor"`
	URI string `json:"uri"`
	// Expires is absent for a permanent binding; Q is -1 when the store
	// says unspecified.
	Expires time.Time `json:"expires,omitzero"`
	Q       float32   `json:"q"`
	// The REGISTER that last wrote the binding, and when.
	CallID    string    `json:"call_id,omitempty"`
	CSeq      uint32    `json:"cseq,omitempty"`
	Modified  time.Time `json:"modified,omitzero"`
	UserAgent string    `json:"user_agent,omitempty"`
	// Where the registrar's socket took the REGISTER, from where, and
	// over which proxies.
	Socket   string `json:"socket,omitempty"`
	Received string `json:"received,omitempty"`
	Path     string `json:"path,omitempty"`
	// Outbound and GRUU (RFC 5626, RFC 5627).
	RegID    uint32 `json:"reg_id,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Administrative: made by an operator or tool, not by a REGISTER.
	Administrative bool `json:"administrative,omitempty"`
}

func contactRecordOf(c *source.Contact) contactRecord {
	return contactRecord{V: formatVersion, Key: c.Key, AOR: c.AOR, URI: c.URI, Expires: c.Expires, Q: c.Q,
		CallID: c.CallID, CSeq: c.CSeq, Modified: c.Modified, UserAgent: c.UserAgent, Instance: c.Instance,
		RegID: c.RegID, Received: c.Received, Path: c.Path, Socket: c.Socket, Administrative: c.Administrative}
}

func (r *contactRecord) contact() source.Contact {
	return source.Contact{Key: r.Key, AOR: r.AOR, URI: r.URI, Expires: r.Expires, Q: r.Q,
		CallID: r.CallID, CSeq: r.CSeq, Modified: r.Modified, UserAgent: r.UserAgent, Instance: r.Instance,
		RegID: r.RegID, Received: r.Received, Path: r.Path, Socket: r.Socket, Administrative: r.Administrative}
}

// format0Names are the keys of format 0 that differ from format 1's by
// more than case. encoding/json matches keys without regard to case, so
// the others ("Key", "AOR", "Expires", "Administrative"...) fill
// contactRecord's fields as they are.
type format0Names struct {
	CallID    string `json:"CallID"`
	UserAgent string `json:"UserAgent"`
	RegID     uint32 `json:"RegID"`
}

// formatOf reads the "v" of a stored value (0 when absent).
func formatOf(js []byte) (int, error) {
	var probe struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(js, &probe); err != nil {
		return 0, err
	}
	if probe.V > formatVersion {
		return 0, fmt.Errorf("format %d is newer than this regbridge's %d", probe.V, formatVersion)
	}
	return probe.V, nil
}

// EncodeContact is c as a value of the contacts record, in the current
// format; the partitions' state and streams (package partition) store
// contacts the same way.
func EncodeContact(c *source.Contact) ([]byte, error) {
	return json.Marshal(contactRecordOf(c))
}

// DecodeContact reads one value of the contacts record, format 0 or 1.
func DecodeContact(js []byte) (source.Contact, error) {
	v, err := formatOf(js)
	if err != nil {
		return source.Contact{}, err
	}
	var rec contactRecord
	if err := json.Unmarshal(js, &rec); err != nil {
		return source.Contact{}, err
	}
	if v == 0 {
		var n format0Names
		if err := json.Unmarshal(js, &n); err != nil {
			return source.Contact{}, err
		}
		rec.CallID, rec.UserAgent, rec.RegID = n.CallID, n.UserAgent, n.RegID
	}
	return rec.contact(), nil
}

// encodeV1 marshals a Record or a Watcher with "v":1 before its own
// fields. Their JSON is an object with at least one field.
func encodeV1(x any) ([]byte, error) {
	js, err := json.Marshal(x)
	if err != nil {
		return nil, err
	}
	if len(js) < 3 || js[0] != '{' {
		return nil, fmt.Errorf("encoding %T: not an object with fields", x)
	}
	return append([]byte(`{"v":1,`), js[1:]...), nil
}

// decodeV1 reads a Record or a Watcher of format 1 (encoding/json
// ignores "v", which Record and Watcher do not declare).
func decodeV1(js []byte, x any) error {
	if _, err := formatOf(js); err != nil {
		return err
	}
	return json.Unmarshal(js, x)
}

// EncodeRecord is rec as the "rec" field of its subscription hash, in
// the current format (ID, counters and owner are not part of it); the
// partitions' subscriptions (package partition) are stored the same way.
func EncodeRecord(rec *Record) ([]byte, error) {
	js, err := encodeV1(rec)
	if err != nil {
		return nil, fmt.Errorf("encoding subscription: %w", err)
	}
	return js, nil
}

// DecodeRecord reads the "rec" field of a subscription hash (format 1,
// with or without "v"). The caller fills ID, counters and owner.
func DecodeRecord(js []byte) (*Record, error) {
	rec := &Record{}
	if err := decodeV1(js, rec); err != nil {
		return nil, err
	}
	return rec, nil
}
