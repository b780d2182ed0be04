package partition

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Per-partition keys of the change streams:
//
//	changes  stream: one entry per contact change, fields s (sequence),
//	         k (store key), d (the contact, "" when it was deleted)
//	state    hash: every contact of the partition by store key, as of
//	         the stream's last entry
//	meta     hash: seq (the last entry's sequence), reader (the highest
//	         reader epoch that appended or stamped)
//
// The state and the stream change in one script, so a new reader diffs
// its first snapshot against exactly what was announced, and a new owner
// starts from a state and the stream position it corresponds to.

// DefaultMaxLen is how many entries each partition's stream keeps (about:
// trimming is by whole macro nodes). An owner lagging more than that
// behind reloads the partition's state instead (a gap). 1000 entries at
// the 65 changes/s per partition of a 10-million-contact re-registration
// storm over 256 partitions is about 15 s of lag.
const DefaultMaxLen = 1000

// ErrFenced is returned when a reader with a higher epoch has taken over:
// this one must stop appending.
var ErrFenced = errors.New("a newer reader has taken over")

// appendScript: KEYS stream, state, meta; ARGV epoch, maxlen, then pairs
// of store key and contact ("" deletes). Returns the last sequence.
var appendScript = redis.NewScript(`
local r = tonumber(redis.call('HGET', KEYS[3], 'reader') or '0')
local e = tonumber(ARGV[1])
if r > e then return redis.error_reply('FENCED ' .. r) end
if r < e then redis.call('HSET', KEYS[3], 'reader', ARGV[1]) end
local seq = tonumber(redis.call('HGET', KEYS[3], 'seq') or '0')
for i = 3, #ARGV, 2 do
  seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
  if ARGV[i+1] == '' then redis.call('HDEL', KEYS[2], ARGV[i]) else redis.call('HSET', KEYS[2], ARGV[i], ARGV[i+1]) end
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 's', seq, 'k', ARGV[i], 'd', ARGV[i+1])
end
return seq
`)

// baselineScript: KEYS stream, state, meta. Returns the sequence, the
// last stream id and the state, consistent with each other.
var baselineScript = redis.NewScript(`
local seq = redis.call('HGET', KEYS[3], 'seq') or '0'
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return {seq, id, redis.call('HGETALL', KEYS[2])}
`)

// Change is one contact change of partition P: Data is the contact as
// the caller encodes it, "" when the contact is gone.
type Change struct {
	P    int
	Key  string
	Data string
}

// Pos is a position in a partition's stream: the last entry consumed.
type Pos struct {
	ID  string
	Seq int64
}

// Baseline is a partition's state at a stream position.
type Baseline struct {
	Pos
	State map[string]string
}

// Streams reads and writes the partitions' change streams.
type Streams struct {
	rdb    redis.Cmdable
	m      *Map
	maxLen int
}

// NewStreams returns the streams of m, each trimmed to about maxLen
// entries (DefaultMaxLen when 0).
func NewStreams(rdb redis.Cmdable, m *Map, maxLen int) *Streams {
	if maxLen <= 0 {
		maxLen = DefaultMaxLen
	}
	return &Streams{rdb: rdb, m: m, maxLen: maxLen}
}

func (s *Streams) keys(p int) []string {
	return []string{s.m.Key(p, "changes"), s.m.Key(p, "state"), s.m.Key(p, "meta")}
}

// Append appends changes under reader epoch, one script per partition in
// one pipeline (so one round trip, spread over the shards). It returns
// each touched partition's last sequence. ErrFenced when a newer reader
// holds any of them; a partition whose script failed otherwise is left
// out of the result and its error returned (joined).
func (s *Streams) Append(ctx context.Context, epoch int64, changes []Change) (map[int]int64, error) {
	byP := map[int][]any{}
	for _, c := range changes {
		byP[c.P] = append(byP[c.P], c.Key, c.Data)
	}
	cmds := make(map[int]*redis.Cmd, len(byP))
	_, _ = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for p, kv := range byP {
			args := append([]any{epoch, s.maxLen}, kv...)
			cmds[p] = appendScript.Eval(ctx, pl, s.keys(p), args...)
		}
		return nil
	})
	out := make(map[int]int64, len(byP))
	var errs []error
	for p, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			reloadOnNetError(ctx, s.rdb, err)
			if strings.HasPrefix(err.Error(), "FENCED") {
				return out, ErrFenced
			}
			errs = append(errs, fmt.Errorf("appending to partition %d: %w", p, err))
			continue
		}
		out[p] = n
	}
	return out, errors.Join(errs...)
}

