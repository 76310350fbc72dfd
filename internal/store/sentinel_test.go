package store

import (
	"context"
	"testing"
	"time"

	"poi/internal/cluster"
	"poi/internal/testenv"
)

// TestSentinelFailoverKeepsWaitedWrites: through Sentinel, with
// wait_replicas 1, an alert claim is on the replica when ClaimAlert returns;
// after the primary is SIGKILLed and the replica promoted, the same store
// (no reconnection by hand) finds the claim: the repeat is a replay, and
// another track of the POI on the camera is in cooldown, so no alert is
// raised twice.
func TestSentinelFailoverKeepsWaitedWrites(t *testing.T) {
	ha := cluster.StartRedisHA(t)
	s, err := OpenOptions(Options{URL: "redis://ignored:1/0", SentinelAddrs: ha.SentinelAddrs(), SentinelMaster: cluster.SentinelMaster,
		WaitReplicas: 1, WaitTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, _, err := s.ClaimAlert(ctx, "alert-1", "cam:a:1", "poi-1", "a", time.Hour, time.Hour)
	if err != nil || out != ClaimNew {
		t.Fatalf("claim: %q %v", out, err)
	}
	rep := ha.Client(1)
	defer rep.Close()
	if n, err := rep.Exists(ctx, s.keys.AlertDedup("cam:a:1", "poi-1")).Result(); err != nil || n != 1 {
		t.Fatalf("claim not on the replica when ClaimAlert returned: %d %v", n, err)
	}

	ha.Kill(0)
	testenv.Eventually(t, time.Minute, "the sentinels promote the replica", func() bool { return ha.Primary(ctx) == 1 })
	testenv.Eventually(t, time.Minute, "the store reaches the new primary", func() bool { return s.Ping(ctx) == nil })
	out, _, err = s.ClaimAlert(ctx, "alert-1", "cam:a:1", "poi-1", "a", time.Hour, time.Hour)
	if err != nil || out != ClaimReplay {
		t.Fatalf("claim after failover: %q %v, want replay", out, err)
	}
	out, _, err = s.ClaimAlert(ctx, "alert-2", "cam:a:2", "poi-1", "a", time.Hour, time.Hour)
	if err != nil || out != ClaimCooldown {
		t.Fatalf("another track after failover: %q %v, want cooldown", out, err)
	}
}
