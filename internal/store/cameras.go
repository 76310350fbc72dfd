package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// MarkCameraSeen records that camera sent something at t. The set is
// bounded two ways, because camera ids come from the network: entries
// older than ttl are dropped (and the whole key expires ttl after the last
// mark), and only the max most recent ids are kept.
func (s *Store) MarkCameraSeen(ctx context.Context, camera string, t time.Time, ttl time.Duration, max int) error {
	key := s.keys.CamerasSeen()
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, key, redis.Z{Score: float64(t.UnixMilli()), Member: camera})
		p.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(t.Add(-ttl).UnixMilli(), 10))
		p.ZRemRangeByRank(ctx, key, 0, int64(-max-1))
		p.PExpire(ctx, key, ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark camera %s seen: %w", camera, err)
	}
	return nil
}

// CamerasSeen returns the ids of the cameras seen on MQTT within the TTL
// their marks were given, sorted.
func (s *Store) CamerasSeen(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.ZRange(ctx, s.keys.CamerasSeen(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("cameras seen: %w", err)
	}
	sort.Strings(ids)
	return ids, nil
}

// CameraSeenAt returns when camera last sent something (zero if never).
func (s *Store) CameraSeenAt(ctx context.Context, camera string) (time.Time, error) {
	ms, err := s.rdb.ZScore(ctx, s.keys.CamerasSeen(), camera).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("camera %s seen: %w", camera, err)
	}
	return time.UnixMilli(int64(ms)).UTC(), nil
}
