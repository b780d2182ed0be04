package partition

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// ErrNotOwner is returned by Advance when the holder no longer owns the
// partition: the NOTIFY must not be sent.
var ErrNotOwner = errors.New("partition owned by another instance")

// advance checks the partition lease (KEYS[1]) and takes the next CSeq
// and version of the subscription hash KEYS[2] (fields cseq, ver), in one
// script: the partition's tag puts both keys in one slot.
var advance = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local c = redis.call('HINCRBY', KEYS[2], 'cseq', 1)
if c > 2147483647 then c = 1; redis.call('HSET', KEYS[2], 'cseq', 1) end
local v = redis.call('HINCRBY', KEYS[2], 'ver', 1)
return {c, v - 1}
`)

// Advance is the fence of a NOTIFY under partition ownership: it checks
// that h still holds partition p's lease and takes the next CSeq and
// reginfo version of the subscription stored at m.Key(p, "sub:"+id), in
// one round trip, as the single-tag layout's fence does.
func (m *Map) Advance(ctx context.Context, rdb redis.Cmdable, p int, h Holder, id string) (cseq, version uint32, err error) {
	res, err := advance.Run(ctx, rdb, []string{m.PartitionLease(p).Key, m.Key(p, "sub:"+id)}, h.String()).Int64Slice()
	if errors.Is(err, redis.Nil) {
		return 0, 0, ErrNotOwner
	}
	if err != nil {
		return 0, 0, fmt.Errorf("advancing subscription: %w", err)
	}
	return uint32(res[0]), uint32(res[1]), nil
}
