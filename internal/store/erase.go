package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrErased is returned by writes that refuse to name a POI that is being or
// was erased.
var ErrErased = errors.New("poi erased")

// Erase states (BeginErase).
const (
	EraseAbsent  = "absent"  // nothing of the POI in Redis and no tombstone
	EraseBegun   = "begun"   // this call wrote the tombstone and removed the metadata
	ErasePurging = "purging" // an earlier purge began and did not finish
	ErasePurged  = "purged"  // an earlier purge finished
)

// BeginErase is the first step of a purge, in one step on the server: it
// writes the POI's tombstone, records the purge as pending, and removes the
// authoritative record (metadata, creation index, control outbox), so from
// then on the POI does not exist for any reader and no guarded writer can
// name it again. When a tombstone is already there it changes nothing and
// returns its state, so a retried purge picks up where it stopped. A POI
// whose metadata is gone but whose vectors are not (a purge that failed
// before tombstones existed) is begun again.
func (s *Store) BeginErase(ctx context.Context, id string, tombstoneTTL time.Duration) (string, error) {
	k := s.keys
	st, err := s.beginEraseScript.Run(ctx, s.rdb,
		[]string{k.Tombstone(id), k.POI(id), k.POIRefs(id), k.POIIndex(), k.ControlOutbox(), k.ErasePending()},
		id, tombstoneTTL.Milliseconds(), time.Now().UnixMilli()).Text()
	if err != nil {
		return "", fmt.Errorf("begin erase %s: %w", id, err)
	}
	return st, nil
}

// beginEraseLua: KEYS: tombstone, metadata, refs, index, outbox, pending.
// ARGV: id, tombstone ttl (ms), now (ms).
const beginEraseLua = `
local st = redis.call('GET', KEYS[1])
if st then return st end
if redis.call('EXISTS', KEYS[2]) == 0 and redis.call('EXISTS', KEYS[3]) == 0
   and not redis.call('ZSCORE', KEYS[4], ARGV[1]) and not redis.call('ZSCORE', KEYS[5], ARGV[1]) then
  return 'absent'
end
redis.call('SET', KEYS[1], 'purging', 'PX', ARGV[2])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
return 'begun'
`

// FinishErase records a purge as done: the tombstone says so (and lives on
// for tombstoneTTL), and the POI leaves the pending set.
func (s *Store) FinishErase(ctx context.Context, id string, tombstoneTTL time.Duration) error {
	_, err := s.rdb.TxPipelined(ctx, func(tx redis.Pipeliner) error {
		tx.Set(ctx, s.keys.Tombstone(id), ErasePurged, tombstoneTTL)
		tx.ZRem(ctx, s.keys.ErasePending(), id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("finish erase %s: %w", id, err)
	}
	return nil
}

// EraseState returns the POI's tombstone state, or "" when it has none.
func (s *Store) EraseState(ctx context.Context, id string) (string, error) {
	st, err := s.rdb.Get(ctx, s.keys.Tombstone(id)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("erase state %s: %w", id, err)
	}
	return st, nil
}

// Erased reports whether the POI has a tombstone (purging or purged).
func (s *Store) Erased(ctx context.Context, id string) (bool, error) {
	st, err := s.EraseState(ctx, id)
	return st != "", err
}

// PendingErasures lists the POIs whose purge began and did not finish,
// oldest first.
func (s *Store) PendingErasures(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.ZRange(ctx, s.keys.ErasePending(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("pending erasures: %w", err)
	}
	return ids, nil
}

// ErasePendingHas reports whether the POI's purge is still pending.
func (s *Store) ErasePendingHas(ctx context.Context, id string) (bool, error) {
	return s.zsetHas(ctx, s.keys.ErasePending(), id)
}

// OutboxHas reports whether the POI's enrolment is still in the outbox.
func (s *Store) OutboxHas(ctx context.Context, id string) (bool, error) {
	return s.zsetHas(ctx, s.keys.ControlOutbox(), id)
}

func (s *Store) zsetHas(ctx context.Context, key, member string) (bool, error) {
	err := s.rdb.ZScore(ctx, key, member).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("zscore %s: %w", key, err)
	}
	return true, nil
}
