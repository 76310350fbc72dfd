package node_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"poi/internal/loadgen"
	"poi/internal/stacktest"
	"poi/internal/store"
	"poi/internal/testenv"
	"poi/streams"
	"poi/workers/embed"
)

// TestSceneScapeVectorsAreTrackedAndAlertedWithoutImages: face sub-objects
// whose vectors are of our model need no camera image. The camera here never
// sends one: the face is tracked, sampled and alerted, and the API answers
// for the missing thumbnail with a JSON 404, never a 500.
func TestSceneScapeVectorsAreTrackedAndAlertedWithoutImages(t *testing.T) {
	s := stacktest.Start(t, stacktest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	poi := stacktest.Enroll(t, s.URL, map[string]string{"severity": "high"}, "franck_01829.jpg")

	cl := embed.NewClient(s.NC, streams.EmbedService, 30*time.Second, 0, nil)
	rep, err := cl.Do(ctx, testenv.ReadPhoto(t, "franck_02159.jpg"), embed.Params{Mode: embed.ModeLargest})
	if err != nil {
		t.Fatal(err)
	}
	vec := rep.Faces[rep.Used].Embedding
	mq := s.MQTT(t)
	r := rand.New(rand.NewPCG(3, 4))
	t0 := time.Now().UTC().Add(-time.Minute)
	for i := range 5 {
		msg, err := loadgen.SceneScapeMessage("ss-noimage", t0.Add(time.Duration(i)*100*time.Millisecond), 10,
			[]loadgen.Person{{Box: [4]int{100, 100, 200, 400}, Vector: loadgen.Jitter(r, vec, 0.005)}}, rep.Model)
		if err != nil {
			t.Fatal(err)
		}
		if err := mq.Publish(ctx, "scenescape/data/camera/ss-noimage", 1, false, msg); err != nil {
			t.Fatal(err)
		}
	}
	var alert streams.Alert
	stacktest.Eventually(t, time.Minute, "an alert from the camera without images", func() bool {
		resp, err := http.Get(s.URL + "/api/v1/alerts")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var list []streams.Alert
		if json.NewDecoder(resp.Body).Decode(&list) != nil {
			return false
		}
		for _, a := range list {
			if a.POIID == poi && a.Match.CameraID == "ss-noimage" {
				alert = a
				return true
			}
		}
		return false
	})
	// The alert fires on the track's first sample, while its later frames
	// may still be on their way through the tracker.
	var tr store.Track
	stacktest.Eventually(t, time.Minute, "the track to hold all 5 frames", func() bool {
		got, err := s.Store.GetTrack(ctx, "cam:ss-noimage:1")
		if err != nil {
			return false
		}
		tr = got
		return tr.Frames == 5
	})
	if tr.Samples != 1 {
		t.Fatalf("track %+v: want 1 sample", tr)
	}
	resp, err := http.Get(s.URL + alert.Match.ThumbnailPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if resp.StatusCode != http.StatusNotFound || json.NewDecoder(resp.Body).Decode(&body) != nil || body["error"] == nil {
		t.Fatalf("thumbnail of a track without images: %d %v, want a JSON 404", resp.StatusCode, body)
	}
}
