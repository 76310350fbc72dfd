package replica

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/outbox"
	"poi/internal/store"
	"poi/internal/testenv"
	"poi/internal/vectorindex"
	"poi/streams"
)

var model = vectorindex.Model{Name: "test-model", Dim: 8}

func publishSamples(t *testing.T, js jetstream.JetStream, from, n int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(from), 1))
	for i := from; i < from+n; i++ {
		v := make([]float32, model.Dim)
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		b, _ := json.Marshal(streams.Sample{Header: streams.Current(), ID: int64(i + 1), TrackID: "cam:c:1", CameraID: "c",
			Timestamp: time.Now().Add(-time.Duration(i) * time.Minute), Model: model.Name, Vector: v})
		m := nats.NewMsg(streams.Subject(streams.SamplesSubj, "c"))
		m.Data = b
		m.Header.Set(jetstream.MsgIDHeader, "sample-"+strconv.Itoa(i+1))
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
}

// run starts a replica, waits until it has caught up, and stops it (which
// writes its snapshot).
func run(t *testing.T, js jetstream.JetStream, dir string) (loadedAt uint64, count int) {
	t.Helper()
	d, err := NewDetections(DetectionConfig{Index: vectorindex.DetectionConfig{Model: model}, Dir: dir, Retention: 7 * 24 * time.Hour, SnapshotEvery: time.Hour},
		js, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	loadedAt = d.Position()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := d.CatchUp(wctx); err != nil {
		t.Fatal(err)
	}
	count = d.Index().Count()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return loadedAt, count
}

func TestDetectionReplicaSnapshotsCatchesUpAndRebuildsFromDamage(t *testing.T) {
	_, js := testenv.NATS(t)
	if err := streams.Declare(context.Background(), js, streams.DefaultLimits(), 3, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "detections")
	publishSamples(t, js, 0, 300)
	if at, n := run(t, js, dir); at != 0 || n != 300 {
		t.Fatalf("first start: loaded at %d, %d vectors; want 0, 300", at, n)
	}
	publishSamples(t, js, 300, 50)
	publishSamples(t, js, 0, 10) // redelivered samples: deduplicated
	if at, n := run(t, js, dir); at != 300 || n != 350 {
		t.Fatalf("restart: loaded at %d, %d vectors; want the snapshot at 300 and 350 after catching up", at, n)
	}
	// Damage every snapshot file: the replica rebuilds from the stream.
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, f := range files {
		if err := os.WriteFile(f, []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if at, n := run(t, js, dir); at != 0 || n != 350 {
		t.Fatalf("after damage: loaded at %d, %d vectors; want a rebuild from 0 to 350", at, n)
	}
}

// TestPOIReplicasFollowControlEvents: a replica started before an
// enrolment and one started after it both end up with it, and both drop it
// when it is deleted; the second one rebuilt it from Redis.
func TestPOIReplicasFollowControlEvents(t *testing.T) {
	_, js := testenv.NATS(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := streams.Declare(ctx, js, streams.DefaultLimits(), 3, log); err != nil {
		t.Fatal(err)
	}
	r := testenv.StartRedis(t)
	st, err := store.Open(r.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	start := func() *POI {
		p, err := NewPOI(model, st, js, log)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	publish := func(ev streams.ControlEvent) {
		b, _ := json.Marshal(ev)
		if _, err := js.Publish(ctx, streams.Subject(streams.ControlSubj, ev.Op), b); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(p *POI, want int) {
		t.Helper()
		testenv.EventuallyNil(t, 30*time.Second, fmt.Sprintf("the replica to hold %d vectors", want), func() error {
			if got := p.Index().Count(); got != want {
				return fmt.Errorf("it holds %d", got)
			}
			return nil
		})
	}
	early := start()
	vec := []float32{1, 0, 0, 0, 0, 0, 0, 0}
	poi := store.POI{ID: "poi-0000beef", Severity: "high", Status: "active", Model: model.Name, CreatedAt: time.Now(),
		Refs: []store.Ref{{EmbeddingID: "emb-0000beef-1", Vector: vec}}}
	if err := st.CreatePOI(ctx, poi); err != nil {
		t.Fatal(err)
	}
	publish(streams.ControlEvent{Header: streams.Current(), Op: streams.OpEnrolled, POIID: poi.ID, Model: model.Name,
		Refs: []streams.RefVector{{EmbeddingID: "emb-0000beef-1", Vector: vec}}})
	wait(early, 1)
	late := start() // rebuilt from Redis
	if late.Index().Count() != 1 {
		t.Fatalf("late replica rebuilt %d vectors, want 1", late.Index().Count())
	}
	hits, err := late.Index().Search(vec, 1)
	if err != nil || len(hits) != 1 || hits[0].POIID != poi.ID {
		t.Fatalf("search %v %v", hits, err)
	}
	// A reference added, then the first removed, through the outbox as
	// the API does: both replicas hold exactly the POI's current set.
	ob := outbox.New(st, js, log)
	other := []float32{0, 1, 0, 0, 0, 0, 0, 0}
	changed, _, err := st.AddRefs(ctx, poi.ID, []store.Ref{{Vector: other}}, false, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Publish(ctx, changed); err != nil {
		t.Fatal(err)
	}
	wait(early, 2)
	wait(late, 2)
	changed, err = st.RemoveRef(ctx, poi.ID, "emb-0000beef-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Publish(ctx, changed); err != nil {
		t.Fatal(err)
	}
	wait(early, 1)
	wait(late, 1)
	for _, p := range []*POI{early, late} {
		if hits, err := p.Index().Search(vec, 1); err != nil || len(hits) != 1 || hits[0].EmbeddingID != changed.Refs[0].EmbeddingID {
			t.Fatalf("after the removal the replica finds %v %v, want %s only", hits, err, changed.Refs[0].EmbeddingID)
		}
	}
	publish(streams.ControlEvent{Header: streams.Current(), Op: streams.OpDeleted, POIID: poi.ID})
	wait(early, 0)
	wait(late, 0)
}

// The all-detections replica keeps the samples of the unmatched retention
// only (the node gives it pipeline.unmatched_retention): 300 samples one
// minute apart, a two-hour retention, 120 vectors.
func TestDetectionReplicaHonoursTheUnmatchedRetention(t *testing.T) {
	_, js := testenv.NATS(t)
	if err := streams.Declare(context.Background(), js, streams.DefaultLimits(), 3, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	publishSamples(t, js, 0, 300)
	d, err := NewDetections(DetectionConfig{Index: vectorindex.DetectionConfig{Model: model}, Dir: filepath.Join(t.TempDir(), "detections"), Retention: 2 * time.Hour, SnapshotEvery: time.Hour},
		js, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := d.CatchUp(wctx); err != nil {
		t.Fatal(err)
	}
	// Samples 0..119 minutes old are kept; the one of exactly 120 minutes
	// is at the edge and older ones are not.
	if n := d.Index().Count(); n < 119 || n > 120 {
		t.Fatalf("%d vectors within a 2h retention, want 120", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
