package store

import (
	"context"
	"fmt"
	"sort"
	"time"
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
