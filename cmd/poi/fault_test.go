package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"poi/internal/mqttclient"
	"poi/internal/stacktest"
	"poi/internal/testenv"
	"poi/streams"
)

// outcome is everything a run leaves behind that must not depend on faults.
type outcome struct {
	Tracks  map[string]map[string]string // track records
	Samples map[string]map[string]string // all-detections samples in Redis
	Alerts  []string                     // alert ids, newest first
	Frames  map[string]int               // frames tracked per camera
	Stream  uint64                       // samples stored in POI_SAMPLES
	Vectors float64                      // faiss_vectors of the API's replicas
}

const (
	faultFrames  = 1000 // frames of the enrolled person's camera
	otherFrames  = 100  // frames of other people on a second camera
	frameSpacing = 100 * time.Millisecond
)

// runFaultScenario runs the pipeline as two processes: `poi run` without the
// tracker, and `poi worker --pools index`. With disturb it SIGKILLs the
// tracker process a third of the way through and restarts it, and stops
// Redis for 5 s two thirds of the way through.
func runFaultScenario(t *testing.T, base time.Time, disturb bool) outcome {
	rd := testenv.StartDurableRedis(t)
	env := []string{"POI_PIPELINE_TRACK_SILENCE=3s", "POI_LOG_LEVEL=warn"}
	a := startPoi(t, rd.URL(), env, "run", "--pools", "detect,embed,alert")
	waitStatus(t, a, 60*time.Second, "the main process", func(code int, s status) bool { return code == 200 })
	natsURL := "nats://127.0.0.1:" + strconv.Itoa(a.ports[1])
	tracker := func() *proc {
		return startPoi(t, rd.URL(), append(env, "POI_NATS_URL="+natsURL), "worker", "--pools", "index")
	}
	b := tracker()
	poi := stacktest.Enroll(t, a.api, nil, "franck_01829.jpg")

	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	mq, err := mqttclient.Connect(ctx, mqttclient.Options{URL: "tcp://127.0.0.1:" + strconv.Itoa(a.ports[2]), ConnectTimeout: 5 * time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer mq.Close(100 * time.Millisecond)
	franck, _ := filepath.Glob(filepath.Join(testenv.AssetsDir(t), "photos", "franck_0[2-4]*.jpg"))
	others := []string{"cage.jpg", "obama4_crop.jpg", "kim1_crop.jpg", "chuck_crop.jpg"}
	// The person leaves for 10 s half way through: a second track, which
	// the cooldown keeps from alerting again.
	at := func(i int) time.Time {
		ts := base.Add(time.Duration(i) * frameSpacing)
		if i >= faultFrames/2 {
			ts = ts.Add(10 * time.Second)
		}
		return ts
	}
	go func() {
		for i := range faultFrames {
			b := testenv.ReadPhoto(t, filepath.Base(franck[i%len(franck)]))
			if err := mq.Publish(ctx, "poi/frames/cam-f", 1, false, stacktest.FrameJSON(b, at(i))); err != nil {
				t.Errorf("publish: %v", err)
				return
			}
			if i%(faultFrames/otherFrames) == 0 {
				j := i / (faultFrames / otherFrames)
				o := testenv.ReadPhoto(t, others[(j/10)%len(others)])
				if err := mq.Publish(ctx, "poi/frames/cam-o", 1, false, stacktest.FrameJSON(o, base.Add(time.Duration(j)*time.Second))); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		}
	}()

	tracked := func() uint64 {
		c, err := js.Consumer(ctx, streams.Observations, streams.ConsumerIndex)
		if err != nil {
			return 0
		}
		info, err := c.Info(ctx)
		if err != nil {
			return 0
		}
		return info.AckFloor.Stream
	}
	if disturb {
		stacktest.Eventually(t, 3*time.Minute, "a third of the frames tracked", func() bool { return tracked() >= faultFrames/3 })
		if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-b.done
		t.Logf("tracker killed at observation %d", tracked())
		b = tracker()
		stacktest.Eventually(t, 3*time.Minute, "two thirds of the frames tracked", func() bool { return tracked() >= 2*faultFrames/3 })
		rd.Stop()
		t.Logf("redis stopped at observation %d", tracked())
		time.Sleep(5 * time.Second)
		rd.Start()
	}

	// Everything is processed and every track has exited.
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(rd.Port)})
	defer rc.Close()
	stacktest.Eventually(t, 5*time.Minute, "all frames tracked and all tracks closed", func() bool {
		for _, name := range []string{streams.Observations, streams.Sightings} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return false
			}
			if info, _ := s.Info(ctx); info == nil || info.State.Msgs != 0 {
				return false
			}
		}
		for _, cam := range []string{"cam-f", "cam-o"} {
			raw, err := rc.Get(ctx, "track:state:"+cam).Bytes()
			if err != nil {
				return false
			}
			var st struct {
				Tracks []json.RawMessage `json:"tracks"`
			}
			if json.Unmarshal(raw, &st) != nil || len(st.Tracks) != 0 {
				return false
			}
		}
		return true
	})

	out := outcome{Tracks: map[string]map[string]string{}, Samples: map[string]map[string]string{}, Frames: map[string]int{}}
	iter := rc.Scan(ctx, 0, "track:cam:*", 1000).Iterator()
	for iter.Next(ctx) {
		m := rc.HGetAll(ctx, iter.Val()).Val()
		out.Tracks[iter.Val()] = m
		n, _ := strconv.Atoi(m["frames"])
		out.Frames[m["camera_id"]] += n
	}
	iter = rc.Scan(ctx, 0, "detection:[0-9]*", 1000).Iterator()
	for iter.Next(ctx) {
		out.Samples[iter.Val()] = rc.HGetAll(ctx, iter.Val()).Val()
	}
	for _, a := range rc.LRange(ctx, "alerts:recent", 0, -1).Val() {
		var x streams.Alert
		json.Unmarshal([]byte(a), &x)
		out.Alerts = append(out.Alerts, x.AlertID)
	}
	s, _ := js.Stream(ctx, streams.Samples)
	info, _ := s.Info(ctx)
	out.Stream = info.State.Msgs
	alertStream, _ := js.Stream(ctx, streams.Alerts)
	ainfo, _ := alertStream.Info(ctx)
	if int(ainfo.State.Msgs) != len(out.Alerts) {
		t.Errorf("POI_ALERTS holds %d alerts, Redis %d", ainfo.State.Msgs, len(out.Alerts))
	}
	stacktest.Eventually(t, 30*time.Second, "the API's replicas caught up", func() bool {
		_, st, _, err := getStatus(t, a.api)
		out.Vectors = float64(*st.FaissVectors)
		return err == nil && uint64(out.Vectors) == out.Stream+1 // + the POI's reference
	})
	if out.Frames["cam-f"] != faultFrames || out.Frames["cam-o"] != otherFrames {
		t.Errorf("frames tracked %v, want every frame exactly once (%d, %d)", out.Frames, faultFrames, otherFrames)
	}
	if len(out.Alerts) != 1 || !strings.Contains(out.Alerts[0], poi) {
		t.Errorf("alerts %v, want exactly one for %s", out.Alerts, poi)
	}
	return out
}

