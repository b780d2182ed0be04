package render

import "strconv"

// appendVersionState appends the attributes both versioned documents
// open with, the subscription's document counter and full or partial
// state (reginfo: RFC 3680 5.1; watcherinfo: RFC 3858 4.3), and ends the
// root's start tag: as an empty element when the document has no
// children.
func appendVersionState(dst []byte, version uint32, full, empty bool) []byte {
	dst = append(dst, ` version="`...)
	dst = strconv.AppendUint(dst, uint64(version), 10)
	if full {
		dst = append(dst, `" state="full"`...)
	} else {
		dst = append(dst, `" state="partial"`...)
	}
	if empty {
		return append(dst, "/>\n"...)
	}
	return append(dst, ">\n"...)
}
