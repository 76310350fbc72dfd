package bridge

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"poi/internal/embedded"
	"poi/internal/metrics"
	"poi/internal/mqttclient"
	"poi/internal/store"
	"poi/internal/testenv"
	"poi/streams"
)

// TestBridgeEndToEnd runs the bridge between a real MQTT broker, a real
// nats-server and a real Redis.
func TestBridgeEndToEnd(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, js := testenv.NATS(t)
	if err := streams.Declare(ctx, js, streams.DefaultLimits(), 3, log); err != nil {
		t.Fatal(err)
	}
	broker := testenv.MQTT(t, embedded.MQTTOptions{}, log)
	redis := testenv.StartRedis(t)
	st, err := store.Open(redis.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	opts := mqttclient.Options{URL: "tcp://" + broker.Addr(), ConnectTimeout: 5 * time.Second, ManualAck: true}
	bcl, err := mqttclient.Connect(ctx, opts, log)
	if err != nil {
		t.Fatal(err)
	}
	defer bcl.Close(0)
	m := metrics.New()
	cfg := DefaultConfig()
	// The fixtures are dated (March and November 2026): the bridge's clock
	// is set to the November messages and the skew allowed covers the year.
	cfg.MaxClockSkew = 366 * 24 * time.Hour
	b := New(cfg, bcl, js, st, m, log)
	b.now = func() time.Time { return time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC) }
	if err := b.Subscribe(ctx); err != nil {
		t.Fatal(err)
	}
	bctx, stopBridge := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- b.Run(bctx) }()

	opts.ManualAck = false
	pub, err := mqttclient.Connect(ctx, opts, log)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close(0)

	frame := testenv.ReadPhoto(t, "franck_01829.jpg")
	frameJSON, _ := json.Marshal(map[string]string{"timestamp": "2026-11-27T10:00:00Z", "image": base64.StdEncoding.EncodeToString(frame)})
	// A camera image with a real face is made here from a photo: photos are
	// set-up's, never committed.
	faceImage, _ := json.Marshal(map[string]string{"timestamp": "2026-11-27T10:00:00Z", "id": "aisle-cam", "image": base64.StdEncoding.EncodeToString(frame)})
	regionTopic := "scenescape/event/region/" + fixtureScene + "/" + fixtureRegion + "/objects"
	type send struct{ topic, body string }
	valid := []send{
		{"poi/frames/cam.1", string(frameJSON)},
		{"poi/frames/cam.1", string(frameJSON)}, // an MQTT redelivery: stored once
		{"poi/frames/cam-2", string(frame)},
		{"scenescape/data/camera/" + fixtureCamera, string(testenv.SceneScapeFixture(t, "data-camera-persons.json"))},
		{"scenescape/data/camera/" + fixtureCamera, string(testenv.SceneScapeFixture(t, "data-camera-faces.json"))},
		{"scenescape/image/camera/" + fixtureCamera, string(testenv.SceneScapeFixture(t, "image-camera.json"))},
		{"scenescape/image/camera/aisle-cam", string(faceImage)},
		{regionTopic, string(testenv.SceneScapeFixture(t, "region-entered.json"))},
		{regionTopic, string(testenv.SceneScapeFixture(t, "region-exited.json"))},
	}
	// Malformed: each is counted and none stops the bridge.
	malformed := []send{
		{"poi/frames/cam-3", "not a jpeg"},
		{"scenescape/data/camera/cam-3", `{"timestamp": "2026-11-27T10:00:00Z", "objects": {"person": [{"bounding_box_px": {"x": 1, "y": 1, "width": 2, "height": 2}, "metadata": {"reid": {"embedding_vector": "!!"}}}]}}`},
		{"scenescape/data/camera/cam-3", `{"timestamp": `},
		{"scenescape/image/camera/cam-3", `{"timestamp":"2026-11-27T10:00:00Z","image":"aGVsbG8="}`},
		{"poi/frames/cam-3", `{"timestamp":"2200-01-01T00:00:00Z","image":"` + base64.StdEncoding.EncodeToString(frame) + `"}`},
	}
	sends := append(append([]send{}, valid...), malformed...)
	for _, s := range sends {
		if err := pub.Publish(ctx, s.topic, 1, false, []byte(s.body)); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, time.Minute, "the bridge to receive every message", func() bool {
		return testutil.ToFloat64(m.Received.WithLabelValues("bridge")) >= float64(len(sends))
	})
	stopBridge()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The repeated frame is stored once and counted as a redelivery.
	if got := testutil.ToFloat64(m.Processed.WithLabelValues("bridge")); got != float64(len(valid)-1) {
		t.Fatalf("processed %v, want %d", got, len(valid)-1)
	}
	if got := testutil.ToFloat64(m.Redelivered.WithLabelValues("bridge")); got != 1 {
		t.Fatalf("redelivered %v, want 1", got)
	}
	for reason, want := range map[string]float64{"not_jpeg": 2, "bad_base64": 1, "bad_json": 1, "clock_skew": 1} {
		if got := testutil.ToFloat64(m.Rejected.WithLabelValues("bridge", reason)); got != want {
			t.Errorf("rejected %s = %v, want %v", reason, got, want)
		}
	}
	s, _ := js.Stream(ctx, streams.Ingest)
	info, _ := s.Info(ctx, jetstream.WithSubjectFilter(">"))
	counts := info.State.Subjects
	// Stored subjects carry the camera's partition (the stream's transform).
	stored := func(kind, cam string) string {
		return fmt.Sprintf("%s.%d.%s", kind, streams.Partition(cam, streams.DefaultLimits().Partitions), streams.Token(cam))
	}
	regionSubject := "poi.ingest.region." + fixtureScene + "." + fixtureRegion
	want := map[string]uint64{
		stored(streams.IngestFrame, "cam.1"):            1, // deduplicated by Nats-Msg-Id
		stored(streams.IngestFrame, "cam-2"):            1,
		stored(streams.IngestSceneScape, fixtureCamera): 2,
		stored(streams.IngestImage, fixtureCamera):      1,
		stored(streams.IngestImage, "aisle-cam"):        1,
		regionSubject:                                   2,
	}
	for subj, n := range want {
		if counts[subj] != n {
			t.Errorf("%s holds %d, want %d (all: %v)", subj, counts[subj], n, counts)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("unexpected subjects: %v", counts)
	}
	raw, err := s.GetLastMsgForSubject(ctx, stored(streams.IngestFrame, "cam.1"))
	if err != nil {
		t.Fatal(err)
	}
	var f streams.Frame
	if err := streams.DecodeMsg(raw.Header, raw.Data, &f); err != nil {
		t.Fatal(err)
	}
	if f.CameraID != "cam.1" || len(f.JPEG) != len(frame) || f.Timestamp.Format(time.RFC3339) != "2026-11-27T10:00:00Z" {
		t.Fatalf("frame envelope: camera %q, %d bytes, %v", f.CameraID, len(f.JPEG), f.Timestamp)
	}
	// What SceneScape sent survives the envelope: the last message of a
	// camera is its last one published (one bridge worker per camera).
	raw, err = s.GetLastMsgForSubject(ctx, stored(streams.IngestSceneScape, fixtureCamera))
	if err != nil {
		t.Fatal(err)
	}
	var d streams.Detections
	if err := streams.DecodeMsg(raw.Header, raw.Data, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Persons) != 6 || len(d.Faces) != 6 {
		t.Fatalf("detections envelope: %d persons %d faces, want 6 and 6", len(d.Persons), len(d.Faces))
	}
	for i := range 5 {
		if !slices.Equal(d.Faces[i].Embedding, faceVector(i+1)) {
			t.Errorf("face %d of the envelope: %d-d vector, not the fixture's", i+1, len(d.Faces[i].Embedding))
		}
	}
	raw, err = s.GetLastMsgForSubject(ctx, stored(streams.IngestImage, "aisle-cam"))
	if err != nil {
		t.Fatal(err)
	}
	var ci streams.CameraImage
	if err := streams.DecodeMsg(raw.Header, raw.Data, &ci); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ci.JPEG, frame) {
		t.Fatalf("image envelope holds %d bytes, want the photo's %d", len(ci.JPEG), len(frame))
	}
	raw, err = s.GetLastMsgForSubject(ctx, regionSubject)
	if err != nil {
		t.Fatal(err)
	}
	var ev streams.RegionEvent
	if err := streams.DecodeMsg(raw.Header, raw.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.SceneID != fixtureScene || ev.RegionID != fixtureRegion || len(ev.Exited) != 1 || ev.Exited[0].Dwell != 42.75 {
		t.Fatalf("region envelope %+v", ev)
	}
	cams, err := st.CamerasSeen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cams, []string{"aisle-cam", "cam-2", "cam.1", fixtureCamera}) {
		t.Fatalf("cameras seen = %v", cams)
	}
}
