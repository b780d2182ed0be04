// Package stores registers every built-in store adapter with package
// source, so that source.Open reads their URLs. Import it for that effect
// only. The order here is the order messages list the schemes in.
//
// Adding a store is one package under source/ with a Schemes function,
// one line here, and the conformance suite in its tests
// (docs/stores.md#adding-a-store).
package stores

import (
	"github.com/regbridge/regbridge/source"
	"github.com/regbridge/regbridge/source/asterisk"
	"github.com/regbridge/regbridge/source/kamailio"
	"github.com/regbridge/regbridge/source/opensips"
	"github.com/regbridge/regbridge/source/redis"
)

func init() {
	source.Register(kamailio.Schemes()...)
	source.Register(opensips.Schemes()...)
	source.Register(redis.Schemes()...)
	source.Register(asterisk.Schemes()...)
}
