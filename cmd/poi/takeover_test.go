package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"poi/internal/stacktest"
	"poi/streams"
)

// eightCameras puts the enrolled person on four cameras and other people on
// four more, spread over the partitions.
func eightCameras() []camPlan {
	var out []camPlan
	others := [][]string{{"cage.jpg"}, {"obama4_crop.jpg"}, {"kim1_crop.jpg"}, {"chuck_crop.jpg"}}
	for i := range 4 {
		out = append(out, camPlan{id: fmt.Sprintf("cam-f%d", i), photos: franckFrames, frames: 120, gapAt: 60, spacing: frameSpacing})
		out = append(out, camPlan{id: fmt.Sprintf("cam-o%d", i), photos: others[i], frames: 60, spacing: 200 * time.Millisecond})
	}
	return out
}

// TestTwoTrackersShareThePartitionsAndSurviveAKill runs two tracker
// processes, SIGKILLs one while frames of 8 cameras flow, and compares with
// an undisturbed run: the survivor takes every partition over, and every
// frame is tracked exactly once, in order, with the same records.
func TestTwoTrackersShareThePartitionsAndSurviveAKill(t *testing.T) {
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Hour)
	calm := runFaultScenario(t, base, scenario{cams: eightCameras(), trackers: 2, alerts: 4})
	rough := runFaultScenario(t, base, scenario{cams: eightCameras(), trackers: 2, alerts: 4, disturb: func(t *testing.T, r *scenarioRun) {
		partitions := streams.DefaultLimits().Partitions
		for i, p := range r.trackers {
			if n := ownedPartitions(t, p); n == 0 || n == partitions {
				t.Fatalf("tracker %d owns %d of %d partitions: they are not shared", i, n, partitions)
			}
		}
		victim := r.trackers[0]
		if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-victim.done
		t.Logf("tracker killed at %d acknowledged", r.tracked())
		stacktest.Eventually(t, time.Minute, "the survivor owns every partition", func() bool {
			return ownedPartitions(t, r.trackers[1]) == partitions
		})
	}})
	compareOutcomes(t, calm, rough)
}
