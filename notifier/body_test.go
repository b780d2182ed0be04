package notifier

import (
	"time"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/notifier/render"
	"github.com/regbridge/regbridge/source"
)

// benchReginfoBody is a typical partial reginfo body with one contact, for
// the benchmarks of what carries a document (the renderer's own tests are
// in notifier/render).
func benchReginfoBody() []byte {
	now := time.Date(2024, 1, 1, 10, 0, 0, 0, time.UTC)
	c := bridge.ContactView{
		Contact: source.Contact{
			Key: "ruid-76", AOR: "sip:joe@example.com", URI: "sip:joe@pc34.example.com",
			Expires: now.Add(3580 * time.Second), Q: -1,
			CallID: "88askjda9@pc34.example.com", CSeq: 9977,
		},
		ID: "76", State: bridge.ContactActive, Event: bridge.EventRefreshed, Since: now.Add(-20 * time.Second),
	}
	doc := render.Document{Version: 42, Registrations: []bridge.Registration{
		{AOR: "sip:joe@example.com", ID: "a7", State: bridge.RegActive, Contacts: []bridge.ContactView{c}},
	}}
	return render.AppendReginfo(nil, doc, now)
}
