package watch

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// XML namespaces of the documents a reg subscriber receives.
const (
	// NamespaceReginfo is the RFC 3680 section 5.4 namespace.
	NamespaceReginfo = "urn:ietf:params:xml:ns:reginfo"
	// NamespaceGRUUInfo is the RFC 5628 section 9 extension namespace.
	NamespaceGRUUInfo = "urn:ietf:params:xml:ns:gruuinfo"
)

// Document states of the reginfo root element (RFC 3680 section 5.1).
const (
	StateFull    = "full"
	StatePartial = "partial"
)

// ErrInvalidReginfo is wrapped by every error ParseReginfo returns for a
// document that is well-formed XML but not a usable reginfo document.
var ErrInvalidReginfo = errors.New("invalid reginfo document")

// Reginfo is a parsed application/reginfo+xml document (RFC 3680 section
// 5.1): what a subscriber receives in one NOTIFY.
type Reginfo struct {
	Version uint32
	// State is StateFull or StatePartial.
	State         string
	Registrations []Registration
}

// Registration is one <registration> element: one address-of-record.
type Registration struct {
	AOR, ID, State string
	Contacts       []Contact
}

// Contact is one <contact> element. Optional numeric attributes are nil
// when absent.
type Contact struct {
	ID, State, Event, URI string

	Expires, RetryAfter, DurationRegistered *uint64

	Q, CallID string
	CSeq      *uint64

	// Params maps <unknown-param name> to its text; a valueless Contact
	// parameter has the empty string. Nil when the contact has none.
	Params map[string]string

	// PubGRUU is the uri of the RFC 5628 <gr:pub-gruu> child, if any.
	PubGRUU string

	// DisplayName is the <display-name> text, if any.
	DisplayName string
	// TempGRUU and TempGRUUFirstCSeq come from the RFC 5628 <gr:temp-gruu>
	// child, if any.
	TempGRUU          string
	TempGRUUFirstCSeq *uint64
}

// ParseReginfo parses an application/reginfo+xml body.
//
// It follows the receiver rules of RFC 3680 section 5.1: elements and
// attributes of other namespaces are ignored (the GRUU extension of RFC 5628
// is understood), and the text of <uri> is trimmed because xs:anyURI
// collapses whitespace (RFC 5628 section 8.2 folds it over lines).
//
// It rejects documents a subscriber cannot apply: a missing or non-32-bit
// version, a state other than full or partial, a registration without id or
// aor, a contact without id or <uri>, and numeric attributes that are not
// unsigned integers. Documents without a namespace are accepted as reginfo.
func ParseReginfo(body []byte) (*Reginfo, error) {
	p, head, err := openDocument(body, "reginfo", NamespaceReginfo, ErrInvalidReginfo)
	if err != nil {
		return nil, err
	}
	doc := &Reginfo{Version: head.version, State: head.state}

	err = p.children(func(el xml.StartElement) error {
		if el.Name.Space != p.ns || el.Name.Local != "registration" {
			return p.dec.Skip()
		}
		reg, err := p.registration(el)
		if err != nil {
			return err
		}
		doc.Registrations = append(doc.Registrations, reg)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return doc, nil
}

type parser struct {
	dec *xml.Decoder
	// ns is the namespace of the reginfo elements: NamespaceReginfo, or ""
	// for a document that declares none.
	ns string
}

// docHead is what the root element of a versioned document says (RFC
// 3680 5.1, RFC 3858 4.3).
type docHead struct {
	version uint32
	state   string
}

// openDocument reads the root element of body, which must be local in
// namespace ns (or in none), and its version and state; errors wrap
// invalid.
func openDocument(body []byte, local, ns string, invalid error) (parser, docHead, error) {
	dec := xml.NewDecoder(bytes.NewReader(body))
	root, err := firstElement(dec)
	if err != nil {
		return parser{}, docHead{}, err
	}
	if root.Name.Local != local || (root.Name.Space != ns && root.Name.Space != "") {
		return parser{}, docHead{}, fmt.Errorf("%w: root element is {%s}%s, want %s", invalid, root.Name.Space, root.Name.Local, local)
	}
	version, ok := attr(root, "version")
	if !ok {
		return parser{}, docHead{}, fmt.Errorf("%w: missing version", invalid)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(version), 10, 32)
	if err != nil {
		return parser{}, docHead{}, fmt.Errorf("%w: version %q is not a 32-bit unsigned integer", invalid, version)
	}
	state, ok := attr(root, "state")
	if !ok {
		return parser{}, docHead{}, fmt.Errorf("%w: missing state", invalid)
	}
	if state != StateFull && state != StatePartial {
		return parser{}, docHead{}, fmt.Errorf("%w: state %q is neither full nor partial", invalid, state)
	}
	return parser{dec: dec, ns: root.Name.Space}, docHead{version: uint32(v), state: state}, nil
}

func firstElement(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return xml.StartElement{}, fmt.Errorf("%w: no root element", ErrInvalidReginfo)
			}
			return xml.StartElement{}, fmt.Errorf("parsing reginfo: %w", err)
		}
		if el, ok := tok.(xml.StartElement); ok {
			return el, nil
		}
	}
}

