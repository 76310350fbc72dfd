// Package store is the service's Redis state: the authoritative home of POI
// metadata, reference vectors, tracks, alerts, frames and thumbnails. The key
// layout is in keys.go.
package store

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Store wraps a Redis client and the key layout.
type Store struct {
	rdb  *redis.Client
	keys Keys

	claimScript, storeAlertScript, closeZoneScript, appearanceScript, markSentScript *redis.Script
	createScript, beginEraseScript                                                   *redis.Script
	updateAlertScript, negativeScript, refsScript                                    *redis.Script
}

// Open parses url and returns a Store. It does not wait for Redis: a Redis
// that is down at start makes the service degraded, not dead.
func Open(url, prefix string) (*Store, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	// Fail fast while Redis is down so that callers see an error instead of
	// hanging; they retry at their own pace.
	opt.MaxRetries = 1
	return &Store{rdb: redis.NewClient(opt), keys: NewKeys(prefix),
		claimScript: redis.NewScript(claimLua), storeAlertScript: redis.NewScript(storeAlertLua),
		closeZoneScript: redis.NewScript(closeZoneLua), appearanceScript: redis.NewScript(appearanceLua),
		markSentScript: redis.NewScript(markSentLua), createScript: redis.NewScript(createLua),
		beginEraseScript: redis.NewScript(beginEraseLua), updateAlertScript: redis.NewScript(updateAlertLua),
		negativeScript: redis.NewScript(negativeLua), refsScript: redis.NewScript(refsLua)}, nil
}

// Keys is the key layout.
func (s *Store) Keys() Keys { return s.keys }

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// Close releases the connection pool.
func (s *Store) Close() error { return s.rdb.Close() }
