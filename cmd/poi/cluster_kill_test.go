package main

import (
	"syscall"
	"testing"
	"time"

	"poi/internal/stacktest"
	"poi/streams"
)

// TestClusterSurvivesTheLossOfAWorker: in the cluster, with frames of 8
// cameras flowing, one of the two workers is SIGKILLed. The other takes
// every partition over and every frame the bridge stored is tracked
// exactly once (TestTwoTrackersShareThePartitionsAndSurviveAKill compares
// the records with an undisturbed run on one server).
func TestClusterSurvivesTheLossOfAWorker(t *testing.T) {
	c := startCluster(t)
	// No deadline: then every JetStream request gets the client's own
	// timeout, and one lost with a killed connection cannot hang a wait
	// for the test's whole length.
	ctx := t.Context()
	cams, photos := cameraPhotos(8)
	c.startFlowing(t, cams, photos)
	victim, survivor := c.workers[0], c.workers[1]
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.done
	killed := time.Now()
	t.Logf("worker killed at %d acknowledged", c.tracked(ctx))
	partitions := streams.DefaultLimits().Partitions
	stacktest.Eventually(t, 2*time.Minute, "the survivor owns every partition", func() bool {
		return ownedPartitions(t, survivor) == partitions
	})
	t.Logf("the survivor owned every partition %v after the kill", time.Since(killed).Round(10*time.Millisecond))
	c.publish(t, cams, photos, flowHalf, 2*flowHalf)
	c.checkExactlyOnce(t, c.settle(t, cams, 4*time.Minute))
}

// flowHalf is how many frames per camera a disturbance test sends before
// and after its disturbance.
const flowHalf = 15

// startFlowing publishes the first flowHalf frames of cams and waits until a
// third of them is tracked: the moment to disturb the cluster.
func (c *clusterRun) startFlowing(t *testing.T, cams []string, photos map[string][]string) {
	t.Helper()
	c.publish(t, cams, photos, 0, flowHalf)
	stacktest.Eventually(t, 2*time.Minute, "a third of the first frames tracked", func() bool {
		return c.tracked(t.Context()) >= uint64(len(cams)*flowHalf/3)
	})
}
