package main

import (
	"net/http"

	"github.com/regbridge/regbridge/bridge"
	"github.com/regbridge/regbridge/bridge/feed"
	"github.com/regbridge/regbridge/notifier"
	"github.com/regbridge/regbridge/source"
)

// metricInputs are the parts /metrics reads at scrape time.
type metricInputs struct {
	bridge   *bridge.Bridge
	notifier *notifier.Notifier
	source   source.Source // read through source.Reporter when it implements it
	hub      *feed.Hub
	webhooks *feed.Webhooks
	ready    []readyCheck
	// transports are the SIP transports listened on, lower case: only
	// they get NOTIFY series up front.
	transports []string
	// sourceScheme is the scheme label of regbridge_source_info.
	sourceScheme string
}

// metricsSink measures the notifier (as its Observer) and the bridge's
// contact events (as a Publisher), and serves /metrics.
type metricsSink interface {
	notifier.Observer
	bridge.Publisher
	Handler() http.Handler
}