// Stamp records epoch as the reader on every partition, so that an older
// reader still running cannot append anywhere from now on. A new reader
// stamps before it loads the baselines. ErrFenced when a newer one has.
func (s *Streams) Stamp(ctx context.Context, epoch int64) error {
	cmds := make([]*redis.Cmd, s.m.Count())
	_, _ = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for p := range cmds {
			cmds[p] = appendScript.Eval(ctx, pl, s.keys(p), epoch, s.maxLen)
		}
		return nil
	})
	for p, c := range cmds {
		if err := c.Err(); err != nil {
			if strings.HasPrefix(err.Error(), "FENCED") {
				return ErrFenced
			}
			reloadOnNetError(ctx, s.rdb, err)
			return fmt.Errorf("stamping partition %d: %w", p, err)
		}
	}
	return nil
}

// Baselines loads the state and position of partitions ps in one
// pipeline.
func (s *Streams) Baselines(ctx context.Context, ps []int) (map[int]Baseline, error) {
	cmds := make([]*redis.Cmd, len(ps))
	_, _ = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, p := range ps {
			cmds[i] = baselineScript.Eval(ctx, pl, s.keys(p))
		}
		return nil
	})
	out := make(map[int]Baseline, len(ps))
	for i, c := range cmds {
		v, err := c.Slice()
		if err != nil || len(v) != 3 {
			reloadOnNetError(ctx, s.rdb, err)
			return nil, fmt.Errorf("loading partition %d: %w", ps[i], err)
		}
		seqS, _ := v[0].(string)
		id, _ := v[1].(string)
		seq, _ := strconv.ParseInt(seqS, 10, 64)
		flat, _ := v[2].([]any)
		st := make(map[string]string, len(flat)/2)
		for j := 0; j+1 < len(flat); j += 2 {
			k, _ := flat[j].(string)
			d, _ := flat[j+1].(string)
			st[k] = d
		}
		out[ps[i]] = Baseline{Pos: Pos{ID: id, Seq: seq}, State: st}
	}
	return out, nil
}

// Diff returns the changes that turn partition p's state from into want.
func Diff(p int, from, want map[string]string) []Change {
	var out []Change
	for k, d := range want {
		if from[k] != d {
			out = append(out, Change{P: p, Key: k, Data: d})
		}
	}
	for k := range from {
		if _, ok := want[k]; !ok {
			out = append(out, Change{P: p, Key: k})
		}
	}
	return out
}

// Entry is one change read from a stream.
type Entry struct {
	Pos
	Key, Data string
}

// Read is what one Poll found in one partition: entries in order, or Gap
// when the stream does not continue from the position (trimmed past it,
// or rewound by a failover that lost entries): the caller reloads the
// partition's Baseline and sends full state.
type Read struct {
	Entries []Entry
	Gap     bool
}

// Poll reads up to count entries after each position in pos (keyed by
// partition), one pipeline for all.
func (s *Streams) Poll(ctx context.Context, pos map[int]Pos, count int) (map[int]Read, error) {
	after := make(map[int]string, len(pos))
	for p, at := range pos {
		after[p] = at.ID
	}
	got, err := readAfter(ctx, s.rdb, s.m, "changes", after, count)
	out := make(map[int]Read, len(got))
	for p, msgs := range got {
		next := pos[p].Seq + 1
		rd := Read{Entries: make([]Entry, 0, len(msgs))}
		for _, m := range msgs {
			seq, _ := strconv.ParseInt(fmt.Sprint(m.Values["s"]), 10, 64)
			if seq != next {
				rd = Read{Gap: true}
				break
			}
			next++
			k, _ := m.Values["k"].(string)
			d, _ := m.Values["d"].(string)
			rd.Entries = append(rd.Entries, Entry{Pos: Pos{ID: m.ID, Seq: seq}, Key: k, Data: d})
		}
		out[p] = rd
	}
	return out, err
}

// readAfter reads up to count entries of stream name in each partition
// of after, from after the stream id given for it, one pipeline for
// all. Partitions with no new entries are absent; one whose read failed
// (its shard failing over) is absent too, and its error returned,
// joined with the others.
func readAfter(ctx context.Context, rdb redis.Cmdable, m *Map, name string, after map[int]string, count int) (map[int][]redis.XMessage, error) {
	type q struct {
		p   int
		cmd *redis.XMessageSliceCmd
	}
	qs := make([]q, 0, len(after))
	_, _ = rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for p, id := range after {
			qs = append(qs, q{p, pl.XRangeN(ctx, m.Key(p, name), "("+id, "+", int64(count))})
		}
		return nil
	})
	out := make(map[int][]redis.XMessage, len(qs))
	var errs []error
	for _, r := range qs {
		msgs, err := r.cmd.Result()
		if err != nil {
			reloadOnNetError(ctx, rdb, err)
			errs = append(errs, fmt.Errorf("reading %s of partition %d: %w", name, r.p, err))
			continue
		}
		if len(msgs) > 0 {
			out[r.p] = msgs
		}
	}
	return out, errors.Join(errs...)
}