// TestKilledTrackerAndRedisOutageLoseAndDoubleNothing compares a disturbed
// run with an undisturbed run of the same frames.
func TestKilledTrackerAndRedisOutageLoseAndDoubleNothing(t *testing.T) {
	// Both runs replay the same camera time, so their results can be
	// compared field by field.
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Hour)
	calm := runFaultScenario(t, base, false)
	rough := runFaultScenario(t, base, true)
	if len(calm.Tracks) < 3 || len(calm.Samples) == 0 {
		t.Fatalf("undisturbed run: %d tracks, %d samples", len(calm.Tracks), len(calm.Samples))
	}
	t.Logf("undisturbed: %d tracks, %d samples, %d alerts, %d vectors", len(calm.Tracks), len(calm.Samples), len(calm.Alerts), int(calm.Vectors))
	if !reflect.DeepEqual(keys(calm.Tracks), keys(rough.Tracks)) {
		t.Fatalf("tracks differ:\n calm  %v\n rough %v", keys(calm.Tracks), keys(rough.Tracks))
	}
	for k, v := range calm.Tracks {
		if !reflect.DeepEqual(v, rough.Tracks[k]) {
			t.Errorf("track %s differs:\n calm  %v\n rough %v", k, v, rough.Tracks[k])
		}
	}
	if !reflect.DeepEqual(calm.Samples, rough.Samples) {
		t.Errorf("samples differ: %d vs %d", len(calm.Samples), len(rough.Samples))
	}
	if calm.Stream != rough.Stream || calm.Vectors != rough.Vectors || calm.Stream != uint64(len(calm.Samples)) {
		t.Errorf("index: calm %d samples / %v vectors, rough %d / %v", calm.Stream, calm.Vectors, rough.Stream, rough.Vectors)
	}
	// Alert ids carry the POI id, which differs per run: compare the rest.
	if len(calm.Alerts) != len(rough.Alerts) || fmt.Sprint(trimPOI(calm.Alerts)) != fmt.Sprint(trimPOI(rough.Alerts)) {
		t.Errorf("alerts differ: %v vs %v", calm.Alerts, rough.Alerts)
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func trimPOI(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		parts := strings.Split(id, "-")
		out[i] = strings.Join(append(parts[:3:3], parts[len(parts)-1]), "-")
	}
	return out
}
