package node_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"poi/internal/stacktest"
	"poi/internal/testenv"
)

// TestRegionEventsBecomeZoneAppearances: a SceneScape object entering and
// leaving a region while a face track is open on the camera that sees it.
func TestRegionEventsBecomeZoneAppearances(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{Env: []string{"POI_PIPELINE_TRACK_SILENCE=1m"}})
	ctx := context.Background()
	mq := s.MQTT(t)
	m := s.Node.Metrics()
	t0 := time.Now().UTC().Add(-time.Minute)
	for i, p := range []string{"franck_02045.jpg", "franck_02159.jpg"} {
		if err := mq.Publish(ctx, "poi/frames/cam-z", 1, false, stacktest.FrameJSON(testenv.ReadPhoto(t, p), t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	stacktest.Eventually(t, time.Minute, "frames tracked", func() bool { return testutil.ToFloat64(m.Processed.WithLabelValues("index")) >= 2 })

	event := func(kind string, ts time.Time, objects any) []byte {
		b, _ := json.Marshal(map[string]any{"timestamp": ts.Format(time.RFC3339Nano), "scene_id": "scene-1", "region_id": "r-1", "region_name": "entrance-zone", kind: objects})
		return b
	}
	bounds := map[string]any{"cam-z": map[string]float64{"x": 0, "y": 0, "width": 720, "height": 576}}
	topic := "scenescape/event/region/scene-1/r-1/objects"
	// An object seen elsewhere (box on another camera) is not attached.
	stranger := []map[string]any{{"id": "obj-2", "camera_bounds": map[string]any{"cam-other": map[string]float64{"x": 0, "y": 0, "width": 10, "height": 10}}}}
	for _, msg := range [][]byte{
		event("entered", t0.Add(2*time.Second), []map[string]any{{"id": "obj-1", "camera_bounds": bounds}}),
		event("entered", t0.Add(2*time.Second), stranger),
		event("exited", t0.Add(14500*time.Millisecond), []map[string]any{{"object": map[string]any{"id": "obj-1"}, "dwell": 12.5}}),
	} {
		if err := mq.Publish(ctx, topic, 1, false, msg); err != nil {
			t.Fatal(err)
		}
	}
	stacktest.Eventually(t, 30*time.Second, "region events handled", func() bool { return testutil.ToFloat64(m.Processed.WithLabelValues("zones")) >= 3 })
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues("zones", "unassociated")); got != 1 {
		t.Fatalf("unassociated entries %v, want 1 (the stranger)", got)
	}
	zs, err := s.Store.ZoneAppearances(ctx, "cam:cam-z:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(zs) != 1 {
		t.Fatalf("zone appearances %+v", zs)
	}
	z := zs[0]
	if z.Zone != "entrance-zone" || z.SceneID != "scene-1" || z.Dwell != 12.5 || !z.Entry.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("zone appearance %+v", z)
	}
	for _, key := range []string{z.EntryFrame, z.ExitFrame} {
		if _, err := s.Store.Frame(ctx, key); err != nil {
			t.Fatalf("zone frame %q: %v", key, err)
		}
	}
}
