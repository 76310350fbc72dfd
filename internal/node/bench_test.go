package node_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"poi/internal/face"
	"poi/internal/imaging"
	"poi/internal/stacktest"
	"poi/internal/testenv"
	"poi/streams"
	"poi/workers/embed"
)

// BenchmarkAlertLatency measures camera-to-alert time: a frame of an
// enrolled face on a new camera, published on MQTT, until its alert arrives
// on MQTT. The baseline, measured in the same run, is the bare inference
// the path cannot avoid: one embedding-service call that detects and embeds
// the same frame.
func BenchmarkAlertLatency(b *testing.B) {
	s := stacktest.Start(b, stacktest.Options{})
	frame := testenv.ReadPhoto(b, "franck_02045.jpg")
	ctx := context.Background()

	b.Run("baseline-embed-call", func(b *testing.B) {
		cl := embed.NewClient(s.NC, streams.EmbedService, 30*time.Second, 0, nil)
		for b.Loop() {
			if _, err := cl.Do(ctx, frame, embed.Params{Mode: embed.ModeAll}); err != nil {
				b.Fatal(err)
			}
		}
	})

	stacktest.Enroll(b, s.URL, nil, "franck_01829.jpg")
	alerts := make(chan struct{}, 16)
	mq := s.MQTT(b)
	if err := mq.Subscribe(ctx, "poi/alerts/#", 1, func(paho.Client, paho.Message) { alerts <- struct{}{} }); err != nil {
		b.Fatal(err)
	}
	i := 0 // cameras are never reused: each frame is a new appearance
	b.Run("mqtt-frame-to-mqtt-alert", func(b *testing.B) {
		for b.Loop() {
			i++
			if err := mq.Publish(ctx, fmt.Sprintf("poi/frames/bench-%d", i), 1, false, stacktest.FrameJSON(frame, time.Now())); err != nil {
				b.Fatal(err)
			}
			select {
			case <-alerts:
			case <-time.After(30 * time.Second):
				b.Fatal("no alert within 30s")
			}
		}
	})
}

// BenchmarkPipelineThroughput measures frames per second through bridge,
// detect and tracker for one camera with one face (the embedder runs only
// when the track needs it). The baseline in the same run is what the path
// cannot avoid: decoding and detecting the same frames in a loop.
func BenchmarkPipelineThroughput(b *testing.B) {
	s := stacktest.Start(b, stacktest.Options{})
	files, _ := filepath.Glob(filepath.Join(testenv.AssetsDir(b), "photos", "franck_0*.jpg"))
	frames := make([][]byte, len(files))
	for i, f := range files {
		frames[i] = testenv.ReadPhoto(b, filepath.Base(f))
	}
	ctx := context.Background()
	cfg := face.DefaultConfig()
	cfg.ModelDir, cfg.LibraryPath = testenv.ModelDir(b), testenv.ORTLibrary(b)
	eng, err := face.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	b.Run("baseline-decode-detect", func(b *testing.B) {
		w, h := eng.DetectorSize()
		n := 0
		for b.Loop() {
			img, scale, err := imaging.DecodeForSize(frames[n%len(frames)], imaging.DefaultLimits(), w, h)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := eng.Detect(img, scale); err != nil {
				b.Fatal(err)
			}
			n++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
	})
	mq := s.MQTT(b)
	m := s.Node.Metrics()
	const batch = 200
	base := time.Now().Add(-time.Hour)
	n := 0
	b.Run("frames", func(b *testing.B) {
		for b.Loop() {
			before := testutil.ToFloat64(m.Processed.WithLabelValues("index"))
			for range batch {
				if err := mq.Publish(ctx, "poi/frames/bench", 1, false, stacktest.FrameJSON(frames[n%len(frames)], base.Add(time.Duration(n)*100*time.Millisecond))); err != nil {
					b.Fatal(err)
				}
				n++
			}
			for testutil.ToFloat64(m.Processed.WithLabelValues("index")) < before+batch {
				time.Sleep(2 * time.Millisecond)
			}
		}
		b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "frames/s")
	})
}
