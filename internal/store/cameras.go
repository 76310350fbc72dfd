package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
)

// MarkCameraSeen records that camera sent something at t.
func (s *Store) MarkCameraSeen(ctx context.Context, camera string, t time.Time) error {
	if err := s.rdb.HSet(ctx, s.keys.CamerasSeen(), camera, t.UTC().Format(time.RFC3339)).Err(); err != nil {
		return fmt.Errorf("mark camera %s seen: %w", camera, err)
	}
	return nil
}

// CamerasSeen returns the ids of every camera seen on MQTT, sorted.
func (s *Store) CamerasSeen(ctx context.Context) ([]string, error) {
	m, err := s.rdb.HGetAll(ctx, s.keys.CamerasSeen()).Result()
	if err != nil {
		return nil, fmt.Errorf("cameras seen: %w", err)
	}
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

// CameraSeenAt returns when camera last sent something (zero if never).
func (s *Store) CameraSeenAt(ctx context.Context, camera string) (time.Time, error) {
	v, err := s.rdb.HGet(ctx, s.keys.CamerasSeen(), camera).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("camera %s seen: %w", camera, err)
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("camera %s seen %q: %w", camera, v, err)
	}
	return t, nil
}