// children calls fn for every child element of the element whose start
// tag was just read; fn must consume the child up to its end tag.
func (p *parser) children(fn func(xml.StartElement) error) error {
	for {
		tok, err := p.dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("parsing reginfo: %w", io.ErrUnexpectedEOF)
			}
			return fmt.Errorf("parsing reginfo: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := fn(t); err != nil {
				return err
			}
		case xml.EndElement:
			return nil
		}
	}
}

// text returns the character data of the element whose start tag was just
// read, ignoring nested elements, and consumes its end tag.
func (p *parser) text() (string, error) {
	var b strings.Builder
	depth := 0
	for {
		tok, err := p.dec.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return "", fmt.Errorf("parsing reginfo: %w", io.ErrUnexpectedEOF)
			}
			return "", fmt.Errorf("parsing reginfo: %w", err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if depth == 0 {
				b.Write(t)
			}
		case xml.StartElement:
			depth++
		case xml.EndElement:
			if depth == 0 {
				return b.String(), nil
			}
			depth--
		}
	}
}

func (p *parser) registration(el xml.StartElement) (Registration, error) {
	var reg Registration
	var ok bool
	if reg.ID, ok = attr(el, "id"); !ok || reg.ID == "" {
		return reg, fmt.Errorf("%w: registration without id", ErrInvalidReginfo)
	}
	if reg.AOR, ok = attr(el, "aor"); !ok {
		return reg, fmt.Errorf("%w: registration %q without aor", ErrInvalidReginfo, reg.ID)
	}
	reg.AOR = strings.TrimSpace(reg.AOR)
	reg.State, _ = attr(el, "state")
	err := p.children(func(child xml.StartElement) error {
		if child.Name.Space != p.ns || child.Name.Local != "contact" {
			return p.dec.Skip()
		}
		c, err := p.contact(child)
		if err != nil {
			return fmt.Errorf("registration %q: %w", reg.ID, err)
		}
		reg.Contacts = append(reg.Contacts, c)
		return nil
	})
	return reg, err
}

func (p *parser) contact(el xml.StartElement) (Contact, error) {
	var c Contact
	var ok bool
	if c.ID, ok = attr(el, "id"); !ok || c.ID == "" {
		return c, fmt.Errorf("%w: contact without id", ErrInvalidReginfo)
	}
	c.State, _ = attr(el, "state")
	c.Event, _ = attr(el, "event")
	c.Q, _ = attr(el, "q")
	c.CallID, _ = attr(el, "callid")
	for _, n := range []struct {
		name string
		dst  **uint64
	}{
		{"expires", &c.Expires},
		{"retry-after", &c.RetryAfter},
		{"duration-registered", &c.DurationRegistered},
		{"cseq", &c.CSeq},
	} {
		v, err := uintAttr(el, n.name)
		if err != nil {
			return c, fmt.Errorf("contact %q: %w", c.ID, err)
		}
		*n.dst = v
	}

	haveURI := false
	err := p.children(func(child xml.StartElement) error {
		switch {
		case child.Name.Space == p.ns && child.Name.Local == "uri":
			s, err := p.text()
			c.URI = strings.TrimSpace(s)
			haveURI = true
			return err
		case child.Name.Space == p.ns && child.Name.Local == "display-name":
			s, err := p.text()
			c.DisplayName = s
			return err
		case child.Name.Space == p.ns && child.Name.Local == "unknown-param":
			name, _ := attr(child, "name")
			s, err := p.text()
			if c.Params == nil {
				c.Params = make(map[string]string)
			}
			c.Params[name] = s
			return err
		case child.Name.Space == NamespaceGRUUInfo && child.Name.Local == "pub-gruu":
			c.PubGRUU, _ = attr(child, "uri")
			return p.dec.Skip()
		case child.Name.Space == NamespaceGRUUInfo && child.Name.Local == "temp-gruu":
			c.TempGRUU, _ = attr(child, "uri")
			v, err := uintAttr(child, "first-cseq")
			if err != nil {
				return fmt.Errorf("contact %q: temp-gruu: %w", c.ID, err)
			}
			c.TempGRUUFirstCSeq = v
			return p.dec.Skip()
		default:
			return p.dec.Skip()
		}
	})
	if err != nil {
		return c, err
	}
	if !haveURI {
		return c, fmt.Errorf("%w: contact %q without uri", ErrInvalidReginfo, c.ID)
	}
	return c, nil
}

// attr returns the value of the unqualified attribute name.
func attr(el xml.StartElement, name string) (string, bool) {
	for _, a := range el.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func uintAttr(el xml.StartElement, name string) (*uint64, error) {
	s, ok := attr(el, name)
	if !ok {
		return nil, nil
	}
	v, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %q is not an unsigned integer", ErrInvalidReginfo, name, s)
	}
	return &v, nil
}
