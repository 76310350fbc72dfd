package bridge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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
	broker, err := embedded.StartMQTT("127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	defer broker.Close()
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
	b := New(DefaultConfig(), bcl, js, st, m, log)
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
	sends := []struct{ topic, body string }{
		{"poi/frames/cam.1", string(frameJSON)},
		{"poi/frames/cam.1", string(frameJSON)}, // an MQTT redelivery: stored once
		{"poi/frames/cam-2", string(frame)},
		{"scenescape/data/camera/lp-camera1", string(fixture(t, "camera1.json"))},
		{"scenescape/event/region/bfb9f86b-b152-4e7f-8099-7c251ed84630/adb88222-de2e-4896-a0e2-d577d21b132e/objects", string(fixture(t, "event1.json"))},
		{"scenescape/image/camera/lp-camera1", `{"timestamp":"2026-11-27T10:00:00Z","id":"lp-camera1","image":"` + base64.StdEncoding.EncodeToString(frame) + `"}`},
		// malformed: each is counted and none stops the bridge
		{"poi/frames/cam-3", "not a jpeg"},
		{"scenescape/data/camera/cam-3", `{"timestamp": "2026-11-27T10:00:00Z", "objects": {"person": [{"bounding_box_px": {"x": 1, "y": 1, "width": 2, "height": 2}, "metadata": {"reid": {"embedding_vector": "!!"}}}]}}`},
		{"scenescape/data/camera/cam-3", `{"timestamp": `},
		{"scenescape/image/camera/cam-3", `{"timestamp":"2026-11-27T10:00:00Z","image":"aGVsbG8="}`},
	}
	for _, s := range sends {
		if err := pub.Publish(ctx, s.topic, 1, false, []byte(s.body)); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for testutil.ToFloat64(m.Received.WithLabelValues("bridge")) < float64(len(sends)) {
		if time.Now().After(deadline) {
			t.Fatalf("bridge received %v of %d", testutil.ToFloat64(m.Received.WithLabelValues("bridge")), len(sends))
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopBridge()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.Processed.WithLabelValues("bridge")); got != 6 {
		t.Fatalf("processed %v, want 6", got)
	}
	for reason, want := range map[string]float64{"not_jpeg": 2, "bad_base64": 1, "bad_json": 1} {
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
	want := map[string]uint64{
		stored(streams.IngestFrame, "cam.1"):                                                          1, // deduplicated by Nats-Msg-Id
		stored(streams.IngestFrame, "cam-2"):                                                          1,
		stored(streams.IngestSceneScape, "lp-camera1"):                                                1,
		stored(streams.IngestImage, "lp-camera1"):                                                     1,
		"poi.ingest.region.bfb9f86b-b152-4e7f-8099-7c251ed84630.adb88222-de2e-4896-a0e2-d577d21b132e": 1,
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
	cams, err := st.CamerasSeen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cams) != 3 || cams[0] != "cam-2" || cams[1] != "cam.1" || cams[2] != "lp-camera1" {
		t.Fatalf("cameras seen = %v", cams)
	}
}
