package substore

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/regbridge/regbridge/source"
)

func (r *Redis) contactsKey() string { return r.p + "contacts" }

// WriteContacts records the bridge's contacts: upserts by store key,
// deletes by key (bridge.StateWriter). Idempotent, so several instances
// watching one store may all write.
func (r *Redis) WriteContacts(ctx context.Context, upserts []source.Contact, deletes []string) error {
	if len(upserts) == 0 && len(deletes) == 0 {
		return nil
	}
	r.trips.Add(1)
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		const chunk = 500
		for i := 0; i < len(upserts); i += chunk {
			args := make([]any, 0, 2*chunk)
			for j := range upserts[i:min(i+chunk, len(upserts))] {
				c := &upserts[i+j]
				js, err := EncodeContact(c)
				if err != nil {
					return err
				}
				args = append(args, c.Key, js)
			}
			p.HSet(ctx, r.contactsKey(), args...)
		}
		for i := 0; i < len(deletes); i += chunk {
			p.HDel(ctx, r.contactsKey(), deletes[i:min(i+chunk, len(deletes))]...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("writing contact state: %w", err)
	}
	return nil
}

// LoadContacts reads the recorded contacts (the bridge's baseline at
// start-up), in the current format or the one before it.
func (r *Redis) LoadContacts(ctx context.Context) ([]source.Contact, error) {
	var out []source.Contact
	var cursor uint64
	for {
		r.trips.Add(1)
		kv, next, err := r.rdb.HScan(ctx, r.contactsKey(), cursor, "*", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("reading contact state: %w", err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			c, err := DecodeContact([]byte(kv[i+1]))
			if err != nil || c.Key != kv[i] {
				r.log.Warn("skipping unreadable contact state", "key", kv[i], "err", err)
				continue
			}
			out = append(out, c)
		}
		if next == 0 {
			return out, nil
		}
		cursor = next
	}
}

// HasContacts reports whether the contacts record exists: a deployment
// that ran the single-tag layout, to be seeded into the partitions
// (docs/cluster.md).
func (r *Redis) HasContacts(ctx context.Context) (bool, error) {
	r.trips.Add(1)
	n, err := r.rdb.Exists(ctx, r.contactsKey()).Result()
	if err != nil {
		return false, fmt.Errorf("reading contact state: %w", err)
	}
	return n > 0, nil
}

// DropContacts deletes the contacts record (without blocking Redis on a
// large one), once the partitions hold it.
func (r *Redis) DropContacts(ctx context.Context) error {
	r.trips.Add(1)
	if err := r.rdb.Unlink(ctx, r.contactsKey()).Err(); err != nil {
		return fmt.Errorf("deleting contact state: %w", err)
	}
	return nil
}
