package sqlwatch

import (
	"errors"

	"github.com/regbridge/regbridge/source"
)

// Usrloc are the positions in a row of the columns Kamailio's and
// OpenSIPS's usrloc tables share (docs/stores.md), for their layouts'
// Decode; InstanceName is the instance column's name ("instance",
// "sip_instance").
type Usrloc struct {
	Username, Domain, Contact, Q, CSeq, CallID, UserAgent, Instance, Received, Path int
	InstanceName                                                                    string
}

// Decode sets c's AOR (username and domain, completed with fallback as
// source.AppendAOR does), URI, Q, CSeq, CallID, UserAgent, Instance,
// Received and Path from row; buf is scratch space kept between calls.
// The error says which column is wrong.
func (u *Usrloc) Decode(row []Value, c *source.Contact, buf *[]byte, fallback string) error {
	user, ok := row[u.Username].TextOrNull()
	if !ok || len(user) == 0 || !source.Printable(user) {
		return errors.New("username is not a non-empty printable string")
	}
	dom, ok := row[u.Domain].TextOrNull()
	if !ok || !source.Printable(dom) {
		return errors.New("domain is not a printable string")
	}
	*buf = source.AppendAOR((*buf)[:0], user, dom, fallback)
	c.AOR = Intern(*buf, "")
	if uri, ok := row[u.Contact].TextOrNull(); !ok || !source.ValidURI(uri) {
		return errors.New("contact is not a sip:, sips: or tel: URI")
	}
	c.URI = row[u.Contact].String("")
	if c.Q, ok = row[u.Q].QValue(); !ok {
		return errors.New("q is not -1 or between 0 and 1")
	}
	if c.CSeq, ok = row[u.CSeq].Uint32(); !ok {
		return errors.New("cseq is not an integer between 0 and 2^32-1")
	}
	return DecodeTexts(row,
		TextField{Col: u.CallID, Name: "callid", Dst: &c.CallID},
		TextField{Col: u.UserAgent, Name: "user_agent", Dst: &c.UserAgent},
		TextField{Col: u.Instance, Name: u.InstanceName, Dst: &c.Instance},
		TextField{Col: u.Received, Name: "received", Dst: &c.Received},
		TextField{Col: u.Path, Name: "path", Dst: &c.Path},
	)
}
