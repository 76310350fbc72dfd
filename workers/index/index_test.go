package index

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"poi/internal/metrics"
	"poi/internal/store"
	"poi/internal/testenv"
	"poi/streams"
	"poi/workers/embed"
	"poi/workers/partition"
)

// faces answers detection with one face per frame, placed by the frame's
// bytes (frames are not images here: the stage never decodes them), and
// embedding with a vector per face; it fails the embedding requests whose
// numbers are in failOn, as an overloaded embedding service would.
type faces struct {
	mu     sync.Mutex
	calls  int
	failOn map[int]bool
}

func (f *faces) Do(_ context.Context, img []byte, p embed.Params) (embed.Reply, error) {
	if p.Mode == embed.ModeDetect {
		x := int(img[0]) * 100 // far apart: every frame is a new track
		return embed.Reply{Faces: []embed.FaceOut{{Box: streams.Box{x, 0, x + 50, 50}, Score: 0.9}}}, nil
	}
	f.mu.Lock()
	f.calls++
	n := f.calls
	f.mu.Unlock()
	if f.failOn[n] {
		return embed.Reply{}, errors.New("embedding service timed out")
	}
	rep := embed.Reply{Model: "m"}
	for range p.Faces {
		v := make([]float32, 4)
		v[int(img[0])%4] = 1
		rep.Faces = append(rep.Faces, embed.FaceOut{Embedding: v, Thumb: []byte("thumb")})
	}
	return rep, nil
}

// TestFailedStepLeavesEveryMessageOfTheCameraForTheRetry: when a step
// fails half way through a camera's batch, the steps before it were
// applied to a state that is never committed, so none of the camera's
// messages may be acknowledged; the retry applies them all.
func TestFailedStepLeavesEveryMessageOfTheCameraForTheRetry(t *testing.T) {
	ctx := context.Background()
	const cam = "cam-1"
	f := newFixture(t, cam, 3, "")
	st, p, msgs := f.store, f.partition, f.msgs
	svc := &faces{failOn: map[int]bool{2: true}} // the second frame's embedding fails
	s := f.stage(svc)
	results := s.HandleBatch(ctx, p, msgs)
	if results[0] == nil || errors.Is(results[0], partition.ErrNotTried) {
		t.Fatalf("first message: %v; it was applied to a state that was not committed, so it must be retried", results[0])
	}
	for i, err := range results[1:] {
		if !errors.Is(err, partition.ErrNotTried) {
			t.Errorf("message %d: %v, want ErrNotTried", i+2, err)
		}
	}
	if raw, _, err := st.TrackerState(ctx, cam); err != nil || raw != nil {
		t.Fatalf("tracker state after the failed batch: %s, %v; want nothing committed", raw, err)
	}

	results = s.HandleBatch(ctx, p, msgs) // the retry
	for i, err := range results {
		if err != nil {
			t.Fatalf("retry: message %d: %v", i+1, err)
		}
	}
	raw, _, err := st.TrackerState(ctx, cam)
	if err != nil {
		t.Fatal(err)
	}
	var got state
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	if got.Seq != 3 || len(got.Tracks) != 3 {
		t.Errorf("after the retry: applied up to %d with %d tracks, want 3 and 3 (one new face per frame)", got.Seq, len(got.Tracks))
	}
}

// fixture is one camera's frames in a real POI_INGEST, fetched from a
// consumer of its partition, and a real Redis for the tracker.
type fixture struct {
	store     *store.Store
	js        jetstream.JetStream
	partition int
	msgs      []jetstream.Msg
	log       *slog.Logger
}

// newFixture publishes n frames of cam and fetches them (durable names the
// consumer; "" for an unnamed one).
func newFixture(t *testing.T, cam string, n int, durable string) *fixture {
	t.Helper()
	ctx := context.Background()
	rd := testenv.StartRedis(t)
	st, err := store.Open(rd.URL(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	_, js := testenv.NATS(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	limits := streams.DefaultLimits()
	if err := streams.Declare(ctx, js, limits, 5, log); err != nil {
		t.Fatal(err)
	}
	base := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	for i := range n {
		m, err := streams.NewMsg(streams.Subject(streams.IngestFrame, cam),
			&streams.Frame{Header: streams.Current(), CameraID: cam, Timestamp: base.Add(time.Duration(i) * 100 * time.Millisecond), JPEG: []byte{byte(i + 1)}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	p := streams.Partition(cam, limits.Partitions)
	cons, err := js.CreateOrUpdateConsumer(ctx, streams.Ingest, jetstream.ConsumerConfig{
		Durable: durable, FilterSubjects: streams.IngestPartitionFilters(p), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.FetchNoWait(n)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != n {
		t.Fatalf("fetched %d messages, want %d", len(msgs), n)
	}
	return &fixture{store: st, js: js, partition: p, msgs: msgs, log: log}
}

// stage is a tracker over the fixture with svc as its face services.
func (f *fixture) stage(svc *faces) *Stage {
	return New(Config{Model: "m", Silence: 5 * time.Second, SampleInterval: 10 * time.Second, MaxSamples: 5, Retention: time.Hour,
		MinIoU: 0.3, Continuity: 0.4, BetterView: 1.5, LastFrameEvery: time.Second, DetectConcurrency: 2, Partitions: streams.DefaultLimits().Partitions},
		f.js, f.store, svc, svc, metrics.New(), f.log)
}

// TestAFailedTickIsTriedAgainFromRedis: the idle tick that closes a quiet
// camera's tracks can lose to another commit (a second owner for a moment,
// during a rebalance). The camera must stay due: the next tick starts from
// what Redis holds and closes the tracks, or they would stay open for as
// long as the camera sends nothing.
func TestAFailedTickIsTriedAgainFromRedis(t *testing.T) {
	ctx := context.Background()
	const cam = "cam-quiet"
	f := newFixture(t, cam, 1, "quiet")
	s := f.stage(&faces{})
	s.cfg.Silence = 300 * time.Millisecond
	if err := s.HandleBatch(ctx, f.partition, f.msgs)[0]; err != nil {
		t.Fatal(err)
	}
	if err := f.msgs[0].DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	// Another commit after this process read the state: its first tick
	// meets a newer version.
	raw, version, err := f.store.TrackerState(ctx, cam)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.CommitTracking(ctx, cam, version, raw, nil, nil, time.Hour); err != nil {
		t.Fatal(err)
	}
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- s.RunTicker(tctx, func(int) string { return "quiet" }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testenv.EventuallyNil(t, 30*time.Second, "the quiet camera's track closed", func() error {
		raw, _, err := f.store.TrackerState(ctx, cam)
		if err != nil {
			return err
		}
		var got state
		if err := json.Unmarshal(raw, &got); err != nil {
			return err
		}
		if len(got.Tracks) != 0 {
			return fmt.Errorf("%d tracks open", len(got.Tracks))
		}
		return nil
	})
}
