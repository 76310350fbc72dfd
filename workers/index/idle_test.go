package index

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"poi/internal/metrics"
	"poi/internal/testenv"
)

// A camera id that sent something once must not hold tracker memory
// forever: the ticker drops cameras without open tracks after the idle TTL
// (their state stays in Redis, with its TTL, for the next message).
func TestIdleCamerasLeaveMemory(t *testing.T) {
	s := New(Config{Silence: 400 * time.Millisecond, IdleTTL: time.Minute}, nil, nil, nil, nil, metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now()
	s.mu.Lock()
	for i := range 1000 {
		s.cams[fmt.Sprintf("idle-%d", i)] = &camera{st: &state{Next: 1}, wall: now.Add(-2 * time.Minute)}
	}
	s.cams["active"] = &camera{st: &state{Next: 1}, wall: now}
	s.mu.Unlock()
	if n := s.Cameras(); n != 1001 {
		t.Fatalf("%d cameras set up", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.RunTicker(ctx, func(int) string { return "" }) }()
	testenv.Eventually(t, 10*time.Second, "the idle cameras to be dropped", func() bool { return s.Cameras() == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	_, ok := s.cams["active"]
	s.mu.Unlock()
	if !ok {
		t.Fatal("the active camera was dropped")
	}
}
