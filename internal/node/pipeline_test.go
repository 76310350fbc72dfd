package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image/jpeg"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"poi/internal/stacktest"
	"poi/internal/testenv"
	"poi/streams"
)

// TestPipelineRaisesExactlyOneAlertPerAppearance is the end-to-end claim of
// the pipeline: real MQTT, JetStream, Redis, models and photos.
func TestPipelineRaisesExactlyOneAlertPerAppearance(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	poi := stacktest.Enroll(t, s.URL, map[string]string{"severity": "high", "description": "pipeline test"}, "franck_01829.jpg")

	// Listen on both alert outlets before anything is published.
	var mu sync.Mutex
	var mqttAlerts []streams.Alert
	mq := s.MQTT(t)
	if err := mq.Subscribe(ctx, "poi/alerts/#", 1, func(_ paho.Client, m paho.Message) {
		var a streams.Alert
		if err := json.Unmarshal(m.Payload(), &a); err != nil {
			t.Errorf("mqtt alert is not JSON: %v", err)
		}
		if m.Topic() != "poi/alerts/high/"+poi {
			t.Errorf("mqtt alert on %s", m.Topic())
		}
		mu.Lock()
		mqttAlerts = append(mqttAlerts, a)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}

	files, _ := filepath.Glob(filepath.Join(testenv.AssetsDir(t), "photos", "franck_0*.jpg"))
	base := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	n := 0
	for _, f := range files {
		if filepath.Base(f) == "franck_01829.jpg" {
			continue // the enrolled photo
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := mq.Publish(ctx, "poi/frames/cam-franck", 1, false, stacktest.FrameJSON(b, base.Add(time.Duration(n)*200*time.Millisecond))); err != nil {
			t.Fatal(err)
		}
		n++
	}
	others := []string{"cage.jpg", "obama4_crop.jpg", "kim1_crop.jpg", "chuck_crop.jpg", "bill-murray-snl_crop.jpg"}
	for i, p := range others {
		if err := mq.Publish(ctx, "poi/frames/cam-others", 1, false, stacktest.FrameJSON(testenv.ReadPhoto(t, p), base.Add(time.Duration(i)*10*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	// A JPEG that passes the bridge's checks but does not decode: the
	// detector dead-letters it and goes on.
	truncated := testenv.ReadPhoto(t, "cage.jpg")
	if err := mq.Publish(ctx, "poi/frames/cam-bad", 1, false, stacktest.FrameJSON(truncated[:len(truncated)/2], base)); err != nil {
		t.Fatal(err)
	}
	// Real SceneScape messages are ingested without error.
	for topic, file := range map[string]string{
		"scenescape/data/camera/lp-camera1": "camera1.json",
		"scenescape/event/region/bfb9f86b-b152-4e7f-8099-7c251ed84630/adb88222-de2e-4896-a0e2-d577d21b132e/objects": "event1.json",
	} {
		b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "..", "shared", "fixtures", "scenescape", file))
		if err != nil {
			t.Fatalf("SceneScape fixture: %v", err)
		}
		if err := mq.Publish(ctx, topic, 1, false, b); err != nil {
			t.Fatal(err)
		}
	}

	m := s.Node.Metrics()
	total := float64(n + len(others) + 1) // frames + scenescape detections
	stacktest.Eventually(t, 2*time.Minute, "every frame tracked", func() bool {
		return testutil.ToFloat64(m.Processed.WithLabelValues("index"))+testutil.ToFloat64(m.DeadLettered.WithLabelValues("index")) >= total
	})
	stacktest.Eventually(t, time.Minute, "sightings checked", func() bool {
		sig, _ := s.JS.Stream(ctx, streams.Sightings)
		si, _ := sig.Info(ctx)
		return si.State.Msgs == 0 && si.State.LastSeq > 0
	})
	if got := testutil.ToFloat64(m.Processed.WithLabelValues("zones")); got != 1 {
		t.Errorf("zones processed %v region events, want 1", got)
	}
	for _, stage := range []string{"alert", "zones", "frames"} {
		if dl := testutil.ToFloat64(m.DeadLettered.WithLabelValues(stage)); dl != 0 {
			t.Errorf("%s dead-lettered %v messages", stage, dl)
		}
	}
	if dl, bad := testutil.ToFloat64(m.DeadLettered.WithLabelValues("index")), testutil.ToFloat64(m.Rejected.WithLabelValues("index", "bad_image")); dl != 1 || bad != 1 {
		t.Errorf("index dead-lettered %v, rejected bad_image %v: want the truncated frame, once", dl, bad)
	}

	// Exactly one alert, on every outlet.
	resp, err := http.Get(s.URL + "/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	var listed []streams.Alert
	json.NewDecoder(resp.Body).Decode(&listed)
	resp.Body.Close()
	if len(listed) != 1 {
		t.Fatalf("GET /alerts lists %d alerts, want 1: %+v", len(listed), listed)
	}
	a := listed[0]
	if a.POIID != poi || a.Match.CameraID != "cam-franck" || a.Severity != "high" || a.EventType != "poi_match_alert" || a.Status != "New" {
		t.Fatalf("alert %+v", a)
	}
	if a.Match.SimilarityScore < s.Config.Face.MatchThreshold || a.POIMetadata.TotalPreviousMatches != 0 || a.POIMetadata.Notes != "pipeline test" {
		t.Fatalf("alert match/metadata %+v", a)
	}
	cons, err := s.JS.OrderedConsumer(ctx, streams.Alerts, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	var jsAlerts []streams.Alert
	for msg := range batch.Messages() {
		var x streams.Alert
		json.Unmarshal(msg.Data(), &x)
		if msg.Subject() != "poi.alerts.high."+poi {
			t.Errorf("jetstream alert on %s", msg.Subject())
		}
		jsAlerts = append(jsAlerts, x)
	}
	if len(jsAlerts) != 1 || jsAlerts[0].AlertID != a.AlertID {
		t.Fatalf("jetstream holds %d alerts (%+v), want exactly %s", len(jsAlerts), jsAlerts, a.AlertID)
	}
	stacktest.Eventually(t, 5*time.Second, "the MQTT alert", func() bool { mu.Lock(); defer mu.Unlock(); return len(mqttAlerts) > 0 })
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	if len(mqttAlerts) != 1 || mqttAlerts[0].AlertID != a.AlertID {
		t.Fatalf("mqtt got %d alerts, want exactly %s", len(mqttAlerts), a.AlertID)
	}
	mu.Unlock()

	// Its thumbnail and the track's frames are JPEGs.
	stacktest.GetJPEG(t, s.URL+a.Match.ThumbnailPath)
	tr := a.Match.ThumbnailPath[len("/api/v1/thumbnail/"):]
	track, err := s.Store.GetTrack(ctx, tr)
	if err != nil {
		t.Fatal(err)
	}
	if track.CameraID != "cam-franck" || track.Frames != n {
		t.Fatalf("track %+v: want all %d frames of cam-franck on one track", track, n)
	}
	for _, which := range []string{"entry", "last"} {
		b, err := s.Store.Frame(ctx, s.Store.Keys().TrackFrame(tr, which))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jpeg.Decode(bytes.NewReader(b)); err != nil {
			t.Fatalf("%s frame: %v", which, err)
		}
	}
}
