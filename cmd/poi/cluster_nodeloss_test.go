package main

import (
	"slices"
	"testing"
	"time"

	"poi/internal/cluster"
	"poi/internal/stacktest"
	"poi/streams"
)

// TestClusterSurvivesTheLossOfTheIngestLeader: with frames of 8 cameras
// flowing, the nats-server node that leads POI_INGEST is SIGKILLed. After
// the election, publishing and processing go on, and every frame the bridge
// stored is tracked exactly once. Restarted, the node catches up.
func TestClusterSurvivesTheLossOfTheIngestLeader(t *testing.T) {
	c := startCluster(t)
	// No deadline: then every JetStream request gets the client's own
	// timeout, and one lost with a killed connection cannot hang a wait
	// for the test's whole length.
	ctx := t.Context()
	cams, photos := cameraPhotos(8)
	c.startFlowing(t, cams, photos)

	var leader string
	stacktest.Eventually(t, time.Minute, "the ingest stream's leader", func() bool {
		l, _, err := cluster.StreamLeader(ctx, c.js, streams.Ingest)
		leader = l
		return err == nil && l != ""
	})
	victim := c.nats.Index(leader)
	if victim < 0 {
		t.Fatalf("leader %q is no node of the cluster", leader)
	}
	// Every frame of the first half is stored before the kill, so that a
	// sequence past them is a frame sent after it.
	firstHalf := uint64(len(cams) * flowHalf)
	stacktest.Eventually(t, time.Minute, "the first frames stored", func() bool {
		s, err := c.js.Stream(ctx, streams.Ingest)
		return err == nil && s.CachedInfo().State.LastSeq >= firstHalf
	})
	t.Cleanup(func() {
		if t.Failed() {
			c.describeConsumers(t)
		}
	})
	partitions := streams.DefaultLimits().Partitions
	led := map[string]string{} // camera: the node leading its partition's consumer
	for _, cam := range cams {
		led[cam] = c.consumerLeader(ctx, streams.Partition(cam, partitions))
	}
	atKill := c.tracked(ctx)
	killed := time.Now()
	c.nats.Kill(victim)
	t.Logf("SIGKILLed %s, the ingest leader, at %d acknowledged", leader, atKill)
	// The cameras go on sending through the election: the bridge holds
	// their MQTT acknowledgements until JetStream stores them.
	c.publish(t, cams, photos, flowHalf, 2*flowHalf)
	stacktest.Eventually(t, time.Minute, "a new ingest leader", func() bool {
		l, _, err := cluster.StreamLeader(ctx, c.js, streams.Ingest)
		return err == nil && l != "" && l != leader
	})
	elected := time.Since(killed)
	// Consumers led by the surviving nodes go on delivering what was stored
	// through the stream's election, so processing has resumed for a
	// camera once a frame it sent after the kill is tracked. The leader of
	// each camera's partition consumer is logged beside it: one led by the
	// dead node elects a leader of its own too.
	resumed := map[string]time.Duration{}
	stacktest.Eventually(t, 3*time.Minute, "every camera's frames sent after the kill tracked", func() bool {
		for _, cam := range c.trackedPast(ctx, cams, firstHalf) {
			if _, ok := resumed[cam]; !ok {
				resumed[cam] = time.Since(killed)
			}
		}
		return len(resumed) == len(cams)
	})
	var times []time.Duration
	for _, cam := range cams {
		times = append(times, resumed[cam])
		t.Logf("  %s: partition consumer led by %s before the kill; a frame sent after the kill tracked after %v",
			cam, led[cam], resumed[cam].Round(10*time.Millisecond))
	}
	slices.Sort(times)
	t.Logf("from the kill of the ingest leader: new leader after %v; a frame sent after the kill tracked after %v for the first camera, %v for the last",
		elected.Round(10*time.Millisecond), times[0].Round(10*time.Millisecond), times[len(times)-1].Round(10*time.Millisecond))
	frames := c.settle(t, cams, 4*time.Minute)
	c.checkExactlyOnce(t, frames)

	c.nats.Restart(victim)
	stacktest.Eventually(t, 2*time.Minute, "the restarted node current on the ingest stream", func() bool {
		_, info, err := cluster.StreamLeader(ctx, c.js, streams.Ingest)
		if err != nil || info.Cluster == nil {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if r.Name == leader && r.Current {
				return c.nats.StreamCurrent(victim, streams.Ingest)
			}
		}
		return info.Cluster.Leader == leader && c.nats.StreamCurrent(victim, streams.Ingest)
	})
}
