package partition

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
)

// reloader is *redis.ClusterClient: it learns the new master of a slot
// from a MOVED reply, but a master that died (connection refused) gives
// none, so after such errors the slot map is reloaded from a live node.
type reloader interface {
	ReloadState(ctx context.Context)
}

// reloadOnNetError reloads the Cluster's slot map when err is a network
// error (a master failing over).
func reloadOnNetError(ctx context.Context, rdb redis.Cmdable, err error) {
	var ne net.Error
	var oe *net.OpError
	if err == nil || !(errors.As(err, &ne) || errors.As(err, &oe)) {
		return
	}
	if r, ok := rdb.(reloader); ok {
		r.ReloadState(ctx)
	}
}
