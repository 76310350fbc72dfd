package bridge

import (
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"poi/internal/metrics"
	"poi/internal/testenv"
	"poi/streams"
)

// TestOptionalExternalSceneScapeSamples feeds the bridge samples captured
// from a real SceneScape deployment, on machines that have them beside the
// checkout. It is an extra conformance check: the suite's claims rest on
// the project's own messages (TestParseSceneScapeFixtures), so a clone
// without the samples passes, saying so.
func TestOptionalExternalSceneScapeSamples(t *testing.T) {
	dir, files := testenv.ExternalSceneScapeSamples(t)
	if len(files) == 0 {
		t.Logf("checks optional external SceneScape samples in %s: none present, nothing checked", dir)
		return
	}
	t.Logf("checks optional external SceneScape samples: %d in %s", len(files), dir)
	// convert needs neither MQTT, JetStream nor Redis: it is the bridge's
	// validation and envelope, without the transport.
	// The samples were captured months ago: the clock check (TestCheckClock)
	// is not what they test.
	cfg := DefaultConfig()
	cfg.MaxClockSkew = 10 * 365 * 24 * time.Hour
	b := New(cfg, nil, nil, nil, metrics.New(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			payload, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			topic, env := sampleTopic(t, payload)
			if topic == "" {
				t.Logf("not a message the bridge subscribes to; not checked")
				return
			}
			msg, _, err := b.convert(topic, payload)
			if err != nil {
				t.Fatalf("%s: %v", topic, err)
			}
			if err := streams.DecodeMsg(msg.Header, msg.Data, env); err != nil {
				t.Fatalf("%s: envelope does not decode: %v", topic, err)
			}
			switch e := env.(type) {
			case *streams.Detections:
				if e.Timestamp.IsZero() || len(e.Persons)+len(e.Faces) == 0 {
					t.Fatalf("%s: %d persons, %d faces at %v", topic, len(e.Persons), len(e.Faces), e.Timestamp)
				}
				t.Logf("%s: %d persons (first vector %d-d), %d faces", topic, len(e.Persons), vectorDim(e.Persons), len(e.Faces))
			case *streams.RegionEvent:
				if e.Timestamp.IsZero() || len(e.Entered)+len(e.Exited) == 0 {
					t.Fatalf("%s: entered %d, exited %d at %v", topic, len(e.Entered), len(e.Exited), e.Timestamp)
				}
				t.Logf("%s: region %q, %d entered, %d exited", topic, e.RegionName, len(e.Entered), len(e.Exited))
			case *streams.CameraImage:
				if e.Timestamp.IsZero() || len(e.JPEG) == 0 {
					t.Fatalf("%s: %d-byte image at %v", topic, len(e.JPEG), e.Timestamp)
				}
				t.Logf("%s: %d-byte JPEG", topic, len(e.JPEG))
			}
		})
	}
}

// sampleTopic tells from its fields which SceneScape topic a sample was
// published on, and returns the envelope the bridge makes of it; "" for a
// kind the bridge does not ingest.
func sampleTopic(t *testing.T, payload []byte) (string, interface{ Version() int }) {
	t.Helper()
	var m struct {
		ID       string          `json:"id"`
		SceneID  string          `json:"scene_id"`
		RegionID string          `json:"region_id"`
		Image    *string         `json:"image"`
		Objects  json.RawMessage `json:"objects"`
		Entered  json.RawMessage `json:"entered"`
		Exited   json.RawMessage `json:"exited"`
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatalf("sample is not a JSON object: %v", err)
	}
	camera := m.ID
	if camera == "" {
		camera = "sample-camera"
	}
	switch {
	case m.SceneID != "" && m.RegionID != "" && (m.Entered != nil || m.Exited != nil):
		return "scenescape/event/region/" + m.SceneID + "/" + m.RegionID + "/objects", &streams.RegionEvent{}
	case m.Image != nil:
		return "scenescape/image/camera/" + camera, &streams.CameraImage{}
	case len(m.Objects) > 0 && m.Objects[0] == '{':
		return "scenescape/data/camera/" + camera, &streams.Detections{}
	}
	return "", nil
}

func vectorDim(objs []streams.ExternalObject) int {
	if len(objs) == 0 {
		return 0
	}
	return len(objs[0].Embedding)
}
