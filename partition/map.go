package partition

import (
	"fmt"
	"hash/fnv"
	"strconv"
)

// DefaultCount is the partition count when none is configured: enough
// that a few dozen instances and Redis shards each get a near-equal share
// (at 256 the share of 3 shards differs by under 1%), few enough that an
// owner's per-partition polling stays cheap. It is fixed for a deployment:
// changing it moves almost every AOR to another partition.
const DefaultCount = 256

// MaxCount bounds the count: each partition takes a distinct slice of
// the 16384 Cluster slots, and finding a tag in a slice of 4 slots takes
// about 4096 tries per partition at start-up.
const MaxCount = 4096

// Map assigns AORs to partitions and names each partition's keys.
type Map struct {
	n    int
	tags []string // "{prefix:p.k}", one per partition
}

// NewMap returns the map of n partitions under prefix. Partition p's hash
// tag is chosen so that its slot lies in the p-th of n equal slices of
// the slot space: partitions are spread over the Cluster's shards as
// evenly as the shards' slot ranges are (redis-cli --cluster create gives
// each master an equal contiguous range).
func NewMap(prefix string, n int) (*Map, error) {
	if n < 1 || n > MaxCount {
		return nil, fmt.Errorf("partition count %d: want 1 to %d", n, MaxCount)
	}
	m := &Map{n: n, tags: make([]string, n)}
	for p := range n {
		base := prefix + ":" + strconv.Itoa(p) + "."
		for k := 0; ; k++ {
			tag := base + strconv.Itoa(k)
			if int(crc16(tag)%Slots)*n/Slots == p {
				m.tags[p] = "{" + tag + "}"
				break
			}
		}
	}
	return m, nil
}

// Count is the number of partitions.
func (m *Map) Count() int { return m.n }

// Of returns the partition of a canonical AOR (bridge.CanonicalAOR): a
// stable hash, the same on every instance and across restarts.
func (m *Map) Of(canonicalAOR string) int {
	h := fnv.New64a()
	h.Write([]byte(canonicalAOR))
	return int(h.Sum64() % uint64(m.n))
}

// Key returns the key name under partition p's hash tag.
func (m *Map) Key(p int, name string) string { return m.tags[p] + name }
