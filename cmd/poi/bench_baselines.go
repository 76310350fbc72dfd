package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/config"
	"poi/internal/embedded"
	"poi/internal/face"
	"poi/internal/imaging"
	"poi/internal/metrics"
	"poi/internal/mqttclient"
	"poi/internal/node"
)

// The baselines `poi bench` compares the service with, measured the same
// way: a bare bridge, and the floor of detection.

// bareStream is where the bare bridge stores what it forwards.
const bareStream = "BENCH_BARE"

// runBareBridge is `poi bench bare`: an MQTT → JetStream bridge that does no
// work (no parsing, no validation, no pipeline), storing every message of
// the SceneScape and frame topics as it came in a file-backed stream like
// ours, and serving its count on --bare-addr /metrics as
// poi_stage_processed_total{stage="bare"} for the load generator.
//
// It starts its own embedded NATS and MQTT servers at the configured
// embedded addresses (the service must not run meanwhile): the baseline is
// the bus alone.
func runBareBridge(ctx context.Context, cfg config.Config, b benchFlags, log *slog.Logger, stderr io.Writer) int {
	ns, err := embedded.StartNATS(cfg.NATS.EmbeddedHost, cfg.NATS.EmbeddedPort, filepath.Join(cfg.DataDir, "bench-bare"), log)
	if err != nil {
		fmt.Fprintf(stderr, "poi bench bare: %v\n", err)
		return 1
	}
	defer func() { _ = ns.Shutdown(context.WithoutCancel(ctx)) }()
	ms, err := embedded.StartMQTT(cfg.MQTT.EmbeddedAddr, embedded.MQTTOptions{MaxInflight: cfg.MQTT.EmbeddedMaxInflight}, log)
	if err != nil {
		fmt.Fprintf(stderr, "poi bench bare: %v\n", err)
		return 1
	}
	defer func() { _ = ms.Shutdown(context.WithoutCancel(ctx)) }()
	nc, err := nats.Connect(ns.URL())
	if err != nil {
		fmt.Fprintf(stderr, "poi bench bare: nats: %v\n", err)
		return 1
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintf(stderr, "poi bench bare: %v\n", err)
		return 1
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: bareStream, Subjects: []string{"bench.bare.>"},
		Storage: jetstream.FileStorage, MaxAge: 10 * time.Minute}); err != nil {
		fmt.Fprintf(stderr, "poi bench bare: stream: %v\n", err)
		return 1
	}
	m := metrics.New()
	ln, err := net.Listen("tcp", b.bareAddr)
	if err != nil {
		fmt.Fprintf(stderr, "poi bench bare: %v\n", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	mq, err := mqttclient.Connect(ctx, mqttclient.Options{URL: cfg.MQTT.BrokerURL(), ClientID: "poi-bench-bare", ConnectTimeout: cfg.MQTT.ConnectTimeout}, log)
	if err != nil {
		fmt.Fprintf(stderr, "poi bench bare: mqtt: %v\n", err)
		return 1
	}
	defer mq.Close(time.Second)
	// The same shape as the real bridge's fast path: the callback hands the
	// payload to an asynchronous JetStream publish and returns.
	for _, topic := range []string{"scenescape/data/camera/+", "poi/frames/+"} {
		if err := mq.Subscribe(ctx, topic, 1, func(_ paho.Client, msg paho.Message) {
			ack, err := js.PublishAsync("bench.bare.x", msg.Payload())
			if err != nil {
				m.Rejected.WithLabelValues("bare", "publish").Inc()
				return
			}
			go func() {
				select {
				case <-ack.Ok():
					m.Processed.WithLabelValues("bare").Inc()
				case <-ack.Err():
					m.Rejected.WithLabelValues("bare", "publish").Inc()
				}
			}()
		}); err != nil {
			fmt.Fprintf(stderr, "poi bench bare: %v\n", err)
			return 1
		}
	}
	log.Info("bare bridge forwarding", "metrics", "http://"+ln.Addr().String()+"/metrics")
	<-ctx.Done()
	return 0
}

// runFloor is `poi bench floor`: decode (reduced scale) + detect of the
// frames mode's frames in a loop on every core, the work a frame needs
// before anything else, with nothing else running. It prints frames/s.
func runFloor(ctx context.Context, cfg config.Config, b benchFlags, stdout, stderr io.Writer) int {
	src, err := loadFrames(b)
	if err != nil {
		fmt.Fprintf(stderr, "poi bench floor: %v\n", err)
		return 1
	}
	// The service's engine and image limits, so the floor is like for like.
	lim := node.ImageLimits(cfg)
	e, err := face.New(node.FaceConfig(cfg))
	if err != nil {
		fmt.Fprintf(stderr, "poi bench floor: %v\n", err)
		return 1
	}
	defer e.Close()
	w, h := e.DetectorSize()
	workers := runtime.GOMAXPROCS(0)
	var done atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(ctx, b.o.Duration)
	defer cancel()
	start := time.Now()
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := i; ctx.Err() == nil; k++ {
				img, scale, err := imaging.DecodeForSize(src[k%len(src)], lim, w, h)
				if err == nil {
					_, err = e.Detect(img, scale)
				}
				if err != nil {
					fmt.Fprintf(stderr, "poi bench floor: %v\n", err)
					cancel()
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Fprintf(stdout, "floor: %d frames in %s on %d goroutines: %.1f frames/s\n", done.Load(), el.Round(time.Millisecond), workers, float64(done.Load())/el.Seconds())
	return 0
}

// loadFrames reads the frames mode's photos, scaled onto --size.
func loadFrames(b benchFlags) ([][]byte, error) {
	files, err := filepath.Glob(filepath.Join(b.photos, b.frameGlob))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("frames: no photos match %s in %s", b.frameGlob, b.photos)
	}
	var jpegs [][]byte
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if b.size != "" {
			if raw, err = scaleOnto(raw, b.size); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
		}
		jpegs = append(jpegs, raw)
	}
	return jpegs, nil
}
