package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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

	"poi/internal/loadgen"
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

// camPlan is what one camera shows: frames of a list of photos, every
// spacing of camera time, in order.
type camPlan struct {
	id     string
	photos []string
	frames int
	// gapAt leaves a 10 s hole in the camera time after that many frames
	// (0: none): the person leaves, a second track begins.
	gapAt   int
	spacing time.Duration
}

// scenario is a fault run: the cameras, the tracker processes, and what is
// done to them part way.
type scenario struct {
	cams     []camPlan
	trackers int
	// disturb runs when a third of the frames are tracked, and may stop or
	// start trackers (by index into the slice it is given).
	disturb func(t *testing.T, sc *scenarioRun)
	alerts  int // alerts expected (one per camera of the enrolled person)
}

type scenarioRun struct {
	trackers []*proc
	start    func() *proc
	rd       *testenv.Redis
	tracked  func() uint64
	total    int
}

// runFaultScenario runs the pipeline as `poi run` without the tracker plus
// `poi worker --pools index` processes, publishes every camera's frames, lets
// disturb do its damage, and returns what the run left in Redis and
// JetStream once every frame is tracked and every track closed.
func runFaultScenario(t *testing.T, base time.Time, sc scenario) outcome {
	rd := testenv.StartDurableRedis(t)
	env := []string{"POI_PIPELINE_TRACK_SILENCE=3s", "POI_LOG_LEVEL=warn"}
	a := startPoi(t, rd.URL(), env, "run", "--pools", "detect,embed,alert")
	waitStatus(t, a, 60*time.Second, "the main process", func(code int, s status) bool { return code == 200 })
	natsURL := "nats://127.0.0.1:" + strconv.Itoa(a.ports[1])
	run := &scenarioRun{rd: rd}
	run.start = func() *proc {
		return startPoi(t, rd.URL(), append(env, "POI_LOG_LEVEL=info", "POI_NATS_URL="+natsURL, "POI_METRICS_ADDR=127.0.0.1:"+strconv.Itoa(testenv.FreePort(t))), "worker", "--pools", "index")
	}
	for range sc.trackers {
		run.trackers = append(run.trackers, run.start())
	}
	if len(run.trackers) > 1 {
		stacktest.Eventually(t, 2*time.Minute, "every tracker owns partitions", func() bool {
			total := 0
			for _, p := range run.trackers {
				n := ownedPartitions(t, p)
				if n <= 0 {
					return false
				}
				total += n
			}
			return total == streams.DefaultLimits().Partitions
		})
	}
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
	photos := map[string][]byte{}
	for _, c := range sc.cams {
		run.total += c.frames
		for _, p := range c.photos {
			photos[p] = testenv.ReadPhoto(t, p)
		}
	}
	go func() {
		// Every camera's frames spread evenly over the run, each camera in
		// its own camera time.
		most := 0
		for _, c := range sc.cams {
			most = max(most, c.frames)
		}
		next := make([]int, len(sc.cams))
		for i := range most {
			for ci, c := range sc.cams {
				for ; next[ci] < c.frames && next[ci]*most <= i*c.frames; next[ci]++ {
					k := next[ci]
					ts := base.Add(time.Duration(k) * c.spacing)
					if c.gapAt > 0 && k >= c.gapAt {
						ts = ts.Add(10 * time.Second)
					}
					if err := mq.Publish(ctx, "poi/frames/"+c.id, 1, false, stacktest.FrameJSON(photos[c.photos[k%len(c.photos)]], ts)); err != nil {
						t.Errorf("publish: %v", err)
						return
					}
				}
			}
		}
	}()

	// Messages the tracker acknowledged, over every partition (deliveries
	// repeated after a failure count again: a trigger, not a measure).
	run.tracked = func() uint64 {
		var n uint64
		for p := range streams.DefaultLimits().Partitions {
			c, err := js.Consumer(ctx, streams.Ingest, streams.IndexConsumer(p))
			if err != nil {
				return 0
			}
			n += c.CachedInfo().AckFloor.Consumer
		}
		return n
	}
	if sc.disturb != nil {
		stacktest.Eventually(t, 3*time.Minute, "a third of the frames tracked", func() bool { return run.tracked() >= uint64(run.total/3) })
		sc.disturb(t, run)
	}

	// Everything is processed and every track has exited.
	rc := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(rd.Port)})
	defer rc.Close()
	stacktest.Eventually(t, 5*time.Minute, "all frames tracked and all tracks closed", func() bool {
		for _, name := range []string{streams.Ingest, streams.Sightings} {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return false
			}
			if info, _ := s.Info(ctx); info == nil || info.State.Msgs != 0 {
				return false
			}
		}
		for _, c := range sc.cams {
			raw, err := rc.Get(ctx, "track:state:"+c.id).Bytes()
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
	// A frame applied out of its camera's order would be skipped as already
	// applied (its sequence is below the camera's last), so frames tracked
	// exactly once per camera also says the order held.
	for _, c := range sc.cams {
		if out.Frames[c.id] != c.frames {
			t.Errorf("camera %s: %d frames tracked, want every frame exactly once (%d)", c.id, out.Frames[c.id], c.frames)
		}
	}
	if len(out.Alerts) != sc.alerts {
		t.Errorf("alerts %v, want %d for %s", out.Alerts, sc.alerts, poi)
	}
	for _, id := range out.Alerts {
		if !strings.Contains(id, poi) {
			t.Errorf("alert %s is not for %s", id, poi)
		}
	}
	return out
}

// compareOutcomes checks that a disturbed run left exactly what an
// undisturbed run of the same frames left.
func compareOutcomes(t *testing.T, calm, rough outcome) {
	t.Helper()
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
	// Alerts of different cameras may be raised in either order.
	ca, ra := trimPOI(calm.Alerts), trimPOI(rough.Alerts)
	sort.Strings(ca)
	sort.Strings(ra)
	if fmt.Sprint(ca) != fmt.Sprint(ra) {
		t.Errorf("alerts differ: %v vs %v", calm.Alerts, rough.Alerts)
	}
}

// each repeats every photo n times: a person stays for n frames.
func each(n int, photos ...string) []string {
	var out []string
	for _, p := range photos {
		for range n {
			out = append(out, p)
		}
	}
	return out
}

// franckFrames are video frames of the enrolled person.
var franckFrames = []string{"franck_02045.jpg", "franck_02159.jpg", "franck_02221.jpg", "franck_02683.jpg", "franck_02888.jpg",
	"franck_03909.jpg", "franck_03979.jpg", "franck_04000.jpg", "franck_04035.jpg", "franck_04117.jpg"}

// twoCameras is the single-tracker scenario: the enrolled person on one
// camera (leaving for 10 s half way), other people on another.
func twoCameras() []camPlan {
	return []camPlan{
		{id: "cam-f", photos: franckFrames, frames: faultFrames, gapAt: faultFrames / 2, spacing: frameSpacing},
		{id: "cam-o", photos: each(10, "cage.jpg", "obama4_crop.jpg", "kim1_crop.jpg", "chuck_crop.jpg"), frames: otherFrames, spacing: time.Second},
	}
}

// TestKilledTrackerAndRedisOutageLoseAndDoubleNothing compares a disturbed
// run with an undisturbed run of the same frames.
func TestKilledTrackerAndRedisOutageLoseAndDoubleNothing(t *testing.T) {
	// Both runs replay the same camera time, so their results can be
	// compared field by field.
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Hour)
	calm := runFaultScenario(t, base, scenario{cams: twoCameras(), trackers: 1, alerts: 1})
	rough := runFaultScenario(t, base, scenario{cams: twoCameras(), trackers: 1, alerts: 1, disturb: func(t *testing.T, r *scenarioRun) {
		b := r.trackers[0]
		if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-b.done
		t.Logf("tracker killed at %d acknowledged", r.tracked())
		r.trackers[0] = r.start()
		stacktest.Eventually(t, 3*time.Minute, "two thirds of the frames tracked", func() bool { return r.tracked() >= uint64(2*r.total/3) })
		r.rd.Stop()
		t.Logf("redis stopped at %d acknowledged", r.tracked())
		time.Sleep(5 * time.Second) // the outage itself, not a wait for something
		r.rd.Start()
	}})
	compareOutcomes(t, calm, rough)
}

// ownedPartitions reads poi_partitions_owned from a worker's /metrics.
func ownedPartitions(t *testing.T, p *proc) int {
	t.Helper()
	addr := ""
	for _, e := range p.cmd.Env {
		if v, ok := strings.CutPrefix(e, "POI_METRICS_ADDR="); ok {
			addr = v
		}
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	samples, err := loadgen.ParseMetrics(resp.Body)
	if err != nil {
		return -1
	}
	for _, s := range samples {
		if s.Name == "poi_partitions_owned" && s.Labels["stage"] == "index" {
			return int(s.Value)
		}
	}
	return 0
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
