package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"poi/internal/testenv"
)

// TestAFailedWaitLeavesTheWriteUnconfirmed: the write is applied and then
// WAIT fails, as when the primary dies right after a write (here a real
// Redis refuses WAIT to the store's user, which fails it the same way at
// the same point). The tracker's commit and the alert claim must report the
// write as unconfirmed, so that their callers redo it from what Redis holds
// instead of taking it as done: the retry of the commit finds the version
// moved (ErrConflict: reload), the retry of the claim answers replay.
func TestAFailedWaitLeavesTheWriteUnconfirmed(t *testing.T) {
	r := testenv.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", r.Port)})
	defer admin.Close()
	if err := admin.Do(ctx, "ACL", "SETUSER", "nowait", "on", ">pw", "~*", "&*", "+@all", "-wait").Err(); err != nil {
		t.Fatal(err)
	}
	s, err := OpenOptions(Options{URL: fmt.Sprintf("redis://nowait:pw@127.0.0.1:%d/0", r.Port), WaitReplicas: 1, WaitTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	upd := []TrackUpdate{{Track: Track{ID: "cam:a:1", CameraID: "a", Frames: 3}}}
	err = s.CommitTracking(ctx, "a", 0, []byte(`{"seq":7}`), upd, nil, time.Hour)
	if !errors.Is(err, ErrUnconfirmed) {
		t.Fatalf("commit whose WAIT failed: %v, want ErrUnconfirmed", err)
	}
	st, version, err := s.TrackerState(ctx, "a")
	if err != nil || version != 1 || string(st) != `{"seq":7}` {
		t.Fatalf("the primary has the commit: state %s version %d, %v", st, version, err)
	}
	if err := s.CommitTracking(ctx, "a", 0, []byte(`{"seq":7}`), upd, nil, time.Hour); !errors.Is(err, ErrConflict) {
		t.Fatalf("the retry from the state before: %v, want ErrConflict", err)
	}

	out, _, err := s.ClaimAlert(ctx, "alert-1", "cam:a:1", "poi-1", "a", time.Hour, time.Hour)
	if !errors.Is(err, ErrUnconfirmed) {
		t.Fatalf("claim whose WAIT failed: %q %v, want ErrUnconfirmed", out, err)
	}
	if out, _, err := s.ClaimAlert(ctx, "alert-1", "cam:a:1", "poi-1", "a", time.Hour, time.Hour); err != nil || out != ClaimReplay {
		t.Fatalf("the claim's retry: %q %v, want replay", out, err)
	}
}
