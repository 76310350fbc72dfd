// Package store is the service's Redis state: the authoritative home of POI
// metadata, reference vectors, tracks, alerts, frames and thumbnails. The key
// layout is in keys.go.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store wraps a Redis client and the key layout.
type Store struct {
	rdb  *redis.Client
	keys Keys
	// waitReplicas > 0: writes that must survive a failover wait (Redis
	// WAIT, on the connection that wrote) for that many replicas.
	waitReplicas int
	waitTimeout  time.Duration
	log          *slog.Logger

	claimScript, storeAlertScript, closeZoneScript, appearanceScript, markSentScript *redis.Script
	createScript, beginEraseScript                                                   *redis.Script
	updateAlertScript, negativeScript, refsScript                                    *redis.Script
}

// Options say how to reach Redis.
type Options struct {
	// URL is redis://[user:password@]host:port/db; with SentinelAddrs only
	// its database, user and password are used.
	URL       string
	KeyPrefix string
	// SentinelAddrs and SentinelMaster: ask these Sentinels for the
	// primary of SentinelMaster, and follow it when they fail over.
	SentinelAddrs  []string
	SentinelMaster string
	// WaitReplicas and WaitTimeout: see Store.waitReplicas.
	WaitReplicas int
	WaitTimeout  time.Duration
	// Log receives warnings about writes fewer replicas acknowledged; nil
	// discards them.
	Log *slog.Logger
}

// Open parses url and returns a Store on a single Redis server.
func Open(url, prefix string) (*Store, error) {
	return OpenOptions(Options{URL: url, KeyPrefix: prefix})
}

// OpenOptions returns a Store on one Redis server or, with Sentinels, on
// the primary they name. It does not wait for Redis: a Redis that is down
// at start makes the service degraded, not dead.
func OpenOptions(o Options) (*Store, error) {
	opt, err := redis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", err)
	}
	// Fail fast while Redis is down so that callers see an error instead of
	// hanging; they retry at their own pace.
	opt.MaxRetries = 1
	var rdb *redis.Client
	if len(o.SentinelAddrs) > 0 {
		rdb = redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: o.SentinelMaster, SentinelAddrs: o.SentinelAddrs,
			Username: opt.Username, Password: opt.Password, DB: opt.DB,
			MaxRetries: 1, DialTimeout: opt.DialTimeout, TLSConfig: opt.TLSConfig,
		})
	} else {
		rdb = redis.NewClient(opt)
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Store{rdb: rdb, keys: NewKeys(o.KeyPrefix), waitReplicas: o.WaitReplicas, waitTimeout: o.WaitTimeout, log: log,
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

// ErrUnconfirmed: a write was applied by the primary, and then the WAIT for
// its replicas failed (the primary is gone, as in a failover). Whether the
// write survives is unknown; a caller that can redo it from what Redis holds
// must treat it as not done.
var ErrUnconfirmed = errors.New("write not confirmed: the wait for replicas failed")

// replicated waits, on the connection c that just wrote, until
// s.waitReplicas replicas have the write or s.waitTimeout passes. It narrows
// the writes an asynchronous failover can lose; it cannot close the window
// (Redis WAIT is no consensus), so a shortfall is logged, not an error: the
// primary has the write, and refusing it would stop the service whenever a
// replica is down. A WAIT that fails is ErrUnconfirmed: the primary that
// took the write stopped answering right after it, which is when a failover
// loses writes.
func (s *Store) replicated(ctx context.Context, c waiter, what string) error {
	if s.waitReplicas <= 0 {
		return nil
	}
	n, err := c.Wait(ctx, s.waitReplicas, s.waitTimeout).Result()
	if err != nil {
		return fmt.Errorf("%s: %w: %w", what, ErrUnconfirmed, err)
	}
	if int(n) < s.waitReplicas {
		s.log.Warn("redis write not acknowledged by enough replicas", "write", what, "acked", n, "want", s.waitReplicas)
	}
	return nil
}

// scripter is the connection a write that is then waited for runs on:
// the pool's for no waiting, one dedicated connection otherwise (WAIT
// counts the writes of its own connection).
func (s *Store) scripter(_ context.Context) (redis.Scripter, waiter, func()) {
	if s.waitReplicas <= 0 {
		return s.rdb, s.rdb, func() {}
	}
	c := s.rdb.Conn()
	return c, c, func() { _ = c.Close() }
}

// waiter is a connection that can WAIT: a client, a dedicated connection or
// a transaction's connection.
type waiter interface {
	Wait(ctx context.Context, numReplicas int, timeout time.Duration) *redis.IntCmd
}
