package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
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
	const mqttMarker = "poi/alerts/test-marker"
	var mu sync.Mutex
	var mqttAlerts []streams.Alert
	markerSeen := false
	mq := s.MQTT(t)
	if err := mq.Subscribe(ctx, "poi/alerts/#", 1, func(_ paho.Client, m paho.Message) {
		if m.Topic() == mqttMarker {
			mu.Lock()
			markerSeen = true
			mu.Unlock()
			return
		}
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
	// The project's own SceneScape messages are ingested without error:
	// detections of a camera that has sent no frame yet, and region events
	// of objects no face track is on.
	region := "scenescape/event/region/7781b1eb-e47d-482b-83bb-35119a1e69e8/7e0b3cef-d726-4181-822a-098a6b46b44e/objects"
	sceneScape := []struct{ topic, file string }{
		{"scenescape/data/camera/lobby-cam", "data-camera-persons.json"},
		{"scenescape/data/camera/lobby-cam", "data-camera-faces.json"},
		{region, "region-entered.json"},
		{region, "region-exited.json"},
	}
	detections, regionEvents := 2, 2
	// The fixtures are dated March 2026: restamped into the test's camera
	// time, as the bridge refuses messages far from its clock.
	stamp := regexp.MustCompile(`"timestamp": *"[^"]*"`)
	for _, ss := range sceneScape {
		msg := stamp.ReplaceAll(testenv.SceneScapeFixture(t, ss.file), []byte(`"timestamp": "`+base.Format(time.RFC3339Nano)+`"`))
		if err := mq.Publish(ctx, ss.topic, 1, false, msg); err != nil {
			t.Fatal(err)
		}
	}

	m := s.Node.Metrics()
	total := float64(n + len(others) + detections) // the truncated frame is dead-lettered, not processed
	testenv.EventuallyNil(t, 2*time.Minute, "every frame tracked", func() error {
		if got := testutil.ToFloat64(m.Processed.WithLabelValues("index")); got < total {
			return fmt.Errorf("index processed %v of %v", got, total)
		}
		return nil
	})
	stacktest.Eventually(t, time.Minute, "sightings checked", func() bool {
		sig, _ := s.JS.Stream(ctx, streams.Sightings)
		si, _ := sig.Info(ctx)
		return si.State.Msgs == 0 && si.State.LastSeq > 0
	})
	if got := testutil.ToFloat64(m.Rejected.WithLabelValues("index", "no_frame")); got != float64(detections) {
		t.Errorf("the tracker set aside %v SceneScape detections for want of a frame, want %d", got, detections)
	}
	stacktest.Eventually(t, time.Minute, "the region events handled", func() bool {
		return testutil.ToFloat64(m.Processed.WithLabelValues("zones")) >= float64(regionEvents)
	})
	if got := testutil.ToFloat64(m.Processed.WithLabelValues("zones")); got != float64(regionEvents) {
		t.Errorf("zones processed %v region events, want %d", got, regionEvents)
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
	// Every sighting so far has been handled (its stream is empty), so the
	// alerts they raise are already at the broker. A marker published now
	// reaches our in-order subscription after them: waiting for it, rather
	// than for a guessed delivery time, shows that nothing else came.
	if err := mq.Publish(ctx, mqttMarker, 1, false, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	stacktest.Eventually(t, time.Minute, "the marker published after the last alert", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return markerSeen
	})
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
