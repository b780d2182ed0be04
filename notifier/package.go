package notifier

import (
	"strings"
	"time"

	"github.com/regbridge/regbridge/notifier/render"
)

// eventPackage is one SIP event package the notifier serves: reg (RFC
// 3680) or presence derived from registrations (RFC 3680 3.2, RFC 3856).
// Both run on the same subscription machinery; they differ in the body
// they render and in when a change is worth a NOTIFY.
type eventPackage struct {
	name        string        // the Event token, compared byte by byte
	contentType string        // the one body type produced
	defExpires  time.Duration // duration when SUBSCRIBE has no Expires
	presence    bool          // full PIDF documents instead of reginfo
	// watched is set for a watcher information package (RFC 3857): the
	// package whose watchers it lists.
	watched *eventPackage
}

var (
	pkgReg = &eventPackage{
		name:        "reg",
		contentType: render.ContentTypeReginfo,
		defExpires:  DefaultExpires,
	}
	pkgPresence = &eventPackage{
		name:        "presence",
		contentType: render.ContentTypePIDF,
		defExpires:  DefaultPresenceExpires,
		presence:    true,
	}
	pkgRegWinfo = &eventPackage{
		name:        "reg.winfo",
		contentType: render.ContentTypeWatcherinfo,
		defExpires:  DefaultWinfoExpires,
		watched:     pkgReg,
	}
	pkgPresenceWinfo = &eventPackage{
		name:        "presence.winfo",
		contentType: render.ContentTypeWatcherinfo,
		defExpires:  DefaultWinfoExpires,
		watched:     pkgPresence,
	}
)

// packages lists the enabled packages and the Allow-Events value naming
// them (RFC 6665 8.2.2: every package the notifier can notify for).
func packages(cfg *Config) ([]*eventPackage, string) {
	list := []*eventPackage{pkgReg}
	if cfg.Presence {
		list = append(list, pkgPresence)
	}
	if cfg.Winfo {
		list = append(list, pkgRegWinfo)
		if cfg.Presence {
			list = append(list, pkgPresenceWinfo)
		}
	}
	names := make([]string, len(list))
	for i, p := range list {
		names[i] = p.name
	}
	return list, strings.Join(names, ", ")
}

// packageNamed returns the enabled package called name, or nil.
func (n *Notifier) packageNamed(name string) *eventPackage {
	for _, p := range n.packages {
		if p.name == name {
			return p
		}
	}
	return nil
}
