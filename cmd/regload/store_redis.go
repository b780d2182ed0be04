package main

// A Redis store laid out as Kamailio's db_redis writes usrloc with keys
// `location=entry:ruid&usrdom:username,domain&timer:partition,keepalive`
// (docs/stores.md#kamailios-db_redis-layout): one hash
// `location:entry::<ruid>` per binding with every value as text, times as
// `YYYY-MM-DD HH:MM:SS` in the registrar's time zone (regload writes UTC),
// plus the timer set the keepalive timer reads. A refresh is one HSET of the
// columns usrloc rewrites.

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisPipeline is how many commands prepare and cleanup send per round trip.
const redisPipeline = 500

type redisStore struct {
	c     *redis.Client
	table string
}

func openRedis(ctx context.Context, s storeSpec, writers int) (*redisStore, error) {
	opt, err := redis.ParseURL(s.dsn)
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	opt.PoolSize = writers + 1
	c := redis.NewClient(opt)
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		return nil, fmt.Errorf("connecting to redis store: %w", err)
	}
	return &redisStore{c: c, table: s.table}, nil
}

func (s *redisStore) entryKey(ruid string) string { return s.table + ":entry::" + ruid }
func (s *redisStore) timerKey() string            { return s.table + ":timer::0:0" }

func redisTime(t time.Time) string { return t.UTC().Format(time.DateTime) }

func (s *redisStore) prepare(ctx context.Context, rows []row) error {
	for len(rows) > 0 {
		n := min(len(rows), redisPipeline)
		p := s.c.Pipeline()
		for i := range rows[:n] {
			r := &rows[i]
			key := s.entryKey(r.ruid)
			p.HSet(ctx, key,
				"ruid", r.ruid, "username", r.user, "domain", r.domain, "contact", r.contact,
				"expires", redisTime(r.expires), "q", "-1.000000", "callid", r.callid,
				"cseq", strconv.FormatUint(uint64(r.cseq), 10), "last_modified", redisTime(r.modified),
				"flags", "0", "cflags", "0", "user_agent", "regload", "socket", "udp:127.0.0.1:5060",
				"reg_id", "0", "server_id", "0", "connection_id", "-1", "keepalive", "0", "partition", "0")
			p.SAdd(ctx, s.timerKey(), key)
		}
		p.SAdd(ctx, s.table+"::index::timer", s.timerKey())
		if _, err := p.Exec(ctx); err != nil {
			return fmt.Errorf("writing rows: %w", err)
		}
		rows = rows[n:]
	}
	if err := updateEntry.Load(ctx, s.c).Err(); err != nil {
		return fmt.Errorf("loading the update script: %w", err)
	}
	return nil
}

// updateEntry is db_redis's update: the entry is looked up first and only
// an existing one is written (one round trip here, two in Kamailio).
var updateEntry = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HSET', KEYS[1], unpack(ARGV))`)

// refresh updates the bindings; several go in one MULTI/EXEC, sent in one
// round trip (--batch). Writer w uses a connection of the pool, so that
// --writers connections write in parallel, like a registrar's workers.
func (s *redisStore) refresh(ctx context.Context, _ int, rows []row) error {
	if len(rows) == 1 {
		return checkUpdated(s.updateCmd(ctx, s.c, &rows[0], updateEntry.Run), &rows[0])
	}
	cmds, err := s.refreshTx(ctx, rows)
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The script cache was flushed since prepare loaded it: the EXEC
		// ran the rest, and running them again writes the same values.
		if err = updateEntry.Load(ctx, s.c).Err(); err == nil {
			cmds, err = s.refreshTx(ctx, rows)
		}
	}
	if err != nil {
		return err
	}
	for i, c := range cmds {
		if err := checkUpdated(c, &rows[i]); err != nil {
			return err
		}
	}
	return nil
}

// refreshTx sends the updates of rows as one MULTI/EXEC of EVALSHAs (the
// script's text is sent once, by prepare, not with every change).
func (s *redisStore) refreshTx(ctx context.Context, rows []row) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(rows))
	_, err := s.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i := range rows {
			cmds[i] = s.updateCmd(ctx, p, &rows[i], updateEntry.EvalSha)
		}
		return nil
	})
	return cmds, err
}

type scriptCall func(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd

func (s *redisStore) updateCmd(ctx context.Context, c redis.Scripter, r *row, call scriptCall) *redis.Cmd {
	return call(ctx, c, []string{s.entryKey(r.ruid)},
		"expires", redisTime(r.expires), "q", "-1.000000", "cseq", strconv.FormatUint(uint64(r.cseq), 10),
		"flags", "0", "cflags", "0", "user_agent", "regload", "received", "", "path", "",
		"socket", "udp:127.0.0.1:5060", "last_modified", redisTime(r.modified), "callid", r.callid,
		"reg_id", "0", "server_id", "0", "connection_id", "-1", "keepalive", "0",
		"contact", r.contact)
}

func checkUpdated(c *redis.Cmd, r *row) error {
	n, err := c.Int64()
	if err != nil {
		return err
	}
	if n < 0 {
		return fmt.Errorf("no binding %s to refresh", r.ruid)
	}
	return nil
}

func (s *redisStore) cleanup(ctx context.Context, rows []row) error {
	for len(rows) > 0 {
		n := min(len(rows), redisPipeline)
		p := s.c.Pipeline()
		for i := range rows[:n] {
			key := s.entryKey(rows[i].ruid)
			p.Del(ctx, key)
			p.SRem(ctx, s.timerKey(), key)
		}
		if _, err := p.Exec(ctx); err != nil {
			return fmt.Errorf("removing rows: %w", err)
		}
		rows = rows[n:]
	}
	// The timer set vanished with its last member; drop it from the
	// index too unless a registrar still has entries in it.
	if n, err := s.c.SCard(ctx, s.timerKey()).Result(); err == nil && n == 0 {
		s.c.SRem(ctx, s.table+"::index::timer", s.timerKey())
	}
	return nil
}

func (s *redisStore) close() error { return s.c.Close() }
